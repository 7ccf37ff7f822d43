//! `sluice op test`: an op run against the cases of its test file, with exec and HTTP answered
//! by fixtures; a wrong expectation fails the run and says what was missed; `--watch` builds
//! and tests again when a file changes.

use std::io::BufRead;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use crate::jobs::{command, err, json, out, sluice};

/// The standard `test` op checks a service over HTTP and a program's output: both answered by
/// fixtures, so no network and no kubectl are needed.
const CASES: &str = r#"
op: test
build: echo built >> build.log
cases:
  - name: health check passes
    input:
      checks:
        - { name: api, http: { url: "https://api.example.com/health" }, json: { pointer: /status, equals: up } }
        - { name: version, command: { program: kubectl, args: [version, --client] }, contains: "v1.31" }
    grants: ["http:https://api.example.com", "exec:kubectl"]
    http:
      - { method: GET, url: "https://api.example.com/health", headers: { content-type: application/json }, body: { status: up } }
    exec:
      - { program: kubectl, args: [version, --client], stdout: "Client Version: v1.31.0\n" }
    expect:
      outcome: success
      logs: ["2 of 2 checks passed"]
  - name: a down service fails
    input:
      checks: [{ http: { url: "https://api.example.com/health" }, status: 200 }]
    grants: ["http:https://api.example.com"]
    http:
      - { url: "https://api.example.com/health", status: 503, body: "down" }
    expect: { outcome: failure, message: "503" }
  - name: an unanswered call names the fixture
    input:
      checks: [{ command: { program: kubectl, args: [get, pods] } }]
    grants: ["exec:kubectl"]
    expect: { outcome: failure, message: "no exec fixture answers `kubectl get pods`" }
  - name: an ungranted origin is refused before any fixture
    input:
      checks: [{ http: { url: "https://evil.example.net/" } }]
    http:
      - { url: "https://evil.example.net/", body: "never" }
    expect: { outcome: failure }
"#;

fn write(dir: &Path, text: &str) -> String {
    let file = dir.join("op-test.yaml");
    std::fs::write(&file, text).unwrap();
    file.to_string_lossy().into_owned()
}

#[test]
fn cases_pass_with_fixtures_and_a_wrong_expectation_fails_saying_what_it_missed() {
    let home = crate::home();
    let file = write(home.path(), CASES);
    let o = sluice(home.path(), &["op", "test", &file]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let text = out(&o);
    assert!(text.contains("case health check passes ... ok"), "{text}");
    assert!(text.contains("op test: 4 passed, 0 failed"), "{text}");

    let v = json(&sluice(home.path(), &["op", "test", &file, "--json"]));
    assert_eq!(v["passed"], 4);
    let checks = &v["cases"][0]["calls"][0]["outcome"]["output"];
    let checks: serde_json::Value = serde_json::from_str(checks.as_str().unwrap()).unwrap();
    assert_eq!(checks["checks"][0]["code"], 200, "{checks}");
    // The ungranted origin never reached its fixture: the refusal names the grant.
    let logs = v["cases"][3]["calls"][0]["logs"].to_string();
    assert!(
        logs.contains("grant `http:https://evil.example.net` to this op"),
        "{logs}"
    );

    // A wrong expectation: exit 1, the case's line, what was expected and what came.
    let wrong = CASES.replace(r#"message: "503""#, r#"message: "404""#);
    let file = write(home.path(), &wrong);
    let o = sluice(home.path(), &["op", "test", &file]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let text = out(&o);
    assert!(
        text.contains("case a down service fails ... FAILED (")
            && text.contains("op-test.yaml:18)"),
        "{text}"
    );
    assert!(
        text.contains("run: expected a message containing \"404\", got"),
        "{text}"
    );
    assert!(text.contains("op test: 3 passed, 1 failed"), "{text}");
    let o = sluice(home.path(), &["op", "test", &file, "--case", "health"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(
        out(&o).contains("1 passed, 0 failed, 3 filtered out"),
        "{}",
        out(&o)
    );
}

#[test]
fn a_bad_test_file_is_refused_at_its_line_and_nothing_runs() {
    let home = crate::home();
    let file = write(
        home.path(),
        "op: test\ncases:\n  - name: x\n    grants: [exec:git]\n    exec: [{ program: git, cde: 1 }]\n    expect: { outcome: success }\n",
    );
    let o = sluice(home.path(), &["op", "test", &file]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("error: unknown field `cde`"),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("op-test.yaml:5:28"), "{}", err(&o));
    assert!(err(&o).contains("did you mean `code`?"), "{}", err(&o));

    let file = write(home.path(), "op: missing.wasm\nbuild: make\ncases: []\n");
    let o = sluice(home.path(), &["op", "test", &file]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("the op `missing.wasm` is not there") && err(&o).contains("(`make`)"),
        "{}",
        err(&o)
    );
    // A case that expects nothing would pass on anything: refused.
    let big = format!(
        "op: test\ncases:\n  - name: big\n    input: {{ x: \"{}\" }}\n",
        "a".repeat(64)
    );
    let o = sluice(home.path(), &["op", "test", &write(home.path(), &big)]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("says nothing of what to expect"),
        "{}",
        err(&o)
    );
}

/// `--watch` builds, tests, then does both again when the test file changes.
#[test]
fn watch_builds_and_tests_again_on_a_change() {
    let home = crate::home();
    let file = write(home.path(), CASES);
    let mut child = command(home.path(), &["op", "test", "--watch", &file])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let until = |seen: &mut String, want: &str| loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no `{want}` from --watch; it printed:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(want) {
            break;
        }
    };
    until(&mut seen, "watching");
    assert!(seen.contains("op test: 4 passed, 0 failed"), "{seen}");
    write(
        home.path(),
        &CASES.replace(r#"message: "503""#, r#"message: "404""#),
    );
    until(&mut seen, "watching");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.contains("case a down service fails ... FAILED"),
        "{seen}"
    );
    assert!(seen.contains("op test: 3 passed, 1 failed"), "{seen}");
    let log = std::fs::read_to_string(home.path().join("build.log")).unwrap();
    assert_eq!(log, "built\nbuilt\n");
}

/// A case follows a gate with a decision (`resume:`) and a success with `rollback:`.
#[test]
fn cases_resume_a_gate_and_roll_back() {
    use sluice_std_ops::test_ops;
    let home = crate::home();
    let text = format!(
        r#"
op: {suspend:?}
cases:
  - name: approved
    context: {{ started-by: carol }}
    expect: {{ outcome: suspend, gate: {{ kind: approval, message: "approve the test" }} }}
    resume:
      decision: approve
      user: dave
      expect: {{ outcome: success, output: "approved by dave with state opaque-state" }}
  - name: timed out
    expect: {{ outcome: suspend }}
    resume: {{ decision: timed-out, expect: {{ outcome: success }} }}
"#,
        suspend = test_ops::SUSPEND
    );
    let o = sluice(home.path(), &["op", "test", &write(home.path(), &text)]);
    let printed = out(&o);
    assert!(printed.contains("case approved ... ok"), "{printed}");
    // The op answers a timeout with a failure: the expectation says success, so it fails.
    assert!(printed.contains("case timed out ... FAILED"), "{printed}");
    assert!(
        printed.contains("resume: expected outcome success, got failure"),
        "{printed}"
    );
    assert_eq!(o.status.code(), Some(1));

    let text = format!(
        "op: {undo:?}\ncases:\n  - name: undone\n    input: {{ release: 7 }}\n    expect: {{ outcome: success, output: {{ undo: {{ release: 7 }} }} }}\n    rollback: {{ expect: {{ outcome: success }} }}\n",
        undo = test_ops::UNDO
    );
    let o = sluice(
        home.path(),
        &["op", "test", &write(home.path(), &text), "--json"],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let v = json(&o);
    assert_eq!(v["cases"][0]["calls"][1]["call"], "rollback", "{v}");
}
