//! Ops written in Python (componentize-py), JavaScript (jco, QuickJS) and C (clang and
//! wasi-libc), built as their authors would and run by a rule through sluice.
//!
//! The Python and JavaScript toolchains come from PyPI and npm into `target/toolchains/`, once,
//! on first use (`.ci/run` does it up front). C needs Debian's clang, lld, wasi-libc and
//! libclang-rt-14-dev-wasm32, which `.ci/run` installs; without them the C test fails, saying so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::jobs::{err, json, out, root, sluice, write_rule};

/// The pinned tool versions (also in `.ci/run` and the examples' READMEs).
pub(crate) const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
pub(crate) const JCO: &str = "@bytecodealliance/jco@1.35.0";

fn toolchains() -> PathBuf {
    root().join("target/toolchains")
}

fn run(cmd: &mut Command, what: &str) {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not start {cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{what} failed ({cmd:?}):\n{}{}",
        out(&o),
        err(&o)
    );
}

/// `componentize-py`, installed into a venv under `target/toolchains/py` on first use.
pub(crate) fn componentize_py() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let venv = toolchains().join("py");
        let tool = venv.join("bin/componentize-py");
        if !tool.is_file() {
            run(
                Command::new("python3").args(["-m", "venv"]).arg(&venv),
                "making a Python venv (needs python3 with venv)",
            );
            run(
                Command::new(venv.join("bin/pip")).args(["install", "--quiet", COMPONENTIZE_PY]),
                "installing componentize-py from PyPI",
            );
        }
        tool
    })
}

/// `jco`, installed with npm under `target/toolchains/js` on first use.
pub(crate) fn jco() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let dir = toolchains().join("js");
        let tool = dir.join("node_modules/.bin/jco");
        if !tool.is_file() {
            std::fs::create_dir_all(&dir).unwrap();
            run(
                Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
                    .arg(&dir)
                    .arg(JCO),
                "installing jco from npm (needs node and npm)",
            );
        }
        tool
    })
}

const RELEASE_NOTES: &str = r#"
rule: polyglot
ops:
  bump: { path: BUMP }
  release-notes: { path: NOTES }
params:
  current: { type: string, default: "1.4.2" }
phases:
  run:
    - id: next
      op: bump
      with: { current: "${{ params.current }}", changes: ["feat: dark mode", "fix: login loops", "tidy"] }
    - id: notes
      op: release-notes
      with:
        version: "${{ steps.next.output.version }}"
        previous: "${{ params.current }}"
        changes: ["feat: dark mode", "fix: login loops", "tidy"]
"#;

#[test]
fn python_and_javascript_ops_run_in_a_rule() {
    let home = crate::home();
    let notes = home.path().join("release_notes.wasm");
    run(
        Command::new(componentize_py())
            .args(["-d", "../../wit", "-w", "op", "componentize", "app"])
            .args(["-p", ".", "-p", "../../plugins/sdk-python", "-o"])
            .arg(&notes)
            .current_dir(root().join("examples/python-op")),
        "building examples/python-op with componentize-py",
    );
    // The example's own cases (op-test.yaml names the op beside it).
    let cases = home.path().join("op-test.yaml");
    std::fs::copy(root().join("examples/python-op/op-test.yaml"), &cases).unwrap();
    let o = sluice(home.path(), &["op", "test", cases.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(
        out(&o).contains("op test: 5 passed, 0 failed"),
        "{}",
        out(&o)
    );
    // The example imports the SDK from beside it (jco's module root is the op's directory):
    // its build copies it there, as this does in a directory of its own.
    let js = home.path().join("js-op");
    std::fs::create_dir_all(&js).unwrap();
    for (from, to) in [
        ("examples/js-op/bump.js", "bump.js"),
        ("examples/js-op/op-test.yaml", "op-test.yaml"),
        ("plugins/sdk-js/sluice-op.js", "sluice-op.js"),
        ("plugins/sdk-js/test/check.js", "check.js"),
        ("plugins/sdk-js/test/op-test.yaml", "check-test.yaml"),
    ] {
        std::fs::copy(root().join(from), js.join(to)).unwrap();
    }
    let jco_build = |module: &str, wasm: &Path| {
        run(
            Command::new(jco())
                .args(["componentize", module, "--wit"])
                .arg(root().join("wit"))
                .args(["--world-name", "op", "--backend", "qjs"])
                .args(["--backend-qjs-disable-async", "-o"])
                .arg(wasm)
                .current_dir(&js),
            &format!("building {module} with jco"),
        )
    };
    let bump = js.join("bump.wasm");
    jco_build("bump.js", &bump);
    let cases = js.join("op-test.yaml");
    let o = sluice(home.path(), &["op", "test", cases.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(
        out(&o).contains("op test: 7 passed, 0 failed"),
        "{}",
        out(&o)
    );
    // The SDK's own cases: exec, secrets, annotations, a gate resumed, rollback, refusals.
    jco_build("check.js", &js.join("check.wasm"));
    let check = js.join("check-test.yaml");
    let o = sluice(home.path(), &["op", "test", check.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(
        out(&o).contains("op test: 5 passed, 0 failed"),
        "{}",
        out(&o)
    );

    let rule = RELEASE_NOTES
        .replace("BUMP", &format!("{:?}", bump.display().to_string()))
        .replace("NOTES", &format!("{:?}", notes.display().to_string()));
    let path = write_rule(home.path(), "polyglot.yaml", &rule);
    let o = sluice(home.path(), &["run", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));

    let v = json(&sluice(home.path(), &["show", "polyglot-1", "--json"]));
    assert_eq!(
        v["steps"]["next"]["result"]["output"],
        serde_json::json!({ "version": "1.5.0", "previous": "1.4.2", "level": "minor" })
    );
    assert_eq!(
        v["steps"]["notes"]["result"]["output"]["notes"],
        "# 1.5.0 (after 1.4.2)\n\n## Features\n\n- dark mode\n\n## Fixes\n\n- login loops\n\n## Other\n\n- tidy\n"
    );
    let logs = out(&sluice(home.path(), &["logs", "polyglot-1"]));
    assert!(logs.contains("1.4.2 -> 1.5.0 (minor, 3 changes)"), "{logs}");
    assert!(
        logs.contains("annotation `release notes 1.5.0`: # 1.5.0 (after 1.4.2)"),
        "{logs}"
    );

    // Their failures are failures like any other op's.
    let o = sluice(
        home.path(),
        &[
            "op",
            "run",
            bump.to_str().unwrap(),
            "-i",
            r#"{"current":"1.4","changes":["x"]}"#,
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("`current` is \"1.4\": give a version such as 1.4.2"),
        "{}",
        out(&o)
    );
}

/// `sluice op new --lang python|js` writes projects that build with the command they print
/// (the tools coming from `target/toolchains/` instead of the project's own venv or
/// node_modules) and run unchanged.
#[test]
fn op_new_python_and_js_projects_build_and_run() {
    let home = crate::home();
    for (lang, name) in [("python", "greet-py"), ("js", "greet-js")] {
        let dir = home.path().join(name);
        let o = sluice(
            home.path(),
            &[
                "op",
                "new",
                name,
                "--lang",
                lang,
                "--dir",
                dir.to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", err(&o));
        let printed = out(&o);
        let wasm = dir.join(format!("{}.wasm", name.replace('-', "_")));
        match lang {
            "python" => {
                assert!(
                    printed.contains(
                        ".venv/bin/componentize-py -d wit -w op componentize app -o greet_py.wasm"
                    ),
                    "{printed}"
                );
                run(
                    Command::new(componentize_py())
                        .args(["-d", "wit", "-w", "op", "componentize", "app", "-o"])
                        .arg(&wasm)
                        .current_dir(&dir),
                    "building the python template",
                );
            }
            _ => {
                let package: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(dir.join("package.json")).unwrap())
                        .unwrap();
                let script = package["scripts"]["build"].as_str().unwrap();
                let args: Vec<&str> = script.split_whitespace().collect();
                assert_eq!(args[0], "jco", "{script}");
                run(
                    Command::new(jco()).args(&args[1..]).current_dir(&dir),
                    "building the js template with its package.json script",
                );
            }
        }
        // The project's own cases pass.
        let cases = dir.join("op-test.yaml");
        let o = sluice(home.path(), &["op", "test", cases.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{lang}: {}{}", out(&o), err(&o));
        assert!(
            out(&o).contains("op test: 2 passed, 0 failed"),
            "{lang}: {}",
            out(&o)
        );
        let o = sluice(
            home.path(),
            &[
                "op",
                "run",
                wasm.to_str().unwrap(),
                "-i",
                r#"{"name":"ops"}"#,
                "--json",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{lang}: {}{}", out(&o), err(&o));
        let v = json(&o);
        assert_eq!(
            v["outcome"]["output"],
            serde_json::json!({ "greeting": "hello, ops" }),
            "{lang}"
        );
        assert!(
            v["logs"][0]["message"]
                .as_str()
                .unwrap()
                .starts_with("greeting ops for "),
            "{lang}: {v}"
        );
    }
}

/// The C example: bindings from wit-bindgen's C generator, Debian's clang and wasi-libc, the
/// preview1 reactor adapter; then a rule runs it with the workspace it needs.
#[test]
fn a_c_op_runs_in_a_rule_with_its_workspace() {
    let libc = Path::new("/usr/lib/wasm32-wasi/libc.a");
    let clang = Command::new("clang").arg("--version").output();
    assert!(
        libc.is_file() && clang.is_ok_and(|o| o.status.success()),
        "the C toolchain is missing: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32 (.ci/run does)"
    );
    let home = crate::home();
    let gen_dir = home.path().join("c-bindings");
    let files = sluice_cbuild::bindings(&root().join("wit"), sluice_cbuild::WORLD, &gen_dir)
        .expect("generating the C bindings");
    assert_eq!(files, ["op.c", "op.h", "op_component_type.o"]);
    let module = home.path().join("checksum.core.wasm");
    run(
        Command::new("clang")
            .args(sluice_cbuild::CLANG_ARGS)
            .arg("-I")
            .arg(&gen_dir)
            .arg(root().join("examples/c-op/checksum.c"))
            .arg(gen_dir.join("op.c"))
            .arg(gen_dir.join("op_component_type.o"))
            .arg("-o")
            .arg(&module),
        "compiling examples/c-op with clang",
    );
    let component = home.path().join("checksum.wasm");
    std::fs::write(
        &component,
        sluice_cbuild::component(&std::fs::read(&module).unwrap()).expect("componentizing"),
    )
    .unwrap();

    let ws = home.path().join("workspaces/artifact-1/build");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("app.tar"), "hello world").unwrap();
    let rule = format!(
        "rule: artifact\nops:\n  checksum: {{ path: {:?} }}\ngrants:\n  checksum: [workspace:read-only]\nphases:\n  run:\n    - {{ id: sum, op: checksum, with: {{ path: build/app.tar }} }}\n    - {{ id: missing, op: checksum, on-error: continue, with: {{ path: build/gone.tar }} }}\n",
        component.display().to_string()
    );
    let path = write_rule(home.path(), "artifact.yaml", &rule);
    let o = sluice(home.path(), &["run", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let v = json(&sluice(home.path(), &["show", "artifact-1", "--json"]));
    assert_eq!(
        v["steps"]["sum"]["result"]["output"],
        serde_json::json!({ "path": "build/app.tar", "bytes": 11, "crc32": "0d4a1185" })
    );
    assert_eq!(
        v["steps"]["missing"]["result"]["message"],
        "cannot open /workspace/build/gone.tar (is `workspace:read-only` granted, and the file there?)"
    );

    // Without the grant the rule is refused before anything runs.
    let ungranted = write_rule(
        home.path(),
        "ungranted.yaml",
        &rule.replace("grants:\n  checksum: [workspace:read-only]\n", ""),
    );
    let o = sluice(home.path(), &["validate", ungranted.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o)
            .contains("op `checksum` needs `workspace:read-only`, which the rule does not grant"),
        "{}",
        err(&o)
    );
}
