//! Builds sluice ops written in C, with crates instead of the `wit-bindgen` and `wasm-tools`
//! command-line tools (which take minutes to `cargo install`):
//!
//! 1. [`bindings`]: wit-bindgen's C generator writes `op.h`, `op.c` and
//!    `op_component_type.o` (the world's type, linked into the module) from `wit/`;
//! 2. clang (Debian's, with wasi-libc) compiles the op and those files to a preview1 reactor
//!    module: [`CLANG_ARGS`];
//! 3. [`component`]: wit-component wraps the module with the preview1 reactor adapter of the
//!    wasmtime version sluice runs (Debian's wasi-libc is preview1 only).

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use wit_bindgen_core::wit_parser::Resolve;

/// The world every op implements.
pub const WORLD: &str = "op";

/// clang's flags for a preview1 reactor module, before the sources and `-o`.
pub const CLANG_ARGS: &[&str] = &[
    "--target=wasm32-wasi",
    "-mexec-model=reactor",
    "-O2",
    "-fuse-ld=lld",
    "-Wall",
    "-Werror",
    "-Wno-unused-function",
];

/// Writes the C bindings of `world` in `wit_dir` into `out_dir`; returns the files written.
pub fn bindings(wit_dir: &Path, world: &str, out_dir: &Path) -> Result<Vec<String>> {
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve
        .push_dir(wit_dir)
        .with_context(|| format!("reading the WIT in {}", wit_dir.display()))?;
    let world = resolve.select_world(&[pkg], Some(world))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)?;
    std::fs::create_dir_all(out_dir)?;
    let mut written = Vec::new();
    for (name, bytes) in files.iter() {
        std::fs::write(out_dir.join(name), bytes)
            .with_context(|| format!("writing {}", out_dir.join(name).display()))?;
        written.push(name.to_string());
    }
    Ok(written)
}

/// The component made of the preview1 reactor `module` and the adapter.
pub fn component(module: &[u8]) -> Result<Vec<u8>> {
    if !module.starts_with(b"\0asm") {
        bail!("not a WebAssembly module");
    }
    wit_component::ComponentEncoder::default()
        .module(module)?
        .validate(true)
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
}
