//! Several hosts on one PostgreSQL: three `sluice server` processes, each with a node name of
//! its own (so none can tell another's process is dead: only a lease running out hands a job
//! over, as between machines), sharing one database. A host SIGKILLed mid-step, a host
//! SIGSTOPped past its lease and woken after another took over (fencing), and PostgreSQL
//! restarted under load. Every outcome is read back from the journal.

use std::process::Output;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::jobs::{command, err, write_rule};
use crate::races::{pids_with_arg, unique_seconds, wait_for};
use crate::server::{Server, client};

/// How long a lease runs without renewal in these tests.
const LEASE_MS: &str = "1500";

/// Three servers on one database, and the rules they serve.
struct Fleet {
    home: tempfile::TempDir,
    rules: tempfile::TempDir,
    url: String,
    servers: Vec<Option<Server>>,
    token: String,
}

impl Fleet {
    /// `n` servers of `rule` (a rule file's text) on the database at `url`.
    fn start(n: usize, rule: &str, url: String) -> Fleet {
        let (home, rules) = (crate::home(), crate::home());
        write_rule(rules.path(), "fleet.yaml", rule);
        let mut fleet = Fleet {
            home,
            rules,
            url,
            servers: vec![],
            token: String::new(),
        };
        let o = fleet.cli(&["token", "create", "--user", "ann"]);
        assert!(o.status.success(), "{}", err(&o));
        fleet.token = String::from_utf8_lossy(&o.stdout).trim().to_string();
        for i in 0..n {
            let node = format!("node-{i}");
            let env = [
                ("SLUICE_NODE", node.as_str()),
                ("SLUICE_LEASE_MS", LEASE_MS),
                ("SLUICE_DATABASE_URL", fleet.url.as_str()),
            ];
            let s = Server::with_env(fleet.home.path(), fleet.rules.path(), &[], &env, client());
            fleet.servers.push(Some(s));
        }
        fleet
    }

    fn server(&self, i: usize) -> &Server {
        self.servers[i].as_ref().expect("that server was killed")
    }

    /// `sluice ARGS` on the fleet's database.
    fn cli(&self, args: &[&str]) -> Output {
        command(self.home.path(), args)
            .env("SLUICE_DATABASE_URL", &self.url)
            .output()
            .unwrap()
    }

    fn show(&self, job: &str) -> Value {
        let o = self.cli(&["show", job, "--json"]);
        assert!(o.status.success(), "{}", err(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// Starts a job of the fleet's rule through server `i`, which drives it.
    fn start_job(&self, i: usize) -> String {
        let (s, v) = self
            .server(i)
            .post("/api/v1/jobs", &self.token, json!({ "rule": "fleet" }));
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// Waits (at most `secs`) until job `id` satisfies `done`; returns its view.
    fn until(&self, id: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.show(id);
            if done(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not get there within {secs} s: {v:#}\nservers said:\n{}",
                std::fs::read_to_string(self.home.path().join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, i: usize, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.server(i).pid() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("server.log")).unwrap_or_default()
    }
}

/// Events of type `ty` (for step `step`, when given) in a job's history.
fn count(v: &Value, ty: &str, step: Option<&str>) -> usize {
    v["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"]["type"] == ty && step.is_none_or(|s| h["event"]["step"] == s))
        .count()
}

/// The rule the fleet runs: `steps`, then `echo` in post; `op` may run `sleep`.
fn rule(steps: &str, op: Option<&str>) -> String {
    let grants = op.map_or(String::new(), |op| {
        format!("grants: {{ {op}: [exec:sleep] }}\n")
    });
    format!(
        "rule: fleet\nOPS\n{grants}phases:\n  run:\n{steps}\n  post: [{{ id: tell, op: echo }}]\n"
    )
}

/// A step that runs a program for a while: `exec` (not idempotent) or `test` (idempotent).
fn exec_step(secs: &str) -> String {
    format!(
        "    - {{ id: long, op: exec, timeout: 60s, with: {{ program: sleep, args: [\"{secs}\"] }} }}"
    )
}

fn test_step(secs: &str) -> String {
    format!(
        "    - {{ id: long, op: test, timeout: 60s, with: {{ checks: [{{ command: {{ program: sleep, args: [\"{secs}\"] }} }}] }} }}"
    )
}

/// SIGKILL the host driving a step: another host takes the job over once the lease runs out;
/// a step whose op is not idempotent becomes an `interrupted` trap, an idempotent one runs
/// again and the job succeeds. Each host's takeover is recorded once.
#[test]
fn a_killed_host_is_taken_over_after_its_lease_runs_out() {
    // The idempotent step's program runs a few seconds: long enough to be killed under, short
    // enough to run again to its end.
    for (idempotent, secs) in [(false, unique_seconds(300)), (true, unique_seconds(4))] {
        let step = if idempotent {
            test_step(&secs)
        } else {
            exec_step(&secs)
        };
        let url = crate::database_of(crate::home().path()).unwrap();
        let op = if idempotent { "test" } else { "exec" };
        let mut fleet = Fleet::start(3, &rule(&step, Some(op)), url);
        let id = fleet.start_job(0);
        wait_for("the step runs its program", 60, || {
            !pids_with_arg(&secs).is_empty()
        });
        drop(fleet.servers[0].take()); // SIGKILL
        let v = if idempotent {
            fleet.until(&id, 90, |v| v["status"] == "succeeded")
        } else {
            fleet.until(&id, 90, |v| {
                v["status"] == "waiting" && count(v, "interrupted", Some("long")) == 1
            })
        };
        assert_eq!(count(&v, "interrupted", Some("long")), 1, "{v:#}");
        let started = count(&v, "step-started", Some("long"));
        if idempotent {
            assert_eq!(started, 2, "run again where it is safe: {v:#}");
            assert_eq!(count(&v, "step-finished", Some("tell")), 1, "post once");
        } else {
            assert_eq!(started, 1, "never run twice: {v:#}");
            assert_eq!(v["waiting"][0]["step"], "long", "{v:#}");
        }
        // Whoever took over is another node, and the killed one is not driving anything.
        for pid in pids_with_arg(&secs) {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid as i32).unwrap(),
                rustix::process::Signal::KILL,
            );
        }
    }
}

/// SIGSTOP the host driving a step past its lease; another host takes over (the step becomes
/// an `interrupted` trap); SIGCONT the first: its op's late result and its renewals are
/// refused (fencing), it stops driving, and the journal holds nothing it wrote after the
/// takeover.
#[test]
fn a_paused_host_is_fenced_off_when_it_wakes() {
    let secs = unique_seconds(302);
    let url = crate::database_of(crate::home().path()).unwrap();
    let fleet = Fleet::start(3, &rule(&exec_step(&secs), Some("exec")), url);
    let id = fleet.start_job(0);
    wait_for("the step runs its program", 60, || {
        !pids_with_arg(&secs).is_empty()
    });
    fleet.signal(0, rustix::process::Signal::STOP);
    let v = fleet.until(&id, 90, |v| {
        v["status"] == "waiting" && count(v, "interrupted", Some("long")) == 1
    });
    let taken_over_at = v["history"].as_array().unwrap().len();
    // The program the paused host's op started goes on and ends; the host wakes with its
    // result in hand.
    for pid in pids_with_arg(&secs) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::TERM,
        );
    }
    fleet.signal(0, rustix::process::Signal::CONT);
    wait_for("the woken host says its lease was taken over", 60, || {
        fleet.log().contains("was taken over; nothing was written")
    });
    let after = fleet.show(&id);
    assert_eq!(
        after["history"].as_array().unwrap().len(),
        taken_over_at,
        "the fenced host wrote nothing: {after:#}"
    );
    assert_eq!(count(&after, "step-started", Some("long")), 1);
    assert_eq!(count(&after, "step-finished", Some("long")), 0);
    assert_eq!(after["status"], "waiting");
    // The woken host still serves, and reads the job as the others do.
    let (s, v) = fleet
        .server(0)
        .get(&format!("/api/v1/jobs/{id}"), &fleet.token);
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "waiting");
}

/// PostgreSQL restarts (every connection cut) while three hosts drive jobs: they reconnect
/// and carry every job to its end. Each step has one result; an attempt whose driver lost the
/// database mid-step is recorded `interrupted` and run again (`echo` is idempotent).
#[test]
fn hosts_reconnect_and_carry_on_when_postgresql_restarts() {
    // A cluster of this test's own: restarting the shared one would cut the other tests.
    let cluster = sluice_pgtest::Cluster::start(false).unwrap();
    let url = cluster.database("restart");
    let steps: String = (1..=5)
        .map(|i| format!("    - {{ id: s{i}, op: echo, with: {{ n: {i} }} }}\n"))
        .collect();
    let fleet = Fleet::start(3, &rule(steps.trim_end(), None), url);
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(fleet.start_job(i % 3));
        if i == 5 {
            cluster.restart().unwrap();
        }
    }
    for id in &ids {
        let v = fleet.until(id, 120, |v| v["status"] == "succeeded");
        for s in 1..=5 {
            let step = format!("s{s}");
            assert_eq!(count(&v, "step-finished", Some(&step)), 1, "{id}: {v:#}");
            assert_eq!(
                count(&v, "step-started", Some(&step)),
                1 + count(&v, "interrupted", Some(&step)),
                "{id}: {v:#}"
            );
        }
        assert_eq!(
            count(&v, "step-finished", Some("tell")),
            1,
            "{id}: post once"
        );
    }
    for i in 0..3 {
        let (s, _) = fleet.server(i).get("/api/v1/jobs", &fleet.token);
        assert_eq!(s, StatusCode::OK, "server {i} still answers");
    }
}

/// Gate timeouts are timers in the journal: with three hosts looking, each fires once (one
/// `decided` by the timeout per job), whichever host sees it first.
#[test]
fn each_gate_timeout_fires_once_across_hosts() {
    let url = crate::database_of(crate::home().path()).unwrap();
    let steps = "    - { id: gate, op: approve, with: { timeout: 2s, on-timeout: approve } }\n    - { id: after, op: echo }";
    let fleet = Fleet::start(3, &rule(steps, None), url);
    let ids: Vec<String> = (0..6).map(|i| fleet.start_job(i % 3)).collect();
    for id in &ids {
        let v = fleet.until(id, 90, |v| v["status"] == "succeeded");
        assert_eq!(count(&v, "decided", Some("gate")), 1, "{id}: {v:#}");
        assert_eq!(count(&v, "step-finished", Some("after")), 1, "{id}: {v:#}");
        assert_eq!(count(&v, "step-finished", Some("tell")), 1, "{id}: {v:#}");
    }
}
