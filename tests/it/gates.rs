//! Gates through the real binary: run → the process exits waiting → a decision from a new
//! process → the job goes on and ends. The seeds' cases: Keptn pass/warning, Clarive reject
//! without rollback, trap retry/skip/abort, pause/resume, timeouts, and recovery after SIGKILL.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use sluice_std_ops::test_ops;

use crate::jobs::{err, json, out, sluice, write_rule};

fn status(home: &Path, job: &str) -> Value {
    json(&sluice(home, &["show", job, "--json"]))
}

fn as_user(home: &Path, args: &[&str], user: &str) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend(["--as", user]);
    sluice(home, &all)
}

const PERMISSIONS: &str = "groups:\n  release-managers: [bob, carol]\n  ops: [dave]\nallow:\n  approve: [group:release-managers]\n  resume: [group:ops]\n  trap: [group:ops]\n  annotate: ['*']\n";

#[test]
fn approval_hibernates_then_a_permitted_approver_in_another_process_finishes_the_job() {
    let home = crate::home();
    std::fs::write(home.path().join("permissions.yaml"), PERMISSIONS).unwrap();
    let o = sluice(
        home.path(),
        &[
            "run",
            "examples/web-release.yaml",
            "-p",
            "version=3.0",
            "-p",
            "env=production",
            "-p",
            &format!("root={}", home.path().display()),
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}{}", out(&o), err(&o));
    assert!(
        out(&o).contains("continue with `sluice approve web-release-1 --step go-live`"),
        "{}",
        out(&o)
    );
    assert!(
        out(&o).contains("job web-release-1 hibernates"),
        "{}",
        out(&o)
    );
    assert_eq!(
        json(&sluice(home.path(), &["jobs", "--json"]))[0]["status"],
        "waiting"
    );

    // Not allowed by the permissions file: refused, nothing changes.
    let o = as_user(home.path(), &["approve", "web-release-1"], "dave");
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(
        err(&o),
        "error: dave may not approve; the permissions file allows group:release-managers\n"
    );
    // The starter may not approve a production release (four eyes).
    std::fs::write(
        home.path().join("permissions.yaml"),
        PERMISSIONS.replace("[bob, carol]", "[ann, bob, carol]"),
    )
    .unwrap();
    let o = as_user(home.path(), &["approve", "web-release-1"], "ann");
    assert_eq!(o.status.code(), Some(5));
    assert!(
        err(&o).contains("ann started job web-release-1 and may not approve it (four eyes)"),
        "{}",
        err(&o)
    );
    // A bad input is refused too.
    let o = as_user(
        home.path(),
        &["approve", "web-release-1", "--input", "window=never"],
        "bob",
    );
    assert_eq!(
        err(&o),
        "error: input `window` is `never`; pick one of now, tonight\n"
    );
    assert_eq!(
        status(home.path(), "web-release-1")["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["event"]["type"] == "decided")
            .count(),
        0
    );

    let o = as_user(
        home.path(),
        &[
            "approve",
            "web-release-1",
            "--input",
            "window=tonight",
            "--comment",
            "canary is clean",
        ],
        "bob",
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(
        out(&o).ends_with("job web-release-1 succeeded: every step succeeded\n"),
        "{}",
        out(&o)
    );
    let logs = out(&sluice(
        home.path(),
        &["logs", "web-release-1", "--step", "announce"],
    ));
    assert!(
        logs.contains("web 3.0 is live in production (window: tonight; was nothing)"),
        "later steps read the gate's inputs: {logs}"
    );
    assert_eq!(
        std::fs::read_link(home.path().join("production/current")).unwrap(),
        Path::new("releases/3.0")
    );
    let show = out(&sluice(home.path(), &["show", "web-release-1"]));
    // The claimed user, and the OS account that typed it when that differs.
    assert!(
        show.contains(
            " bob decided approve at `go-live`: canary is clean {\"window\":\"tonight\"}\n"
        ) || show
            .contains(" decided approve at `go-live`: canary is clean {\"window\":\"tonight\"}\n")
            && show.contains(" bob (as OS user "),
        "{show}"
    );

    // Twice: refused.
    let o = as_user(home.path(), &["approve", "web-release-1"], "carol");
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(
        err(&o),
        "error: job web-release-1 has ended (succeeded); there is nothing to decide\n"
    );
}

const UNDO_AND_APPROVE: &str = r#"
rule: gated
OPS
phases:
  pre: [{ id: deploy, op: undo, with: { rev: 7 } }]
  run:
    - id: ok
      op: approve
      with: { approvers: [bob, group:release-managers], quorum: 2 }
    - { id: after, op: echo }
  post: [{ id: tell, op: echo, with: { status: "${{ job.status }}" } }]
"#;

#[test]
fn reject_ends_the_job_rejected_with_no_rollback_and_post_runs() {
    let home = crate::home();
    let rule = write_rule(home.path(), "gated.yaml", UNDO_AND_APPROVE);
    let rule = rule.to_str().unwrap();
    assert_eq!(sluice(home.path(), &["run", rule]).status.code(), Some(3));
    let o = as_user(
        home.path(),
        &["reject", "gated-1", "-m", "not this week"],
        "carol",
    );
    assert_eq!(
        err(&o),
        "error: carol may not decide at `ok`: its approvers are bob, group:release-managers\n"
    );
    let o = as_user(
        home.path(),
        &["reject", "gated-1", "-m", "not this week"],
        "bob",
    );
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let v = status(home.path(), "gated-1");
    assert_eq!(v["status"], "rejected");
    assert_eq!(v["message"], "rejected by bob at `ok`: not this week");
    assert!(
        v["steps"].get("undo:deploy").is_none(),
        "no rollback after a reject"
    );
    assert!(v["steps"].get("after").is_none());
    assert_eq!(
        v["steps"]["tell"]["result"]["output"]["status"], "rejected",
        "post ran, and saw why"
    );
}

#[test]
fn a_quorum_needs_distinct_approvers_and_concurrent_decisions_land_once() {
    let home = crate::home();
    let rule = write_rule(home.path(), "gated.yaml", UNDO_AND_APPROVE);
    assert_eq!(
        sluice(home.path(), &["run", rule.to_str().unwrap()])
            .status
            .code(),
        Some(3)
    );
    let o = as_user(home.path(), &["approve", "gated-1"], "bob");
    assert_eq!(
        o.status.code(),
        Some(3),
        "one approval of two: still waiting. {}{}",
        out(&o),
        err(&o)
    );
    let o = as_user(home.path(), &["approve", "gated-1"], "bob");
    assert_eq!(
        err(&o),
        "error: bob has already approved `ok` (1 of 2 approvals so far); another approver must\n"
    );

    // Two different people at once: both approvals land (it takes two), in some order, once each.
    let spawn = |user: &str| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["reject", "gated-1", "--as", user])
            .envs(crate::home_env(home.path()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Rejections by two people at one gate: exactly one lands, the other is refused.
    std::fs::write(
        home.path().join("permissions.yaml"),
        "groups:\n  release-managers: [x, y]\nallow:\n  approve: [group:release-managers]\n",
    )
    .unwrap();
    let (a, b) = (spawn("x"), spawn("y"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(1)) && codes.contains(&Some(5)),
        "one wins (job rejected, exit 1), one is refused (5): {codes:?}"
    );
    let v = status(home.path(), "gated-1");
    let rejects = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"]["kind"] == "reject")
        .count();
    assert_eq!(rejects, 1);
}

const KEPTN: &str = r#"
rule: keptn
OPS
params: { first: { default: success } }
phases:
  run:
    - { id: test, op: echo, when: "${{ params.first == 'success' }}" }
    - { id: warned, op: warn, when: "${{ params.first == 'warning' }}" }
    - { id: failed, op: fail, on-error: continue, when: "${{ params.first == 'failure' }}" }
    - { id: approval, op: approve, with: { pass: automatic, warning: manual } }
"#;

#[test]
fn keptn_approvals_pass_by_themselves_ask_after_a_warning_and_decline_after_a_failure() {
    let home = crate::home();
    let yaml = KEPTN.to_string();
    // The approval follows the last step of the list; the skipped ones in between do not count.
    let success = yaml.replace("    - { id: warned, op: warn, when: \"${{ params.first == 'warning' }}\" }\n    - { id: failed, op: fail, on-error: continue, when: \"${{ params.first == 'failure' }}\" }\n", "");
    let rule = write_rule(home.path(), "a.yaml", &success);
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "passes by itself after a success: {}{}",
        out(&o),
        err(&o)
    );

    let warning = yaml.replace("    - { id: test, op: echo, when: \"${{ params.first == 'success' }}\" }\n", "").replace("    - { id: failed, op: fail, on-error: continue, when: \"${{ params.first == 'failure' }}\" }\n", "");
    let rule = write_rule(home.path(), "b.yaml", &warning);
    let o = sluice(
        home.path(),
        &["run", rule.to_str().unwrap(), "-p", "first=warning"],
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "asks after a warning: {}{}",
        out(&o),
        err(&o)
    );

    let failure = yaml.replace("    - { id: test, op: echo, when: \"${{ params.first == 'success' }}\" }\n    - { id: warned, op: warn, when: \"${{ params.first == 'warning' }}\" }\n", "");
    let rule = write_rule(home.path(), "c.yaml", &failure);
    let o = sluice(
        home.path(),
        &["run", rule.to_str().unwrap(), "-p", "first=failure"],
    );
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let v = status(home.path(), "keptn-3");
    assert_eq!(v["status"], "rejected");
    assert_eq!(
        v["message"],
        "`approval` declined automatically: the step before failed"
    );
}

const TRAPPED: &str = r#"
rule: trapped
OPS
phases:
  pre: [{ id: deploy, op: undo, with: { rev: 3 } }]
  run:
    - { id: smoke, op: fail, on-error: trap, trap: { max-retries: 2 }, with: { message: "smoke test failed" } }
    - { id: promote, op: echo, with: { smoke: "${{ steps.smoke.outcome }}" } }
  post: [{ id: tell, op: echo, with: { status: "${{ job.status }}" } }]
"#;

#[test]
fn a_trap_stops_the_job_and_a_person_retries_with_an_edited_input_then_skips() {
    let home = crate::home();
    let rule = write_rule(home.path(), "t.yaml", TRAPPED);
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}{}", out(&o), err(&o));
    assert!(
        out(&o).contains("job trapped-1 waits at `smoke`: `smoke` failed: smoke test failed"),
        "{}",
        out(&o)
    );
    let o = sluice(home.path(), &["approve", "trapped-1"]);
    assert_eq!(
        err(&o),
        "error: step `smoke` waits at a trap gate, which takes retry, skip, rollback, abort, not approve\n"
    );

    let o = sluice(
        home.path(),
        &["retry", "trapped-1", "--input", "message=still failing"],
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "trapped again: {}{}",
        out(&o),
        err(&o)
    );
    let v = status(home.path(), "trapped-1");
    assert_eq!(
        v["steps"]["smoke"]["input"]["message"], "still failing",
        "the retry ran with the edited input"
    );
    assert_eq!(v["steps"]["smoke"]["attempt"], 2);

    let o = sluice(home.path(), &["skip", "trapped-1", "-m", "known flake"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let v = status(home.path(), "trapped-1");
    assert_eq!(v["status"], "succeeded");
    assert_eq!(
        v["steps"]["promote"]["result"]["output"]["smoke"],
        "skipped"
    );
}

#[test]
fn abort_at_a_trap_ends_failed_without_rollback_and_runs_post() {
    let home = crate::home();
    let rule = write_rule(home.path(), "t.yaml", TRAPPED);
    assert_eq!(
        sluice(home.path(), &["run", rule.to_str().unwrap()])
            .status
            .code(),
        Some(3)
    );
    let o = sluice(home.path(), &["abort", "trapped-1"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let v = status(home.path(), "trapped-1");
    assert_eq!(
        (v["status"].as_str(), v["message"].as_str()),
        (Some("failed"), Some("aborted by ann at `smoke`"))
    );
    assert!(
        v["steps"].get("undo:deploy").is_none(),
        "abort does not roll back"
    );
    assert_eq!(v["steps"]["tell"]["result"]["output"]["status"], "failed");
}

#[test]
fn rollback_at_a_trap_undoes_completed_steps() {
    let home = crate::home();
    let rule = write_rule(home.path(), "t.yaml", TRAPPED);
    assert_eq!(
        sluice(home.path(), &["run", rule.to_str().unwrap()])
            .status
            .code(),
        Some(3)
    );
    let o = sluice(home.path(), &["rollback", "trapped-1"]);
    assert_eq!(o.status.code(), Some(1));
    let v = status(home.path(), "trapped-1");
    assert_eq!(v["status"], "rolled-back");
    assert_eq!(v["steps"]["undo:deploy"]["status"], "succeeded");
}

#[test]
fn pause_waits_for_resume_and_the_gated_example_runs_through_every_gate() {
    let home = crate::home();
    let o = sluice(
        home.path(),
        &["run", "examples/gated-release.yaml", "-p", "healthy=false"],
    );
    assert_eq!(o.status.code(), Some(3), "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("waits at `health`"), "{}", out(&o));
    let o = sluice(home.path(), &["resume", "gated-release-1"]);
    assert_eq!(o.status.code(), Some(5));
    let o = sluice(
        home.path(),
        &["retry", "gated-release-1", "--input", "that=true"],
    );
    assert_eq!(o.status.code(), Some(3), "{}{}", out(&o), err(&o));
    assert!(
        out(&o).contains("waits at `watch`: watch the dashboards"),
        "the approval passed by itself; the pause waits: {}",
        out(&o)
    );
    let o = sluice(
        home.path(),
        &["resume", "gated-release-1", "-m", "dashboards are green"],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert_eq!(
        status(home.path(), "gated-release-1")["steps"]["watch"]["result"]["output"]["resumed_by"],
        "ann"
    );
}

#[test]
fn gates_are_refused_where_nobody_may_stop_them() {
    let home = crate::home();
    let rule = write_rule(
        home.path(),
        "bad.yaml",
        "rule: bad\nphases:\n  run: [{ op: log, with: { message: x } }]\n  post: [{ id: late, op: approve }]\n",
    );
    let o = sluice(home.path(), &["validate", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("error: `approve` cannot stand in `post`"),
        "{}",
        err(&o)
    );
    assert!(
        err(&o).contains("hint: post always runs to the end; put the gate before it"),
        "{}",
        err(&o)
    );
}

#[test]
fn a_gate_timeout_fires_from_the_journal_when_a_worker_runs() {
    let home = crate::home();
    let rule = write_rule(
        home.path(),
        "t.yaml",
        "rule: timed\nphases:\n  run:\n    - { id: ok, op: approve, with: { timeout: 1, on-timeout: reject } }\n    - { id: after, op: log, with: { message: x } }\n",
    );
    assert_eq!(
        sluice(home.path(), &["run", rule.to_str().unwrap()])
            .status
            .code(),
        Some(3)
    );
    // The timer is a journal row; a worker pass once it is due fires it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut v = status(home.path(), "timed-1");
    while v["status"] == "waiting" && std::time::Instant::now() < deadline {
        assert!(sluice(home.path(), &["worker", "--once"]).status.success());
        v = status(home.path(), "timed-1");
        if v["status"] == "waiting" {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    assert_eq!(v["status"], "rejected", "{v}");
    let decided = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["event"]["type"] == "decided")
        .unwrap()
        .clone();
    assert_eq!(decided["event"]["by"]["name"], "timeout");
}

#[test]
fn annotations_at_any_time_are_listed_by_show() {
    let home = crate::home();
    assert_eq!(
        sluice(home.path(), &["run", "examples/cleanup.yaml"])
            .status
            .code(),
        Some(0)
    );
    let log = home.path().join("deploy.log");
    std::fs::write(&log, "line 1\nline 2\n").unwrap();
    assert!(
        sluice(
            home.path(),
            &[
                "annotate",
                "env-cleanup-1",
                "--comment",
                "pruned by hand too"
            ]
        )
        .status
        .success()
    );
    assert!(
        sluice(
            home.path(),
            &["annotate", "env-cleanup-1", "--log", log.to_str().unwrap()]
        )
        .status
        .success()
    );
    let show = out(&sluice(home.path(), &["show", "env-cleanup-1"]));
    assert!(show.contains("annotations\n"), "{show}");
    assert!(show.contains(" ann: pruned by hand too\n"), "{show}");
    assert!(show.contains(" ann: log deploy.log (14 bytes)\n"), "{show}");
}

/// SIGKILL mid-step: nothing finished is lost, and the interrupted, non-idempotent step waits
/// in a trap with reason `interrupted` for a person.
#[test]
fn a_host_killed_mid_step_recovers_into_an_interrupted_trap() {
    let home = crate::home();
    let rule = write_rule(
        home.path(),
        "k.yaml",
        "rule: killed\nOPS\nphases:\n  pre: [{ id: first, op: echo, with: { n: 1 } }]\n  run: [{ id: long, op: spin, timeout: 60s }]\n  post: [{ id: tell, op: echo }]\n",
    );
    assert!(
        sluice(home.path(), &["op", "describe", test_ops::SPIN])
            .status
            .success()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", rule.to_str().unwrap()])
        .envs(crate::home_env(home.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let o = sluice(home.path(), &["show", "killed-1", "--json"]);
        if o.status.success() && json(&o)["steps"]["long"]["status"] == "running" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the long step never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let o = sluice(home.path(), &["worker", "--once"]);
    assert!(o.status.success(), "{}", err(&o));
    let v = status(home.path(), "killed-1");
    assert_eq!(v["status"], "waiting", "{v}");
    assert_eq!(
        v["steps"]["first"]["status"], "succeeded",
        "the finished step is kept"
    );
    let gate = &v["waiting"][0];
    assert_eq!(gate["kind"], "trap");
    assert!(
        gate["message"]
            .as_str()
            .unwrap()
            .starts_with("interrupted: "),
        "{gate}"
    );
    let o = sluice(home.path(), &["abort", "killed-1"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    assert_eq!(
        status(home.path(), "killed-1")["steps"]["tell"]["status"],
        "succeeded",
        "post ran"
    );
}

/// What the approver approved is what runs: the ops are pinned by sha256 when the job starts,
/// so a component swapped while the job waits is refused, not run under the approval.
#[test]
fn a_component_swapped_after_approval_is_refused() {
    let home = crate::home();
    let op = home.path().join("promote.wasm");
    std::fs::copy(test_ops::ECHO, &op).unwrap();
    let rule = home.path().join("r.yaml");
    std::fs::write(
        &rule,
        "rule: pinned\nops:\n  promote: { path: promote.wasm }\nphases:\n  run:\n    - { id: ok, op: approve, with: { allow-self-approval: true } }\n    - { id: go, op: promote }\n",
    )
    .unwrap();
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}{}", out(&o), err(&o));
    assert!(
        out(&o).contains("approves the ops approve@sha256:"),
        "{}",
        out(&o)
    );
    std::fs::copy(test_ops::FAIL, &op).unwrap();
    let o = sluice(home.path(), &["approve", "pinned-1"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let v = status(home.path(), "pinned-1");
    let message = v["steps"]["go"]["result"]["message"].as_str().unwrap();
    assert!(
        message.contains("the component changed since the job started"),
        "{message}"
    );
    let decided = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["event"]["type"] == "decided")
        .unwrap()
        .clone();
    assert_eq!(
        decided["event"]["bundle"].as_str().unwrap().len(),
        64,
        "the approval names the bundle it approved"
    );
}

#[test]
fn a_detached_decision_is_carried_on_by_the_worker() {
    let home = crate::home();
    let rule = write_rule(
        home.path(),
        "p.yaml",
        "rule: paused\nphases:\n  run: [{ id: wait, op: pause }, { id: after, op: log, with: { message: done } }]\n",
    );
    assert_eq!(
        sluice(home.path(), &["run", rule.to_str().unwrap()])
            .status
            .code(),
        Some(3)
    );
    let o = sluice(home.path(), &["resume", "paused-1", "--detach"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        json(&sluice(home.path(), &["jobs", "--json"]))[0]["status"],
        "ready"
    );
    assert!(sluice(home.path(), &["worker", "--once"]).status.success());
    assert_eq!(status(home.path(), "paused-1")["status"], "succeeded");
}

#[test]
fn the_worker_stops_cleanly_on_sigterm() {
    let home = crate::home();
    let w = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["worker", "--interval-ms", "50"])
        .envs(crate::home_env(home.path()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it has said in the journal that it runs, then ask it to stop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while json(&sluice(home.path(), &["workers", "--json"]))
        .as_array()
        .is_none_or(|w| w.is_empty())
    {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = w.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let o = w.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "worker stopping\n");
}

const LINE: &str = "rule: line\nOPS\nlocks: [env-x]\nphases:\n  run:\n    - { id: gate, op: approve }\n    - { id: after, op: echo }\n";

/// Issue 13: approving job A does not run job B (which waited for A's lock) in the approver's
/// terminal when a worker runs: the worker carries B on. Without a worker, B is driven where A
/// ended, and the output says why.
#[test]
fn an_unblocked_job_is_left_to_the_worker_not_run_in_the_approvers_terminal() {
    let home = crate::home();
    let rule = write_rule(home.path(), "line.yaml", LINE);
    let rule = rule.to_str().unwrap();
    for _ in 0..2 {
        assert_eq!(sluice(home.path(), &["run", rule]).status.code(), Some(3));
    }
    assert_eq!(status(home.path(), "line-2")["status"], "queued");
    let mut worker = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["worker", "--interval-ms", "100"])
        .envs(crate::home_env(home.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while json(&sluice(home.path(), &["workers", "--json"]))
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never said it runs"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = as_user(home.path(), &["approve", "line-1"], "bob");
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(
        out(&o).contains("job line-2 may go on now that line-1 ended; the worker "),
        "{}",
        out(&o)
    );
    assert!(!out(&o).contains("waits at an approval"), "{}", out(&o));
    // The worker carries line-2 on to its gate.
    while status(home.path(), "line-2")["status"] != "waiting" {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never drove line-2"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        Command::new("kill")
            .arg(worker.id().to_string())
            .status()
            .unwrap()
            .success()
    );
    worker.wait().unwrap();
    assert!(
        json(&sluice(home.path(), &["workers", "--json"]))
            .as_array()
            .unwrap()
            .is_empty(),
        "a stopped worker says so"
    );

    // No worker: line-3 waits behind line-2, and approving line-2 drives line-3 here, saying so.
    assert_eq!(sluice(home.path(), &["run", rule]).status.code(), Some(3));
    let o = as_user(home.path(), &["approve", "line-2"], "bob");
    assert!(
        out(&o).contains(
            "job line-3 may go on now that line-2 ended; no worker runs, so it is driven here"
        ),
        "{}",
        out(&o)
    );
    assert_eq!(status(home.path(), "line-3")["status"], "waiting");
}

/// Seconds since the Unix epoch, now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[test]
fn a_job_outside_its_window_says_when_it_starts_and_skip_window_needs_permission_and_a_reason() {
    let home = crate::home();
    std::fs::write(
        home.path().join("permissions.yaml"),
        "groups:\n  release-managers: [bob]\nallow:\n  skip-window: [group:release-managers]\n",
    )
    .unwrap();
    // Only the day after tomorrow (UTC) is allowed: closed now, whenever the test runs.
    let day = (unix_now() / 86_400 + 3 + 2) % 7;
    let rule = write_rule(
        home.path(),
        "w.yaml",
        &format!(
            "rule: windowed\nwindows: {{ allow: [{{ days: [{}] }}] }}\nphases:\n  run:\n    - {{ id: deploy, op: log, with: {{ message: deploying }} }}\n",
            DAYS[day as usize]
        ),
    );
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}{}", out(&o), err(&o));
    assert!(
        out(&o)
            .contains("job windowed-1 waits at `window:job`: the job is outside its deploy window"),
        "{}",
        out(&o)
    );
    assert!(out(&o).contains("00:00 UTC"), "{}", out(&o));
    assert!(out(&o).contains("starts by itself in"), "{}", out(&o));
    assert!(
        out(&o).contains(
            "or now with `sluice skip-window windowed-1 --step window:job --comment WHY`"
        ),
        "{}",
        out(&o)
    );
    let v = status(home.path(), "windowed-1");
    assert_eq!(v["status"], "waiting");
    assert_eq!(v["waiting"][0]["kind"], "window");
    assert!(v["waiting"][0]["opens_at"].as_u64().unwrap() > unix_now() * 1000);
    assert_eq!(v["locks"], Value::Null, "nothing is held while it waits");

    // Not permitted; permitted without a reason; then with one.
    let o = as_user(
        home.path(),
        &["skip-window", "windowed-1", "-m", "hotfix"],
        "dave",
    );
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    assert!(err(&o).contains("dave may not skip-window"), "{}", err(&o));
    let o = as_user(home.path(), &["skip-window", "windowed-1"], "bob");
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    assert!(err(&o).contains("needs a comment"), "{}", err(&o));
    assert_eq!(status(home.path(), "windowed-1")["status"], "waiting");
    let o = as_user(
        home.path(),
        &["skip-window", "windowed-1", "-m", "hotfix for the outage"],
        "bob",
    );
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    let v = status(home.path(), "windowed-1");
    assert_eq!(v["status"], "succeeded", "{v}");
    let decided = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["event"]["type"] == "decided")
        .unwrap()
        .clone();
    assert_eq!(decided["event"]["kind"], "skip-window");
    assert_eq!(decided["event"]["by"]["name"], "bob");
    assert_eq!(decided["event"]["comment"], "hotfix for the outage");
}

#[test]
fn a_job_waiting_for_its_window_starts_when_the_timer_fires() {
    let home = crate::home();
    // A window that opens at the start of the next minute (or the one after, when the next is
    // too close for the job to be started before it), for two minutes.
    let now = unix_now();
    let mut opens = (now / 60 + 1) * 60;
    if opens - now < 5 {
        opens += 60;
    }
    let hm = |t: u64| format!("{:02}:{:02}", (t / 3600) % 24, (t / 60) % 60);
    let (from, to) = (hm(opens), hm(opens + 120));
    if to < from {
        // Midnight falls in between: a range cannot cross it.
        eprintln!("skipped: the window would cross midnight UTC");
        return;
    }
    let rule = write_rule(
        home.path(),
        "w.yaml",
        &format!(
            "rule: soon\nphases:\n  run:\n    - id: deploy\n      op: log\n      with: {{ message: deploying }}\n      windows: {{ allow: [{{ hours: \"{from}-{to}\" }}] }}\n"
        ),
    );
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}{}", out(&o), err(&o));
    assert_eq!(
        status(home.path(), "soon-1")["waiting"][0]["opens_at"],
        opens * 1000
    );
    // Nothing runs while it waits; a worker pass after the opening starts it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let mut v = status(home.path(), "soon-1");
    while v["status"] == "waiting" && std::time::Instant::now() < deadline {
        assert!(sluice(home.path(), &["worker", "--once"]).status.success());
        v = status(home.path(), "soon-1");
        if v["status"] == "waiting" {
            assert!(
                unix_now() <= opens + 1,
                "still waiting after the window opened: {v}"
            );
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
    assert_eq!(v["status"], "succeeded", "{v}");
    let started = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["event"]["type"] == "step-started")
        .unwrap()["at"]
        .as_u64()
        .unwrap();
    assert!(
        started >= opens * 1000,
        "the step started before its window opened"
    );
}

#[test]
fn racing_skip_windows_land_once_and_a_killed_one_loses_nothing() {
    let home = crate::home();
    // Only the day after tomorrow (UTC) is allowed: closed now.
    let day = (unix_now() / 86_400 + 3 + 2) % 7;
    let rule = write_rule(
        home.path(),
        "w.yaml",
        &format!(
            "rule: raced\nwindows: {{ allow: [{{ days: [{}] }}] }}\nphases:\n  run:\n    - {{ id: deploy, op: log, with: {{ message: deploying }} }}\n",
            DAYS[day as usize]
        ),
    );
    assert_eq!(
        sluice(home.path(), &["run", rule.to_str().unwrap()])
            .status
            .code(),
        Some(3)
    );
    let spawn = |who: &str| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["skip-window", "raced-1", "-m", "hotfix", "--as", who])
            .envs(crate::home_env(home.path()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut racers: Vec<_> = ["a", "b", "c", "d"].iter().map(|u| spawn(u)).collect();
    // One of them is killed wherever it is: before, during or after its decision.
    let _ = racers[0].kill();
    for r in racers {
        let _ = r.wait_with_output().unwrap();
    }
    // Whatever the killed one left, a worker carries the job on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut v = status(home.path(), "raced-1");
    while v["status"] != "succeeded" && std::time::Instant::now() < deadline {
        assert!(sluice(home.path(), &["worker", "--once"]).status.success());
        v = status(home.path(), "raced-1");
    }
    assert_eq!(v["status"], "succeeded", "{v:#}");
    let kinds: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "decided").count(),
        1,
        "one skip-window lands: {kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "step-finished").count(),
        1,
        "the step ends once: {kinds:?}"
    );
}
