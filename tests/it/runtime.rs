//! The runtime on its own: outcome mapping, faults, log capture, grants, compile cache.

use std::sync::Arc;
use std::time::Duration;

use sluice_model::{Decider, Decision, DecisionKind, GateKind, JobContext, LogSource, Outcome};
use sluice_runtime::{Call, Fault, Grants, LoadSource, OpReport, Runtime, RuntimeConfig};
use sluice_std_ops::test_ops;

fn runtime(home: &std::path::Path) -> Runtime {
    Runtime::new(RuntimeConfig::new(home)).expect("runtime")
}

async fn run(
    rt: &Runtime,
    path: &str,
    input: &str,
    grants: Grants,
    timeout: Option<Duration>,
) -> OpReport {
    let bytes = std::fs::read(path).expect("test op built");
    let (op, _) = rt.load(&bytes).expect("load");
    let name = std::path::Path::new(path)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let call = Call::Run {
        ctx: JobContext::adhoc("step-1", "tester"),
        input: input.to_string(),
    };
    rt.call(&op, &name, call, Arc::new(grants), timeout).await
}

#[tokio::test]
async fn outcomes_map_success_warning_failure_and_suspend() {
    let home = crate::home();
    let rt = runtime(home.path());

    let r = run(&rt, test_ops::ECHO, r#"{"a":1}"#, Grants::none(), None).await;
    assert_eq!(
        r.outcome,
        Outcome::Success {
            output: r#"{"a":1}"#.into()
        }
    );
    assert_eq!(r.fault, None);
    assert!(
        r.logs
            .iter()
            .any(|l| l.source == LogSource::Op && l.message.contains("step=step-1 attempt=1")),
        "{:?}",
        r.logs
    );

    let r = run(&rt, test_ops::WARN, "[1,2]", Grants::none(), None).await;
    assert_eq!(
        r.outcome,
        Outcome::Warning {
            output: "[1,2]".into()
        }
    );

    let r = run(
        &rt,
        test_ops::FAIL,
        r#"{"message":"disk full","retryable":true}"#,
        Grants::none(),
        None,
    )
    .await;
    let Outcome::Failure(f) = &r.outcome else {
        panic!("expected failure, got {:?}", r.outcome)
    };
    assert_eq!(f.message, "disk full");
    assert!(f.retryable);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&f.details).unwrap()["message"],
        "disk full"
    );
    assert_eq!(r.fault, None, "an op that returns failure is not a fault");

    let r = run(
        &rt,
        test_ops::SUSPEND,
        r#"{"quorum":2,"timeout":60}"#,
        Grants::none(),
        None,
    )
    .await;
    let Outcome::Suspend(g) = &r.outcome else {
        panic!("expected suspend, got {:?}", r.outcome)
    };
    assert_eq!(g.kind, GateKind::Approval);
    assert_eq!(g.approvers, ["group:release-managers"]);
    assert_eq!(g.quorum, 2);
    assert_eq!(g.timeout_seconds, Some(60));
    assert_eq!(g.timeout_action, Some(DecisionKind::Reject));
    assert_eq!(g.state, b"opaque-state");
}

#[tokio::test]
async fn resume_gets_the_stored_state_and_the_decision() {
    let home = crate::home();
    let rt = runtime(home.path());
    let (op, _) = rt.load(&std::fs::read(test_ops::SUSPEND).unwrap()).unwrap();
    let decision = Decision::By {
        kind: DecisionKind::Approve,
        actor: Decider {
            user: "alice".into(),
            comment: "ship it".into(),
            inputs: vec![],
        },
    };
    let call = Call::Resume {
        ctx: JobContext::adhoc("gate", "bob"),
        input: "{}".into(),
        state: b"opaque-state".to_vec(),
        decision,
    };
    let r = rt
        .call(&op, "suspend", call, Arc::new(Grants::none()), None)
        .await;
    assert_eq!(
        r.outcome,
        Outcome::Success {
            output: r#""approved by alice with state opaque-state""#.into()
        }
    );

    let call = Call::Resume {
        ctx: JobContext::adhoc("gate", "bob"),
        input: "{}".into(),
        state: vec![],
        decision: Decision::TimedOut,
    };
    let r = rt
        .call(&op, "suspend", call, Arc::new(Grants::none()), None)
        .await;
    assert!(
        matches!(&r.outcome, Outcome::Failure(f) if f.message.contains("TimedOut")),
        "{:?}",
        r.outcome
    );
}

#[tokio::test]
async fn rollback_gets_the_input_and_the_output_of_run() {
    let home = crate::home();
    let rt = runtime(home.path());
    let (op, _) = rt.load(&std::fs::read(test_ops::UNDO).unwrap()).unwrap();
    let info = rt.describe(&op).await.unwrap();
    assert!(info.can_rollback);
    let call = Call::Rollback {
        ctx: JobContext::adhoc("deploy", "bob"),
        input: r#"{"rev":7}"#.into(),
        output: r#"{"undo":{"rev":7}}"#.into(),
    };
    let r = rt
        .call(&op, "undo", call, Arc::new(Grants::none()), None)
        .await;
    assert_eq!(
        r.outcome,
        Outcome::Success {
            output: "null".into()
        }
    );
    assert!(
        r.logs.iter().any(|l| l.message == r#"undid {"rev":7}"#),
        "{:?}",
        r.logs
    );

    // An op without rollback says so instead of pretending.
    let (echo, _) = rt.load(&std::fs::read(test_ops::ECHO).unwrap()).unwrap();
    let call = Call::Rollback {
        ctx: JobContext::adhoc("x", "bob"),
        input: "{}".into(),
        output: "{}".into(),
    };
    let r = rt
        .call(&echo, "echo", call, Arc::new(Grants::none()), None)
        .await;
    assert!(
        matches!(&r.outcome, Outcome::Failure(f) if f.message == "op `echo` cannot roll back"),
        "{:?}",
        r.outcome
    );
}

#[tokio::test]
async fn guest_panic_is_a_clean_failure_with_the_panic_message() {
    let home = crate::home();
    let rt = runtime(home.path());
    let r = run(
        &rt,
        test_ops::PANIC,
        r#"{"message":"the canary is on fire"}"#,
        Grants::none(),
        None,
    )
    .await;
    assert_eq!(r.fault, Some(Fault::Panic));
    let Outcome::Failure(f) = &r.outcome else {
        panic!("expected failure, got {:?}", r.outcome)
    };
    assert!(
        f.message
            .starts_with("op `panic` panicked: the canary is on fire (at "),
        "{}",
        f.message
    );
    // The runtime is still usable after a trap.
    let r = run(&rt, test_ops::ECHO, "1", Grants::none(), None).await;
    assert_eq!(r.outcome, Outcome::Success { output: "1".into() });
}

#[tokio::test]
async fn an_op_past_its_deadline_is_stopped() {
    let home = crate::home();
    let rt = runtime(home.path());
    let r = run(
        &rt,
        test_ops::SPIN,
        "{}",
        Grants::none(),
        Some(Duration::from_millis(200)),
    )
    .await;
    assert_eq!(r.fault, Some(Fault::Timeout));
    assert!(
        matches!(&r.outcome, Outcome::Failure(f) if f.message == "op `spin` passed its deadline of 200 ms and was stopped"),
        "{:?}",
        r.outcome
    );
}

#[tokio::test]
async fn guest_stdout_and_stderr_go_to_the_log_in_order() {
    let home = crate::home();
    let rt = runtime(home.path());
    let r = run(
        &rt,
        test_ops::STDOUT,
        r#"{"lines":3}"#,
        Grants::none(),
        None,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Success { output: "3".into() });
    let lines: Vec<(LogSource, &str)> = r
        .logs
        .iter()
        .map(|l| (l.source, l.message.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (LogSource::Stdout, "hello from stdout 0"),
            (LogSource::Stdout, "hello from stdout 1"),
            (LogSource::Stdout, "hello from stdout 2"),
            (LogSource::Stderr, "hello from stderr"),
        ]
    );
}

#[tokio::test]
async fn a_flood_of_stdout_is_cut_at_the_log_limit_and_the_op_still_succeeds() {
    let home = crate::home();
    let mut config = RuntimeConfig::new(home.path());
    config.max_log_bytes = 4096;
    let rt = Runtime::new(config).unwrap();
    let r = run(
        &rt,
        test_ops::STDOUT,
        r#"{"lines":100000}"#,
        Grants::none(),
        None,
    )
    .await;
    assert_eq!(
        r.outcome,
        Outcome::Success {
            output: "100000".into()
        }
    );
    let kept: usize = r
        .logs
        .iter()
        .filter(|l| l.source != LogSource::Host)
        .map(|l| l.message.len())
        .sum();
    assert!(kept <= 4096, "kept {kept} bytes");
    let last = r.logs.last().unwrap();
    assert_eq!(last.source, LogSource::Host);
    assert!(last.message.starts_with("log cut: "), "{}", last.message);
}

#[tokio::test]
async fn ungranted_secret_and_exec_are_refused_by_name() {
    let home = crate::home();
    let rt = runtime(home.path());
    let r = run(
        &rt,
        test_ops::SECRET,
        r#"{"name":"db-password"}"#,
        Grants::none(),
        None,
    )
    .await;
    assert_eq!(
        r.outcome,
        Outcome::failure(
            "not granted: secret `db-password` is not granted to op `secret`: grant `secret:db-password` to this op"
        )
    );

    let mut grants = Grants::none();
    grants
        .secrets
        .insert("db-password".into(), "hunter2".into());
    let r = run(
        &rt,
        test_ops::SECRET,
        r#"{"name":"db-password"}"#,
        grants,
        None,
    )
    .await;
    assert_eq!(
        r.outcome,
        Outcome::Success {
            output: r#"{"leak":"hunter2","len":7}"#.into()
        }
    );

    let r = run(
        &rt,
        test_ops::EXEC,
        r#"{"program":"/bin/sh","args":["-c","id"]}"#,
        Grants::none(),
        None,
    )
    .await;
    assert_eq!(
        r.outcome,
        Outcome::failure(
            "not granted: program `/bin/sh` is not granted to op `exec`: grant `exec:/bin/sh` to this op"
        )
    );
}

#[tokio::test]
async fn second_runtime_loads_from_the_disk_cache() {
    let home = crate::home();
    let bytes = std::fs::read(test_ops::ECHO).unwrap();
    {
        let rt = runtime(home.path());
        let (_, source) = rt.load(&bytes).unwrap();
        assert_eq!(source, LoadSource::Compiled);
        let (_, source) = rt.load(&bytes).unwrap();
        assert_eq!(source, LoadSource::Memory);
    }
    let entries: Vec<_> = {
        let rt = runtime(home.path());
        let (op, source) = rt.load(&bytes).unwrap();
        assert_eq!(source, LoadSource::DiskCache);
        let entries: Vec<_> = std::fs::read_dir(home.path().join("cache"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(entries.len(), 1);
        let file = entries[0].file_name().to_string_lossy().into_owned();
        assert!(
            file.starts_with(op.digest()) && file.ends_with(".cwasm"),
            "{file}"
        );
        entries
    };

    // A damaged cache entry is recompiled, not trusted. (Replaced by rename, as the cache
    // itself writes: a file truncated in place under a live mapping would fault.)
    let damaged = home.path().join("damaged");
    std::fs::write(&damaged, b"not native code").unwrap();
    std::fs::rename(&damaged, entries[0].path()).unwrap();
    let rt = runtime(home.path());
    let (op, source) = rt.load(&bytes).unwrap();
    assert_eq!(source, LoadSource::Compiled);
    let r = rt
        .call(
            &op,
            "echo",
            Call::Run {
                ctx: JobContext::adhoc("s", "u"),
                input: "2".into(),
            },
            Arc::new(Grants::none()),
            None,
        )
        .await;
    assert_eq!(r.outcome, Outcome::Success { output: "2".into() });
}

#[tokio::test]
async fn bytes_that_are_not_a_component_are_refused() {
    let home = crate::home();
    let rt = runtime(home.path());
    let err = rt.load(b"\0asm not really").err().expect("refused");
    assert!(
        err.to_string()
            .starts_with("not a valid WebAssembly component: "),
        "{err}"
    );
}

#[tokio::test]
async fn every_test_op_describes_itself() {
    let home = crate::home();
    let rt = runtime(home.path());
    for (name, path) in test_ops::ALL {
        let (op, _) = rt.load(&std::fs::read(path).unwrap()).unwrap();
        let info = rt.describe(&op).await.unwrap();
        assert_eq!(&info.name, name);
        assert!(serde_json::from_str::<serde_json::Value>(&info.input_schema).is_ok());
    }
}

#[tokio::test]
async fn an_output_over_the_limit_is_a_failure() {
    let home = crate::home();
    let rt = runtime(home.path());
    let big = format!("\"{}\"", "x".repeat(sluice_runtime::MAX_OUTPUT_BYTES));
    let r = run(&rt, test_ops::ECHO, &big, Grants::none(), None).await;
    let Outcome::Failure(f) = &r.outcome else {
        panic!("expected failure")
    };
    assert!(
        f.message
            .starts_with("op `echo` returned 1048578 bytes of output; the limit is 1048576"),
        "{}",
        f.message
    );
}
