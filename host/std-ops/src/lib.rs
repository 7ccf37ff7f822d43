//! The standard ops, built from `plugins/std/*` for wasm32-wasip2 by this crate's build script
//! and embedded in the `sluice` binary, plus the file paths of the test-only ops from
//! `plugins/test/*` (built the same way, never embedded).
//!
//! Architecture Invariant: nothing here runs or inspects a component; this crate only carries
//! bytes and paths. Loading and running is `sluice-runtime`'s job.

/// A standard op shipped inside the binary.
#[derive(Debug, Clone, Copy)]
pub struct StdOp {
    /// The op's name, as rules call it (the directory name under `plugins/std/`).
    pub name: &'static str,
    /// The component's bytes.
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/ops.rs"));

/// The standard op called `name`, if one ships.
pub fn std_op(name: &str) -> Option<&'static StdOp> {
    STD_OPS.iter().find(|op| op.name == name)
}
