//! Rules and jobs through the `sluice` binary: validate, schema, simulate, run, show, jobs,
//! logs, cancel, locks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sluice_std_ops::test_ops;

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `sluice ARGS` as the tests run it: in the repository, on `home`, as `ann`.
pub(crate) fn command(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.args(args)
        .current_dir(root())
        .envs(crate::home_env(home))
        .env("SLUICE_USER", "ann")
        // A saved `sluice login` of whoever runs the tests must not send them to a server.
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("SLUICE_SERVER")
        .env_remove("SLUICE_TOKEN")
        .env_remove("SLUICE_LOG");
    c
}

pub(crate) fn sluice(home: &Path, args: &[&str]) -> Output {
    command(home, args).output().expect("running sluice")
}

/// `sluice ARGS` started in the background, its stdout dropped and its stderr kept.
pub(crate) fn spawn(home: &Path, args: &[&str]) -> std::process::Child {
    command(home, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sluice")
}

pub(crate) fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}{}", out(o), err(o)))
}

/// Durations vary from run to run: `in 12 ms` and `in 1.3 s` become `in <t>`.
fn no_times(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(" in ") {
        out.push_str(&rest[..i + 4]);
        rest = &rest[i + 4..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if end > 0 && (rest[end..].starts_with(" ms") || rest[end..].starts_with(" s")) {
            let unit = if rest[end..].starts_with(" ms") { 3 } else { 2 };
            out.push_str("<t>");
            rest = &rest[end + unit..];
        }
    }
    out.push_str(rest);
    out
}

/// A rule file in `dir` whose `OPS` placeholder is replaced by `ops:` entries for test ops.
pub(crate) fn write_rule(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let ops: String = test_ops::ALL
        .iter()
        .map(|(n, p)| format!("  {n}: {{ path: {p:?} }}\n"))
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, yaml.replace("OPS\n", &format!("ops:\n{ops}"))).unwrap();
    path
}

#[test]
fn validate_reports_every_error_with_place_caret_and_hint() {
    let home = crate::home();
    let o = sluice(home.path(), &["validate", "tests/fixtures/bad-rule.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let expected = include_str!("../fixtures/bad-rule.errors");
    assert_eq!(err(&o), expected, "got:\n{}", err(&o));

    let o = sluice(
        home.path(),
        &["validate", "tests/fixtures/bad-rule.yaml", "--json"],
    );
    let v = json(&o);
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["line"], 1);
    assert_eq!(v["errors"].as_array().unwrap().len(), 11);
}

#[test]
fn every_example_rule_validates() {
    let home = crate::home();
    let mut n = 0;
    let stages = std::fs::read_dir(root().join("examples/keptn-stages")).unwrap();
    for entry in std::fs::read_dir(root().join("examples"))
        .unwrap()
        .chain(stages)
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let o = sluice(home.path(), &["validate", path.to_str().unwrap()]);
            assert_eq!(o.status.code(), Some(0), "{}: {}", path.display(), err(&o));
            n += 1;
        }
    }
    assert!(n >= 3, "examples/ holds the seed scenarios");
}

#[test]
fn schema_is_json_schema_for_rules() {
    let home = crate::home();
    let v = json(&sluice(home.path(), &["schema"]));
    assert_eq!(v["title"], "sluice rule");
    assert_eq!(v["required"], serde_json::json!(["rule", "phases"]));
    assert!(v["$defs"]["step"]["properties"]["on-error"].is_object());
}

#[test]
fn simulate_prints_the_path_without_running_ops() {
    let home = crate::home();
    let o = sluice(
        home.path(),
        &[
            "simulate",
            "examples/web-release.yaml",
            "-p",
            "version=2.0",
            "--outcome",
            "smoke-b=failure",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(
        out(&o),
        "   check  version-named       run assert: success
          takes group:deploy-qa, env-qa
     pre  deploy-canary       run deploy: success
     run  smoke-a             run test: success
     run  smoke-b             run test: failure
          rollback: `smoke-b` failed
rollback  undo:deploy-canary  undo deploy: success
rollback  restore             run log: success
    post  cleanup             run cleanup: success
          rolled-back: step `smoke-b` failed (scripted failure); rolled back
"
    );
    // Nothing ran: no job was recorded.
    let jobs = json(&sluice(home.path(), &["jobs", "--json"]));
    assert_eq!(jobs, serde_json::json!([]));
}

#[test]
fn the_main_example_runs_end_to_end_and_show_tells_the_path() {
    let home = crate::home();
    let o = sluice(
        home.path(),
        &[
            "run",
            "examples/web-release.yaml",
            "-p",
            "version=1.4.2",
            "-p",
            "error_rate=0.05",
            "-p",
            &format!("root={}", home.path().display()),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    // The quality gate failed under `on-error: continue`: the success says so.
    assert!(
        out(&o)
            .ends_with("job web-release-1 succeeded: 1 step failed and was continued: quality\n"),
        "{}",
        out(&o)
    );

    let o = sluice(home.path(), &["show", "web-release-1"]);
    assert_eq!(
        no_times(&out(&o)).replace(&home.path().display().to_string(), "ROOT"),
        "job      web-release-1
rule     web-release
status   succeeded (1 step failed and was continued: quality)
started  by ann
params   env=\"qa\" error_rate=0.05 p95_ms=180 root=\"ROOT\" version=\"1.4.2\"
locks    group:deploy-qa, env-qa
check
  version-named        succeeded in <t>
pre
  deploy-canary        succeeded in <t>
run
  smoke (parallel) 
    branch 1
      smoke-a              succeeded in <t>
    branch 2
      smoke-b              succeeded in <t>
  quality              failed in <t>: quality gate failed: key objective error-rate failed (score 50%)
  go-live              skipped: `when: ${{ steps.quality.outcome != 'failure' }}` is false
  promote              skipped: `when: ${{ steps.quality.outcome != 'failure' }}` is false
  announce             skipped: `when: ${{ steps.promote.outcome == 'success' }}` is false
rollback
  restore              not run
post
  cleanup              succeeded in <t>
"
    );

    let v = json(&sluice(home.path(), &["show", "web-release-1", "--json"]));
    assert_eq!(v["status"], "succeeded");
    let kinds: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"created"));
    assert_eq!(kinds.last(), Some(&"finished"));
    assert_eq!(
        v["steps"]["deploy-canary"]["result"]["output"]["revision"],
        "releases/1.4.2"
    );
    assert_eq!(
        std::fs::read_to_string(home.path().join("qa/releases/1.4.2/index.html")).unwrap(),
        "<h1>web 1.4.2</h1>\n"
    );
    assert!(
        !home.path().join("qa/canary").exists() && !home.path().join("qa/current").exists(),
        "the canary link is removed and nothing was promoted"
    );

    let o = sluice(home.path(), &["logs", "web-release-1", "--step", "cleanup"]);
    assert_eq!(out(&o), "cleanup#1 [op info] remove the canary link: ran\n");

    let jobs = json(&sluice(home.path(), &["jobs", "--json"]));
    assert_eq!(jobs[0]["id"], "web-release-1");
    assert_eq!(jobs[0]["started_by"], "ann");
}

#[test]
fn a_failed_check_creates_no_job() {
    let home = crate::home();
    let o = sluice(
        home.path(),
        &["run", "examples/web-release.yaml", "-p", "version=../etc"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).ends_with(
            "no job was created: check step `version-named` failed: version must be a plain name such as 1.4.2\n"
        ),
        "{}",
        out(&o)
    );
    assert_eq!(
        json(&sluice(home.path(), &["jobs", "--json"])),
        serde_json::json!([])
    );
}

#[test]
fn bad_params_are_usage_errors_naming_the_fix() {
    let home = crate::home();
    let o = sluice(
        home.path(),
        &["run", "examples/web-release.yaml", "-p", "env=prod"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        err(&o),
        "error: param `version` is required: pass -p version=VALUE\nparam `env` is \"prod\"; allowed: \"qa\", \"staging\", \"production\"\n"
    );
}

#[test]
fn a_failure_undoes_completed_steps_with_their_own_output_then_runs_post() {
    let home = crate::home();
    let rule = write_rule(
        home.path(),
        "undo.yaml",
        r#"
rule: undo-demo
OPS
phases:
  pre:
    - { id: first, op: undo, with: { rev: 1 } }
  run:
    - { id: second, op: undo, with: { rev: 2 } }
    - { id: flaky, op: fail, retry: { attempts: 2, delay: 10ms }, with: { message: "health check failed" } }
  post:
    - { id: tell, op: echo, with: { status: "${{ job.status }}" } }
"#,
    );
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let v = json(&sluice(home.path(), &["show", "undo-demo-1", "--json"]));
    assert_eq!(v["status"], "rolled-back");
    assert_eq!(v["steps"]["flaky"]["attempt"], 2, "retried once");
    let order: Vec<String> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"]["type"] == "step-started")
        .map(|h| h["event"]["step"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        order,
        [
            "first",
            "second",
            "flaky",
            "flaky",
            "undo:second",
            "undo:first",
            "tell"
        ]
    );
    let logs = out(&sluice(home.path(), &["logs", "undo-demo-1"]));
    assert!(
        logs.contains("undo:second#1 [op info] undid {\"rev\":2}\n"),
        "{logs}"
    );
    assert!(
        logs.contains("undo:first#1 [op info] undid {\"rev\":1}\n"),
        "{logs}"
    );
    assert_eq!(
        v["steps"]["tell"]["result"]["output"],
        serde_json::json!({"status": "rolled-back"})
    );
}

/// The Spinnaker seed: a deploy and a cleanup of one environment never overlap. The cleanup
/// started during the deploy waits in line; the deploy's process carries it on when it ends.
#[test]
fn a_deploy_and_a_cleanup_sharing_a_lock_never_overlap() {
    let home = crate::home();
    let deploy = write_rule(
        home.path(),
        "deploy.yaml",
        r#"
rule: deploy
OPS
locks: [env-qa]
phases:
  run:
    # Holds the lock for 8 s: a spin that runs into its deadline.
    - { id: rollout, op: spin, timeout: 8s, on-error: continue }
"#,
    );
    // Compile every op into this home's cache first, so that neither process spends its
    // time in the compiler once the deploy holds the lock.
    assert!(sluice(home.path(), &["op", "list"]).status.success());
    assert!(
        sluice(home.path(), &["op", "describe", test_ops::SPIN])
            .status
            .success()
    );
    let first = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", deploy.to_str().unwrap()])
        .envs(crate::home_env(home.path()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the deploy holds its lock (polling the journal, bounded).
    let mut held = false;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let locks = json(&sluice(home.path(), &["locks", "--json"]));
        if locks
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == "env-qa" && l["held"] == true)
        {
            held = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    if !held {
        let mut first = first;
        let _ = first.kill();
        let o = first.wait_with_output().unwrap();
        panic!("the deploy never took its lock:\n{}{}", out(&o), err(&o));
    }

    let o = sluice(
        home.path(),
        &["run", "examples/cleanup.yaml", "-p", "env=qa"],
    );
    assert_eq!(o.status.code(), Some(3), "{}{}", out(&o), err(&o));
    assert!(
        out(&o).contains("job env-cleanup-1 waits in line behind deploy-1"),
        "{}",
        out(&o)
    );
    let locks = out(&sluice(home.path(), &["locks"]));
    assert!(
        locks.contains("env-qa                       deploy-1                 exclusive  held"),
        "{locks}"
    );
    assert!(
        locks.contains("env-cleanup-1            exclusive  waiting"),
        "{locks}"
    );

    let done = first.wait_with_output().unwrap();
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let printed = String::from_utf8_lossy(&done.stdout);
    assert!(
        printed.contains("job env-cleanup-1 succeeded"),
        "the deploy's process carries the cleanup on:\n{printed}"
    );

    let deploy = json(&sluice(home.path(), &["show", "deploy-1", "--json"]));
    let cleanup = json(&sluice(home.path(), &["show", "env-cleanup-1", "--json"]));
    let at = |v: &Value, kind: &str| -> u64 {
        v["history"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["event"]["type"] == kind)
            .unwrap()["at"]
            .as_u64()
            .unwrap()
    };
    assert!(
        at(&cleanup, "started") >= at(&deploy, "finished"),
        "the cleanup started before the deploy ended"
    );
    assert_eq!(cleanup["status"], "succeeded");
    assert_eq!(
        json(&sluice(home.path(), &["locks", "--json"])),
        serde_json::json!([]),
        "every lock given back"
    );
}

#[test]
fn cancel_a_queued_job_ends_it_without_running_anything() {
    let home = crate::home();
    // Hold the lock for a job that is not running, straight in the store.
    let journal = crate::journal(home.path());
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(journal.acquire(
            "other-1",
            vec![sluice_store::LockAsk {
                name: "env-qa".into(),
                exclusive: true,
            }],
            sluice_store::GroupMode::Queue,
        ))
        .unwrap();
    let o = sluice(home.path(), &["run", "examples/cleanup.yaml"]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    let o = sluice(
        home.path(),
        &["cancel", "env-cleanup-1", "--reason", "not needed"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        out(&o).contains(
            "job env-cleanup-1 cancelled: cancelled by ann before it started: not needed"
        ),
        "{}",
        out(&o)
    );
    let v = json(&sluice(home.path(), &["show", "env-cleanup-1", "--json"]));
    assert_eq!(
        v["steps"],
        serde_json::json!({}),
        "nothing ran, not even post"
    );
    let locks = json(&sluice(home.path(), &["locks", "--json"]));
    assert_eq!(
        locks.as_array().unwrap().len(),
        1,
        "only other-1's lock is left: {locks}"
    );
}
