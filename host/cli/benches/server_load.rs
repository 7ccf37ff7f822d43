//! `sluice server` under load (`cargo bench -p sluice --bench server_load`): 200 API clients
//! list jobs and 50 approve jobs waiting at gates, all at once, against one server on
//! loopback for 60 s (`SLUICE_LOAD_SECS`, `SLUICE_LOAD_LISTERS`, `SLUICE_LOAD_DECIDERS` change
//! it). Prints p50/p99 latency and errors per kind of request; docs/benchmarks.md records a run.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Latencies (ms) and errors of one kind of request.
#[derive(Default)]
struct Tally {
    ms: Vec<f64>,
    errors: u64,
}

fn main() {
    let secs = env_or("SLUICE_LOAD_SECS", 60) as u64;
    let listers = env_or("SLUICE_LOAD_LISTERS", 200);
    let deciders = env_or("SLUICE_LOAD_DECIDERS", 50);
    let home = tempfile::tempdir().unwrap();
    let rules = home.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    // A gate, then one trivial step: an approval drives the job to its end in the server.
    std::fs::write(
        rules.join("gated.yaml"),
        "rule: gated\nphases:\n  run:\n    - { id: ok, op: approve, with: { allow-self-approval: true } }\n    - { id: done, op: log, with: { message: approved } }\n",
    )
    .unwrap();
    let token = {
        let o = Command::new(BIN)
            .args(["token", "create", "--user", "load"])
            .env("SLUICE_HOME", home.path())
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    let mut server = Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--rules"])
        .arg(&rules)
        .env("SLUICE_HOME", home.path())
        .env("SLUICE_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("sluice server listening on ")
        .unwrap()
        .to_string();
    let client = Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // Jobs waiting at their gate, enough for every decider for the whole run: started over
    // the API beforehand (not measured).
    let waiting = Arc::new(Mutex::new(Vec::new()));
    let supply = (deciders * secs as usize * 3).clamp(200, 20_000);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                loop {
                    if waiting.lock().unwrap().len() >= supply {
                        return;
                    }
                    let r = client
                        .post(format!("{url}/api/v1/jobs"))
                        .bearer_auth(&token)
                        .json(&json!({ "rule": "gated" }))
                        .send()
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 201);
                    let v: serde_json::Value = r.json().unwrap();
                    waiting
                        .lock()
                        .unwrap()
                        .push(v["id"].as_str().unwrap().to_string());
                }
            });
        }
    });
    eprintln!(
        "{} jobs waiting at their gate after {:.1} s",
        waiting.lock().unwrap().len(),
        t.elapsed().as_secs_f64()
    );

    let stop = AtomicBool::new(false);
    let start = Barrier::new(listers + deciders + 1);
    let lists = Mutex::new(Tally::default());
    let decisions = Mutex::new(Tally::default());
    let ran_out = AtomicBool::new(false);
    std::thread::scope(|s| {
        for i in 0..listers {
            let (client, url, token, stop, start, lists) =
                (&client, &url, &token, &stop, &start, &lists);
            s.spawn(move || {
                let mut mine = Tally::default();
                start.wait();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    // Every client alternates: the newest page, and waiting jobs only.
                    let q = if (i + n) % 2 == 0 {
                        "limit=50"
                    } else {
                        "status=waiting&limit=50"
                    };
                    n += 1;
                    let t = Instant::now();
                    let ok = client
                        .get(format!("{url}/api/v1/jobs?{q}"))
                        .bearer_auth(token)
                        .send()
                        .is_ok_and(|r| r.status().is_success() && r.bytes().is_ok());
                    mine.ms.push(t.elapsed().as_secs_f64() * 1e3);
                    mine.errors += u64::from(!ok);
                }
                let mut all = lists.lock().unwrap();
                all.ms.extend(mine.ms);
                all.errors += mine.errors;
            });
        }
        for _ in 0..deciders {
            let (client, url, token, stop, start, decisions, waiting, ran_out) = (
                &client, &url, &token, &stop, &start, &decisions, &waiting, &ran_out,
            );
            s.spawn(move || {
                let mut mine = Tally::default();
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    let Some(job) = waiting.lock().unwrap().pop() else {
                        ran_out.store(true, Ordering::Relaxed);
                        break;
                    };
                    let t = Instant::now();
                    let ok = client
                        .post(format!("{url}/api/v1/jobs/{job}/decisions"))
                        .bearer_auth(token)
                        .json(&json!({ "decision": "approve" }))
                        .send()
                        .is_ok_and(|r| r.status().as_u16() == 202);
                    mine.ms.push(t.elapsed().as_secs_f64() * 1e3);
                    mine.errors += u64::from(!ok);
                }
                let mut all = decisions.lock().unwrap();
                all.ms.extend(mine.ms);
                all.errors += mine.errors;
            });
        }
        start.wait();
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();

    println!(
        "| requests ({listers} listing, {deciders} deciding, {secs} s) | count | per s | p50 | p99 | errors |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, tally) in [("list jobs", lists), ("approve", decisions)] {
        let mut t = tally.into_inner().unwrap();
        let n = t.ms.len();
        println!(
            "| {name} | {n} | {:.0} | {:.1} ms | {:.1} ms | {} |",
            n as f64 / secs as f64,
            pct(&mut t.ms, 0.5),
            pct(&mut t.ms, 0.99),
            t.errors
        );
    }
    if ran_out.load(Ordering::Relaxed) {
        println!("(the deciders ran out of waiting jobs before the end)");
    }
}
