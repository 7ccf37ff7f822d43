//! Host bindings for the `sluice:op` world, generated once from `wit/op.wit`.
//!
//! Imports are synchronous (they only touch per-call state) except `exec.run`, which waits for
//! a child process on tokio; exports are called `async` so the runtime can run them on tokio
//! with epoch-based deadlines.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "op",
    imports: { "sluice:op/exec.run": async },
    exports: { default: async },
});

pub use sluice::op::types;
