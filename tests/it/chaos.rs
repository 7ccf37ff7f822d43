//! Issue 12, "keep it true": drivers and deciders SIGKILLed at random points, then recovery,
//! then the journal is checked: every job ends, no decision a process reported is lost, no
//! non-idempotent step ran twice without a retry decision, and the database is intact.
//!
//! Seeded: set `SLUICE_CHAOS_SEED` to replay a run; the seed is printed when the test fails.
//! Bounded: 20 jobs and about 60 kills.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::jobs::{err, json, out, sluice, spawn, write_rule};

const RULE: &str = r#"
rule: chaos
OPS
phases:
  pre:
    - { id: prepare, op: echo, with: { n: 1 } }
    - { id: deploy, op: undo, with: { rev: 1 } }
  run:
    - { id: gate, op: approve, with: { quorum: 2 } }
    - { id: promote, op: undo, with: { rev: 2 } }
  post: [{ id: tell, op: echo, with: { status: "${{ job.status }}" } }]
"#;

/// Steps whose op is not idempotent: each attempt beyond the first needs a retry decision.
const NOT_IDEMPOTENT: &[&str] = &["deploy", "promote"];

const JOBS: usize = 20;

/// xorshift64*: small, seeded, good enough to pick kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Prints the seed when the test fails, so the run can be replayed.
struct SeedNote(u64);

impl Drop for SeedNote {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("chaos test failed with SLUICE_CHAOS_SEED={}", self.0);
        }
    }
}

/// A decider that ran: who, on which job, and how it ended (`None` when killed).
struct Decider {
    job: String,
    user: String,
    code: Option<i32>,
    stderr: String,
}

#[test]
fn issue_12_chaos_kills_never_lose_a_decision_or_run_a_step_twice() {
    let seed = std::env::var("SLUICE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let _note = SeedNote(seed);
    let mut rng = Rng(seed);
    let home = crate::home();
    let rule = write_rule(home.path(), "chaos.yaml", RULE);
    let rule = rule.to_str().unwrap();
    // Compile the ops once, so kills land in sluice's own work, not in the compiler.
    assert!(sluice(home.path(), &["validate", rule]).status.success());
    let started = Instant::now();
    let mut kills = 0;

    // Drivers: every job's `run` is killed somewhere between its start and its gate.
    for _ in 0..JOBS {
        let mut run = spawn(home.path(), &["run", rule]);
        std::thread::sleep(Duration::from_millis(rng.below(60)));
        if run.try_wait().unwrap().is_none() {
            run.kill().unwrap();
            kills += 1;
        }
        run.wait().unwrap();
    }

    // Deciders (approvals, a retry at an interrupted trap, a worker), three at a time, each
    // killed at a random point or left to finish.
    let mut deciders: Vec<Decider> = Vec::new();
    while kills < 60 {
        let mut batch = Vec::new();
        for _ in 0..3 {
            let job = format!("chaos-{}", 1 + rng.below(JOBS as u64));
            let user = format!("approver-{}", rng.below(4));
            let (args, user): (Vec<String>, String) = match rng.below(10) {
                0 => (vec!["worker".into(), "--once".into()], String::new()),
                1 => (vec!["retry".into(), job.clone()], "ops".into()),
                _ => (
                    vec!["approve".into(), job.clone(), "--as".into(), user.clone()],
                    user,
                ),
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let kill_after = (rng.below(3) > 0).then(|| rng.below(80));
            batch.push((spawn(home.path(), &args), job, user, kill_after));
        }
        let t0 = Instant::now();
        for (mut child, job, user, kill_after) in batch {
            if let Some(ms) = kill_after {
                let at = t0 + Duration::from_millis(ms);
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                if child.try_wait().unwrap().is_none() {
                    child.kill().unwrap();
                    kills += 1;
                }
            }
            let o = child.wait_with_output().unwrap();
            let code = o.status.code();
            assert!(
                !matches!(code, Some(70 | 101)),
                "a process failed on its own (seed {seed}): {}",
                err(&o)
            );
            if !user.is_empty() {
                deciders.push(Decider {
                    job,
                    user,
                    code,
                    stderr: err(&o),
                });
            }
        }
    }

    // What every job says now, read straight from the journal.
    let history = |job: &str| -> Value { json(&sluice(home.path(), &["show", job, "--json"])) };
    let ids: Vec<String> = json(&sluice(home.path(), &["jobs", "--json", "--limit", "1000"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();

    // No decision lost: every approval a decider reported as landed (exit 0 or 3) is there.
    for d in deciders.iter().filter(|d| matches!(d.code, Some(0 | 3))) {
        if !ids.contains(&d.job) || d.user == "ops" {
            continue;
        }
        let v = history(&d.job);
        let found = v["history"].as_array().unwrap().iter().any(|h| {
            h["event"]["type"] == "decided" && h["event"]["by"]["name"] == d.user.as_str()
        });
        assert!(
            found,
            "seed {seed}: {}'s approval of {} was reported landed but is not in the journal ({})",
            d.user, d.job, d.stderr
        );
    }

    // Recovery: the worker carries every job on; a person approves open approvals and retries
    // interrupted steps, until every job has ended.
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = sluice(home.path(), &["worker", "--once"]);
        assert!(o.status.success(), "seed {seed}: {}", err(&o));
        let mut open = 0;
        for id in &ids {
            let v = history(id);
            if v["waiting"].as_array().unwrap().is_empty() {
                if v["history"].as_array().unwrap().last().unwrap()["event"]["type"] != "finished" {
                    open += 1;
                }
                continue;
            }
            open += 1;
            let gate = &v["waiting"][0];
            let o = if gate["kind"] == "approval" {
                n += 1;
                sluice(home.path(), &["approve", id, "--as", &format!("final-{n}")])
            } else {
                sluice(home.path(), &["retry", id, "--as", "ops"])
            };
            assert!(
                matches!(o.status.code(), Some(0 | 3)),
                "seed {seed}: deciding {id}: {}{}",
                out(&o),
                err(&o)
            );
        }
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: {open} jobs never ended"
        );
    }

    for id in &ids {
        let v = history(id);
        assert_eq!(v["status"], "succeeded", "seed {seed}: {id}: {v}");
        let events = v["history"].as_array().unwrap();
        for step in NOT_IDEMPOTENT {
            let starts = events
                .iter()
                .filter(|h| h["event"]["type"] == "step-started" && h["event"]["step"] == *step)
                .count();
            let retries = events
                .iter()
                .filter(|h| {
                    h["event"]["type"] == "decided"
                        && h["event"]["step"] == *step
                        && h["event"]["kind"] == "retry"
                })
                .count();
            assert!(
                starts <= 1 + retries,
                "seed {seed}: {id}: `{step}` started {starts} times with {retries} retry decisions"
            );
        }
        // Each gate closed on exactly its quorum of distinct approvers.
        let approvers: BTreeMap<&str, usize> = events
            .iter()
            .filter(|h| h["event"]["type"] == "decided" && h["event"]["kind"] == "approve")
            .fold(BTreeMap::new(), |mut m, h| {
                *m.entry(h["event"]["by"]["name"].as_str().unwrap())
                    .or_default() += 1;
                m
            });
        assert!(
            approvers.len() == 2 && approvers.values().all(|n| *n == 1),
            "seed {seed}: {id}: approvals {approvers:?}"
        );
    }

    if !crate::on_postgres() {
        let db = rusqlite::Connection::open(home.path().join("sluice.db")).unwrap();
        let check: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "seed {seed}");
    }
    eprintln!(
        "chaos: seed {seed}, {} jobs, {kills} kills, {} deciders, {:.1} s",
        ids.len(),
        deciders.len(),
        started.elapsed().as_secs_f64()
    );
}
