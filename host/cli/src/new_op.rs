//! `sluice op new NAME --lang rust`: a ready-to-build op project, with the SDK and the WIT in
//! it, so it builds with nothing but rustup and crates.io.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};

use crate::{CmdResult, Failed};

const SDK_LIB: &str = include_str!("../../../plugins/sdk/src/lib.rs");
const SDK_ACTION: &str = include_str!("../../../plugins/sdk/src/action.rs");
const SDK_HTTP: &str = include_str!("../../../plugins/sdk/src/http.rs");
const WIT: &str = include_str!("../../../wit/op.wit");

fn files(name: &str) -> Vec<(&'static str, String)> {
    let crate_name = name.replace('-', "_");
    vec![
        (
            "Cargo.toml",
            format!(
                r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
rust-version = "1.95"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
sluice-op = {{ path = "sdk" }}
serde = {{ version = "1", features = ["derive"] }}

[profile.release]
opt-level = "s"
strip = true

# Not part of any enclosing workspace.
[workspace]
members = ["sdk"]
"#
            ),
        ),
        (
            "sdk/Cargo.toml",
            r#"[package]
name = "sluice-op"
description = "Write sluice ops in Rust: implement `Op`, call `export_op!`"
version = "0.1.0"
edition = "2024"
rust-version = "1.95"
publish = false

[dependencies]
wit-bindgen = { version = "0.61", default-features = false, features = ["macros", "realloc"] }
serde = { version = "1", features = ["derive"] }
serde_json = "1"
schemars = "1.2"
wasip2 = { version = "2", optional = true }

[features]
# Outgoing HTTP through wasi:http (`sluice_op::http`).
http = ["dep:wasip2"]
"#
            .to_string(),
        ),
        // The SDK reads the WIT from `../wit`, beside it in this project.
        (
            "sdk/src/lib.rs",
            SDK_LIB.replace(r#"path: "../../wit","#, r#"path: "../wit","#),
        ),
        ("sdk/src/action.rs", SDK_ACTION.to_string()),
        ("sdk/src/http.rs", SDK_HTTP.to_string()),
        ("wit/op.wit", WIT.to_string()),
        (
            "src/lib.rs",
            format!(
                r#"//! `{name}`: a sluice op. Change `Input`, `Output` and `run`; see docs/authoring-ops.md.
use serde::{{Deserialize, Serialize}};
use sluice_op::schemars::{{self, JsonSchema}};
use sluice_op::{{Context, Error, Op, Outcome, export_op}};

/// The op's input: the step's `with:`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {{
    /// Who to greet.
    name: String,
}}

/// The op's output: what later steps read as `steps.ID.output`.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Output {{
    greeting: String,
}}

struct ThisOp;

impl Op for ThisOp {{
    type Input = Input;
    type Output = Output;
    const NAME: &'static str = "{name}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Greets someone by name (a template: make it yours)";

    fn run(ctx: &Context, input: Input) -> Result<Outcome<Output>, Error> {{
        if input.name.trim().is_empty() {{
            return Err(Error::new("`name` is empty: give the name of someone to greet"));
        }}
        sluice_op::log::info(&format!("greeting {{}} for {{}}", input.name, ctx.started_by));
        Ok(Outcome::Success(Output {{ greeting: format!("hello, {{}}", input.name) }}))
    }}
}}

export_op!(ThisOp);
"#
            ),
        ),
        (
            "README.md",
            format!(
                "# {name}\n\nA sluice op.\n\n```sh\nrustup target add wasm32-wasip2\ncargo build --release --target wasm32-wasip2\nsluice op describe target/wasm32-wasip2/release/{crate_name}.wasm\nsluice op run target/wasm32-wasip2/release/{crate_name}.wasm --input '{{\"name\": \"ops\"}}'\n```\n\nIn a rule:\n\n```yaml\nops:\n  {name}: {{ path: {name}/target/wasm32-wasip2/release/{crate_name}.wasm }}\n```\n"
            ),
        ),
        (".gitignore", "/target\n".to_string()),
    ]
}

pub(crate) fn new_op(name: &str, lang: &str, dir: Option<PathBuf>) -> CmdResult {
    let plain = !name.is_empty()
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !plain {
        return Err(Failed::usage(anyhow!(
            "op name `{name}` is not a plain name: use lowercase letters, digits and `-`, starting with a letter"
        )));
    }
    if lang != "rust" {
        return Err(Failed::usage(anyhow!(
            "--lang {lang} is not supported yet: only rust templates exist (see docs/authoring-ops.md for other languages)"
        )));
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        return Err(Failed::usage(anyhow!(
            "{} exists: pick a new directory with --dir",
            dir.display()
        )));
    }
    // Write everything beside the target, then rename: nothing half-written.
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = parent.join(format!(".{name}.sluice-new-{}", std::process::id()));
    let write = || -> anyhow::Result<()> {
        for (path, text) in files(name) {
            let p = tmp.join(path);
            std::fs::create_dir_all(p.parent().expect("a file in a directory"))?;
            std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        }
        std::fs::rename(&tmp, &dir)
            .with_context(|| format!("moving the project to {}", dir.display()))
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(Failed::usage(e));
    }
    crate::output::print(&format!(
        "created op `{name}` in {}\nbuild it: cd {} && cargo build --release --target wasm32-wasip2\n",
        dir.display(),
        dir.display()
    ))?;
    Ok(0)
}
