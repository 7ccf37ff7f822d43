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
                    needs: vec![],
                    templates: vec![],
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
        started_by: person("ann"),
        ops: ops(),
        rule_version: 1,
        cause: None,
    };
    Job::new(&e, 0).unwrap()
}

fn person(name: &str) -> Actor {
    Actor {
        name: name.into(),
        groups: vec!["release".into()],
        via: AuthMethod::Claimed,
        os_user: "os-account".into(),
        chat: None,
    }
}

/// A started job of `yaml` whose `echo` op declares itself idempotent.
fn started_with_idempotent_echo(yaml: &str) -> Job {
    let mut metas = ops();
    metas.get_mut("echo").unwrap().idempotent = true;
    let e = Event::Created {
        job_id: "r-1".into(),
        rule: Box::new(rule(yaml)),
        params: Map::new(),
        started_by: person("ann"),
        ops: metas,
        rule_version: 1,
        cause: None,
    };
    let mut job = Job::new(&e, 0).unwrap();
    job.apply(&Event::Started { locks: vec![] }, 0);
    job
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
            // Issue 12, item 8: a success says what it let through.
            "job : succeeded: 1 step failed and was continued: quality"
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
            by: person("bob"),
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
            by: person("bob"),
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
        started_by: person("ann"),
        ops: ops(),
        rule_version: 1,
        cause: None,
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

// ---- gates ----

fn approval(quorum: u32, timeout: Option<u64>) -> Gate {
    Gate {
        kind: GateKind::Approval,
        message: "ship it?".into(),
        approvers: vec!["group:release".into(), "carol".into()],
        quorum,
        allow_self_approval: false,
        inputs: vec![sluice_model::GateInput {
            name: "region".into(),
            description: "where first".into(),
            kind: sluice_model::InputKind::Choice(vec!["eu".into(), "us".into()]),
            required: true,
            default: None,
        }],
        timeout_seconds: timeout,
        timeout_action: Some(DecisionKind::Reject),
        state: b"s".to_vec(),
        opens_at: None,
    }
}

const GATED: &str = r#"
rule: r
phases:
  pre: [{ id: deploy, op: undo }]
  run:
    - { id: gate, op: echo }
    - { id: promote, op: echo, with: { region: "${{ steps.gate.decision.inputs.region }}" } }
  post: [{ id: p, op: echo }]
"#;

fn at_gate(quorum: u32, timeout: Option<u64>) -> Job {
    let mut job = created(GATED);
    job.apply(&Event::Started { locks: vec![] }, 0);
    start(&mut job, "deploy", 1, 0);
    finish(&mut job, "deploy", 1, true, 0);
    start(&mut job, "gate", 1, 1);
    job.apply(
        &Event::GateOpened {
            step: "gate".into(),
            attempt: 1,
            gate: approval(quorum, timeout),
        },
        1000,
    );
    job
}

fn ask<'a>(
    kind: DecisionKind,
    user: &'a str,
    groups: &'a [String],
    inputs: Value,
) -> DecisionRequest<'a> {
    DecisionRequest {
        step: None,
        kind,
        actor: Actor {
            groups: groups.to_vec(),
            ..person(user)
        },
        comment: "ok",
        inputs: inputs.as_object().cloned().unwrap_or_default(),
    }
}

#[test]
fn a_job_at_a_gate_asks_for_nothing_until_someone_decides() {
    let job = at_gate(1, None);
    assert_eq!(decide(&job, 5000), []);
    let gates = job.waiting_gates();
    assert_eq!(gates.len(), 1);
    assert_eq!(
        gates[0].choices,
        [
            DecisionKind::Approve,
            DecisionKind::Reject,
            DecisionKind::Abort
        ]
    );
    assert_eq!(gates[0].bundle_digest.len(), 64);
    assert_eq!(job.next_timer(), None);
}

#[test]
fn approvals_need_a_listed_approver_four_eyes_inputs_and_a_quorum_of_distinct_people() {
    let mut job = at_gate(2, None);
    let release = vec!["release".to_string()];
    let none: Vec<String> = vec![];
    let e = job
        .check_decision(&ask(
            DecisionKind::Approve,
            "dave",
            &none,
            json!({"region": "eu"}),
        ))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "dave may not decide at `gate`: its approvers are group:release, carol"
    );
    let e = job
        .check_decision(&ask(
            DecisionKind::Approve,
            "ann",
            &release,
            json!({"region": "eu"}),
        ))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "ann started job r-1 and may not approve it (four eyes); another approver must"
    );
    let e = job
        .check_decision(&ask(DecisionKind::Approve, "bob", &release, json!({})))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "`gate` needs input `region` (where first): pass --input region=VALUE"
    );
    let e = job
        .check_decision(&ask(
            DecisionKind::Approve,
            "bob",
            &release,
            json!({"region": "mars"}),
        ))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "input `region` is `mars`; pick one of eu, us");
    let e = job
        .check_decision(&ask(DecisionKind::Resume, "bob", &release, json!({})))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "step `gate` waits at an approval gate, which takes approve, reject, abort, not resume"
    );

    let first = job
        .check_decision(&ask(
            DecisionKind::Approve,
            "bob",
            &release,
            json!({"region": "eu"}),
        ))
        .unwrap();
    job.apply(&first, 2000);
    assert_eq!(decide(&job, 2000), [], "one of two approvals");
    let e = job
        .check_decision(&ask(
            DecisionKind::Approve,
            "bob",
            &release,
            json!({"region": "eu"}),
        ))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "bob has already approved `gate` (1 of 2 approvals so far); another approver must"
    );
    let second = job
        .check_decision(&ask(
            DecisionKind::Approve,
            "carol",
            &none,
            json!({"region": "us"}),
        ))
        .unwrap();
    job.apply(&second, 3000);

    let actions = decide(&job, 3000);
    let Action::Call(c) = &actions[0] else {
        panic!("{actions:?}")
    };
    let (state, decision) = c.resume.clone().expect("a resume call");
    assert_eq!(state, b"s");
    let sluice_model::Decision::By { kind, actor } = decision else {
        panic!()
    };
    assert_eq!(
        (kind, actor.user.as_str()),
        (DecisionKind::Approve, "bob, carol")
    );
    start(&mut job, "gate", 1, 3000);
    finish(&mut job, "gate", 1, true, 3001);
    let actions = decide(&job, 3001);
    let Action::Call(c) = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(
        (c.step.as_str(), &c.input),
        ("promote", &json!({"region": "us"})),
        "later steps read the gate's inputs"
    );
}

#[test]
fn reject_ends_the_job_rejected_with_no_rollback_and_post_still_runs() {
    let mut job = at_gate(1, None);
    let e = job
        .check_decision(&ask(DecisionKind::Reject, "carol", &[], json!({})))
        .unwrap();
    job.apply(&e, 2000);
    let actions = decide(&job, 2000);
    assert!(
        matches!(&actions[0], Action::Call(c) if c.resume.is_some()),
        "the op hears of the rejection: {actions:?}"
    );
    start(&mut job, "gate", 1, 2000);
    finish(&mut job, "gate", 1, false, 2001);
    assert_eq!(
        calls(&decide(&job, 2001)),
        ["p#1"],
        "post, and no undo of `deploy`"
    );
    start(&mut job, "p", 1, 2002);
    finish(&mut job, "p", 1, true, 2003);
    let actions = decide(&job, 2003);
    assert_eq!(
        actions[0],
        Action::Record(Event::Finished {
            status: JobStatus::Rejected,
            message: "rejected by carol at `gate`: ok".into()
        })
    );
}

#[test]
fn a_gate_times_out_to_its_action_by_a_durable_timer() {
    let mut job = at_gate(1, Some(60));
    assert_eq!(job.next_timer(), Some(61_000));
    assert_eq!(decide(&job, 60_999), []);
    let actions = decide(&job, 61_000);
    let [
        Action::Record(
            e @ Event::Decided {
                kind: DecisionKind::Reject,
                by,
                ..
            },
        ),
    ] = actions.as_slice()
    else {
        panic!("{actions:?}")
    };
    assert_eq!(by.name, "timeout");
    job.apply(e, 61_000);
    let actions = decide(&job, 61_000);
    // Issue 12, item 7: a timeout that rejects reaches the op as a reject, so the step's
    // outcome says rejected (by `timeout`), the same shape as a person's reject.
    let Action::Call(c) = &actions[0] else {
        panic!("{actions:?}")
    };
    let Some((_, sluice_model::Decision::By { kind, actor })) = &c.resume else {
        panic!("{c:?}")
    };
    assert_eq!(
        (*kind, actor.user.as_str()),
        (DecisionKind::Reject, "timeout")
    );
    assert_eq!(actor.comment, "no decision within 60 s");
}

#[test]
fn a_gate_that_times_out_to_approve_hears_timed_out() {
    let mut job = created(GATED);
    job.apply(&Event::Started { locks: vec![] }, 0);
    start(&mut job, "deploy", 1, 0);
    finish(&mut job, "deploy", 1, true, 0);
    start(&mut job, "gate", 1, 1);
    let mut gate = approval(1, Some(60));
    gate.timeout_action = Some(DecisionKind::Approve);
    job.apply(
        &Event::GateOpened {
            step: "gate".into(),
            attempt: 1,
            gate,
        },
        1000,
    );
    let actions = decide(&job, 61_000);
    let Action::Record(e) = &actions[0] else {
        panic!("{actions:?}")
    };
    job.apply(e, 61_000);
    let actions = decide(&job, 61_000);
    assert!(
        matches!(&actions[0], Action::Call(c) if c.resume.as_ref().is_some_and(|(_, d)| *d == sluice_model::Decision::TimedOut)),
        "{actions:?}"
    );
}

/// Issue 12, item 5: cancelling a job that waits at a gate closes the gate as cancelled, runs
/// post and ends the job, with nobody deciding.
#[test]
fn cancel_at_a_gate_closes_it_runs_post_and_ends_cancelled() {
    let mut job = at_gate(1, Some(60));
    job.apply(
        &Event::CancelRequested {
            by: person("bob"),
            reason: "wrong build".into(),
        },
        2000,
    );
    assert!(job.waiting_gates().is_empty(), "the gate closed");
    assert_eq!(job.steps["gate"].status, StepStatus::Cancelled);
    assert_eq!(job.next_timer(), None, "its timeout no longer fires");
    assert_eq!(calls(&decide(&job, 2000)), ["p#1"], "post, and no undo");
    start(&mut job, "p", 1, 2001);
    finish(&mut job, "p", 1, true, 2002);
    assert_eq!(
        decide(&job, 2002)[0],
        Action::Record(Event::Finished {
            status: JobStatus::Cancelled,
            message: "cancelled by bob: wrong build".into()
        })
    );
    let e = job.check_decision(&ask(
        DecisionKind::Approve,
        "carol",
        &[],
        json!({"region": "eu"}),
    ));
    assert!(e.is_err(), "nothing to decide any more");
}

/// Issue 12, item 4: the host died while the gate op's `resume` ran with a recorded approval:
/// the resume runs again with the same decision; nobody is asked twice.
#[test]
fn an_interrupted_resume_runs_again_with_the_recorded_decision() {
    let mut job = at_gate(1, None);
    let e = job
        .check_decision(&ask(
            DecisionKind::Approve,
            "carol",
            &[],
            json!({"region": "us"}),
        ))
        .unwrap();
    job.apply(&e, 2000);
    let first = decide(&job, 2000);
    assert!(matches!(&first[0], Action::Call(c) if c.resume.is_some()));
    start(&mut job, "gate", 1, 2000);
    job.apply(
        &Event::Interrupted {
            step: "gate".into(),
            attempt: 1,
            live_children: vec![],
        },
        3000,
    );
    assert!(job.waiting_gates().is_empty(), "no new gate opens");
    assert_eq!(decide(&job, 3000), first, "the same resume call again");
}

/// Issue 12, item 3: while programs an interrupted attempt started still run, the step is not
/// run again by itself, even when its op is idempotent.
#[test]
fn an_interrupted_step_with_live_children_traps_even_when_idempotent() {
    let mut job = started_with_idempotent_echo("rule: r\nphases:\n  run: [{ id: a, op: echo }]\n");
    start(&mut job, "a", 1, 0);
    job.apply(
        &Event::Interrupted {
            step: "a".into(),
            attempt: 1,
            live_children: vec!["pid 42 (kubectl)".into()],
        },
        10,
    );
    assert_eq!(decide(&job, 10), []);
    let gates = job.waiting_gates();
    assert!(
        gates[0].message.contains("pid 42 (kubectl)"),
        "{}",
        gates[0].message
    );
}

/// Issue 12, item 8: a success that let failures through says so.
#[test]
fn a_success_names_the_failures_it_continued_past_and_the_traps_skipped() {
    let yaml = "rule: r\nphases:\n  run:\n    - { id: quality, op: fail, on-error: continue }\n    - { id: check, op: fail, on-error: trap }\n    - { id: c, op: echo }\n";
    let mut job = created(yaml);
    job.apply(&Event::Started { locks: vec![] }, 0);
    start(&mut job, "quality", 1, 0);
    finish(&mut job, "quality", 1, false, 1);
    start(&mut job, "check", 1, 2);
    finish(&mut job, "check", 1, false, 3);
    let Action::Record(e) = &decide(&job, 3)[0] else {
        panic!()
    };
    job.apply(e, 3);
    let skip = job
        .check_decision(&ask(DecisionKind::Skip, "carol", &[], json!({})))
        .unwrap();
    job.apply(&skip, 4);
    start(&mut job, "c", 1, 5);
    finish(&mut job, "c", 1, true, 6);
    assert_eq!(
        decide(&job, 6)[0],
        Action::Record(Event::Finished {
            status: JobStatus::Succeeded,
            message:
                "1 step failed and was continued: quality; 1 step was skipped at a gate: check"
                    .into()
        })
    );
}

const TRAPPED: &str = r#"
rule: r
phases:
  pre: [{ id: deploy, op: undo }]
  run:
    - { id: smoke, op: fail, on-error: trap, trap: { max-retries: 1, timeout: 10m, on-timeout: skip }, with: { url: a } }
    - { id: after, op: echo }
  post: [{ id: p, op: echo }]
"#;

fn trapped() -> Job {
    let mut job = created(TRAPPED);
    job.apply(&Event::Started { locks: vec![] }, 0);
    start(&mut job, "deploy", 1, 0);
    finish(&mut job, "deploy", 1, true, 0);
    job.apply(
        &Event::StepStarted {
            step: "smoke".into(),
            attempt: 1,
            input: json!({"url": "a"}),
        },
        1,
    );
    finish(&mut job, "smoke", 1, false, 1);
    let actions = decide(&job, 1);
    let [Action::Record(e @ Event::GateOpened { gate, .. })] = actions.as_slice() else {
        panic!("{actions:?}")
    };
    assert_eq!(
        (gate.kind, gate.message.as_str()),
        (GateKind::Trap, "`smoke` failed: boom")
    );
    assert_eq!(
        (gate.timeout_seconds, gate.timeout_action),
        (Some(600), Some(DecisionKind::Skip))
    );
    job.apply(e, 1);
    assert_eq!(decide(&job, 2), [], "the trap holds the job");
    job
}

#[test]
fn trap_retry_runs_again_with_edited_inputs_and_respects_its_limit() {
    let mut job = trapped();
    let e = job
        .check_decision(&ask(DecisionKind::Retry, "ann", &[], json!({"url": "b"})))
        .unwrap();
    job.apply(&e, 3);
    let actions = decide(&job, 3);
    let Action::Call(c) = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!((c.attempt, &c.input), (2, &json!({"url": "b"})));
    job.apply(
        &Event::StepStarted {
            step: "smoke".into(),
            attempt: 2,
            input: c.input.clone(),
        },
        4,
    );
    finish(&mut job, "smoke", 2, false, 5);
    let actions = decide(&job, 5);
    let [Action::Record(e)] = actions.as_slice() else {
        panic!("trapped again: {actions:?}")
    };
    job.apply(e, 5);
    let err = job
        .check_decision(&ask(DecisionKind::Retry, "ann", &[], json!({})))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "`smoke` was retried 1 times, the most its trap allows; skip, rollback or abort"
    );
}

#[test]
fn trap_skip_goes_on_abort_ends_failed_without_rollback_and_rollback_rolls_back() {
    let mut job = trapped();
    job.apply(
        &job.check_decision(&ask(DecisionKind::Skip, "ann", &[], json!({})))
            .unwrap(),
        3,
    );
    assert_eq!(calls(&decide(&job, 3)), ["after#1"]);

    let mut job = trapped();
    job.apply(
        &job.check_decision(&ask(DecisionKind::Abort, "ann", &[], json!({})))
            .unwrap(),
        3,
    );
    assert_eq!(calls(&decide(&job, 3)), ["p#1"], "post, no undo");
    start(&mut job, "p", 1, 4);
    finish(&mut job, "p", 1, true, 4);
    assert_eq!(
        decide(&job, 4)[0],
        Action::Record(Event::Finished {
            status: JobStatus::Failed,
            message: "aborted by ann at `smoke`".into()
        })
    );

    let mut job = trapped();
    job.apply(
        &job.check_decision(&ask(DecisionKind::Rollback, "ann", &[], json!({})))
            .unwrap(),
        3,
    );
    assert!(matches!(
        &decide(&job, 3)[0],
        Action::Record(Event::RollbackStarted { .. })
    ));
}

#[test]
fn a_decision_at_a_gate_decided_already_names_who_decided() {
    let mut job = trapped();
    job.apply(
        &job.check_decision(&ask(DecisionKind::Retry, "ann", &[], json!({})))
            .unwrap(),
        3,
    );
    let late = job
        .check_decision(&ask(DecisionKind::Skip, "bob", &[], json!({})))
        .unwrap_err();
    assert_eq!(
        late.to_string(),
        "`smoke` of job r-1 was already decided: retry by ann; nothing waits there now"
    );
    assert_eq!(late.class(), RefusalClass::Conflict);
    let named = DecisionRequest {
        step: Some("smoke"),
        ..ask(DecisionKind::Skip, "bob", &[], json!({}))
    };
    assert!(matches!(
        job.check_decision(&named),
        Err(Refusal::AlreadyDecided { .. })
    ));
}

#[test]
fn a_decision_where_nothing_waits_changes_nothing() {
    let job = created(GATED);
    let e = job
        .check_decision(&ask(DecisionKind::Approve, "bob", &[], json!({})))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "job r-1 is not waiting at a gate");
}

#[test]
fn an_interrupted_step_reruns_when_idempotent_and_traps_otherwise() {
    let mut job = started_with_idempotent_echo(
        "rule: r\nphases:\n  run: [{ id: a, op: echo }, { id: b, op: fail }]\n",
    );
    start(&mut job, "a", 1, 0);
    job.apply(
        &Event::Interrupted {
            step: "a".into(),
            attempt: 1,
            live_children: vec![],
        },
        10,
    );
    assert_eq!(calls(&decide(&job, 10)), ["a#2"]);
    start(&mut job, "a", 2, 10);
    finish(&mut job, "a", 2, true, 11);
    start(&mut job, "b", 1, 12);
    job.apply(
        &Event::Interrupted {
            step: "b".into(),
            attempt: 1,
            live_children: vec![],
        },
        20,
    );
    assert_eq!(decide(&job, 20), []);
    let gates = job.waiting_gates();
    assert_eq!(gates[0].kind, GateKind::Trap);
    assert!(
        gates[0].message.starts_with("interrupted: "),
        "{}",
        gates[0].message
    );
}

// ---- hostile decision inputs ----

mod decisions_never_panic {
    use proptest::prelude::*;

    use super::*;

    /// Any JSON value, nested up to 80 levels (past what a job may keep).
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(80, 400, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A value nested `n` levels deep.
    fn nested(n: usize) -> Value {
        (0..n).fold(json!("deep"), |v, _| json!([v]))
    }

    fn kind() -> impl Strategy<Value = DecisionKind> {
        prop_oneof![
            Just(DecisionKind::Approve),
            Just(DecisionKind::Reject),
            Just(DecisionKind::Resume),
            Just(DecisionKind::Retry),
            Just(DecisionKind::Skip),
            Just(DecisionKind::Abort),
            Just(DecisionKind::Rollback),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256)
        ))]

        /// Whatever a decider sends (any kind, user, step, comment, inputs), `check_decision`
        /// answers without panicking, and what it accepts folds in and reads back from JSON.
        #[test]
        fn any_decision_is_checked_and_what_lands_reads_back(
            kind in kind(),
            user in ".{0,20}",
            step in proptest::option::of(".{0,12}"),
            comment in ".{0,60}",
            inputs in prop::collection::btree_map(
                prop_oneof![Just("region".to_string()), Just("url".to_string()), ".{0,12}"],
                prop_oneof![value(), (1usize..160).prop_map(nested)],
                0..4,
            ),
            quorum in 0u32..4,
            at_trap in any::<bool>(),
        ) {
            // An approval (inputs are answers) or a trap (a retry's inputs edit the step's).
            let mut job = if at_trap { trapped() } else { at_gate(quorum, Some(60)) };
            let req = DecisionRequest {
                step: step.as_deref(),
                kind,
                actor: person(&user),
                comment: &comment,
                inputs: inputs.into_iter().collect(),
            };
            if let Ok(e) = job.check_decision(&req) {
                let text = serde_json::to_string(&e).unwrap();
                let back: Event = serde_json::from_str(&text)
                    .unwrap_or_else(|err| panic!("an accepted decision must read back: {err}"));
                job.apply(&back, 2000);
                let _ = decide(&job, 2000);
                let _ = job.waiting_gates();
            }
        }
    }
}

/// Records what `decide` derived at `now` (its `Record` actions), as a runner would.
fn record_derived(job: &mut Job, now: Millis) -> Vec<Action> {
    let actions = decide(job, now);
    for a in &actions {
        if let Action::Record(e) = a {
            job.apply(e, now);
        }
    }
    actions
}

/// 2026-12-07, a Monday, 00:00 UTC.
const MONDAY: Millis = 1_796_601_600_000;
const HOUR: Millis = 3_600_000;

const WINDOWED: &str = "rule: r
windows:
  timezone: Europe/Madrid
  allow: [{ days: mon-fri, hours: \"09:00-17:00\" }]
  freeze: [{ from: 2026-12-24, to: 2026-12-26, reason: holidays }]
phases:
  run: [{ op: echo }]
";

#[test]
fn a_job_outside_its_window_waits_at_a_window_gate_until_the_timer_opens_it() {
    let mut job = created(WINDOWED);
    // Monday 06:00 UTC is 07:00 in Madrid: two hours before the window.
    let now = MONDAY + 6 * HOUR;
    let actions = record_derived(&mut job, now);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::AcquireLocks { .. })),
        "no locks are taken outside the window: {actions:?}"
    );
    let gates = job.waiting_gates();
    assert_eq!(gates.len(), 1);
    assert_eq!(gates[0].step, JOB_WINDOW);
    assert_eq!(gates[0].kind, GateKind::Window);
    assert_eq!(
        gates[0].opens_at,
        Some(MONDAY + 8 * HOUR),
        "09:00 in Madrid"
    );
    assert!(
        gates[0].message.contains("2026-12-07 09:00 Europe/Madrid"),
        "{}",
        gates[0].message
    );
    assert_eq!(
        job.next_timer(),
        Some(MONDAY + 8 * HOUR),
        "the durable timer"
    );
    // Nothing happens before the timer.
    assert!(record_derived(&mut job, MONDAY + 7 * HOUR).is_empty());
    // At the opening: the gate closes by itself, then the job takes its locks.
    record_derived(&mut job, MONDAY + 8 * HOUR);
    assert!(job.waiting_gates().is_empty());
    let d = job.steps[JOB_WINDOW]
        .gate
        .as_ref()
        .unwrap()
        .decision
        .clone()
        .unwrap();
    assert_eq!((d.kind, d.by.as_str()), (DecisionKind::Resume, "window"));
    assert!(matches!(
        decide(&job, MONDAY + 8 * HOUR).as_slice(),
        [Action::AcquireLocks { .. }]
    ));
}

#[test]
fn a_job_inside_its_window_starts_without_a_gate() {
    let job = created(WINDOWED);
    let actions = decide(&job, MONDAY + 10 * HOUR);
    assert!(
        matches!(actions.as_slice(), [Action::AcquireLocks { .. }]),
        "{actions:?}"
    );
}

#[test]
fn a_freeze_holds_a_job_past_its_allowed_hours_and_says_why() {
    let mut job = created(WINDOWED);
    // Thursday 2026-12-24, 10:00 in Madrid: allowed hours, but frozen until the 27th (a
    // Sunday), so it opens Monday the 28th at 09:00.
    let now = MONDAY + 17 * 24 * HOUR + 9 * HOUR;
    record_derived(&mut job, now);
    let g = &job.waiting_gates()[0];
    assert!(g.message.contains("holidays"), "{}", g.message);
    assert_eq!(g.opens_at, Some(MONDAY + 21 * 24 * HOUR + 8 * HOUR));
}

#[test]
fn a_host_waking_after_the_window_closed_again_waits_for_the_next_opening() {
    let mut job = created(WINDOWED);
    record_derived(&mut job, MONDAY + 6 * HOUR);
    // The host was down from before 09:00 until 20:00 Madrid time.
    record_derived(&mut job, MONDAY + 19 * HOUR);
    let g = &job.waiting_gates()[0];
    assert_eq!(g.opens_at, Some(MONDAY + 32 * HOUR), "Tuesday 09:00 Madrid");
    assert!(
        job.steps[JOB_WINDOW]
            .gate
            .as_ref()
            .unwrap()
            .decision
            .is_none()
    );
}

#[test]
fn skip_window_needs_a_comment_and_starts_the_job_now() {
    let mut job = created(WINDOWED);
    record_derived(&mut job, MONDAY + 6 * HOUR);
    let ask = |comment| DecisionRequest {
        step: None,
        kind: DecisionKind::SkipWindow,
        actor: person("bob"),
        comment,
        inputs: Map::new(),
    };
    assert!(matches!(
        job.check_decision(&ask("")),
        Err(Refusal::NeedsComment { .. })
    ));
    let approve = DecisionRequest {
        kind: DecisionKind::Approve,
        ..ask("why")
    };
    assert!(matches!(
        job.check_decision(&approve),
        Err(Refusal::NotAChoice { .. })
    ));
    let e = job.check_decision(&ask("hotfix for the outage")).unwrap();
    job.apply(&e, MONDAY + 6 * HOUR);
    assert!(matches!(
        decide(&job, MONDAY + 6 * HOUR).as_slice(),
        [Action::AcquireLocks { .. }]
    ));
}

#[test]
fn a_cancel_ends_a_job_waiting_for_its_window() {
    let mut job = created(WINDOWED);
    record_derived(&mut job, MONDAY + 6 * HOUR);
    job.apply(
        &Event::CancelRequested {
            by: person("bob"),
            reason: "not today".into(),
        },
        MONDAY + 6 * HOUR,
    );
    let actions = decide(&job, MONDAY + 6 * HOUR);
    assert!(
        matches!(
            actions.as_slice(),
            [
                Action::Record(Event::Finished {
                    status: JobStatus::Cancelled,
                    ..
                }),
                Action::ReleaseLocks
            ]
        ),
        "{actions:?}"
    );
}

#[test]
fn a_step_with_a_window_waits_before_its_first_attempt() {
    let mut job = started_with_idempotent_echo(
        "rule: r
phases:
  run:
    - { id: build, op: echo }
    - id: deploy
      op: echo
      windows: { allow: [{ hours: \"22:00-23:00\" }] }
",
    );
    let now = MONDAY + 10 * HOUR;
    assert_eq!(calls(&decide(&job, now)), ["build#1"]);
    start(&mut job, "build", 1, now);
    job.apply(
        &Event::StepFinished {
            step: "build".into(),
            attempt: 1,
            result: StepResult::success(json!({})),
        },
        now,
    );
    let actions = record_derived(&mut job, now);
    assert!(calls(&actions).is_empty(), "{actions:?}");
    let g = &job.waiting_gates()[0];
    assert_eq!(
        (g.step.as_str(), g.opens_at),
        ("deploy", Some(MONDAY + 22 * HOUR))
    );
    record_derived(&mut job, MONDAY + 22 * HOUR);
    assert_eq!(calls(&decide(&job, MONDAY + 22 * HOUR)), ["deploy#1"]);
}

#[test]
fn a_window_that_never_opens_fails_the_job_instead_of_waiting_forever() {
    let job = created(
        "rule: r
windows: { freeze: [{ from: 2026-01-01, to: 2099-12-31 }] }
phases: { run: [{ op: echo }] }
",
    );
    let actions = decide(&job, MONDAY);
    assert!(
        matches!(
            actions.first(),
            Some(Action::Record(Event::Finished { status: JobStatus::Failed, message })) if message.contains("does not open")
        ),
        "{actions:?}"
    );
}

#[test]
fn a_job_in_line_for_its_locks_is_not_sent_back_to_its_window() {
    let mut job = created(WINDOWED);
    // Asked for its locks inside the window, and waits in line...
    job.apply(
        &Event::Queued {
            behind: vec!["other-1".into()],
        },
        MONDAY + 10 * HOUR,
    );
    // ...past the window's end: it stays in line, at no window gate.
    let actions = record_derived(&mut job, MONDAY + 20 * HOUR);
    assert!(
        matches!(actions.as_slice(), [Action::AcquireLocks { .. }]),
        "{actions:?}"
    );
    assert!(job.waiting_gates().is_empty());
}

#[test]
fn a_step_whose_window_opened_does_not_start_after_a_cancel() {
    let mut job = started_with_idempotent_echo(
        "rule: r
phases:
  run:
    - id: deploy
      op: echo
      windows: { allow: [{ hours: \"22:00-23:00\" }] }
",
    );
    record_derived(&mut job, MONDAY + 10 * HOUR);
    let e = job
        .check_decision(&DecisionRequest {
            step: None,
            kind: DecisionKind::SkipWindow,
            actor: person("bob"),
            comment: "hotfix",
            inputs: Map::new(),
        })
        .unwrap();
    job.apply(&e, MONDAY + 10 * HOUR);
    job.apply(
        &Event::CancelRequested {
            by: person("bob"),
            reason: "no after all".into(),
        },
        MONDAY + 10 * HOUR,
    );
    let actions = decide(&job, MONDAY + 10 * HOUR);
    assert!(calls(&actions).is_empty(), "{actions:?}");
    assert!(
        matches!(
            actions.first(),
            Some(Action::Record(Event::Finished {
                status: JobStatus::Cancelled,
                ..
            }))
        ),
        "{actions:?}"
    );
}
