//! Issue 12 through the real binary: racing deciders, killed drivers, programs that outlive
//! their host, cancel at a gate, what a job's end says, identity, bounded annotations, and a
//! full or read-only `$SLUICE_HOME`. Each test is named after the defect it guards.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::jobs::{err, json, out, root, sluice, spawn, write_rule};

fn show(home: &Path, job: &str) -> Value {
    json(&sluice(home, &["show", job, "--json"]))
}

fn as_user(home: &Path, args: &[&str], user: &str) -> Output {
    let mut all = args.to_vec();
    all.extend(["--as", user]);
    sluice(home, &all)
}

/// Polls `ready` until it holds; fails the test after `secs` seconds saying `what`.
pub(crate) fn wait_for(what: &str, secs: u64, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pids of running processes whose command line has `needle` as an argument.
pub(crate) fn pids_with_arg(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        // A zombie has an empty command line: it no longer runs.
        if cmd.split(|b| *b == 0).any(|a| a == needle.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

fn history_count(v: &Value, ty: &str) -> usize {
    v["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"]["type"] == ty)
        .count()
}

const QUORUM: &str = r#"
rule: quorum
OPS
phases:
  run:
    - { id: gate, op: approve, with: { quorum: 3, message: "three of you" } }
    - { id: after, op: echo }
  post: [{ id: tell, op: echo }]
"#;

/// Item 1: 50 approvers released at once on a quorum-3 gate, several rounds: every round the
/// job ends; no interleaving leaves it decided but undriven.
#[test]
fn issue_12_racing_approvers_never_leave_a_decided_job_undriven() {
    let home = crate::home();
    let rule = write_rule(home.path(), "q.yaml", QUORUM);
    let barrier = home.path().join("barrier");
    std::fs::write(&barrier, "").unwrap();
    for round in 1..=3 {
        let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(3), "{}{}", out(&o), err(&o));
        let job = format!("quorum-{round}");
        // Every approver blocks on a shared lock of `barrier` until this exclusive one goes.
        let gate = std::fs::File::open(&barrier).unwrap();
        gate.lock().unwrap();
        let approvers: Vec<Child> = (0..50)
            .map(|i| {
                Command::new("flock")
                    .arg("--shared")
                    .arg(&barrier)
                    .arg(env!("CARGO_BIN_EXE_sluice"))
                    .args(["approve", &job, "--as", &format!("approver-{i}")])
                    .current_dir(root())
                    .envs(crate::home_env(home.path()))
                    .env_remove("SLUICE_LOG")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("flock (util-linux)")
            })
            .collect();
        gate.unlock().unwrap();
        let outputs: Vec<Output> = approvers
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        for o in &outputs {
            assert!(
                matches!(o.status.code(), Some(0 | 3 | 5)),
                "round {round}: an approver failed: {:?} {}",
                o.status,
                err(o)
            );
        }
        let v = show(home.path(), &job);
        let events: Vec<&Value> = v["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| &h["event"]["type"])
            .collect();
        assert_eq!(
            v["status"], "succeeded",
            "round {round}: every approver exited and the job is {} after {events:?}",
            v["status"]
        );
        let approvals = v["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["event"]["type"] == "decided" && h["event"]["kind"] == "approve")
            .count();
        assert_eq!(approvals, 3, "round {round}: exactly the quorum landed");
    }
}

pub(crate) const KILLED: &str = r#"
rule: killed
OPS
grants: { exec: [exec:sleep, exec:sh] }
phases:
  run:
    - { id: long, op: exec, timeout: 60s, with: { program: sleep, args: ["SLEEP"] } }
  post: [{ id: tell, op: echo }]
"#;

/// A sleep length no other test (or earlier run) uses, to find the process by.
pub(crate) fn unique_seconds(base: u32) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{base}.{}{n}", std::process::id())
}

/// Items 2 and 3: after the driving `run` is SIGKILLed mid-step, the program its op started
/// dies with it, `show` says the driver is gone, and a decision from a new process takes the
/// job over (into its interrupted trap) and retries it, instead of "not waiting at a gate".
#[test]
fn issue_12_a_decision_takes_over_a_job_whose_driver_was_killed() {
    let home = crate::home();
    let secs = unique_seconds(31);
    let rule = write_rule(home.path(), "k.yaml", &KILLED.replace("SLEEP", &secs));
    let mut run = spawn(home.path(), &["run", rule.to_str().unwrap()]);
    wait_for("the step runs its program", 60, || {
        !pids_with_arg(&secs).is_empty()
    });
    let child = pids_with_arg(&secs)[0];
    run.kill().unwrap(); // SIGKILL
    run.wait().unwrap();
    wait_for("the program dies with its host", 10, || {
        !Path::new(&format!("/proc/{child}/cmdline")).exists()
            || std::fs::read(format!("/proc/{child}/cmdline")).is_ok_and(|c| c.is_empty())
    });

    let o = sluice(home.path(), &["show", "killed-1"]);
    assert!(
        out(&o).contains("the process driving this job stopped"),
        "{}",
        out(&o)
    );
    assert_eq!(show(home.path(), "killed-1")["driver_gone"], true);

    let o = sluice(
        home.path(),
        &["retry", "killed-1", "--input", r#"args=["0"]"#],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let v = show(home.path(), "killed-1");
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(history_count(&v, "interrupted"), 1);
    assert_eq!(v["steps"]["long"]["attempt"], 2);
}

/// Item 3: a program left running by a killed host (here one its shell started in the
/// background, which the parent-death signal does not reach) blocks a retry of its step until
/// it is gone; then the retry runs.
#[test]
fn issue_12_a_retry_waits_for_programs_of_the_interrupted_attempt() {
    let home = crate::home();
    let (bg, fg) = (unique_seconds(27), unique_seconds(31));
    let rule = write_rule(
        home.path(),
        "k.yaml",
        &KILLED.replace(
            r#"program: sleep, args: ["SLEEP"]"#,
            &format!(r#"program: sh, args: ["-c", "sleep {bg} & sleep {fg}"]"#),
        ),
    );
    let mut run = spawn(home.path(), &["run", rule.to_str().unwrap()]);
    wait_for("the step's programs run", 60, || {
        !pids_with_arg(&bg).is_empty() && !pids_with_arg(&fg).is_empty()
    });
    run.kill().unwrap();
    run.wait().unwrap();

    let o = sluice(home.path(), &["retry", "killed-1"]);
    assert_eq!(o.status.code(), Some(5), "{}{}", out(&o), err(&o));
    assert!(
        err(&o).contains("started programs that still run") && err(&o).contains("(sh)"),
        "{}",
        err(&o)
    );
    let v = show(home.path(), "killed-1");
    assert_eq!(v["status"], "waiting", "recovered into its trap: {v}");
    let message = v["waiting"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("programs it started still run"),
        "{message}"
    );

    // Stop what is left of the program's process group; then the retry goes ahead.
    let left = pids_with_arg(&bg)[0];
    let stat = std::fs::read_to_string(format!("/proc/{left}/stat")).unwrap();
    let pgid = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string();
    assert!(
        Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status()
            .unwrap()
            .success()
    );
    wait_for("the program group is gone", 10, || {
        pids_with_arg(&bg).is_empty() && pids_with_arg(&fg).is_empty()
    });
    let o = sluice(
        home.path(),
        &["retry", "killed-1", "--input", r#"args=["-c", "true"]"#],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert_eq!(show(home.path(), "killed-1")["status"], "succeeded");
}

/// Item 4: the host dies while the gate op's `resume` runs with a recorded approval: recovery
/// resumes it again with the same decision, and nobody is asked twice.
#[test]
fn issue_12_an_interrupted_approval_resumes_with_its_recorded_decision() {
    let home = crate::home();
    std::fs::write(
        home.path().join("permissions.yaml"),
        "groups:\n  release-managers: [bob]\nallow:\n  approve: [group:release-managers]\n",
    )
    .unwrap();
    let rule = write_rule(
        home.path(),
        "held.yaml",
        "rule: held\nOPS\ngrants: { suspend: [workspace:read-only] }\nphases:\n  run: [{ id: gate, op: suspend, timeout: 60s, with: { hold: true } }]\n  post: [{ id: tell, op: echo }]\n",
    );
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}{}", out(&o), err(&o));
    let hold = home.path().join("workspaces/held-1/hold");
    std::fs::write(&hold, "").unwrap();
    let mut approver = spawn(home.path(), &["approve", "held-1", "--as", "bob"]);
    wait_for("the gate's resume runs", 60, || {
        show(home.path(), "held-1")["steps"]["gate"]["status"] == "running"
    });
    approver.kill().unwrap();
    approver.wait().unwrap();
    std::fs::remove_file(&hold).unwrap();

    let o = sluice(home.path(), &["worker", "--once"]);
    assert!(o.status.success(), "{}", err(&o));
    let v = show(home.path(), "held-1");
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(
        v["steps"]["gate"]["result"]["output"],
        "approved by bob with state opaque-state"
    );
    assert_eq!(history_count(&v, "decided"), 1, "asked once");
    assert_eq!(history_count(&v, "gate-opened"), 1, "no second gate");
    assert_eq!(history_count(&v, "interrupted"), 1);
}

const GATED: &str = r#"
rule: gated
OPS
locks: [env-qa]
phases:
  run:
    - { id: gate, op: approve, with: { timeout: 1h } }
    - { id: after, op: echo }
  post: [{ id: tell, op: echo }]
"#;

/// Items 5 and 6: cancel at a gate ends the job in the cancelling process (gate closed as
/// cancelled, post ran, locks released); cancel is checked against the permissions file; a
/// cancel of an ended job says so and fails.
#[test]
fn issue_12_cancel_at_a_gate_ends_the_job_with_permissions_checked() {
    let home = crate::home();
    std::fs::write(
        home.path().join("permissions.yaml"),
        "groups:\n  ops: [dave]\nallow:\n  cancel: [group:ops]\n  approve: ['*']\n",
    )
    .unwrap();
    let rule = write_rule(home.path(), "g.yaml", GATED);
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}{}", out(&o), err(&o));
    assert!(out(&sluice(home.path(), &["locks"])).contains("env-qa"));

    let o = as_user(home.path(), &["cancel", "gated-1"], "bob");
    assert_eq!(o.status.code(), Some(5), "{}{}", out(&o), err(&o));
    assert_eq!(
        err(&o),
        "error: bob may not cancel; the permissions file allows group:ops\n"
    );
    assert_eq!(show(home.path(), "gated-1")["status"], "waiting");

    let o = as_user(
        home.path(),
        &["cancel", "gated-1", "--reason", "wrong build"],
        "dave",
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let v = show(home.path(), "gated-1");
    assert_eq!(v["status"], "cancelled", "{v}");
    assert_eq!(v["message"], "cancelled by dave: wrong build");
    assert_eq!(v["steps"]["gate"]["status"], "cancelled");
    assert_eq!(v["steps"]["tell"]["status"], "succeeded", "post ran");
    assert!(v["steps"]["after"].is_null(), "nothing after the gate ran");
    assert_eq!(
        json(&sluice(home.path(), &["jobs", "--json"]))[0]["status"],
        "cancelled"
    );
    assert_eq!(
        out(&sluice(home.path(), &["locks"])).lines().count(),
        1,
        "only the header: the lock was given back"
    );

    let o = as_user(home.path(), &["cancel", "gated-1"], "dave");
    assert_eq!(o.status.code(), Some(5));
    assert!(
        err(&o).contains("job gated-1 has already ended: cancelled"),
        "{}",
        err(&o)
    );
}

/// Item 7: an approval that times out to reject records its step as rejected by the
/// timeout, the same shape as a person's reject, and the job ends rejected.
#[test]
fn issue_12_an_approval_timeout_that_rejects_says_rejected() {
    let home = crate::home();
    let rule = write_rule(
        home.path(),
        "t.yaml",
        "rule: timed\nOPS\nphases:\n  run: [{ id: gate, op: approve, with: { timeout: 1s, on-timeout: reject } }]\n  post: [{ id: tell, op: echo }]\n",
    );
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}{}", out(&o), err(&o));
    wait_for("the worker fires the timeout", 30, || {
        assert!(sluice(home.path(), &["worker", "--once"]).status.success());
        show(home.path(), "timed-1")["status"] != "waiting"
    });
    let v = show(home.path(), "timed-1");
    assert_eq!(v["status"], "rejected", "{v}");
    assert_eq!(v["steps"]["gate"]["status"], "failed", "{v}");
    assert_eq!(
        v["steps"]["gate"]["result"]["message"],
        "rejected by timeout: no decision within 1 s"
    );
    assert_eq!(v["steps"]["tell"]["status"], "succeeded");
}

/// Item 8: a job that succeeded past a failure says so everywhere.
#[test]
fn issue_12_a_success_says_which_failures_it_continued_past() {
    let home = crate::home();
    let rule = write_rule(
        home.path(),
        "c.yaml",
        "rule: cont\nOPS\nphases:\n  run:\n    - { id: quality, op: fail, on-error: continue }\n    - { id: after, op: echo }\n",
    );
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let said = "1 step failed and was continued: quality";
    assert!(
        out(&o).ends_with(&format!("job cont-1 succeeded: {said}\n")),
        "{}",
        out(&o)
    );
    assert_eq!(
        json(&sluice(home.path(), &["jobs", "--json"]))[0]["message"],
        said
    );
    assert_eq!(show(home.path(), "cont-1")["message"], said);
    assert!(out(&sluice(home.path(), &["jobs"])).contains(said));
}

/// Item 19: the default identity is the OS account (not `unknown`), an empty one is refused,
/// and a decision records both who was claimed and who typed it.
#[test]
fn issue_12_identity_defaults_to_the_os_account_and_decisions_record_both() {
    let home = crate::home();
    let account = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let rule = write_rule(home.path(), "g.yaml", GATED);
    let bare = |args: &[&str], user: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
        c.args(args)
            .current_dir(root())
            .envs(crate::home_env(home.path()))
            .env_remove("SLUICE_USER")
            .env_remove("USER")
            .env_remove("LOGNAME");
        if let Some(u) = user {
            c.env("SLUICE_USER", u);
        }
        c.output().unwrap()
    };
    let o = bare(&["run", rule.to_str().unwrap()], Some(""));
    assert_eq!(o.status.code(), Some(2), "{}{}", out(&o), err(&o));
    assert!(err(&o).contains("is empty"), "{}", err(&o));
    assert!(
        json(&sluice(home.path(), &["jobs", "--json"]))
            .as_array()
            .unwrap()
            .is_empty()
    );

    let o = bare(&["run", rule.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(3), "{}{}", out(&o), err(&o));
    let v = show(home.path(), "gated-1");
    assert_eq!(v["started_by"], account.as_str());

    let o = bare(&["approve", "gated-1", "--as", "bob"], None);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let v = show(home.path(), "gated-1");
    let decided = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["event"]["type"] == "decided")
        .unwrap();
    assert_eq!(decided["event"]["by"]["name"], "bob");
    assert_eq!(decided["event"]["by"]["os_user"], account.as_str());
    let text = out(&sluice(home.path(), &["show", "gated-1"]));
    assert!(
        text.contains(&format!("bob (as OS user {account}) decided approve")),
        "{text}"
    );
}

/// Item 17: attachments are bounded and streamed: a FIFO or a device is refused at once
/// (instead of blocking or reading without end), an oversized file is refused before it is
/// read, and what is stored can be read back.
#[test]
fn issue_12_annotations_are_bounded_and_can_be_read_back() {
    let home = crate::home();
    let rule = write_rule(home.path(), "g.yaml", GATED);
    assert_eq!(
        sluice(home.path(), &["run", rule.to_str().unwrap()])
            .status
            .code(),
        Some(3)
    );
    let fifo = home.path().join("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let o = sluice(
        home.path(),
        &["annotate", "gated-1", "--file", fifo.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("is not a regular file"), "{}", err(&o));
    let o = sluice(home.path(), &["annotate", "gated-1", "--log", "/dev/zero"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("is not a regular file"), "{}", err(&o));
    let big = home.path().join("big.bin");
    std::fs::File::create(&big)
        .unwrap()
        .set_len((64 << 20) + 1)
        .unwrap();
    let o = sluice(
        home.path(),
        &["annotate", "gated-1", "--file", big.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("at most 64 MiB"), "{}", err(&o));

    let log = home.path().join("deploy.log");
    let body: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(&log, &body).unwrap();
    let o = sluice(
        home.path(),
        &["annotate", "gated-1", "--log", log.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = sluice(
        home.path(),
        &["annotate", "gated-1", "--comment", "looks fine"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let rows = json(&sluice(home.path(), &["annotations", "gated-1", "--json"]));
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
    assert_eq!(rows[0]["kind"], "log");
    assert_eq!(rows[0]["size"], body.len());
    let id = rows[0]["id"].to_string();
    let copy = home.path().join("copy.log");
    let o = sluice(
        home.path(),
        &[
            "annotation",
            "get",
            "gated-1",
            &id,
            "-o",
            copy.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(std::fs::read(&copy).unwrap(), body);
    let comment_id = rows[1]["id"].to_string();
    let o = sluice(home.path(), &["annotation", "get", "gated-1", &comment_id]);
    assert_eq!(out(&o), "looks fine\n");
    let o = sluice(home.path(), &["annotation", "get", "other-1", &id]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "another job's annotation is not found"
    );
}

/// A mount namespace of its own with `$SLUICE_HOME` on a small tmpfs, so a test can fill it
/// or make it read-only; commands run inside it with `nsenter`.
struct SmallHome {
    holder: Child,
    dir: tempfile::TempDir,
}

impl SmallHome {
    fn new(kib: u32) -> SmallHome {
        let dir = crate::home();
        let mounted = dir.path().join("mounted");
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o size={kib}k tmpfs '{}' && touch '{}' && exec sleep 600",
                dir.path().display(),
                mounted.display()
            ))
            .spawn()
            .expect("unshare (util-linux)");
        let pid = holder.id();
        wait_for("the small home is mounted", 10, || {
            if let Ok(Some(status)) = holder.try_wait() {
                panic!("mounting a tmpfs failed ({status}): these tests need root");
            }
            Command::new("nsenter")
                .args(["--target", &pid.to_string(), "--mount", "test", "-e"])
                .arg(&mounted)
                .status()
                .unwrap()
                .success()
        });
        SmallHome { holder, dir }
    }

    fn sluice(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["--target", &self.holder.id().to_string(), "--mount", "--"])
            .arg(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .current_dir(root())
            .envs(crate::home_env(self.dir.path()))
            .env("SLUICE_USER", "ann")
            .env_remove("SLUICE_LOG")
            .output()
            .unwrap()
    }

    fn sh(&self, script: &str) {
        let ok = Command::new("nsenter")
            .args(["--target", &self.holder.id().to_string(), "--mount", "--"])
            .args(["sh", "-c", script])
            .status()
            .unwrap()
            .success();
        assert!(ok, "{script}");
    }
}

impl Drop for SmallHome {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Item 20: with `$SLUICE_HOME` read-only, reading commands work and writing ones say why
/// with the path; with its disk full, commands say "no space left in $SLUICE_HOME" (exit 6)
/// instead of "disk I/O error", and an op still runs when its compiled code cannot be cached.
#[test]
fn issue_12_a_full_or_read_only_home_is_said_as_such() {
    if crate::on_postgres() {
        eprintln!("the journal is not in $SLUICE_HOME on PostgreSQL: its disk is not this test's");
        return;
    }
    let home = SmallHome::new(64 * 1024);
    let rules = crate::home();
    let rule = write_rule(rules.path(), "g.yaml", GATED);
    let o = home.sluice(&["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}{}", out(&o), err(&o));

    let d = home.dir.path().display();
    home.sh(&format!("mount -o remount,ro '{d}'"));
    let o = home.sluice(&["jobs"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("gated-1"), "{}", out(&o));
    let o = home.sluice(&["show", "gated-1"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = home.sluice(&["logs", "gated-1"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = home.sluice(&["approve", "gated-1", "--as", "bob"]);
    assert_eq!(o.status.code(), Some(6), "{}{}", out(&o), err(&o));
    assert!(
        err(&o).contains(&format!("$SLUICE_HOME ({d}) cannot be written")),
        "{}",
        err(&o)
    );
    assert_eq!(
        json(&home.sluice(&["show", "gated-1", "--json"]))["status"],
        "waiting",
        "nothing changed"
    );

    home.sh(&format!("mount -o remount,rw '{d}'"));
    // No compiled code kept, and the disk full to the last byte.
    home.sh(&format!(
        "rm -rf '{d}/cache'; dd if=/dev/zero of='{d}/filler' bs=64k 2>/dev/null; dd if=/dev/zero of='{d}/filler2' bs=1 2>/dev/null; true"
    ));
    let o = home.sluice(&["approve", "gated-1", "--as", "bob"]);
    assert_eq!(o.status.code(), Some(6), "{}{}", out(&o), err(&o));
    assert!(
        err(&o).contains(&format!("no space left in $SLUICE_HOME ({d})")),
        "{}",
        err(&o)
    );
    let o = home.sluice(&["show", "gated-1", "--json"]);
    assert_eq!(o.status.code(), Some(0), "reading still works: {}", err(&o));
    assert_eq!(json(&o)["status"], "waiting", "nothing half-written");
    // An op whose compiled code cannot be cached still runs.
    let o = home.sluice(&["op", "run", "log", "--input", r#"{"message":"hi"}"#]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
}

/// Item 21: a fresh machine with rustup builds without `rustup target add` first.
#[test]
fn issue_12_the_toolchain_file_names_the_wasm_target() {
    let text = std::fs::read_to_string(root().join("rust-toolchain.toml")).unwrap();
    assert!(text.contains("wasm32-wasip2"), "{text}");
}

/// Item 10: what validate finds in an op's inputs, `run` refuses before anything runs; and an
/// input that only renders at run time is checked against the op's schema before the call,
/// failing its step in validate's words.
#[test]
fn issue_12_op_inputs_are_checked_before_anything_runs() {
    let home = crate::home();
    let rule = write_rule(
        home.path(),
        "typo.yaml",
        "rule: typo\nOPS\nphases:\n  pre: [{ id: first, op: echo }]\n  run:\n    - id: guard\n      op: trap\n      with: { thta: true }\n",
    );
    let o = sluice(home.path(), &["validate", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    // At the key, with the line quoted and a hint (the rule has OPS expanded above).
    assert!(
        err(&o).contains("error: `thta` is not an input of op `trap`\n  --> ")
            && err(&o).contains(":15\n")
            && err(&o).contains("|       with: { thta: true }\n")
            && err(&o).contains("= hint: did you mean `that`?"),
        "{}",
        err(&o)
    );
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}{}", out(&o), err(&o));
    assert!(
        json(&sluice(home.path(), &["jobs", "--json"]))
            .as_array()
            .unwrap()
            .is_empty(),
        "no job, nothing deployed"
    );

    let rule = write_rule(
        home.path(),
        "late.yaml",
        "rule: late\nOPS\nphases:\n  run:\n    - { id: count, op: echo, with: { n: two } }\n    - { id: gate, op: approve, with: { quorum: \"${{ steps.count.output.n }}\" } }\n",
    );
    let o = sluice(home.path(), &["validate", rule.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "unknown until it renders: {}",
        err(&o)
    );
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let v = show(home.path(), "late-1");
    let message = v["steps"]["gate"]["result"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.starts_with("its rendered input does not fit op `approve`: `with.quorum`"),
        "{message}"
    );
    assert_eq!(v["steps"]["gate"]["attempt"], 1);
    assert!(
        history_count(&v, "gate-opened") == 0,
        "the op was never called with it"
    );
}
