//! The `sluice` binary as a user runs it: output, JSON, exit codes.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use sluice_std_ops::test_ops;

fn sluice(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .envs(crate::home_env(home))
        .env_remove("SLUICE_LOG")
        .output()
        .expect("running sluice")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", stdout(o)))
}

#[test]
fn op_list_json_lists_the_shipped_ops() {
    let home = crate::home();
    let o = sluice(home.path(), &["op", "list", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let list = json(&o);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["name"].as_str().unwrap())
        .collect();
    let shipped: Vec<&str> = sluice_std_ops::STD_OPS.iter().map(|op| op.name).collect();
    assert_eq!(names, shipped);
    assert!(names.contains(&"log"));
    for op in list.as_array().unwrap() {
        assert!(op["digest"].as_str().unwrap().starts_with("sha256:"));
        assert!(!op["description"].as_str().unwrap().is_empty());
    }
    // Test ops are never shipped.
    assert!(!names.contains(&"panic") && !names.contains(&"echo"));
}

#[test]
fn op_run_a_file_prints_the_outcome_and_exits_0() {
    let home = crate::home();
    let o = sluice(
        home.path(),
        &[
            "op",
            "run",
            test_ops::ECHO,
            "--input",
            r#"{"image":"web:1.2"}"#,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "success\n{\n  \"image\": \"web:1.2\"\n}\n");
    assert!(
        stderr(&o).contains("[echo op] echo step=echo attempt=1"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn op_run_json_embeds_output_logs_and_where_it_was_loaded_from() {
    let home = crate::home();
    let args = [
        "op",
        "run",
        test_ops::STDOUT,
        "--input",
        r#"{"lines":2}"#,
        "--json",
    ];
    let first = json(&sluice(home.path(), &args));
    assert_eq!(
        first["outcome"],
        serde_json::json!({ "status": "success", "output": 2 })
    );
    assert_eq!(first["loaded_from"], "compiled");
    // Guest stdout reaches the log, never the terminal: stdout held only the JSON above.
    let logs = first["logs"].as_array().unwrap();
    assert_eq!(
        logs[0],
        serde_json::json!({ "level": "info", "source": "stdout", "message": "hello from stdout 0" })
    );
    assert_eq!(logs[2]["source"], "stderr");

    let second = json(&sluice(home.path(), &args));
    assert_eq!(second["loaded_from"], "disk-cache");
    assert_eq!(second["digest"], first["digest"]);
}

#[test]
fn a_guest_panic_exits_1_with_a_clear_message() {
    let home = crate::home();
    let o = sluice(
        home.path(),
        &[
            "op",
            "run",
            test_ops::PANIC,
            "--input",
            r#"{"message":"boom"}"#,
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("failure: op `panic` panicked: boom (at "),
        "{}",
        stdout(&o)
    );
    assert!(
        !stderr(&o).contains(
            "RUST_BACKTRACE=1` environment variable to display a backtrace\nthread 'main'"
        )
    );
}

#[test]
fn op_failure_and_warning_exit_codes() {
    let home = crate::home();
    let o = sluice(
        home.path(),
        &[
            "op",
            "run",
            test_ops::FAIL,
            "--input",
            r#"{"message":"no"}"#,
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["outcome"]["message"], "no");
    let o = sluice(home.path(), &["op", "run", test_ops::WARN]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("warning\n"));
    let o = sluice(home.path(), &["op", "run", test_ops::SUSPEND]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("suspended at approval gate: approve the test?\n"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn op_run_a_std_op_by_name() {
    let home = crate::home();
    let o = sluice(
        home.path(),
        &[
            "op",
            "run",
            "log",
            "--input",
            r#"{"message":"deploying web","level":"warn"}"#,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(" WARN [log op] deploying web"),
        "{}",
        stderr(&o)
    );

    let o = sluice(
        home.path(),
        &[
            "op",
            "run",
            "set",
            "--input",
            r#"{"values":{"image":"web:2"}}"#,
            "--json",
        ],
    );
    assert_eq!(
        json(&o)["outcome"]["output"],
        serde_json::json!({ "image": "web:2" })
    );
}

#[test]
fn usage_errors_exit_2_and_say_what_to_do() {
    let home = crate::home();
    let o = sluice(home.path(), &["op", "run", "no-such-op"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(
            "unknown op `no-such-op`: the standard ops are approve, assert, cleanup, deploy, evaluate, log, notify, pause, set, test, trap;"
        ),
        "{}",
        stderr(&o)
    );

    let o = sluice(home.path(), &["op", "run", "log", "--input", "{not json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: --input is not JSON"),
        "{}",
        stderr(&o)
    );

    let o = sluice(home.path(), &["op", "frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_file_that_is_not_a_component_exits_4() {
    let home = crate::home();
    let bad = home.path().join("bad.wasm");
    std::fs::write(&bad, b"hello").unwrap();
    let o = sluice(home.path(), &["op", "run", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4));
    assert!(
        stderr(&o).contains("not a valid WebAssembly component"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn op_describe_shows_schema_and_needs() {
    let home = crate::home();
    let o = sluice(home.path(), &["op", "describe", "log", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["name"], "log");
    assert_eq!(v["idempotent"], true);
    assert_eq!(
        v["input_schema"]["required"],
        serde_json::json!(["message"])
    );
    let o = sluice(home.path(), &["op", "describe", test_ops::UNDO]);
    assert!(
        stdout(&o).contains("can rollback: yes\nneeds:        nothing\n"),
        "{}",
        stdout(&o)
    );
}

/// The SDK used from outside this repository's workspaces, as an op author would.
#[test]
fn the_example_op_builds_with_the_sdk_and_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wasm = build_op(&root.join("examples/greet-op"), "greet_op");

    let home = crate::home();
    let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "op",
            "run",
            wasm.to_str().unwrap(),
            "--input",
            r#"{"name":"ops team"}"#,
            "--json",
        ])
        .envs(crate::home_env(home.path()))
        .env("SLUICE_USER", "carol")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["op"], "greet_op");
    assert_eq!(
        v["outcome"]["output"],
        serde_json::json!({ "greeting": "hello, ops team" })
    );
    assert_eq!(v["logs"][0]["message"], "greeting ops team for carol");

    let o = sluice(
        home.path(),
        &[
            "op",
            "run",
            wasm.to_str().unwrap(),
            "--input",
            r#"{"name":" "}"#,
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        "failure: `name` is empty: give the name of someone to greet\n"
    );
}

/// `sluice op new` writes a project that builds and runs unchanged.
#[test]
fn op_new_writes_a_project_that_builds_and_runs() {
    let home = crate::home();
    let dir = home.path().join("deploy-check");
    let o = sluice(
        home.path(),
        &["op", "new", "deploy-check", "--dir", dir.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for f in [
        "Cargo.toml",
        "src/lib.rs",
        "sdk/src/lib.rs",
        "wit/op.wit",
        "README.md",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let wasm = build_op(&dir, "deploy_check");
    let o = sluice(
        home.path(),
        &[
            "op",
            "run",
            wasm.to_str().unwrap(),
            "--input",
            r#"{"name":"ops"}"#,
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        json(&o)["outcome"]["output"],
        serde_json::json!({ "greeting": "hello, ops" })
    );
    // Its own cases pass (the build went to the shared target dir: put the op where they look).
    let at = dir.join("target/wasm32-wasip2/release/deploy_check.wasm");
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::fs::copy(&wasm, &at).unwrap();
    let tests = dir.join("op-test.yaml");
    let o = sluice(home.path(), &["op", "test", tests.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("op test: 2 passed, 0 failed"),
        "{}",
        stdout(&o)
    );

    let o = sluice(
        home.path(),
        &["op", "new", "deploy-check", "--dir", dir.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("exists: pick a new directory with --dir"),
        "{}",
        stderr(&o)
    );
    let o = sluice(
        home.path(),
        &[
            "op",
            "new",
            "x",
            "--lang",
            "go",
            "--dir",
            home.path().join("x").to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: --lang go is not supported yet: choose rust, python or js"),
        "{}",
        stderr(&o)
    );
    assert!(!home.path().join("x").exists(), "nothing half-written");
}

/// Builds the op project in `dir` for wasm32-wasip2, as its author would, sharing the nested
/// plugin build's target directory (same dependencies, already compiled); returns the
/// component's path.
fn build_op(dir: &Path, lib: &str) -> std::path::PathBuf {
    let target_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let build = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir)
        .current_dir(dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("running cargo");
    assert!(
        build.status.success(),
        "building {} failed:\n{}",
        dir.display(),
        stderr(&build)
    );
    target_dir.join(format!("wasm32-wasip2/release/{lib}.wasm"))
}

/// The SDK's own unit tests (durations, placeholders) run on the host, so `cargo test
/// --workspace` covers them too: `plugins/` is a workspace of its own.
#[test]
fn the_sdks_unit_tests_pass() {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["test", "--quiet", "-p", "sluice-op", "--manifest-path"])
        .arg(crate::jobs::root().join("plugins/Cargo.toml"))
        .arg("--target-dir")
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk-tests"));
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
