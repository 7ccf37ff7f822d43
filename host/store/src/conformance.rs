//! What every [`Journal`] must do, as tests any implementation runs:
//! `sluice_store::conformance_tests!(async |dir: &Path| -> Arc<dyn Journal> { ... })` in its test
//! module expands to one `#[tokio::test]` per check, each on a fresh journal made in a fresh
//! temporary directory.
//!
//! The checks: ordered appends and the stale-writer refusal, events too deep to read back,
//! concurrent appenders (every append lands once, sequences stay dense), leases (expiry,
//! stealing from the dead, keeping the lease when the job moved), timers and the worker's due
//! list, locks (first come first served, shared and exclusive, group modes), annotation
//! blobs, logs, the programs ops started, job queries and API tokens.

use std::sync::Arc;

use crate::*;

/// Expands to one test per conformance check, each calling `$make(dir)` for its journal.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            appends_are_ordered_and_a_stale_writer_is_refused,
            an_event_too_deep_to_read_back_is_refused,
            concurrent_appenders_land_once_each,
            one_lease_at_a_time_until_it_runs_out_or_its_holder_is_found_dead,
            a_lease_is_kept_when_the_job_moved_since_the_holder_last_read,
            a_driver_whose_lease_was_taken_over_is_fenced_off,
            workers_claim_different_due_jobs,
            a_release_wakes_the_jobs_queued_behind_it,
            timers_and_the_due_list,
            exclusive_locks_queue_first_come_first_served_and_shared_ones_overlap,
            a_later_job_cannot_jump_the_line,
            group_modes_reject_and_cancel_pending,
            annotations_keep_their_bytes_and_refuse_a_source_of_the_wrong_size,
            logs_continue_after_an_id,
            job_ids_count_per_rule_and_ids_are_unique,
            children_are_kept_per_step,
            workers_are_known_until_overdue_or_stopped,
            jobs_are_listed_by_status_and_rule_a_page_at_a_time,
            tokens_are_found_by_hash_until_revoked,
            a_job_created_under_a_lease_is_held_by_its_creator,
            passwords_are_set_replaced_and_removed,
            messages_are_written_with_their_events_and_claimed_once_until_delivered,
            messages_of_one_job_to_one_sink_go_in_order,
            a_trigger_key_starts_one_job,
            chat_rooms_follow_jobs_and_deliveries_are_seen_once,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let dir = tempfile::tempdir().unwrap();
                #[allow(clippy::redundant_closure_call)]
                let journal: std::sync::Arc<dyn $crate::Journal> = ($make)(dir.path()).await;
                $crate::conformance::$name(journal).await;
            }
        )*
    };
}

/// A job row for the checks.
pub fn new_job(id: &str) -> NewJob {
    NewJob {
        outbox: Vec::new(),
        trigger: None,
        wake_at: None,
        id: id.into(),
        rule: "deploy".into(),
        status: JobState::Running,
        message: String::new(),
        started_by: "ann".into(),
        created_at: 1,
        lease: None,
    }
}

/// `n` small events.
pub fn events(n: u64) -> Vec<NewEvent> {
    (1..=n)
        .map(|i| NewEvent {
            at: i,
            version: 1,
            body: format!("{{\"n\":{i}}}"),
        })
        .collect()
}

fn event(at: Millis, body: &str) -> NewEvent {
    NewEvent {
        at,
        version: 1,
        body: body.into(),
    }
}

fn ask(name: &str, exclusive: bool) -> LockAsk {
    LockAsk {
        name: name.into(),
        exclusive,
    }
}

fn lease(holder: &str, now: Millis, until: Millis, steal: Option<&str>) -> LeaseRequest {
    LeaseRequest {
        holder: holder.into(),
        now,
        until,
        steal: steal.map(String::from),
        renew: None,
    }
}

/// Appends land in order; a writer that read an older sequence is refused with `Conflict`;
/// the status and message are written with the events.
pub async fn appends_are_ordered_and_a_stale_writer_is_refused(j: Arc<dyn Journal>) {
    assert_eq!(
        j.create_job(new_job("deploy-1"), events(2)).await.unwrap(),
        2
    );
    assert!(matches!(
        j.create_job(new_job("deploy-1"), events(1)).await,
        Err(StoreError::Exists(_))
    ));
    let done = Append {
        events: vec![event(3, "{\"n\":3}")],
        status: Some((JobState::Ended(JobStatus::Succeeded), "ok".into())),
        ..Append::default()
    };
    assert_eq!(j.append("deploy-1", 2, done).await.unwrap(), 3);
    let stale = Append {
        events: vec![event(4, "{}")],
        ..Append::default()
    };
    assert!(matches!(
        j.append("deploy-1", 2, stale).await,
        Err(StoreError::Conflict {
            expected: 2,
            found: 3,
            ..
        })
    ));
    assert!(matches!(
        j.append("nope-1", 0, Append::default()).await,
        Err(StoreError::NoJob(_))
    ));
    let all = j.events("deploy-1", 0).await.unwrap();
    let bodies: Vec<&str> = all.iter().map(|e| e.body.as_str()).collect();
    assert_eq!(bodies, ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]);
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(j.events("deploy-1", 2).await.unwrap().len(), 1);
    let row = j.job("deploy-1").await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.message.as_str(), row.last_seq),
        (JobState::Ended(JobStatus::Succeeded), "ok", 3)
    );
}

/// Issue 12, item 11: an event the journal could not read back is never written.
pub async fn an_event_too_deep_to_read_back_is_refused(j: Arc<dyn Journal>) {
    j.create_job(new_job("deploy-1"), events(1)).await.unwrap();
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    for n in [101, 130] {
        let deep = Append {
            events: vec![event(2, &nested(n))],
            ..Append::default()
        };
        assert!(matches!(
            j.append("deploy-1", 1, deep).await,
            Err(StoreError::TooDeep { depth, .. }) if depth == n
        ));
    }
    assert_eq!(j.events("deploy-1", 0).await.unwrap().len(), 1);
}

/// Eight writers append 25 events each to one job, each retrying on `Conflict` from the
/// sequence it reads: every event lands exactly once and the sequence stays dense.
pub async fn concurrent_appenders_land_once_each(j: Arc<dyn Journal>) {
    j.create_job(new_job("deploy-1"), events(1)).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let j = j.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                loop {
                    let seen = j.job("deploy-1").await.unwrap().unwrap().last_seq;
                    let e = Append {
                        events: vec![event(2, &format!("{{\"w\":{w},\"i\":{i}}}"))],
                        ..Append::default()
                    };
                    match j.append("deploy-1", seen, e).await {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = j.events("deploy-1", 0).await.unwrap();
    assert_eq!(all.len(), 1 + 8 * 25);
    assert!(all.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1));
    let mut bodies: Vec<&str> = all.iter().map(|e| e.body.as_str()).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 1 + 8 * 25, "no event twice");
}

/// One holder at a time; an expired lease or one of a holder found dead can be taken. Each
/// take by a new holder (or from nobody) is a new epoch; its holder asking again keeps it.
pub async fn one_lease_at_a_time_until_it_runs_out_or_its_holder_is_found_dead(
    j: Arc<dyn Journal>,
) {
    j.create_job(new_job("deploy-1"), events(1)).await.unwrap();
    let take = |holder: &str, now, until, steal| {
        let j = j.clone();
        let req = lease(holder, now, until, steal);
        async move { j.lease("deploy-1", req).await.unwrap() }
    };
    assert_eq!(
        take("cli:1", 100, 200, None).await,
        Lease::Taken { epoch: 1 }
    );
    assert_eq!(
        take("cli:1", 110, 210, None).await,
        Lease::Taken { epoch: 1 },
        "its holder asking again keeps the epoch"
    );
    assert_eq!(
        take("worker:2", 150, 250, None).await,
        Lease::HeldBy("cli:1".into())
    );
    assert_eq!(
        j.lease_holder("deploy-1", 150).await.unwrap().as_deref(),
        Some("cli:1")
    );
    assert_eq!(
        take("worker:2", 211, 300, None).await,
        Lease::Taken { epoch: 2 },
        "expired"
    );
    assert_eq!(
        take("cli:3", 212, 300, Some("worker:2")).await,
        Lease::Taken { epoch: 3 },
        "stolen from the dead"
    );
    assert!(j.unlease("deploy-1", "cli:3", None).await.unwrap());
    assert_eq!(j.lease_holder("deploy-1", 213).await.unwrap(), None);
    assert_eq!(
        take("cli:3", 214, 300, None).await,
        Lease::Taken { epoch: 4 },
        "taken from nobody: a new epoch"
    );
    assert!(matches!(
        j.lease("nope-1", lease("cli:1", 1, 2, None)).await,
        Err(StoreError::NoJob(_))
    ));
}

/// Fencing: a driver whose lease ran out and was taken over can neither renew it nor append
/// under it, even when its view of the job is not stale; renewing a lease still held (even
/// past its expiry, when nobody took it) keeps its epoch.
pub async fn a_driver_whose_lease_was_taken_over_is_fenced_off(j: Arc<dyn Journal>) {
    let mut job = new_job("deploy-1");
    job.lease = Some(("a:1:1#0".into(), 1_000));
    j.create_job(job, events(1)).await.unwrap();
    let fenced = |holder: &str, epoch| Append {
        events: vec![event(5, "{}")],
        fence: Some(Fence {
            holder: holder.into(),
            epoch,
        }),
        ..Append::default()
    };
    let renew = |holder: &str, now, epoch| LeaseRequest {
        renew: Some(epoch),
        ..lease(holder, now, now + 1_000, None)
    };
    let a = "a:1:1#0";
    assert_eq!(
        j.append("deploy-1", 1, fenced(a, FIRST_EPOCH))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        j.lease("deploy-1", renew(a, 1_200, FIRST_EPOCH))
            .await
            .unwrap(),
        Lease::Taken { epoch: FIRST_EPOCH },
        "ran out, nobody took it: renewed"
    );
    // Paused past its expiry; another host takes over and has not written yet.
    assert_eq!(
        j.lease("deploy-1", lease("b:2:2#0", 2_201, 3_000, None))
            .await
            .unwrap(),
        Lease::Taken {
            epoch: FIRST_EPOCH + 1
        }
    );
    assert!(matches!(
        j.append("deploy-1", 2, fenced(a, FIRST_EPOCH)).await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(
        j.lease("deploy-1", renew(a, 2_300, FIRST_EPOCH))
            .await
            .unwrap(),
        Lease::HeldBy("b:2:2#0".into())
    );
    // The new holder gives it back; the old one still can neither renew nor write.
    assert!(j.unlease("deploy-1", "b:2:2#0", None).await.unwrap());
    assert_eq!(
        j.lease("deploy-1", renew(a, 2_400, FIRST_EPOCH))
            .await
            .unwrap(),
        Lease::HeldBy(String::new())
    );
    assert!(matches!(
        j.append("deploy-1", 2, fenced(a, FIRST_EPOCH)).await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(
        j.job("deploy-1").await.unwrap().unwrap().last_seq,
        2,
        "nothing written"
    );
    // A decision from someone not driving the job needs no lease.
    let decision = Append {
        events: vec![event(6, "{}")],
        ..Append::default()
    };
    j.append("deploy-1", 2, decision).await.unwrap();
}

/// Claiming: several workers claiming at once each get a different due job (oldest first),
/// never one whose lease runs nor one queued for locks, and `skip` leaves out what a worker
/// drove already.
pub async fn workers_claim_different_due_jobs(j: Arc<dyn Journal>) {
    for (i, (id, state)) in [
        ("a-1", JobState::Ready),
        ("b-1", JobState::Cancelling),
        ("c-1", JobState::Waiting),
        ("q-1", JobState::Queued),
        ("d-1", JobState::Running),
        ("e-1", JobState::Ended(JobStatus::Succeeded)),
    ]
    .into_iter()
    .enumerate()
    {
        let mut row = new_job(id);
        row.status = state;
        row.created_at = i as u64;
        if id == "d-1" {
            row.lease = Some(("alive:1:1#0".into(), 10_000));
        }
        j.create_job(row, events(1)).await.unwrap();
    }
    let mut claims = Vec::new();
    for w in 0..4 {
        let j = j.clone();
        claims.push(tokio::spawn(async move {
            j.claim(100, &format!("w:{w}:1#0"), 1_000, &[])
                .await
                .unwrap()
        }));
    }
    let mut got = Vec::new();
    for c in claims {
        if let Some((id, epoch)) = c.await.unwrap() {
            assert_eq!(epoch, 1);
            got.push(id);
        }
    }
    got.sort();
    assert_eq!(got, ["a-1", "b-1"], "each due, unleased job once");
    assert_eq!(j.claim(100, "w:9:1#0", 1_000, &[]).await.unwrap(), None);
    // Their leases run out; d-1's runs until 10,000.
    let first = j.claim(2_000, "w:9:1#0", 3_000, &[]).await.unwrap();
    assert_eq!(first, Some(("a-1".to_string(), 2)));
    let skip = vec!["a-1".to_string()];
    let next = j.claim(2_000, "w:9:1#0", 3_000, &skip).await.unwrap();
    assert_eq!(next, Some(("b-1".to_string(), 2)));
    assert_eq!(
        j.lease_holder("b-1", 2_500).await.unwrap().as_deref(),
        Some("w:9:1#0")
    );
    assert_eq!(j.claim(2_000, "w:9:1#0", 3_000, &[]).await.unwrap(), None);
    let skip = vec!["a-1".to_string(), "b-1".to_string()];
    assert_eq!(
        j.claim(10_001, "w:8:1#0", 12_000, &skip).await.unwrap(),
        Some(("d-1".to_string(), 2)),
        "a running job whose driver's lease ran out is taken over"
    );
}

/// A queued job is not due until the locks it waits for are given back: the release marks it
/// `ready` in the same transaction (and leaves other statuses alone).
pub async fn a_release_wakes_the_jobs_queued_behind_it(j: Arc<dyn Journal>) {
    for (id, state) in [("a-1", JobState::Running), ("b-1", JobState::Queued)] {
        let mut row = new_job(id);
        row.status = state;
        j.create_job(row, events(1)).await.unwrap();
    }
    let env = || vec![ask("env-qa", true)];
    j.acquire("a-1", env(), GroupMode::Queue).await.unwrap();
    let b = j.acquire("b-1", env(), GroupMode::Queue).await.unwrap();
    assert!(matches!(b.acquired, Acquired::Queued { .. }));
    assert_eq!(j.due(10).await.unwrap(), ["a-1"], "queued: not polled");
    assert_eq!(j.release("a-1").await.unwrap(), ["b-1"]);
    let b = j.job("b-1").await.unwrap().unwrap();
    assert_eq!(b.status, JobState::Ready, "woken");
    assert_eq!(j.due(10).await.unwrap(), ["a-1", "b-1"]);
    assert_eq!(
        j.job("a-1").await.unwrap().unwrap().status,
        JobState::Running,
        "the releaser's own status is its driver's to set"
    );
}

/// Issue 12, item 1: a holder that decided from an older read must not give the lease back
/// while a decision it has not seen sits in the journal.
pub async fn a_lease_is_kept_when_the_job_moved_since_the_holder_last_read(j: Arc<dyn Journal>) {
    j.create_job(new_job("deploy-1"), events(1)).await.unwrap();
    j.lease("deploy-1", lease("cli:1", 100, 200, None))
        .await
        .unwrap();
    let decision = Append {
        events: vec![event(2, "{}")],
        ..Append::default()
    };
    j.append("deploy-1", 1, decision).await.unwrap();
    assert!(
        !j.unlease("deploy-1", "cli:1", Some(1)).await.unwrap(),
        "moved: kept"
    );
    assert_eq!(
        j.lease_holder("deploy-1", 150).await.unwrap().as_deref(),
        Some("cli:1")
    );
    assert!(j.unlease("deploy-1", "cli:1", Some(2)).await.unwrap());
    assert_eq!(j.lease_holder("deploy-1", 150).await.unwrap(), None);
    assert!(
        j.unlease("deploy-1", "cli:9", Some(2)).await.unwrap(),
        "not the holder: nothing to keep driving"
    );
}

/// The worker's list: jobs under way or decided, and waiting jobs whose timer is due, oldest
/// first; a cleared timer is not due.
pub async fn timers_and_the_due_list(j: Arc<dyn Journal>) {
    for (id, state) in [
        ("a-1", JobState::Waiting),
        ("b-1", JobState::Waiting),
        ("c-1", JobState::Ready),
        ("d-1", JobState::Ended(JobStatus::Failed)),
    ] {
        let mut row = new_job(id);
        row.status = state;
        j.create_job(row, events(1)).await.unwrap();
    }
    let timer = |at| Append {
        events: vec![event(2, "{}")],
        wake_at: Some(Some(at)),
        ..Append::default()
    };
    j.append("a-1", 1, timer(1_000)).await.unwrap();
    j.append("b-1", 1, timer(5_000)).await.unwrap();
    assert_eq!(j.due(999).await.unwrap(), ["c-1"]);
    assert_eq!(j.due(1_000).await.unwrap(), ["a-1", "c-1"]);
    let cleared = Append {
        events: vec![event(3, "{}")],
        wake_at: Some(None),
        ..Append::default()
    };
    j.append("a-1", 2, cleared).await.unwrap();
    assert_eq!(j.due(10_000).await.unwrap(), ["b-1", "c-1"]);
    // A job created waiting, with its timer set in the same transaction.
    let mut born_waiting = new_job("e-1");
    born_waiting.status = JobState::Waiting;
    born_waiting.created_at = 2;
    born_waiting.wake_at = Some(20_000);
    j.create_job(born_waiting, events(1)).await.unwrap();
    assert_eq!(j.due(19_999).await.unwrap(), ["b-1", "c-1"]);
    assert_eq!(j.due(20_000).await.unwrap(), ["b-1", "c-1", "e-1"]);
}

/// Exclusive waits for everyone, shared only for exclusive; the line is kept in order.
pub async fn exclusive_locks_queue_first_come_first_served_and_shared_ones_overlap(
    j: Arc<dyn Journal>,
) {
    let acq = |job: &'static str, a: LockAsk| {
        let j = j.clone();
        async move {
            j.acquire(job, vec![a], GroupMode::Queue)
                .await
                .unwrap()
                .acquired
        }
    };
    assert_eq!(acq("a", ask("env", true)).await, Acquired::Held);
    assert_eq!(
        acq("b", ask("env", false)).await,
        Acquired::Queued {
            behind: vec!["a".into()]
        }
    );
    assert_eq!(
        acq("c", ask("env", false)).await,
        Acquired::Queued {
            behind: vec!["a".into()]
        }
    );
    assert_eq!(j.release("a").await.unwrap(), ["b", "c"]);
    assert_eq!(acq("b", ask("env", false)).await, Acquired::Held);
    assert_eq!(
        acq("c", ask("env", false)).await,
        Acquired::Held,
        "shared with b"
    );
    assert_eq!(
        acq("d", ask("env", true)).await,
        Acquired::Queued {
            behind: vec!["b".into(), "c".into()]
        }
    );
    let rows = j.locks().await.unwrap();
    assert_eq!(rows.iter().filter(|r| r.held).count(), 2);
    assert_eq!(
        j.acquire("e", vec![], GroupMode::Queue)
            .await
            .unwrap()
            .acquired,
        Acquired::Held,
        "no locks: nothing to wait for"
    );
}

/// A job asking later cannot take a free lock an earlier waiter asked for.
pub async fn a_later_job_cannot_jump_the_line(j: Arc<dyn Journal>) {
    j.acquire("a", vec![ask("x", true)], GroupMode::Queue)
        .await
        .unwrap();
    j.acquire("b", vec![ask("x", true), ask("y", true)], GroupMode::Queue)
        .await
        .unwrap();
    assert_eq!(
        j.acquire("c", vec![ask("y", true)], GroupMode::Queue)
            .await
            .unwrap()
            .acquired,
        Acquired::Queued {
            behind: vec!["b".into()]
        }
    );
}

/// `reject` refuses while the group is busy (and records nothing); `cancel-pending` takes the
/// waiters out of the line and names them.
pub async fn group_modes_reject_and_cancel_pending(j: Arc<dyn Journal>) {
    let g = || vec![ask("group:deploy", true)];
    j.acquire("a", g(), GroupMode::Queue).await.unwrap();
    assert_eq!(
        j.acquire("b", g(), GroupMode::Reject)
            .await
            .unwrap()
            .acquired,
        Acquired::Rejected {
            by: vec!["a".into()]
        }
    );
    assert!(
        j.locks().await.unwrap().iter().all(|r| r.job != "b"),
        "a rejected job left nothing behind"
    );
    j.acquire("c", g(), GroupMode::Queue).await.unwrap();
    let got = j.acquire("d", g(), GroupMode::CancelPending).await.unwrap();
    assert_eq!(
        got,
        Acquisition {
            acquired: Acquired::Queued {
                behind: vec!["a".into()]
            },
            pushed_out: vec!["c".into()]
        }
    );
    assert!(j.locks().await.unwrap().iter().all(|r| r.job != "c"));
}

/// Bodies are streamed in and out byte for byte; a source that is not the size it claimed
/// stores nothing; an annotation is found only under its own job.
pub async fn annotations_keep_their_bytes_and_refuse_a_source_of_the_wrong_size(
    j: Arc<dyn Journal>,
) {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let note = || NewAnnotation {
        at: 5,
        author: "ann".into(),
        kind: "file".into(),
        title: "dump.bin".into(),
    };
    let len = body.len() as u64;
    let id = j
        .annotate(
            "x-1",
            note(),
            Box::new(std::io::Cursor::new(body.clone())),
            len,
        )
        .await
        .unwrap();
    let rows = j.annotations("x-1").await.unwrap();
    assert_eq!((rows[0].title.as_str(), rows[0].size), ("dump.bin", len));
    let out = Arc::new(std::sync::Mutex::new(Vec::new()));
    struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    assert_eq!(
        j.copy_annotation(id, Box::new(Sink(out.clone())))
            .await
            .unwrap(),
        len
    );
    assert_eq!(*out.lock().unwrap(), body);
    assert_eq!(j.annotation("x-1", id).await.unwrap().unwrap().size, len);
    assert_eq!(j.annotation("y-1", id).await.unwrap(), None);
    for claimed in [len + 1, len - 1] {
        assert!(matches!(
            j.annotate(
                "x-1",
                note(),
                Box::new(std::io::Cursor::new(body.clone())),
                claimed
            )
            .await,
            Err(StoreError::Body(_))
        ));
    }
    assert_eq!(j.annotations("x-1").await.unwrap().len(), 1);
}

/// Log lines come back in order, after an id, with their attempt, level and source.
pub async fn logs_continue_after_an_id(j: Arc<dyn Journal>) {
    let line = |m: &str| LogLine {
        level: LogLevel::Warn,
        source: LogSource::Stderr,
        message: m.into(),
    };
    let logs = |attempt, lines| StepLogs {
        step: "build".into(),
        attempt,
        lines,
    };
    j.add_logs("x-1", 5, logs(1, vec![line("one"), line("two")]))
        .await
        .unwrap();
    let all = j.logs("x-1", 0).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].line, line("one"));
    j.add_logs("x-1", 6, logs(2, vec![line("three")]))
        .await
        .unwrap();
    let more = j.logs("x-1", all[1].id).await.unwrap();
    assert_eq!(more.len(), 1);
    assert_eq!(
        (more[0].attempt, more[0].line.message.as_str()),
        (2, "three")
    );
}

/// Ids count per rule, from 1, and concurrent callers never get the same one.
pub async fn job_ids_count_per_rule_and_ids_are_unique(j: Arc<dyn Journal>) {
    assert_eq!(j.next_job_id("deploy").await.unwrap(), "deploy-1");
    assert_eq!(j.next_job_id("deploy").await.unwrap(), "deploy-2");
    assert_eq!(j.next_job_id("cleanup").await.unwrap(), "cleanup-1");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let j = j.clone();
        tasks.push(tokio::spawn(
            async move { j.next_job_id("race").await.unwrap() },
        ));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 16);
}

/// Programs recorded for a step come back for that step only, oldest first.
pub async fn children_are_kept_per_step(j: Arc<dyn Journal>) {
    let child = |step: &str, pid| ChildRow {
        step: step.into(),
        attempt: 1,
        host: "h".into(),
        pid,
        start_ticks: 7,
        program: "kubectl".into(),
        at: 1,
    };
    j.add_child("x-1", child("deploy", 10)).await.unwrap();
    j.add_child("x-1", child("deploy", 11)).await.unwrap();
    j.add_child("x-1", child("other", 12)).await.unwrap();
    let pids: Vec<u32> = j
        .children("x-1", "deploy")
        .await
        .unwrap()
        .iter()
        .map(|c| c.pid)
        .collect();
    assert_eq!(pids, [10, 11]);
    assert!(j.children("y-1", "deploy").await.unwrap().is_empty());
}

/// A worker is known while it keeps saying so (three intervals and a second of grace), and
/// forgotten when it says it stopped.
pub async fn workers_are_known_until_overdue_or_stopped(j: Arc<dyn Journal>) {
    assert!(j.workers(0).await.unwrap().is_empty());
    j.worker_seen("w:1", 10_000, 1_000).await.unwrap();
    j.worker_seen("w:2", 10_000, 60_000).await.unwrap();
    assert_eq!(j.workers(14_000).await.unwrap(), ["w:1", "w:2"]);
    assert_eq!(j.workers(14_001).await.unwrap(), ["w:2"], "w:1 is overdue");
    j.worker_seen("w:1", 14_500, 1_000).await.unwrap();
    assert_eq!(j.workers(15_000).await.unwrap(), ["w:1", "w:2"]);
    j.worker_seen("w:2", 15_000, 0).await.unwrap();
    assert_eq!(j.workers(15_000).await.unwrap(), ["w:1"], "w:2 stopped");
}

/// Jobs are listed newest first, filtered by status and rule, a page at a time, and counted
/// by status.
pub async fn jobs_are_listed_by_status_and_rule_a_page_at_a_time(j: Arc<dyn Journal>) {
    for (i, (id, rule, status)) in [
        ("deploy-1", "deploy", JobState::Waiting),
        ("deploy-2", "deploy", JobState::Ended(JobStatus::Succeeded)),
        ("test-1", "test", JobState::Waiting),
        ("deploy-3", "deploy", JobState::Waiting),
    ]
    .into_iter()
    .enumerate()
    {
        let mut job = new_job(id);
        job.rule = rule.into();
        job.status = status;
        job.created_at = i as u64 + 1;
        j.create_job(job, events(1)).await.unwrap();
    }
    let ids = |rows: Vec<JobRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(j.jobs(&JobQuery::newest(10)).await.unwrap()),
        ["deploy-3", "test-1", "deploy-2", "deploy-1"]
    );
    let waiting_deploys = JobQuery {
        status: Some(JobState::Waiting),
        rule: Some("deploy".into()),
        offset: 0,
        limit: 10,
    };
    assert_eq!(
        ids(j.jobs(&waiting_deploys).await.unwrap()),
        ["deploy-3", "deploy-1"]
    );
    let second_page = JobQuery {
        offset: 1,
        limit: 1,
        ..waiting_deploys
    };
    assert_eq!(ids(j.jobs(&second_page).await.unwrap()), ["deploy-1"]);
    assert_eq!(
        j.job_counts().await.unwrap(),
        [
            (JobState::Ended(JobStatus::Succeeded), 1),
            (JobState::Waiting, 3)
        ]
    );
}

/// A token is found by the hash of its secret until it is revoked; a hash is stored once;
/// listing shows revoked tokens too.
pub async fn tokens_are_found_by_hash_until_revoked(j: Arc<dyn Journal>) {
    let token = |id: &str, user: &str| TokenRow {
        id: id.into(),
        user: user.into(),
        groups: vec!["ops".into(), "qa".into()],
        created_at: 5,
        created_by: "root".into(),
        revoked_at: None,
    };
    j.add_token("h1", token("tok_1", "ann")).await.unwrap();
    j.add_token("h2", token("tok_2", "bob")).await.unwrap();
    assert!(
        j.add_token("h1", token("tok_3", "eve")).await.is_err(),
        "one secret, one token"
    );
    assert_eq!(
        j.token_by_hash("h1").await.unwrap(),
        Some(token("tok_1", "ann"))
    );
    assert_eq!(j.token_by_hash("nope").await.unwrap(), None);
    assert!(j.revoke_token("tok_1", 9).await.unwrap());
    assert!(!j.revoke_token("tok_1", 10).await.unwrap(), "revoked once");
    assert!(!j.revoke_token("tok_9", 10).await.unwrap());
    assert_eq!(j.token_by_hash("h1").await.unwrap(), None);
    let all = j.tokens().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].revoked_at, Some(9));
    assert_eq!(all[1], token("tok_2", "bob"));
}

/// A job created with a lease is held by its creator from its first row: a worker looking at
/// it in between cannot take it.
pub async fn a_job_created_under_a_lease_is_held_by_its_creator(j: Arc<dyn Journal>) {
    let mut job = new_job("deploy-1");
    job.lease = Some(("a:1:1".into(), 1_000));
    j.create_job(job, events(1)).await.unwrap();
    assert_eq!(
        j.lease_holder("deploy-1", 500).await.unwrap().as_deref(),
        Some("a:1:1")
    );
    assert_eq!(
        j.lease("deploy-1", lease("w:2:2", 500, 1_500, None))
            .await
            .unwrap(),
        Lease::HeldBy("a:1:1".into())
    );
}

/// A user has at most one password hash; setting it again replaces it.
pub async fn passwords_are_set_replaced_and_removed(j: Arc<dyn Journal>) {
    assert_eq!(j.password("ann").await.unwrap(), None);
    j.set_password("ann", "$argon2id$one", 1).await.unwrap();
    j.set_password("bob", "$argon2id$bob", 1).await.unwrap();
    j.set_password("ann", "$argon2id$two", 2).await.unwrap();
    assert_eq!(
        j.password("ann").await.unwrap().as_deref(),
        Some("$argon2id$two")
    );
    assert!(j.remove_password("ann").await.unwrap());
    assert!(!j.remove_password("ann").await.unwrap());
    assert_eq!(j.password("ann").await.unwrap(), None);
    assert_eq!(
        j.password("bob").await.unwrap().as_deref(),
        Some("$argon2id$bob")
    );
}

/// Messages land with the events that cause them (and not when the append is refused); a
/// claimed message is not claimed again until its claim runs out or it failed; a delivered or
/// given-up one never again; a failed one comes back when its retry is due.
pub async fn messages_are_written_with_their_events_and_claimed_once_until_delivered(
    j: Arc<dyn Journal>,
) {
    let message = |sink: &str| NewMessage {
        sink: sink.into(),
        body: format!("{{\"to\":\"{sink}\"}}"),
    };
    let mut job = new_job("deploy-1");
    job.outbox = vec![message("first")];
    j.create_job(job, events(1)).await.unwrap();
    let stale = Append {
        events: events(1),
        outbox: vec![message("stale")],
        ..Append::default()
    };
    assert!(j.append("deploy-1", 0, stale).await.is_err());
    let gate = Append {
        events: events(1),
        outbox: vec![message("slack"), message("hook")],
        ..Append::default()
    };
    j.append("deploy-1", 1, gate).await.unwrap();
    let all = j.messages("deploy-1").await.unwrap();
    assert_eq!(
        all.iter().map(|m| m.sink.as_str()).collect::<Vec<_>>(),
        ["first", "slack", "hook"],
        "written with their events, in order; none for the refused append"
    );
    assert_eq!(j.outbox_backlog().await.unwrap(), 3);

    let now = 1_000_000;
    let a = j
        .claim_messages(now, "a", now + 100, 2, false)
        .await
        .unwrap();
    assert_eq!(a.len(), 2);
    let b = j
        .claim_messages(now, "b", now + 100, 10, false)
        .await
        .unwrap();
    assert_eq!(b.len(), 1, "what a holds is not claimed again");
    assert_eq!(b[0].sink, "hook");
    j.message_delivered(a[0].id, now + 1).await.unwrap();
    j.message_failed(a[1].id, "502 Bad Gateway", Some(now + 50))
        .await
        .unwrap();
    j.message_failed(b[0].id, "410 Gone", None).await.unwrap();
    assert!(
        j.claim_messages(now + 10, "c", now + 200, 10, false)
            .await
            .unwrap()
            .is_empty(),
        "the failed one waits for its retry"
    );
    let again = j
        .claim_messages(now + 50, "c", now + 200, 10, false)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].sink, "slack");
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].last_error.as_deref(), Some("502 Bad Gateway"));
    // c dies holding it: after its claim runs out, d gets it.
    assert!(
        j.claim_messages(now + 199, "d", now + 300, 10, false)
            .await
            .unwrap()
            .is_empty()
    );
    let d = j
        .claim_messages(now + 200, "d", now + 300, 10, false)
        .await
        .unwrap();
    assert_eq!(d.len(), 1);
    j.message_delivered(d[0].id, now + 201).await.unwrap();
    assert_eq!(j.outbox_backlog().await.unwrap(), 0);
    let all = j.messages("deploy-1").await.unwrap();
    assert_eq!(all[0].delivered_at, Some(now + 1));
    assert!(all[2].gave_up);
    assert_eq!(all[1].attempts, 2);
}

/// A message waits while an earlier one of the same job to the same sink is undelivered
/// (failed and waiting for its retry, or claimed); other jobs and sinks go on.
pub async fn messages_of_one_job_to_one_sink_go_in_order(j: Arc<dyn Journal>) {
    let to = |sink: &str, n: u32| NewMessage {
        sink: sink.into(),
        body: format!("{{\"n\":{n}}}"),
    };
    for (id, outbox) in [
        (
            "deploy-1",
            vec![to("events", 1), to("events", 2), to("chat", 3)],
        ),
        ("deploy-2", vec![to("events", 4)]),
    ] {
        let mut job = new_job(id);
        job.outbox = outbox;
        j.create_job(job, events(1)).await.unwrap();
    }
    let body = |rows: &[MessageRow]| rows.iter().map(|m| m.body.clone()).collect::<Vec<_>>();
    let now = 1_000_000;
    let first = j
        .claim_messages(now, "a", now + 100, 10, false)
        .await
        .unwrap();
    assert_eq!(body(&first), [r#"{"n":1}"#, r#"{"n":3}"#, r#"{"n":4}"#]);
    j.message_failed(first[0].id, "503", Some(now + 50))
        .await
        .unwrap();
    for m in &first[1..] {
        j.message_delivered(m.id, now).await.unwrap();
    }
    assert!(
        j.claim_messages(now + 10, "a", now + 100, 10, false)
            .await
            .unwrap()
            .is_empty(),
        "2 waits for 1, which waits for its retry"
    );
    let retry = j
        .claim_messages(now + 50, "a", now + 150, 10, false)
        .await
        .unwrap();
    assert_eq!(body(&retry), [r#"{"n":1}"#]);
    j.message_delivered(retry[0].id, now + 51).await.unwrap();
    let next = j
        .claim_messages(now + 51, "a", now + 150, 10, false)
        .await
        .unwrap();
    assert_eq!(body(&next), [r#"{"n":2}"#]);
}

/// A trigger's key starts one job: a second job with it is refused and names the first; the
/// jobs a job's end started are listed; messages for sluice itself are claimed apart.
pub async fn a_trigger_key_starts_one_job(j: Arc<dyn Journal>) {
    j.create_job(new_job("qa-1"), events(1)).await.unwrap();
    let mut first = new_job("prod-1");
    first.trigger = Some(("qa-1:prod".into(), "qa-1".into()));
    first.outbox = vec![NewMessage {
        sink: "sluice:job-finished".into(),
        body: "prod-1".into(),
    }];
    j.create_job(first, events(1)).await.unwrap();
    let mut again = new_job("prod-2");
    again.trigger = Some(("qa-1:prod".into(), "qa-1".into()));
    match j.create_job(again, events(1)).await {
        Err(StoreError::Triggered { key, job }) => {
            assert_eq!((key.as_str(), job.as_str()), ("qa-1:prod", "prod-1"))
        }
        other => panic!("a second start was not refused: {other:?}"),
    }
    assert_eq!(
        j.job("prod-2").await.unwrap(),
        None,
        "nothing of it was written"
    );
    assert_eq!(j.started_by_job("qa-1").await.unwrap(), ["prod-1"]);
    assert_eq!(
        j.triggered("qa-1:prod").await.unwrap().as_deref(),
        Some("prod-1")
    );
    assert_eq!(j.triggered("qa-2:prod").await.unwrap(), None);
    for (key, job) in [
        ("cron:nightly@2026-12-03T03:00:00Z", "nightly-1"),
        ("cron:nightly@2026-12-04T03:00:00Z", "nightly-2"),
        ("cron:nightly-eu@2026-12-05T03:00:00Z", "nightly-eu-1"),
    ] {
        let mut n = new_job(job);
        n.trigger = Some((key.into(), String::new()));
        j.create_job(n, events(1)).await.unwrap();
    }
    assert_eq!(
        j.last_trigger("cron:nightly@").await.unwrap().as_deref(),
        Some("cron:nightly@2026-12-04T03:00:00Z"),
        "the latest of its own keys, not another prefix's"
    );
    assert_eq!(j.last_trigger("cron:weekly@").await.unwrap(), None);
    let now = 1_000_000;
    assert!(
        j.claim_messages(now, "a", now + 10, 10, false)
            .await
            .unwrap()
            .is_empty()
    );
    let internal = j
        .claim_messages(now, "a", now + 10, 10, true)
        .await
        .unwrap();
    assert_eq!(internal.len(), 1);
    assert_eq!(internal[0].sink, "sluice:job-finished");
}

/// A room follows jobs from where it was told; a follow moves only forward; deliveries are
/// seen once.
pub async fn chat_rooms_follow_jobs_and_deliveries_are_seen_once(j: Arc<dyn Journal>) {
    j.chat_follow("slack", "C1", "web-1", 0).await.unwrap();
    j.chat_follow("slack", "C1", "web-2", 0).await.unwrap();
    j.chat_follow("matrix", "!r:hs", "web-1", 0).await.unwrap();
    j.chat_follow("slack", "C1", "web-1", 4).await.unwrap();
    // Following again (a second `follow`) does not go back.
    j.chat_follow("slack", "C1", "web-1", 0).await.unwrap();
    assert_eq!(
        j.chat_following("slack", "C1").await.unwrap(),
        [("web-1".to_string(), 4), ("web-2".to_string(), 0)]
    );
    assert_eq!(
        j.chat_follows("matrix").await.unwrap(),
        [("!r:hs".to_string(), "web-1".to_string(), 0)]
    );
    assert!(j.chat_unfollow("slack", "C1", "web-2").await.unwrap());
    assert!(!j.chat_unfollow("slack", "C1", "web-2").await.unwrap());
    assert_eq!(j.chat_follows("slack").await.unwrap().len(), 1);
    assert!(j.chat_seen("slack:Ev1", 1).await.unwrap());
    assert!(!j.chat_seen("slack:Ev1", 2).await.unwrap());
    assert!(j.chat_seen("slack:Ev2", 2).await.unwrap());
    j.chat_unsee("slack:Ev1").await.unwrap();
    assert!(
        j.chat_seen("slack:Ev1", 3).await.unwrap(),
        "forgotten, seen anew"
    );
}
