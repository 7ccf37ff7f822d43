//! `sluice op new NAME --lang rust|python|js`: a ready-to-build op project with the WIT in it
//! and the language's SDK, so it builds with nothing but the language's own tools and
//! registry: rustup and crates.io, a venv and componentize-py from PyPI, npm and jco.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};

use crate::{CmdResult, Failed};

const SDK_LIB: &str = include_str!("../../../plugins/sdk/src/lib.rs");
const SDK_ACTION: &str = include_str!("../../../plugins/sdk/src/action.rs");
const SDK_HTTP: &str = include_str!("../../../plugins/sdk/src/http.rs");
const SDK_DURATION: &str = include_str!("../../../plugins/sdk/src/duration.rs");
const DURATION_MANIFEST: &str = include_str!("../../../host/duration/Cargo.toml");
const DURATION_LIB: &str = include_str!("../../../host/duration/src/lib.rs");
const WIT: &str = include_str!("../../../wit/op.wit");
const SDK_JS: &str = include_str!("../../../plugins/sdk-js/sluice-op.js");
const SDK_JS_TYPES: &str = include_str!("../../../plugins/sdk-js/sluice-op.d.ts");
const SDK_PYTHON: &str = include_str!("../../../plugins/sdk-python/sluice_op/__init__.py");

/// The tool versions the templates pin (the test suite builds with the same).
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
const JCO: &str = "1.35.0";

/// The files of a project in `lang`, and the command that builds it.
fn project(name: &str, lang: &str) -> Option<(Vec<(&'static str, String)>, String)> {
    let crate_name = name.replace('-', "_");
    match lang {
        "rust" => Some((
            files(name),
            "cargo build --release --target wasm32-wasip2".into(),
        )),
        "python" => Some((
            python_files(name),
            format!(
                "python3 -m venv .venv && .venv/bin/pip install {COMPONENTIZE_PY} && .venv/bin/componentize-py -d wit -w op componentize app -o {crate_name}.wasm"
            ),
        )),
        "js" => Some((js_files(name), "npm install && npm run build".into())),
        _ => None,
    }
}

/// The templates' `op-test.yaml`: the same cases for the same greeting op in every language.
fn greet_cases(op: &str, build: &str) -> String {
    format!(
        r#"# Cases for `sluice op test` (docs/authoring-ops.md, "Testing locally").
op: {op}
build: {build}
cases:
  - name: greets by name
    input: {{ name: ops }}
    context: {{ started-by: alice }}
    expect:
      outcome: success
      output: {{ greeting: "hello, ops" }}
      logs: ["greeting ops for alice"]
  - name: a blank name fails
    input: {{ name: " " }}
    expect: {{ outcome: failure, message: "`name` is empty" }}
"#
    )
}

fn python_files(name: &str) -> Vec<(&'static str, String)> {
    let crate_name = name.replace('-', "_");
    vec![
        (
            "app.py",
            format!(
                r#""""`{name}`: a sluice op in Python. Change `Input` and `{fn_name}`; see docs/authoring-ops.md."""

from dataclasses import dataclass
from typing import Annotated

from sluice_op import export, failure, log, op, success


@dataclass
class Input:
    name: Annotated[str, "who to greet"]


@op("{name}", description="Greets someone by name (a template: make it yours)", idempotent=True)
def {fn_name}(ctx, input: Input):
    if not input.name.strip():
        return failure("`name` is empty: give the name of someone to greet")
    log.info(f"greeting {{input.name}} for {{ctx.started_by}}")
    return success({{"greeting": f"hello, {{input.name}}"}})


WitWorld = export({fn_name})
"#,
                fn_name = crate_name
            ),
        ),
        // The SDK, until it is published on PyPI.
        ("sluice_op/__init__.py", SDK_PYTHON.to_string()),
        (
            "op-test.yaml",
            greet_cases(
                &format!("{crate_name}.wasm"),
                &format!(
                    ".venv/bin/componentize-py -d wit -w op componentize app -o {crate_name}.wasm"
                ),
            ),
        ),
        ("wit/op.wit", WIT.to_string()),
        (
            "README.md",
            format!(
                "# {name}\n\nA sluice op in Python on the `sluice_op` SDK (in `sluice_op/`), built with componentize-py.\n\n```sh\npython3 -m venv .venv && .venv/bin/pip install {COMPONENTIZE_PY}\n.venv/bin/componentize-py -d wit -w op componentize app -o {crate_name}.wasm\nsluice op test          # the cases in op-test.yaml; --watch builds and tests on every change\nsluice op run {crate_name}.wasm --input '{{\"name\": \"ops\"}}'\n```\n\nIn a rule:\n\n```yaml\nops:\n  {name}: {{ path: {name}/{crate_name}.wasm }}\n```\n"
            ),
        ),
        (
            ".gitignore",
            "/.venv\n/.bindings\n*.wasm\n__pycache__/\n".to_string(),
        ),
    ]
}

fn js_files(name: &str) -> Vec<(&'static str, String)> {
    let crate_name = name.replace('-', "_");
    vec![
        (
            "op.js",
            format!(
                r#"// `{name}`: a sluice op in JavaScript on the sluice-op SDK (sluice-op.js, typed in
// sluice-op.d.ts). Change `input` and `run`; see docs/authoring-ops.md.
import {{ defineOp, failure, log, success, t }} from './sluice-op.js';

export const {{ describe, run, resume, rollback }} = defineOp({{
  name: '{name}',
  description: 'Greets someone by name (a template: make it yours)',
  idempotent: true,
  input: t.object({{ name: t.string('who to greet') }}),
  run(ctx, {{ name }}) {{
    if (!name.trim()) return failure('`name` is empty: give the name of someone to greet');
    log.info(`greeting ${{name}} for ${{ctx.startedBy}}`);
    return success({{ greeting: `hello, ${{name}}` }});
  }},
}});
"#
            ),
        ),
        // The SDK, until it is published on npm.
        ("sluice-op.js", SDK_JS.to_string()),
        ("sluice-op.d.ts", SDK_JS_TYPES.to_string()),
        (
            "package.json",
            format!(
                r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "scripts": {{
    "build": "jco componentize op.js --wit wit --world-name op --backend qjs --backend-qjs-disable-async -o {crate_name}.wasm"
  }},
  "devDependencies": {{
    "@bytecodealliance/jco": "{JCO}"
  }}
}}
"#
            ),
        ),
        ("wit/op.wit", WIT.to_string()),
        (
            "README.md",
            format!(
                "# {name}\n\nA sluice op in JavaScript, built with jco's QuickJS backend (a 1.6 MB component that\nstarts fast).\n\n```sh\nnpm install && npm run build\nsluice op run {crate_name}.wasm --input '{{\"name\": \"ops\"}}'\n```\n\nIn a rule:\n\n```yaml\nops:\n  {name}: {{ path: {name}/{crate_name}.wasm }}\n```\n"
            ),
        ),
        (
            "op-test.yaml",
            greet_cases(&format!("{crate_name}.wasm"), "npm run build"),
        ),
        (".gitignore", "/node_modules\n*.wasm\n".to_string()),
    ]
}

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
members = ["sdk", "duration"]
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
sluice-duration = { path = "../duration" }
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
        ("sdk/src/duration.rs", SDK_DURATION.to_string()),
        // The one duration format, shared with the host.
        ("duration/Cargo.toml", DURATION_MANIFEST.to_string()),
        ("duration/src/lib.rs", DURATION_LIB.to_string()),
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
                "# {name}\n\nA sluice op.\n\n```sh\nrustup target add wasm32-wasip2\ncargo build --release --target wasm32-wasip2\nsluice op describe target/wasm32-wasip2/release/{crate_name}.wasm\nsluice op run target/wasm32-wasip2/release/{crate_name}.wasm --input '{{\"name\": \"ops\"}}'\nsluice op test          # the cases in op-test.yaml; --watch builds and tests on every change\n```\n\nIn a rule:\n\n```yaml\nops:\n  {name}: {{ path: {name}/target/wasm32-wasip2/release/{crate_name}.wasm }}\n```\n"
            ),
        ),
        (
            "op-test.yaml",
            greet_cases(
                &format!("target/wasm32-wasip2/release/{crate_name}.wasm"),
                "cargo build --release --target wasm32-wasip2",
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
    let Some((files, build)) = project(name, lang) else {
        return Err(Failed::usage(anyhow!(
            "--lang {lang} is not supported yet: choose rust, python or js (C: see docs/authoring-ops.md)"
        )));
    };
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
        for (path, text) in files {
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
        "created op `{name}` in {}\nbuild it: cd {} && {build}\n",
        dir.display(),
        dir.display()
    ))?;
    Ok(0)
}
