//! The engine as data: events in, actions out; one test per row of the semantics table and per
//! failure mode. Paths come from `simulate`, which feeds `decide` scripted results.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sluice_rule::{ParseOptions, Rule, parse};

use crate::*;

const OPS: &[&str] = &["echo", "fail", "undo", "log"];

fn rule(yaml: &str) -> Rule {
    parse(
        yaml,
        &ParseOptions {
            file: "test.yaml",
            std_ops: OPS,
        },
    )
    .unwrap_or_else(|d| panic!("{d}"))
}

fn ops() -> BTreeMap<String, OpMeta> {
    OPS.iter()
        .map(|op| {
            (
                op.to_string(),
                OpMeta {
                    digest: "d".into(),
                    can_rollback: *op == "undo",
                    idempotent: false,
                },
            )
        })
        .collect()
}

/// The simulated path as `phase step: what` lines, and the final status.
fn path(yaml: &str, outcomes: &[&str]) -> (Vec<String>, JobStatus) {
    let r = rule(yaml);
    let params = r.bind_params(&[]).unwrap();
    let script = Script::parse(
        &outcomes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        &[],
    )
    .unwrap();
    let (lines, status) = simulate(&r, params, ops(), &script).unwrap();
    (
        lines
            .into_iter()
            .map(|l| format!("{} {}: {}", l.phase, l.step, l.what).replace("  ", " "))
            .collect(),
        status,
    )
}

fn created(yaml: &str) -> Job {
    let r = rule(yaml);
    let params = r.bind_params(&[]).unwrap();
    let e = Event::Created {
        job_id: "r-1".into(),
        rule: Box::new(r),
        params,
        started_by: "ann".into(),
        ops: ops(),
    };
    Job::new(&e, 0).unwrap()
}

fn calls(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Call(c) => Some(format!("{}#{}", c.step, c.attempt)),
            _ => None,
        })
        .collect()
}

fn start(job: &mut Job, step: &str, attempt: u32, at: Millis) {
    job.apply(
        &Event::StepStarted {
            step: step.into(),
            attempt,
            input: json!({}),
        },
        at,
    );
}

fn finish(job: &mut Job, step: &str, attempt: u32, ok: bool, at: Millis) {
    let result = if ok {
        StepResult::success(json!({"n": attempt}))
    } else {
        StepResult::failure("boom")
    };
    job.apply(
        &Event::StepFinished {
            step: step.into(),
            attempt,
            result,
        },
        at,
    );
}

const FOUR_PHASES: &str = r#"
rule: r
phases:
  init: [{ id: a, op: echo }]
  pre: [{ id: b, op: undo }]
  run: [{ id: c, op: undo }, { id: d, op: echo }]
  post: [{ id: p, op: log, with: { message: "${{ job.status }}" } }]
rollback: [{ id: rb, op: echo }]
"#;

#[test]
fn phases_run_in_order_and_post_runs_last() {
    let (lines, status) = path(FOUR_PHASES, &[]);
    assert_eq!(
        lines,
        [
            "init a: run echo: success",
            "pre b: run undo: success",
            "run c: run undo: success",
            "run d: run echo: success",
            "post p: run log: success",
            "job : succeeded: every step succeeded"
        ]
    );
    assert_eq!(status, JobStatus::Succeeded);
}

#[test]
fn an_untrapped_failure_undoes_completed_steps_in_reverse_then_rollback_then_post() {
    let (lines, status) = path(FOUR_PHASES, &["d=failure"]);
    assert_eq!(
        lines,
        [
            "init a: run echo: success",
            "pre b: run undo: success",
            "run c: run undo: success",
            "run d: run echo: failure",
            "job : rollback: `d` failed",
            // a (echo) cannot roll back; c and b can, last first.
            "rollback undo:c: undo undo: success",
            "rollback undo:b: undo undo: success",
            "rollback rb: run echo: success",
            "post p: run log: success",
            "job : rolled-back: step `d` failed (scripted failure); rolled back"
        ]
    );
    assert_eq!(status, JobStatus::RolledBack);
}

#[test]
fn post_reads_the_status_the_job_is_headed_for() {
    let mut job = created(FOUR_PHASES);
    job.apply(&Event::Started { locks: vec![] }, 0);
    for (i, s) in ["a", "b", "c"].iter().enumerate() {
        start(&mut job, s, 1, i as u64);
        finish(&mut job, s, 1, true, i as u64);
    }
    start(&mut job, "d", 1, 5);
    finish(&mut job, "d", 1, false, 5);
    job.apply(
        &Event::RollbackStarted {
            step: "d".into(),
            message: "boom".into(),
        },
        6,
    );
    for s in ["undo:c", "undo:b", "rb"] {
        start(&mut job, s, 1, 7);
        finish(&mut job, s, 1, true, 7);
    }
    let actions = decide(&job, 8);
    let Action::Call(c) = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(c.step, "p");
    assert_eq!(c.input, json!({"message": "rolled-back"}));
}

#[test]
fn a_failing_rollback_ends_rollback_failed_and_post_still_runs() {
    let (lines, status) = path(FOUR_PHASES, &["d=failure", "undo:c=failure"]);
    assert_eq!(status, JobStatus::RollbackFailed);
    assert!(lines.contains(&"rollback undo:c: undo undo: failure".to_string()));
    assert!(
        !lines.iter().any(|l| l.contains("undo:b")),
        "rollback stops at its first failure: {lines:?}"
    );
    assert!(lines.contains(&"post p: run log: success".to_string()));
}

#[test]
fn on_error_continue_goes_on_and_later_steps_can_read_the_failure() {
    let yaml = r#"
rule: r
phases:
  run:
    - { id: quality, op: fail, on-error: continue }
    - { id: only-if-good, op: echo, when: "${{ steps.quality.outcome == 'success' }}" }
    - { id: promote, op: echo }
"#;
    let (lines, status) = path(yaml, &["quality=failure"]);
    assert_eq!(
        lines,
        [
            "run quality: run fail: failure",
            "run only-if-good: skipped: `when: ${{ steps.quality.outcome == 'success' }}` is false",
            "run promote: run echo: success",
            "job : succeeded: every step succeeded"
        ]
    );
    assert_eq!(status, JobStatus::Succeeded);
}

#[test]
fn every_post_step_runs_even_when_one_fails_and_the_job_is_failed() {
    let yaml = r#"
rule: r
phases:
  run: [{ id: a, op: echo }]
  post: [{ id: p1, op: fail }, { id: p2, op: echo }]
"#;
    let (lines, status) = path(yaml, &["p1=failure"]);
    assert_eq!(
        lines[1..3],
        [
            "post p1: run fail: failure".to_string(),
            "post p2: run echo: success".to_string()
        ]
    );
    assert_eq!(status, JobStatus::Failed);
    assert_eq!(lines[3], "job : failed: post step `p1` failed");
}

#[test]
fn a_failing_check_creates_no_job_and_takes_no_lock() {
    let yaml = r#"
rule: r
locks: [env-qa]
phases:
  check: [{ id: validate, op: fail }]
  run: [{ id: a, op: echo }]
  post: [{ id: p, op: echo }]
"#;
    let (lines, status) = path(yaml, &["validate=failure"]);
    assert_eq!(
        lines,
        [
            "check validate: run fail: failure",
            "job : check-failed: check step `validate` failed: scripted failure"
        ]
    );
    assert_eq!(status, JobStatus::CheckFailed);
}

#[test]
fn locks_and_concurrency_group_are_asked_for_with_rendered_names_after_check() {
    let yaml = r#"
rule: r
params: { env: { default: qa } }
concurrency: { group: "deploy-${{ params.env }}", mode: cancel-pending }
locks: [{ name: "env-${{ params.env }}", mode: shared }]
phases:
  run: [{ id: a, op: echo }]
"#;
    let job = created(yaml);
    assert_eq!(
        decide(&job, 0),
        [Action::AcquireLocks {
            locks: vec![
                LockRequest {
                    name: "group:deploy-qa".into(),
                    exclusive: true
                },
                LockRequest {
                    name: "env-qa".into(),
                    exclusive: false
                },
            ],
            mode: sluice_rule::ConcurrencyMode::CancelPending,
        }]
    );
}

#[test]
fn parallel_branches_start_together_and_the_group_waits_for_all() {
    let yaml = r#"
rule: r
phases:
  run:
    - parallel:
        - { id: smoke-a, op: echo }
        - [{ id: smoke-b1, op: echo }, { id: smoke-b2, op: echo }]
    - { id: after, op: echo }
"#;
    let mut job = created(yaml);
    job.apply(&Event::Started { locks: vec![] }, 0);
    assert_eq!(calls(&decide(&job, 0)), ["smoke-a#1", "smoke-b1#1"]);
    start(&mut job, "smoke-a", 1, 0);
    start(&mut job, "smoke-b1", 1, 0);
    assert_eq!(decide(&job, 0), [], "nothing to do while both run");
    finish(&mut job, "smoke-b1", 1, true, 1);
    assert_eq!(calls(&decide(&job, 1)), ["smoke-b2#1"]);
    start(&mut job, "smoke-b2", 1, 1);
    finish(&mut job, "smoke-b2", 1, true, 2);
    assert_eq!(
        decide(&job, 2),
        [],
        "smoke-a still runs: the group waits for all"
    );
    finish(&mut job, "smoke-a", 1, true, 3);
    assert_eq!(calls(&decide(&job, 3)), ["after#1"]);
}

#[test]
fn without_fail_fast_the_other_branches_finish_before_the_group_fails() {
    let yaml = r#"
rule: r
phases:
  run:
    - parallel:
        - { id: a, op: fail }
        - [{ id: b1, op: echo }, { id: b2, op: echo }]
"#;
    let (lines, status) = path(yaml, &["a=failure"]);
    assert_eq!(
        lines[..4],
        [
            "run a: run fail: failure",
            "run b1: run echo: success",
            "run b2: run echo: success",
            "job : rollback: `a` failed"
        ]
        .map(String::from)
    );
    assert_eq!(status, JobStatus::RolledBack);
}

#[test]
fn fail_fast_starts_nothing_more_in_other_branches() {
    let yaml = r#"
rule: r
phases:
  run:
    - parallel:
        - { id: a, op: fail }
        - [{ id: b1, op: echo }, { id: b2, op: echo }]
      fail-fast: true
"#;
    let mut job = created(yaml);
    job.apply(&Event::Started { locks: vec![] }, 0);
    assert_eq!(calls(&decide(&job, 0)), ["a#1", "b1#1"]);
    start(&mut job, "a", 1, 0);
    start(&mut job, "b1", 1, 0);
    finish(&mut job, "a", 1, false, 1);
    assert_eq!(decide(&job, 1), [], "b1 still runs; b2 must not start");
    finish(&mut job, "b1", 1, true, 2);
    assert_eq!(
        decide(&job, 2),
        [Action::Record(Event::RollbackStarted {
            step: "a".into(),
            message: "boom".into()
        })]
    );
}

#[test]
fn retry_waits_with_doubling_backoff_then_succeeds() {
    let yaml = r#"
rule: r
phases:
  run: [{ id: flaky, op: echo, retry: { attempts: 3, delay: 2s, max-delay: 3s } }]
"#;
    let mut job = created(yaml);
    job.apply(&Event::Started { locks: vec![] }, 0);
    start(&mut job, "flaky", 1, 0);
    finish(&mut job, "flaky", 1, false, 1000);
    assert_eq!(decide(&job, 1000), [Action::WakeAt(3000)]);
    assert_eq!(calls(&decide(&job, 3000)), ["flaky#2"]);
    start(&mut job, "flaky", 2, 3000);
    finish(&mut job, "flaky", 2, false, 4000);
    // 2s doubled is 4s, capped at 3s.
    assert_eq!(decide(&job, 4000), [Action::WakeAt(7000)]);
    start(&mut job, "flaky", 3, 7000);
    finish(&mut job, "flaky", 3, true, 7500);
    assert!(matches!(
        &decide(&job, 7500)[0],
        Action::Record(Event::Finished {
            status: JobStatus::Succeeded,
            ..
        })
    ));
}

#[test]
fn retries_run_out_then_the_failure_counts() {
    let yaml = "rule: r\nphases:\n  run: [{ id: flaky, op: fail, retry: 2 }]\n";
    let (lines, status) = path(yaml, &["flaky=failure"]);
    assert_eq!(
        lines[..3],
        [
            "run flaky: run fail: failure",
            "run flaky: run fail (attempt 2): failure",
            "job : rollback: `flaky` failed"
        ]
        .map(String::from)
    );
    assert_eq!(status, JobStatus::RolledBack);
    let (_, status) = path(yaml, &["flaky=failure,success"]);
    assert_eq!(status, JobStatus::Succeeded);
}

#[test]
fn cancel_starts_nothing_new_lets_running_steps_finish_and_runs_post() {
    let yaml = r#"
rule: r
phases:
  run: [{ id: a, op: echo }, { id: b, op: echo }]
  post: [{ id: p, op: echo, with: { status: "${{ job.status }}" } }]
"#;
    let mut job = created(yaml);
    job.apply(
        &Event::Started {
            locks: vec!["x".into()],
        },
        0,
    );
    start(&mut job, "a", 1, 0);
    job.apply(
        &Event::CancelRequested {
            by: "bob".into(),
            reason: "wrong image".into(),
        },
        1,
    );
    assert_eq!(decide(&job, 1), [], "a runs on");
    finish(&mut job, "a", 1, true, 2);
    let actions = decide(&job, 2);
    let Action::Call(c) = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(
        (c.step.as_str(), &c.input),
        ("p", &json!({"status": "cancelled"}))
    );
    start(&mut job, "p", 1, 3);
    finish(&mut job, "p", 1, true, 3);
    assert_eq!(
        decide(&job, 3),
        [
            Action::Record(Event::Finished {
                status: JobStatus::Cancelled,
                message: "cancelled by bob: wrong image".into()
            }),
            Action::ReleaseLocks
        ]
    );
}

#[test]
fn cancel_while_queued_ends_without_running_anything() {
    let mut job = created(
        "rule: r\nlocks: [x]\nphases:\n  run: [{ id: a, op: echo }]\n  post: [{ id: p, op: echo }]\n",
    );
    job.apply(
        &Event::Queued {
            behind: vec!["r-0".into()],
        },
        0,
    );
    job.apply(
        &Event::CancelRequested {
            by: "bob".into(),
            reason: "superseded".into(),
        },
        1,
    );
    let actions = decide(&job, 1);
    assert!(
        matches!(
            &actions[0],
            Action::Record(Event::Finished {
                status: JobStatus::Cancelled,
                ..
            })
        ),
        "{actions:?}"
    );
    assert_eq!(calls(&actions), Vec::<String>::new());
}

#[test]
fn a_template_that_cannot_render_fails_its_step_without_calling_the_op() {
    let yaml = r#"
rule: r
phases:
  run:
    - { id: a, op: echo }
    - { id: b, op: echo, with: { score: "${{ steps.a.output.score }}" } }
"#;
    let mut job = created(yaml);
    job.apply(&Event::Started { locks: vec![] }, 0);
    start(&mut job, "a", 1, 0);
    finish(&mut job, "a", 1, true, 0);
    let actions = decide(&job, 0);
    let [Action::Record(Event::StepFinished { step, result, .. })] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(step, "b");
    assert!(
        result.message.starts_with("`with` could not be rendered: "),
        "{}",
        result.message
    );
}

#[test]
fn outputs_flow_into_later_inputs_with_their_types() {
    let yaml = r#"
rule: r
params: { image: { type: string, default: "web:1" } }
phases:
  run:
    - { id: a, op: echo }
    - { id: b, op: echo, with: { n: "${{ steps.a.output.n }}", msg: "image ${{ params.image }} by ${{ job.started_by }}" } }
"#;
    let mut job = created(yaml);
    job.apply(&Event::Started { locks: vec![] }, 0);
    start(&mut job, "a", 1, 0);
    finish(&mut job, "a", 1, true, 0);
    let actions = decide(&job, 0);
    let Action::Call(c) = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(c.input, json!({"n": 1, "msg": "image web:1 by ann"}));
}

#[test]
fn replaying_the_journal_gives_the_same_state() {
    let r = rule(FOUR_PHASES);
    let mut events = vec![Event::Created {
        job_id: "r-1".into(),
        rule: Box::new(r),
        params: Map::new(),
        started_by: "ann".into(),
        ops: ops(),
    }];
    let mut job = Job::new(&events[0], 0).unwrap();
    let record = |job: &mut Job, e: Event, events: &mut Vec<Event>| {
        job.apply(&e, 0);
        events.push(e);
    };
    loop {
        let actions = decide(&job, 0);
        if actions.is_empty() {
            break;
        }
        for a in actions {
            match a {
                Action::Record(e) => record(&mut job, e, &mut events),
                Action::Call(c) => {
                    record(
                        &mut job,
                        Event::StepStarted {
                            step: c.step.clone(),
                            attempt: c.attempt,
                            input: c.input,
                        },
                        &mut events,
                    );
                    let ok = c.step != "d";
                    let result = if ok {
                        StepResult::success(Value::Null)
                    } else {
                        StepResult::failure("x")
                    };
                    record(
                        &mut job,
                        Event::StepFinished {
                            step: c.step,
                            attempt: c.attempt,
                            result,
                        },
                        &mut events,
                    );
                }
                Action::AcquireLocks { .. } => {
                    record(&mut job, Event::Started { locks: vec![] }, &mut events)
                }
                Action::ReleaseLocks | Action::WakeAt(_) => {}
            }
        }
    }
    // Through JSON, as the journal stores them.
    let stored: Vec<Event> = events
        .iter()
        .map(|e| serde_json::from_str(&serde_json::to_string(e).unwrap()).unwrap())
        .collect();
    let replayed = Job::replay(stored.iter().map(|e| (e, 0))).unwrap();
    assert_eq!(replayed, job);
    assert_eq!(replayed.finished.as_ref().unwrap().0, JobStatus::RolledBack);
}
