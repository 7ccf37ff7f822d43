//! The sandbox: ops get exactly what they were granted, and hostile ops fail as their own
//! steps, with a clear reason, while the host, other jobs and the journal carry on.

use std::path::Path;

use serde_json::Value;

use crate::jobs::{err, json, out, sluice, write_rule};

fn show(home: &Path, job: &str) -> Value {
    json(&sluice(home, &["show", job, "--json"]))
}

fn message(v: &Value, step: &str) -> String {
    v["steps"][step]["result"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

const HOSTILE: &str = r#"
rule: hostile
OPS
grants:
  escape: [workspace:read-write]
phases:
  run:
    - parallel:
        - { id: loops, op: spin, timeout: 1s, on-error: continue }
        - { id: hoards, op: alloc, on-error: continue }
        - { id: recurses, op: recurse, on-error: continue }
        - { id: escapes, op: escape, on-error: continue }
        - { id: execs, op: exec, on-error: continue, with: { program: /bin/sh, args: [-c, id] } }
        - { id: connects, op: connect, on-error: continue, with: { addr: "127.0.0.1:9" } }
        - { id: calls, op: test, on-error: continue, with: { checks: [{ http: { url: "http://127.0.0.1:9/x" } }] } }
        - { id: floods, op: stdout, on-error: continue, with: { lines: 200000 } }
        - { id: panics, op: panic, on-error: continue, with: { message: "the op lost its mind" } }
        - { id: snoops, op: secret, on-error: continue, with: { name: aws-key } }
    - { id: after, op: echo, with: { still: standing } }
"#;

#[test]
fn hostile_ops_each_fail_as_their_own_step_and_the_host_carries_on() {
    let home = crate::home();
    // A symlink inside the workspace that points out of it.
    let ws = home.path().join("workspaces/hostile-1");
    std::fs::create_dir_all(&ws).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", ws.join("link-to-passwd")).unwrap();
    let rule = write_rule(home.path(), "hostile.yaml", HOSTILE);
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));

    let v = show(home.path(), "hostile-1");
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["steps"]["after"]["result"]["output"]["still"], "standing");
    assert_eq!(
        message(&v, "loops"),
        "op `spin` passed its deadline of 1 s and was stopped"
    );
    assert!(
        message(&v, "hoards").starts_with("op `alloc` ran out of memory: memory allocation of"),
        "{}",
        message(&v, "hoards")
    );
    assert_eq!(
        message(&v, "recurses"),
        "op `recurse` crashed: out of bounds memory access; most likely its stack overflowed (deep recursion)"
    );
    assert_eq!(
        message(&v, "execs"),
        "not granted: program `/bin/sh` is not granted to op `exec`: grant `exec:/bin/sh` to this op"
    );
    assert!(
        message(&v, "connects").starts_with("cannot connect to 127.0.0.1:9: "),
        "{}",
        message(&v, "connects")
    );
    assert!(
        message(&v, "calls").ends_with(
            "denied by the host: the op is not granted `http:http://127.0.0.1:9`; add it to the rule's grants"
        ),
        "{}",
        message(&v, "calls")
    );
    assert!(
        message(&v, "panics").starts_with("op `panic` panicked: the op lost its mind (at "),
        "{}",
        message(&v, "panics")
    );
    assert_eq!(
        message(&v, "snoops"),
        "not granted: secret `aws-key` is not granted to op `secret`: grant `secret:aws-key` to this op"
    );

    // The filesystem: only the workspace, and nothing through it.
    let fs = &v["steps"]["escapes"]["result"]["output"];
    for key in ["etc_passwd", "dotdot", "relative", "symlink"] {
        assert!(
            fs[key].as_str().unwrap().starts_with("refused: "),
            "{key}: {fs}"
        );
    }
    assert_eq!(fs["write_workspace"], "read 2 bytes");
    assert_eq!(
        std::fs::read_to_string(ws.join("hello.txt")).unwrap(),
        "hi",
        "the write landed in the job's workspace"
    );
    assert_eq!(
        (fs["env"].as_u64(), fs["args"].as_u64()),
        (Some(0), Some(0)),
        "no env, no args"
    );

    // A flood is cut at the log bound; the op itself goes on.
    let logs = out(&sluice(
        home.path(),
        &["logs", "hostile-1", "--step", "floods"],
    ));
    assert!(
        logs.trim_end().ends_with("log cut: ") || logs.contains("[host warn] log cut: "),
        "{}",
        &logs[logs.len().saturating_sub(300)..]
    );
    let kept = logs
        .lines()
        .filter(|l| l.contains("hello from stdout"))
        .count();
    assert!(
        kept > 1000 && kept < 200_000,
        "the stored log is bounded: {kept} of 200000 lines"
    );

    // The host is up and other jobs run.
    let o = sluice(home.path(), &["run", "examples/cleanup.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
}

#[test]
fn granted_programs_run_with_a_cleared_environment_and_bounded_time() {
    let home = crate::home();
    let rule = write_rule(
        home.path(),
        "exec.yaml",
        r#"
rule: runs
OPS
grants:
  exec: [exec:echo, exec:env, exec:/bin/sleep, "env:SLUICE_TEST_VISIBLE"]
phases:
  run:
    - { id: hello, op: exec, with: { program: echo, args: [hello, world] } }
    - { id: environment, op: exec, with: { program: env } }
    - { id: slow, op: exec, timeout: 1s, on-error: continue, with: { program: /bin/sleep, args: ["31.5"] } }
"#,
    );
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", rule.to_str().unwrap()])
        .envs(crate::home_env(home.path()))
        .env("SLUICE_TEST_VISIBLE", "yes")
        .env("SLUICE_TEST_HIDDEN", "no")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let v = show(home.path(), "runs-1");
    assert_eq!(
        v["steps"]["hello"]["result"]["output"]["stdout"],
        "hello world\n"
    );
    assert_eq!(
        v["steps"]["environment"]["result"]["output"]["stdout"],
        "SLUICE_TEST_VISIBLE=yes\n"
    );
    let slow = &v["steps"]["slow"]["result"];
    assert!(
        slow["output"]["timed_out"] == true
            || slow["message"]
                .as_str()
                .unwrap_or("")
                .contains("passed its deadline"),
        "{slow}"
    );
    // The child was killed with the op: no `sleep 31.5` is left.
    let left = std::process::Command::new("pgrep")
        .args(["-f", "sleep 31.5"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "a child outlived its op: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn secrets_come_only_to_ops_granted_them_and_are_masked_everywhere() {
    let home = crate::home();
    let rule = write_rule(
        home.path(),
        "s.yaml",
        "rule: secretive\nOPS\ngrants:\n  secret: [secret:db-password]\nphases:\n  run: [{ id: use, op: secret, with: { name: db-password } }]\n",
    );
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", rule.to_str().unwrap()])
        .envs(crate::home_env(home.path()))
        .env("SLUICE_SECRET_DB_PASSWORD", "correct-horse-battery")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(
        !out(&o).contains("correct-horse-battery"),
        "printed: {}",
        out(&o)
    );
    let v = show(home.path(), "secretive-1");
    assert_eq!(
        v["steps"]["use"]["result"]["output"],
        serde_json::json!({ "len": 21, "leak": "***" })
    );
    let logs = out(&sluice(home.path(), &["logs", "secretive-1"]));
    assert_eq!(logs, "use#1 [op info] using db-password=***\n");
    let db = crate::journal_bytes(home.path());
    assert!(
        !db.windows(21).any(|w| w == b"correct-horse-battery"),
        "the secret reached the journal"
    );

    // Granted but not set on the host: a clear failure naming the variable.
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let v = show(home.path(), "secretive-2");
    assert!(
        message(&v, "use").contains("set SLUICE_SECRET_DB_PASSWORD on the host"),
        "{}",
        message(&v, "use")
    );
}

#[test]
fn validate_and_run_refuse_a_rule_that_does_not_grant_what_its_ops_need() {
    let home = crate::home();
    let rule = write_rule(
        home.path(),
        "n.yaml",
        "rule: needy\nOPS\ngrants:\n  needy: [exec:echo, workspace:read-only]\nphases:\n  run: [{ id: x, op: needy }]\n",
    );
    let o = sluice(home.path(), &["validate", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("error: op `needy` needs `secret:token`, which the rule does not grant"),
        "{}",
        err(&o)
    );
    assert!(
        err(&o).contains("= hint: add `grants: { needy: [\"secret:token\"] }`"),
        "{}",
        err(&o)
    );
    assert!(
        err(&o).contains("op `needy` needs `workspace:read-write`"),
        "read-only does not cover read-write: {}",
        err(&o)
    );
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert_eq!(
        json(&sluice(home.path(), &["jobs", "--json"])),
        serde_json::json!([]),
        "nothing half-written"
    );

    let bad = write_rule(
        home.path(),
        "h.yaml",
        "rule: web\ngrants:\n  notify: [\"http:*\", http:example.com]\nphases:\n  run: [{ op: notify, with: { webhook: x } }]\n",
    );
    let o = sluice(home.path(), &["validate", bad.to_str().unwrap()]);
    assert!(
        err(&o).contains("`http:*` cannot be granted: sluice grants HTTP per origin"),
        "{}",
        err(&o)
    );
    assert!(
        err(&o).contains("`example.com` is not an origin: write scheme://host[:port]"),
        "{}",
        err(&o)
    );
    let ungranted = write_rule(
        home.path(),
        "u.yaml",
        "rule: web\nphases:\n  run: [{ op: notify, with: { webhook: x } }]\n",
    );
    let o = sluice(home.path(), &["validate", ungranted.to_str().unwrap()]);
    assert!(
        err(&o).contains("error: op `notify` needs `http:*`, which the rule does not grant"),
        "{}",
        err(&o)
    );
    assert!(
        err(&o).contains(
            "= hint: grant each origin it calls, e.g. `grants: { notify: [\"http:https://hooks.example.com\"] }`"
        ),
        "{}",
        err(&o)
    );
}

/// A loopback HTTP/1.1 server that answers from `respond(path)` and records each request
/// (`METHOD PATH BODY`) and each connection it accepted.
pub(crate) struct Server {
    pub(crate) port: u16,
    pub(crate) requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub(crate) connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Each request's header lines, lowercased names, in the order of `requests`.
    pub(crate) headers: std::sync::Arc<std::sync::Mutex<Vec<Vec<String>>>>,
}

pub(crate) fn serve(respond: fn(&str) -> (u16, Vec<u8>)) -> Server {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = Server {
        port,
        requests: Default::default(),
        connections: Default::default(),
        headers: Default::default(),
    };
    let (requests, connections) = (server.requests.clone(), server.connections.clone());
    let headers = server.headers.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            connections.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut length = 0usize;
            let mut lines = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some((name, value)) = h.trim_end().split_once(':') {
                    lines.push(format!("{}: {}", name.to_ascii_lowercase(), value.trim()));
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            headers.lock().unwrap().push(lines);
            requests.lock().unwrap().push(format!(
                "{method} {path} {}",
                String::from_utf8_lossy(&body)
            ));
            let (status, answer) = respond(path);
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                answer.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&answer);
        }
    });
    server
}

#[test]
fn http_reaches_only_granted_origins_with_a_bounded_response() {
    let home = crate::home();
    let app = serve(|path| match path {
        "/health" => (200, br#"{"status":"up"}"#.to_vec()),
        "/big" => (200, vec![b'x'; 9 << 20]),
        "/hook" => (200, b"ok".to_vec()),
        _ => (404, b"no".to_vec()),
    });
    let other = serve(|_| (200, b"should never be asked".to_vec()));
    let rule = format!(
        r#"
rule: egress
grants:
  test: [http:http://127.0.0.1:{app}]
  notify: [http:http://127.0.0.1:{app}]
phases:
  run:
    - {{ id: granted, op: test, with: {{ checks: [{{ http: {{ url: "http://127.0.0.1:{app}/health" }}, json: {{ pointer: /status, equals: up }} }}] }} }}
    - {{ id: other-port, op: test, on-error: continue, with: {{ checks: [{{ http: {{ url: "http://127.0.0.1:{other}/" }} }}] }} }}
    - {{ id: too-big, op: test, on-error: continue, with: {{ checks: [{{ http: {{ url: "http://127.0.0.1:{app}/big" }} }}] }} }}
    - {{ id: tell, op: notify, with: {{ webhook: "http://127.0.0.1:{app}/hook", text: "web ${{{{ params.v }}}} is out" }} }}
params:
  v: {{ default: "1.4.2" }}
"#,
        app = app.port,
        other = other.port
    );
    let path = write_rule(home.path(), "egress.yaml", &rule);
    let o = sluice(home.path(), &["run", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));

    let v = show(home.path(), "egress-1");
    assert_eq!(v["steps"]["granted"]["result"]["status"], "success", "{v}");
    assert_eq!(
        message(&v, "other-port"),
        format!(
            "1 of 1 checks failed: GET http://127.0.0.1:{0}/: request to http://127.0.0.1:{0}/ denied by the host: the op is not granted `http:http://127.0.0.1:{0}`; add it to the rule's grants",
            other.port
        )
    );
    assert_eq!(
        other.connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "denied before a connection was opened"
    );
    assert!(
        message(&v, "too-big").ends_with("/big: HTTP response body size exceeds limit"),
        "{}",
        message(&v, "too-big")
    );
    let requests = app.requests.lock().unwrap().clone();
    assert!(
        requests.contains(&r#"POST /hook {"text":"web 1.4.2 is out"}"#.to_string()),
        "{requests:?}"
    );
    let logs = out(&sluice(
        home.path(),
        &["logs", "egress-1", "--step", "other-port"],
    ));
    assert!(
        logs.contains(&format!(
            "http request to http://127.0.0.1:{} denied: not granted to op `test`",
            other.port
        )),
        "{logs}"
    );
    let logs = out(&sluice(
        home.path(),
        &["logs", "egress-1", "--step", "too-big"],
    ));
    assert!(
        logs.contains("/big cut: over the limit of 8388608 bytes"),
        "{logs}"
    );
}
