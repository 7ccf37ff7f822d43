//! `sluice-cbuild bindings WIT_DIR OUT_DIR` and `sluice-cbuild component MODULE.wasm OUT.wasm`:
//! the two steps around clang that turn a C op into a component (see examples/c-op).

use std::path::Path;

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["bindings", wit, out] => {
            for f in sluice_cbuild::bindings(Path::new(wit), sluice_cbuild::WORLD, Path::new(out))?
            {
                println!("{out}/{f}");
            }
        }
        ["component", module, out] => {
            let bytes = std::fs::read(module).with_context(|| format!("reading {module}"))?;
            std::fs::write(out, sluice_cbuild::component(&bytes)?)
                .with_context(|| format!("writing {out}"))?;
        }
        _ => bail!(
            "usage: sluice-cbuild bindings WIT_DIR OUT_DIR | sluice-cbuild component MODULE.wasm OUT.wasm"
        ),
    }
    Ok(())
}
