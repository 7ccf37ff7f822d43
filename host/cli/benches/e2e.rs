//! End-to-end numbers (`cargo bench -p sluice --bench e2e`): durable step overhead against an
//! fsync'd SQLite commit on the same disk, bytes and worker memory for 100,000 hibernated jobs,
//! decision-to-next-op latency, and `sluice op run` start-up with a warm compile cache.
//! Prints a markdown table; docs/benchmarks.md records a run.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_engine::{DecisionKind, DecisionRequest, Event, Job, Millis};
use sluice_runner::{Observer, Runner};
use sluice_runtime::{Runtime, RuntimeConfig};
use sluice_store::{Journal, SqliteJournal};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

fn sluice(home: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let o = Command::new(BIN)
        .args(args)
        .env("SLUICE_HOME", home)
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(
        o.status.code().is_some_and(|c| c == 0 || c == 3),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    took
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn rule(dir: &Path, name: &str, steps: usize, gate: bool) -> String {
    let mut y = format!(
        "rule: {name}\nops:\n  echo: {{ path: {:?} }}\nphases:\n  run:\n",
        sluice_std_ops::test_ops::ECHO
    );
    if gate {
        y.push_str("    - { id: gate, op: approve, with: { allow-self-approval: true } }\n");
    }
    for i in 0..steps {
        y.push_str(&format!(
            "    - {{ id: s{i}, op: echo, with: {{ n: {i} }} }}\n"
        ));
    }
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(&p, y).unwrap();
    p.display().to_string()
}

/// When each step started, as the runner reports it.
#[derive(Default)]
struct Clock(Mutex<Vec<(String, String, Instant)>>);

impl Observer for Clock {
    fn event(&self, job: &Job, e: &Event, _: Millis) {
        if let Event::StepStarted { step, .. } = e {
            self.0
                .lock()
                .unwrap()
                .push((job.id.clone(), step.clone(), Instant::now()));
        }
    }
    fn logs(&self, _: &str, _: &str, _: &[sluice_model::LogLine]) {}
}

fn peak_rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn worker_rss(home: &Path) -> u64 {
    let child = Command::new(BIN)
        .args(["worker", "--interval-ms", "600000"])
        .env("SLUICE_HOME", home)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The first pass over the journal happens at once; let it finish, then read the peak.
    std::thread::sleep(Duration::from_secs(3));
    let kib = peak_rss_kib(child.id());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait_with_output();
    kib
}

fn db_bytes(home: &Path) -> u64 {
    ["sluice.db", "sluice.db-wal"]
        .iter()
        .map(|f| {
            std::fs::metadata(home.join(f))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum()
}

fn main() {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();

    // (d) `sluice op run` start-up, warm compile cache.
    sluice(h, &["op", "run", "log", "--input", r#"{"message":"warm"}"#]);
    let mut starts: Vec<f64> = (0..20)
        .map(|_| {
            sluice(h, &["op", "run", "log", "--input", r#"{"message":"x"}"#]).as_secs_f64() * 1e3
        })
        .collect();
    let (min, med, max) = (
        pct(&mut starts, 0.0),
        pct(&mut starts, 0.5),
        pct(&mut starts, 1.0),
    );
    rows.push((
        "`sluice op run` start-up, warm compile cache (20 runs)".into(),
        format!("min {min:.1} ms, median {med:.1} ms, max {max:.1} ms"),
        "-".into(),
    ));

    // (a) durable step overhead: a 40-step rule against a 1-step rule, per extra step.
    let r40 = rule(h, "forty", 40, false);
    let r1 = rule(h, "one", 1, false);
    sluice(h, &["run", &r1]);
    let mut per_step = Vec::new();
    for _ in 0..5 {
        let t40 = sluice(h, &["run", &r40]).as_secs_f64();
        let t1 = sluice(h, &["run", &r1]).as_secs_f64();
        per_step.push((t40 - t1) / 39.0 * 1e3);
    }
    let step_ms = pct(&mut per_step, 0.5);
    // The floor: one fsync'd commit (WAL, synchronous=FULL) on the same disk.
    let db = rusqlite::Connection::open(h.join("floor.db")).unwrap();
    db.pragma_update(None, "journal_mode", "WAL").unwrap();
    db.pragma_update(None, "synchronous", "FULL").unwrap();
    db.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        .unwrap();
    let t = Instant::now();
    for i in 0..200 {
        db.execute("INSERT INTO t (body) VALUES (?1)", [format!("event {i}")])
            .unwrap();
    }
    let commit_ms = t.elapsed().as_secs_f64() * 1e3 / 200.0;
    rows.push((
        "per-step overhead, 40-step rule through `sluice run` (median of 5)".into(),
        format!("{step_ms:.2} ms per step; one fsync'd SQLite commit {commit_ms:.2} ms"),
        format!("{:.1}x the commit (target <= 2x)", step_ms / commit_ms),
    ));

    // (c) decision -> next op started, in process, 1,000 decisions.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let gated = rule(h, "gated", 1, true);
    let text = std::fs::read_to_string(&gated).unwrap();
    let std_ops: Vec<&str> = sluice_std_ops::STD_OPS.iter().map(|o| o.name).collect();
    let parsed = sluice_rule::parse(
        &text,
        &sluice_rule::ParseOptions {
            file: "gated.yaml",
            std_ops: &std_ops,
        },
    )
    .unwrap();
    let clock = Arc::new(Clock::default());
    let runtime = Arc::new(Runtime::new(RuntimeConfig::new(h)).unwrap());
    let journal: Arc<dyn Journal> = Arc::new(SqliteJournal::open(&h.join("sluice.db")).unwrap());
    let runner = Runner::new(runtime, journal, clock.clone());
    let n = 1000;
    let ids: Vec<String> = rt.block_on(async {
        let mut ids = Vec::new();
        for _ in 0..n {
            let (id, _) = runner
                .start(
                    parsed.clone(),
                    h,
                    &[],
                    sluice_model::Actor::system("bench-starter"),
                )
                .await
                .unwrap();
            ids.push(id);
        }
        ids
    });
    let mut lat = Vec::new();
    rt.block_on(async {
        for id in &ids {
            let req = DecisionRequest {
                step: None,
                kind: DecisionKind::Approve,
                actor: sluice_model::Actor::system("bench"),
                comment: "",
                inputs: Default::default(),
            };
            let t = Instant::now();
            runner.decide(id, &req, false).await.unwrap();
            let started = clock
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|(j, s, _)| j == id && s == "s0")
                .map(|(_, _, at)| *at);
            lat.push((started.unwrap() - t).as_secs_f64() * 1e3);
        }
    });
    let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    rows.push((
        format!("decision -> next op started ({n} decisions, in process)"),
        format!("p50 {p50:.2} ms, p99 {p99:.2} ms"),
        format!(
            "target p50 <= 5 ms: {}",
            if p50 <= 5.0 { "met" } else { "missed" }
        ),
    ));

    // (b) 100,000 jobs waiting at an approval: bytes each, and worker memory.
    let empty = tempfile::tempdir().unwrap();
    sluice(empty.path(), &["jobs"]);
    let rss_empty = worker_rss(empty.path());
    let wait_home = tempfile::tempdir().unwrap();
    let w = wait_home.path();
    sluice(w, &["run", &rule(w, "waits", 1, true)]);
    {
        let c = rusqlite::Connection::open(w.join("sluice.db")).unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")
            .unwrap();
    }
    let before = db_bytes(w);
    let copies = 100_000;
    {
        // Copies of the one hibernated job, written in one transaction (the bench measures
        // their size, not how fast jobs start).
        let c = rusqlite::Connection::open(w.join("sluice.db")).unwrap();
        c.execute_batch("BEGIN").unwrap();
        for i in 2..=copies + 1 {
            let id = format!("waits-{i}");
            c.execute(
                "INSERT INTO jobs (id, rule, status, message, started_by, created_at, updated_at, last_seq, wake_at)
                 SELECT ?1, rule, status, message, started_by, created_at, updated_at, last_seq, wake_at FROM jobs WHERE id = 'waits-1'",
                [&id],
            )
            .unwrap();
            c.execute(
                "INSERT INTO events (job_id, seq, at, body)
                 SELECT ?1, seq, at, replace(body, 'waits-1', ?1) FROM events WHERE job_id = 'waits-1'",
                [&id],
            )
            .unwrap();
        }
        c.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    let per_job = (db_bytes(w) - before) as f64 / copies as f64;
    rows.push((
        format!("store bytes per job waiting at an approval ({copies} jobs)"),
        format!("{per_job:.0} bytes"),
        format!(
            "target <= 2048: {}",
            if per_job <= 2048.0 { "met" } else { "missed" }
        ),
    ));
    let rss_full = worker_rss(w);
    rows.push((
        "`sluice worker` peak RSS, 0 vs 100,000 waiting jobs".into(),
        format!("{rss_empty} KiB vs {rss_full} KiB"),
        format!(
            "{:+.1}% (target: flat)",
            (rss_full as f64 / rss_empty as f64 - 1.0) * 100.0
        ),
    ));

    println!("| what | measured | against target |\n|---|---|---|");
    for (a, b, c) in rows {
        println!("| {a} | {b} | {c} |");
    }
}
