//! `sluice server` as a team uses it: a real server process on 127.0.0.1 (a free port, a
//! temporary home), API tokens made with `sluice token create`, jobs started, decided and
//! followed over HTTP, and a restart while a job waits at a gate.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value, json};

use crate::jobs::{command, err, out, sluice, write_rule};
use crate::races::{KILLED, pids_with_arg, unique_seconds, wait_for};

pub(crate) const PERMISSIONS: &str = "groups:\n  release-managers: [bob, carol]\n  ops: [dave]\nallow:\n  approve: [group:release-managers]\n  resume: [group:ops]\n  trap: [group:ops]\n  cancel: [group:ops]\n  annotate: ['*']\n";

/// A client that opens a connection per request: a connection the server closed after
/// refusing a body it did not read is never reused for the next request.
pub(crate) fn client() -> Client {
    fresh(Client::builder())
}

/// `builder` without a pool of idle connections.
pub(crate) fn fresh(builder: reqwest::blocking::ClientBuilder) -> Client {
    builder.pool_max_idle_per_host(0).build().unwrap()
}

/// A `sluice server` process; killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
    /// A client that trusts the server's certificate when it serves HTTPS.
    pub(crate) client: Client,
}

impl Server {
    /// A server of the examples' rules.
    pub(crate) fn start(home: &Path) -> Server {
        Server::with_rules(home, Path::new("examples"))
    }

    /// A server of the rules in `rules`; its log goes to `server.log` in `home`.
    fn with_rules(home: &Path, rules: &Path) -> Server {
        Server::with_args(home, rules, &[], client())
    }

    /// A server of the rules in `rules` with more arguments, read with `client`.
    pub(crate) fn with_args(home: &Path, rules: &Path, more: &[&str], client: Client) -> Server {
        Server::with_env(home, rules, more, &[], client)
    }

    /// A server with `more` arguments and `env` set in its environment.
    pub(crate) fn with_env(
        home: &Path,
        rules: &Path,
        more: &[&str],
        env: &[(&str, &str)],
        client: Client,
    ) -> Server {
        let mut args = vec![
            "server",
            "--listen",
            "127.0.0.1:0",
            "--rules",
            rules.to_str().unwrap(),
            "--worker-interval-ms",
            "200",
        ];
        args.extend_from_slice(more);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.join("server.log"))
            .unwrap();
        let mut child = command(home, &args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting sluice server");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let url = first
            .trim()
            .strip_prefix("sluice server listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
            .to_string();
        Server { child, url, client }
    }

    /// Its process id (hosts.rs, in the PostgreSQL tests only).
    #[allow(dead_code)]
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server as systemd does (SIGTERM) and waits for it to exit.
    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        self.child.wait().unwrap()
    }

    pub(crate) fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> RequestBuilder {
        let r = self.client.request(method, format!("{}{path}", self.url));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub(crate) fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        answer(self.req(reqwest::Method::GET, path, Some(token)))
    }

    pub(crate) fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        answer(
            self.req(reqwest::Method::POST, path, Some(token))
                .json(&body),
        )
    }

    /// Reads the job until `done` holds (a server drives it in the background), for at most
    /// a minute.
    pub(crate) fn until(&self, job: &str, token: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (s, v) = self.get(&format!("/api/v1/jobs/{job}"), token);
            assert_eq!(s, StatusCode::OK, "{v}");
            if done(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "job {job} did not get there: {v:#}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn answer(r: RequestBuilder) -> (StatusCode, Value) {
    let r = r.send().expect("the server answers");
    let status = r.status();
    let text = r.text().unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// `sluice token create --user USER`: the token is the one line on stdout.
pub(crate) fn token(home: &Path, user: &str) -> String {
    let o = sluice(home, &["token", "create", "--user", user]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let t = out(&o).trim().to_string();
    assert!(t.starts_with("sluice_"), "{t}");
    assert!(err(&o).contains("shown once"), "{}", err(&o));
    t
}

pub(crate) fn start_release(server: &Server, token: &str, home: &Path, version: &str) -> String {
    let (s, v) = server.post(
        "/api/v1/jobs",
        token,
        json!({ "rule": "web-release", "params": {
            "version": version, "env": "production", "root": home.display().to_string()
        }}),
    );
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

pub(crate) fn waiting(v: &Value) -> bool {
    v["status"] == "waiting"
}

#[test]
fn a_team_starts_decides_and_follows_a_release_over_http() {
    let home = crate::home();
    std::fs::write(home.path().join("permissions.yaml"), PERMISSIONS).unwrap();
    let (ann, bob, carol, dave) = (
        token(home.path(), "ann"),
        token(home.path(), "bob"),
        token(home.path(), "carol"),
        token(home.path(), "dave"),
    );
    let server = Server::start(home.path());

    // Health, readiness and metrics need no token; the API does.
    let health = Client::new()
        .get(format!("{}/healthz", server.url))
        .send()
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let (s, v) = answer(server.req(reqwest::Method::GET, "/api/v1/jobs", None));
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("sluice token create"),
        "{v}"
    );
    let (s, _) = server.get("/api/v1/jobs", "sluice_not-a-token");
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = server.get("/api/v1/whoami", &bob);
    assert_eq!((s, v["name"].as_str()), (StatusCode::OK, Some("bob")));
    assert_eq!(v["via"], "token");

    // ann starts a production release; it runs up to the approval and hibernates.
    let job = start_release(&server, &ann, home.path(), "3.0");
    assert_eq!(job, "web-release-1");
    let v = server.until(&job, &ann, waiting);
    assert_eq!(v["started_by"], "ann");
    assert_eq!(v["waiting"][0]["step"], "go-live", "{v:#}");

    // Refusals are 403 with the reason: not allowed by the permissions file, four eyes.
    let approve = json!({ "decision": "approve", "inputs": { "window": "tonight" }, "comment": "canary is clean" });
    let (s, v) = server.post(
        &format!("/api/v1/jobs/{job}/decisions"),
        &dave,
        approve.clone(),
    );
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(
        v["detail"],
        "dave may not approve; the permissions file allows group:release-managers"
    );
    assert_eq!(v["status"], 403);
    std::fs::write(
        home.path().join("permissions.yaml"),
        PERMISSIONS.replace("[bob, carol]", "[ann, bob, carol]"),
    )
    .unwrap();
    let (s, v) = server.post(
        &format!("/api/v1/jobs/{job}/decisions"),
        &ann,
        approve.clone(),
    );
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("four eyes"), "{v}");
    // A bad input is a bad request; an unknown decision too.
    let (s, v) = server.post(
        &format!("/api/v1/jobs/{job}/decisions"),
        &bob,
        json!({ "decision": "approve", "inputs": { "window": "never" } }),
    );
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        v["detail"],
        "input `window` is `never`; pick one of now, tonight"
    );
    let (s, _) = server.post(
        &format!("/api/v1/jobs/{job}/decisions"),
        &bob,
        json!({ "decision": "promote" }),
    );
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // A comment and a file, then bob approves; the job finishes in the server.
    let (s, v) = server.post(
        &format!("/api/v1/jobs/{job}/annotations"),
        &carol,
        json!({ "comment": "dashboards look fine" }),
    );
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let form = reqwest::blocking::multipart::Form::new().part(
        "file",
        reqwest::blocking::multipart::Part::bytes(b"p95 180ms\n".to_vec())
            .file_name("../canary-report.txt"),
    );
    let (s, v) = answer(
        server
            .req(
                reqwest::Method::POST,
                &format!("/api/v1/jobs/{job}/annotations"),
                Some(&carol),
            )
            .multipart(form),
    );
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let file_id = v["ids"][0].as_i64().unwrap();
    let got = server
        .req(
            reqwest::Method::GET,
            &format!("/api/v1/jobs/{job}/annotations/{file_id}"),
            Some(&ann),
        )
        .send()
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert!(
        got.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("canary-report.txt")
    );
    assert_eq!(got.bytes().unwrap().as_ref(), b"p95 180ms\n");

    let (s, v) = server.post(
        &format!("/api/v1/jobs/{job}/decisions"),
        &bob,
        approve.clone(),
    );
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let v = server.until(&job, &ann, |v| v["status"] == "succeeded");
    assert_eq!(v["message"], "every step succeeded");
    let decided: Vec<&Value> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"]["type"] == "decided")
        .collect();
    assert_eq!(decided.len(), 1, "{v:#}");
    assert_eq!(decided[0]["event"]["by"]["name"], "bob");
    assert_eq!(decided[0]["event"]["by"]["via"], "token");
    let titles: Vec<&str> = v["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["dashboards look fine", "canary-report.txt"]);
    assert_eq!(
        std::fs::read_link(home.path().join("production/current")).unwrap(),
        Path::new("releases/3.0")
    );

    // Deciding again: 409, naming who decided.
    let (s, v) = server.post(&format!("/api/v1/jobs/{job}/decisions"), &carol, approve);
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(
        v["detail"],
        "job web-release-1 has ended (succeeded); there is nothing to decide"
    );

    // The log, paged and live: the stream sends every line, then the end.
    let (s, v) = server.get(&format!("/api/v1/jobs/{job}/logs"), &ann);
    assert_eq!(s, StatusCode::OK);
    let lines = v["logs"].as_array().unwrap();
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .unwrap()
            .contains("web 3.0 is live in production")),
        "{v:#}"
    );
    let sse = server
        .req(
            reqwest::Method::GET,
            &format!("/api/v1/jobs/{job}/logs/stream"),
            Some(&ann),
        )
        .send()
        .unwrap();
    assert_eq!(
        sse.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let text = sse.text().unwrap();
    assert_eq!(text.matches("event: log\n").count(), lines.len(), "{text}");
    assert!(
        text.contains(
            "event: end\ndata: {\"message\":\"every step succeeded\",\"status\":\"succeeded\"}"
        ),
        "{text}"
    );

    // Listing with a filter; unknown jobs are 404.
    let (s, v) = server.get("/api/v1/jobs?status=succeeded&rule=web-release", &dave);
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["jobs"][0]["id"], "web-release-1");
    let (s, v) = server.get("/api/v1/jobs?status=waiting", &dave);
    assert_eq!(
        (s, v["jobs"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    let (s, v) = server.get("/api/v1/jobs/web-release-9", &dave);
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(
        v["detail"],
        "no job `web-release-9`: `sluice jobs` lists them"
    );

    let metrics = Client::new()
        .get(format!("{}/metrics", server.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("sluice_jobs{status=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_http_requests_total{class=\"4xx\"}"),
        "{metrics}"
    );
}

#[test]
fn a_waiting_job_carries_on_after_the_server_restarts_and_a_revoked_token_is_refused() {
    let home = crate::home();
    let ann = token(home.path(), "ann");
    let bob = token(home.path(), "bob");
    let server = Server::start(home.path());
    let job = start_release(&server, &ann, home.path(), "4.1");
    server.until(&job, &ann, waiting);
    let status = server.stop();
    assert!(
        status.success(),
        "SIGTERM stops the server cleanly: {status}"
    );

    // Nothing of the job runs while no server does; a new one carries it on.
    let server = Server::start(home.path());
    let (s, v) = server.post(
        &format!("/api/v1/jobs/{job}/decisions"),
        &bob,
        json!({ "decision": "approve" }),
    );
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    server.until(&job, &bob, |v| v["status"] == "succeeded");

    // Revoked tokens stop working at once; list shows them revoked, never their secret.
    let o = sluice(home.path(), &["token", "list", "--json"]);
    let list: Value = serde_json::from_str(&out(&o)).unwrap();
    let bobs = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["user"] == "bob")
        .unwrap();
    assert!(!out(&o).contains(&bob), "the secret is never shown again");
    let o = sluice(
        home.path(),
        &["token", "revoke", bobs["id"].as_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let (s, _) = server.get("/api/v1/jobs", &bob);
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = server.get("/api/v1/jobs", &ann);
    assert_eq!(s, StatusCode::OK);
}

#[test]
fn failed_authentications_are_rate_limited_per_address() {
    let home = crate::home();
    let ann = token(home.path(), "ann");
    let server = Server::start(home.path());
    for _ in 0..10 {
        let (s, _) = server.get("/api/v1/jobs", "sluice_guess");
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, v) = server.get("/api/v1/jobs", "sluice_guess");
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    // Even a right token waits out the minute from that address.
    let (s, _) = server.get("/api/v1/jobs", &ann);
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
}

/// Twelve approvers race over HTTP on a quorum-3 gate, all released at once: exactly three
/// approvals land (202), the rest are told who decided (409), and the job ends once.
#[test]
fn racing_approvers_over_http_land_exactly_the_quorum() {
    let home = crate::home();
    let rules = home.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let users: Vec<String> = (1..=12).map(|i| format!("u{i}")).collect();
    write_rule(
        &rules,
        "quorum.yaml",
        &format!(
            "rule: quorum\nOPS\nphases:\n  run:\n    - {{ id: ok, op: approve, with: {{ approvers: [{}], quorum: 3 }} }}\n    - {{ id: after, op: echo }}\n",
            users.join(", ")
        ),
    );
    let tokens: Vec<String> = users.iter().map(|u| token(home.path(), u)).collect();
    let starter = token(home.path(), "ann");
    let server = Server::with_rules(home.path(), &rules);
    let (s, v) = server.post("/api/v1/jobs", &starter, json!({ "rule": "quorum" }));
    assert_eq!(s, StatusCode::CREATED, "{v}");
    server.until("quorum-1", &tokens[0], waiting);

    let barrier = std::sync::Barrier::new(tokens.len());
    let answers: Vec<(StatusCode, Value)> = std::thread::scope(|scope| {
        let racers: Vec<_> = tokens
            .iter()
            .map(|t| {
                let (server, barrier) = (&server, &barrier);
                scope.spawn(move || {
                    let r = server
                        .req(
                            reqwest::Method::POST,
                            "/api/v1/jobs/quorum-1/decisions",
                            Some(t),
                        )
                        .json(&json!({ "decision": "approve" }));
                    barrier.wait();
                    answer(r)
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let accepted = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .count();
    assert_eq!(accepted, 3, "{answers:#?}");
    for (s, v) in answers.iter().filter(|(s, _)| *s != StatusCode::ACCEPTED) {
        assert_eq!(*s, StatusCode::CONFLICT, "{v}");
        let detail = v["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("`ok` of job quorum-1 was already decided: approve by u")
                || detail.contains("has ended (succeeded)"),
            "{detail}"
        );
    }
    let v = server.until("quorum-1", &tokens[0], |v| v["status"] == "succeeded");
    let approvals = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"]["type"] == "decided")
        .count();
    assert_eq!(approvals, 3);
    assert_eq!(v["steps"]["after"]["attempt"], 1, "the job went on once");
}

/// The server is SIGKILLed while it drives a step: the program the op started dies with it,
/// and the next server's worker recovers the job into its `interrupted` trap, where a retry
/// over HTTP finishes it.
#[test]
fn a_job_whose_server_was_killed_mid_step_is_recovered_by_the_next_server() {
    let home = crate::home();
    let rules = home.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let secs = unique_seconds(33);
    write_rule(&rules, "killed.yaml", &KILLED.replace("SLEEP", &secs));
    let ann = token(home.path(), "ann");
    let mut server = Server::with_rules(home.path(), &rules);
    let (s, v) = server.post("/api/v1/jobs", &ann, json!({ "rule": "killed" }));
    assert_eq!(s, StatusCode::CREATED, "{v}");
    wait_for("the step runs its program", 60, || {
        !pids_with_arg(&secs).is_empty()
    });
    let program = pids_with_arg(&secs)[0];
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    wait_for("the program dies with the server", 10, || {
        std::fs::read(format!("/proc/{program}/cmdline")).map_or(true, |c| c.is_empty())
    });

    let server = Server::with_rules(home.path(), &rules);
    let v = server.until("killed-1", &ann, waiting);
    assert_eq!(v["waiting"][0]["step"], "long");
    assert_eq!(v["waiting"][0]["kind"], "trap");
    let (s, v) = server.post(
        "/api/v1/jobs/killed-1/decisions",
        &ann,
        json!({ "decision": "retry", "inputs": { "args": ["0"] } }),
    );
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let v = server.until("killed-1", &ann, |v| v["status"] == "succeeded");
    let interrupted = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"]["type"] == "interrupted")
        .count();
    assert_eq!(interrupted, 1);
    assert_eq!(v["steps"]["long"]["attempt"], 2);
}

/// Bad and oversized requests get a problem answer saying what to do, and start nothing.
#[test]
fn malformed_and_oversized_requests_are_refused_and_start_nothing() {
    let home = crate::home();
    let ann = token(home.path(), "ann");
    let server = Server::start(home.path());
    let post_raw = |path: &str, body: Vec<u8>| {
        answer(
            server
                .req(reqwest::Method::POST, path, Some(&ann))
                .header("content-type", "application/json")
                .body(body),
        )
    };
    let (s, v) = post_raw("/api/v1/jobs", b"{\"rule\": ".to_vec());
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = post_raw(
        "/api/v1/jobs",
        br#"{"rule": "web-release", "parms": {}}"#.to_vec(),
    );
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let mut big = br#"{"rule": "web-release", "params": {"version": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 3 << 20));
    big.extend(br#""}}"#);
    // The server answers 413 without reading the rest and closes the connection; a client
    // still writing then may see the close (a reset) instead of the answer. Either way the
    // body is refused, and (below) no job was started.
    match server
        .req(reqwest::Method::POST, "/api/v1/jobs", Some(&ann))
        .header("content-type", "application/json")
        .body(big)
        .send()
    {
        Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(
            e.is_request() && !e.is_timeout(),
            "neither 413 nor a closed connection: {e:?}"
        ),
    }
    let (s, v) = server.post("/api/v1/jobs", &ann, json!({ "rule": "nope" }));
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("web-release"),
        "names the rules there are: {v}"
    );
    // Params that do not fit the rule, and a check that fails: no job either way.
    let (s, v) = server.post("/api/v1/jobs", &ann, json!({ "rule": "web-release" }));
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("version"), "{v}");
    let (s, v) = server.post(
        "/api/v1/jobs",
        &ann,
        json!({ "rule": "web-release", "params": { "version": "../etc", "root": home.path().display().to_string() } }),
    );
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["standing"]["standing"], "check-failed", "{v}");
    let (s, v) = server.get("/api/v1/jobs", &ann);
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["jobs"], json!([]), "nothing was started");

    // An upload over the annotation limit is refused while it streams; nothing is attached.
    let job = start_release(&server, &ann, home.path(), "5.0");
    server.until(&job, &ann, waiting);
    let form = reqwest::blocking::multipart::Form::new().part(
        "file",
        reqwest::blocking::multipart::Part::bytes(vec![0u8; (64 << 20) + 1]).file_name("big.bin"),
    );
    // As above: the 413 may be lost to the close while the last bytes are still being sent.
    match server
        .req(
            reqwest::Method::POST,
            &format!("/api/v1/jobs/{job}/annotations"),
            Some(&ann),
        )
        .multipart(form)
        .send()
    {
        Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(
            e.is_request() && !e.is_timeout(),
            "neither 413 nor a closed connection: {e:?}"
        ),
    }
    let (_, v) = server.get(&format!("/api/v1/jobs/{job}/annotations"), &ann);
    assert_eq!(v["annotations"], json!([]));
    // A posted rule is checked, with places; one naming op files is refused.
    let (s, v) = answer(
        server
            .req(reqwest::Method::POST, "/api/v1/rules/validate", Some(&ann))
            .body("rule: r\nphases:\n  run: [{ id: a, op: nosuch }]\n"),
    );
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["problems"].as_str().unwrap().contains(":3:"), "{v}");
    let (s, v) = answer(
        server
            .req(reqwest::Method::POST, "/api/v1/rules/validate", Some(&ann))
            .body(
                "rule: r\nops: { x: { path: /etc/passwd } }\nphases:\n  run: [{ id: a, op: x }]\n",
            ),
    );
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("standard ops only"),
        "{v}"
    );
}

/// A server drives a job a request started in one task and due jobs in its worker loop: the
/// worker must leave a job another task of the same process is driving, not take its lease as
/// its own and find its running step "interrupted" (a non-idempotent step would then wait at
/// a trap, an idempotent one run twice at once).
#[test]
fn the_worker_leaves_a_job_another_task_of_its_process_drives() {
    let home = crate::home();
    let rules = home.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("slow-deploy.yaml"),
        "rule: slow-deploy\ngrants: { deploy: [\"exec:sleep\"] }\nphases:\n  run:\n    - { id: roll-out, op: deploy, with: { revision: r1, apply: [{ command: { program: sleep, args: [\"2\"] } }] } }\n",
    )
    .unwrap();
    let ann = token(home.path(), "ann");
    // The worker looks every 200 ms: it sees the job running many times during the step.
    let server = Server::with_args(home.path(), &rules, &[], client());
    let (s, v) = server.post("/api/v1/jobs", &ann, json!({ "rule": "slow-deploy" }));
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let v = server.until("slow-deploy-1", &ann, |v| v["status"] != "running");
    assert_eq!(v["status"], "succeeded", "{v:#}");
    let events: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"]["type"].as_str().unwrap())
        .collect();
    assert!(!events.contains(&"interrupted"), "{events:?}");
    assert_eq!(
        events.iter().filter(|e| **e == "step-started").count(),
        1,
        "{events:?}"
    );
}
