//! Several hosts on one PostgreSQL (`cargo bench -p sluice --bench scale_out`; not run by CI).
//!
//! 1. Drain: 2,000 jobs (`SLUICE_SCALE_JOBS`) of a 5-step rule of trivial ops wait in line for
//!    a lock a blocker holds; the blocker is approved and N = 1, 2, 4 `sluice server`
//!    processes on one PostgreSQL (fsync on, loopback) drain them; the same with one server on
//!    SQLite. Jobs per second, and per CPU-second of every process involved (servers and
//!    PostgreSQL), which is what a 2-core machine can compare.
//! 2. Decision -> next step across hosts: 200 jobs wait at an approval; each is approved with
//!    `sluice approve --detach` (recorded, left to the servers); the time from the `decided`
//!    event to the next `step-started`, written by whichever of two servers took the job.
//! 3. 100,000 jobs waiting at a gate: one real job copied 100,000 times in SQL; rows and bytes
//!    (tables and indexes) per waiting job.
//!
//! Prints markdown tables; docs/benchmarks.md records a run.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

const WORK: &str = "rule: work\nlocks: [{ name: pool, mode: shared }]\nphases:\n  run:\n    - { id: s1, op: log, with: { message: one } }\n    - { id: s2, op: log, with: { message: two } }\n    - { id: s3, op: log, with: { message: three } }\n    - { id: s4, op: log, with: { message: four } }\n    - { id: s5, op: log, with: { message: five } }\n";
const BLOCKER: &str = "rule: blocker\nlocks: [{ name: pool, mode: exclusive }]\nphases:\n  run:\n    - { id: hold, op: approve, with: { allow-self-approval: true } }\n";
const GATED: &str = "rule: gated\nphases:\n  run:\n    - { id: ok, op: approve, with: { allow-self-approval: true } }\n    - { id: next, op: log, with: { message: approved } }\n";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// user + system CPU seconds of process `pid` and its children that were waited for.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12, 13, 14]
        .iter()
        .filter_map(|i| f.get(*i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    ticks as f64 / 100.0
}

/// Processes whose command line mentions `needle` (the PostgreSQL cluster's directory: the
/// postmaster; its backends are its children, counted through the postmaster's parent link).
fn postgres_pids(cluster: &sluice_pgtest::Cluster) -> Vec<u32> {
    let dir = cluster.dir.display().to_string();
    let mut master = vec![];
    let mut all = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok());
        if String::from_utf8_lossy(&cmd).contains(&dir) && cmd.starts_with(b"/") {
            master.push(pid);
        }
        all.push((pid, ppid));
    }
    let mut out = master.clone();
    for (pid, ppid) in all {
        if ppid.is_some_and(|p| master.contains(&p)) {
            out.push(pid);
        }
    }
    out
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server(home: &Path, rules: &Path, node: &str, db: Option<&str>) -> Server {
    let mut c = Command::new(BIN);
    c.args([
        "server",
        "--listen",
        "127.0.0.1:0",
        "--worker-interval-ms",
        "200",
        "--rules",
    ])
    .arg(rules)
    .env("SLUICE_HOME", home)
    .env("SLUICE_NODE", node)
    .env("SLUICE_LOG", "error")
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(db) = db {
        c.env("SLUICE_DATABASE_URL", db);
    }
    let mut child = c.spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("sluice server listening on ")
        .unwrap()
        .to_string();
    Server { child, url }
}

fn cli(home: &Path, db: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("SLUICE_HOME", home)
        .env("SLUICE_USER", "load");
    match db {
        Some(db) => c.env("SLUICE_DATABASE_URL", db),
        None => c.env_remove("SLUICE_DATABASE_URL"),
    };
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn client() -> Client {
    Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Starts `n` jobs of `rule` over the servers' API, 8 at a time; returns their ids.
fn start_jobs(servers: &[Server], token: &str, rule: &str, n: usize) -> Vec<String> {
    let ids = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let client = client();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let url = &servers[i % servers.len()].url;
                    let r = client
                        .post(format!("{url}/api/v1/jobs"))
                        .bearer_auth(token)
                        .json(&json!({ "rule": rule }))
                        .send()
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 201);
                    let v: Value = r.json().unwrap();
                    ids.lock()
                        .unwrap()
                        .push(v["id"].as_str().unwrap().to_string());
                }
            });
        }
    });
    ids.into_inner().unwrap()
}

/// How many jobs ended `succeeded`, read straight from the journal.
fn succeeded(home: &Path, cluster: &sluice_pgtest::Cluster, db: Option<&str>) -> usize {
    match db {
        Some(url) => cluster
            .psql(
                url.rsplit('/').next().unwrap(),
                "SELECT COUNT(*) FROM jobs WHERE status = 'succeeded'",
            )
            .unwrap()
            .parse()
            .unwrap(),
        None => {
            let c = rusqlite::Connection::open_with_flags(
                home.join("sluice.db"),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            c.query_row(
                "SELECT COUNT(*) FROM jobs WHERE status = 'succeeded'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap() as usize
        }
    }
}

struct Drained {
    what: String,
    secs: f64,
    cpu: f64,
}

fn drain(cluster: &sluice_pgtest::Cluster, hosts: usize, postgres: bool, jobs: usize) -> Drained {
    let home = tempfile::tempdir().unwrap();
    let rules = home.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("work.yaml"), WORK).unwrap();
    std::fs::write(rules.join("blocker.yaml"), BLOCKER).unwrap();
    let db = postgres.then(|| cluster.database(&format!("drain{hosts}")));
    let token = String::from_utf8(
        cli(
            home.path(),
            db.as_deref(),
            &["token", "create", "--user", "load"],
        )
        .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let servers: Vec<Server> = (0..hosts)
        .map(|i| server(home.path(), &rules, &format!("node-{i}"), db.as_deref()))
        .collect();
    let blocker = start_jobs(&servers[..1], &token, "blocker", 1).remove(0);
    let t = Instant::now();
    start_jobs(&servers, &token, "work", jobs);
    eprintln!(
        "{jobs} jobs queued behind {blocker} in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let pg = if postgres {
        postgres_pids(cluster)
    } else {
        vec![]
    };
    let cpu = |servers: &[Server]| -> f64 {
        servers.iter().map(|s| cpu_secs(s.child.id())).sum::<f64>()
            + pg.iter().map(|p| cpu_secs(*p)).sum::<f64>()
    };
    let cpu0 = cpu(&servers);
    let t0 = Instant::now();
    let r = client()
        .post(format!(
            "{}/api/v1/jobs/{blocker}/decisions",
            servers[0].url
        ))
        .bearer_auth(&token)
        .json(&json!({ "decision": "approve" }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "{}", r.text().unwrap());
    while succeeded(home.path(), cluster, db.as_deref()) < jobs + 1 {
        assert!(t0.elapsed() < Duration::from_secs(1800), "did not drain");
        std::thread::sleep(Duration::from_millis(100));
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu(&servers) - cpu0;
    Drained {
        what: format!(
            "{hosts} server{} on {}",
            if hosts > 1 { "s" } else { "" },
            if postgres { "PostgreSQL" } else { "SQLite" }
        ),
        secs,
        cpu,
    }
}

/// Decision (by `sluice approve --detach`) -> next step started by whichever server took it.
fn decision_latency(cluster: &sluice_pgtest::Cluster, n: usize) -> (f64, f64, usize) {
    let home = tempfile::tempdir().unwrap();
    let rules = home.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("gated.yaml"), GATED).unwrap();
    let db = cluster.database("latency");
    let token = String::from_utf8(
        cli(
            home.path(),
            Some(&db),
            &["token", "create", "--user", "load"],
        )
        .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let servers: Vec<Server> = (0..2)
        .map(|i| server(home.path(), &rules, &format!("node-{i}"), Some(&db)))
        .collect();
    let ids = start_jobs(&servers, &token, "gated", n);
    for id in &ids {
        cli(home.path(), Some(&db), &["approve", id, "--detach"]);
    }
    let name = db.rsplit('/').next().unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while cluster
        .psql(name, "SELECT COUNT(*) FROM jobs WHERE status = 'succeeded'")
        .unwrap()
        .parse::<usize>()
        .unwrap()
        < n
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    let rows = cluster
        .psql(
            name,
            "SELECT d.at, s.at FROM events d JOIN events s ON s.job_id = d.job_id
               WHERE d.body LIKE '{\"type\":\"decided\"%' AND s.body LIKE '{\"type\":\"step-started\",\"step\":\"next\"%'",
        )
        .unwrap();
    let mut ms: Vec<f64> = rows
        .lines()
        .filter_map(|l| {
            let (d, s) = l.split_once('|')?;
            Some(s.parse::<f64>().ok()? - d.parse::<f64>().ok()?)
        })
        .collect();
    let count = ms.len();
    (pct(&mut ms, 0.5), pct(&mut ms, 0.99), count)
}

/// Rows and bytes per job waiting at a gate, from 100,000 copies of one.
fn waiting_bytes(cluster: &sluice_pgtest::Cluster, copies: usize) -> (f64, f64) {
    let home = tempfile::tempdir().unwrap();
    let rules = home.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("gated.yaml"), GATED).unwrap();
    let db = cluster.database("waiting");
    let name = db.rsplit('/').next().unwrap().to_string();
    let o = Command::new(BIN)
        .args(["run"])
        .arg(rules.join("gated.yaml"))
        .env("SLUICE_HOME", home.path())
        .env("SLUICE_DATABASE_URL", &db)
        .env("SLUICE_USER", "load")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let size = || -> f64 {
        cluster.psql(&name, "VACUUM ANALYZE").unwrap();
        cluster
            .psql(
                &name,
                "SELECT SUM(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'",
            )
            .unwrap()
            .parse()
            .unwrap()
    };
    let rows: f64 = cluster
        .psql(
            &name,
            "SELECT (SELECT COUNT(*) FROM jobs WHERE id = 'gated-1') + (SELECT COUNT(*) FROM events WHERE job_id = 'gated-1') + (SELECT COUNT(*) FROM outbox WHERE job_id = 'gated-1') + (SELECT COUNT(*) FROM logs WHERE job_id = 'gated-1')",
        )
        .unwrap()
        .parse()
        .unwrap();
    let before = size();
    cluster
        .psql(
            &name,
            &format!(
                "BEGIN;
                 INSERT INTO jobs (id, rule, status, message, started_by, created_at, updated_at, last_seq, wake_at, lease_epoch)
                   SELECT 'gated-c' || g, rule, status, message, started_by, created_at, updated_at, last_seq, wake_at, lease_epoch
                   FROM jobs, generate_series(1, {copies}) g WHERE id = 'gated-1';
                 INSERT INTO events (job_id, seq, at, version, body)
                   SELECT 'gated-c' || g, seq, at, version, replace(body, 'gated-1', 'gated-c' || g)
                   FROM events, generate_series(1, {copies}) g WHERE job_id = 'gated-1';
                 COMMIT;"
            ),
        )
        .unwrap();
    let after = size();
    (rows, (after - before) / copies as f64)
}

fn main() {
    let jobs = env_or("SLUICE_SCALE_JOBS", 2000);
    let cluster = sluice_pgtest::Cluster::start(true).unwrap();
    println!("## Drain: {jobs} queued jobs of a 5-step rule\n");
    println!(
        "| hosts | seconds | jobs/s | speed-up | CPU seconds (servers + PostgreSQL) | jobs per CPU-second |"
    );
    println!("|---|---|---|---|---|---|");
    let mut base = None;
    for (hosts, postgres) in [(1, false), (1, true), (2, true), (4, true)] {
        let d = drain(&cluster, hosts, postgres, jobs);
        let rate = jobs as f64 / d.secs;
        let up = if postgres {
            let b = *base.get_or_insert(rate);
            format!("{:.2}x", rate / b)
        } else {
            "-".into()
        };
        println!(
            "| {} | {:.1} | {:.0} | {up} | {:.1} | {:.0} |",
            d.what,
            d.secs,
            rate,
            d.cpu,
            jobs as f64 / d.cpu
        );
    }
    let (p50, p99, n) = decision_latency(&cluster, env_or("SLUICE_SCALE_DECISIONS", 200));
    println!(
        "\n## Decision -> next step across two hosts ({n} decisions)\n\np50 {p50:.0} ms, p99 {p99:.0} ms\n"
    );
    let copies = env_or("SLUICE_SCALE_WAITING", 100_000);
    let (rows, bytes) = waiting_bytes(&cluster, copies);
    println!(
        "## {copies} jobs waiting at a gate on PostgreSQL\n\n{rows} rows and {bytes:.0} bytes (tables and indexes) per waiting job\n"
    );
}
