//! The server's other ways in and out: passwords for the job monitor, a trusted single sign-on
//! proxy, HTTPS, webhook notifications of gates from the durable outbox, and the op-call and
//! gate-wait metrics, and a retry with edited inputs from the monitor's page. Real server
//! processes on 127.0.0.1, a real webhook receiver.

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::jobs::{command, err, out, sluice};
use crate::sandbox::serve;
use crate::server::{PERMISSIONS, Server, answer, start_release, token, waiting};

/// `sluice password set --user USER` with `password` on stdin.
fn set_password(home: &Path, user: &str, password: &str) -> std::process::Output {
    let mut child = command(home, &["password", "set", "--user", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

/// A client that keeps its cookies to itself: the test reads and sends them by hand.
fn browser() -> Client {
    crate::server::fresh(Client::builder().redirect(reqwest::redirect::Policy::none()))
}

fn session_cookie(r: &reqwest::blocking::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            c.split(';')
                .next()
                .filter(|kv| kv.starts_with("sluice_session="))
        })
        .map(str::to_string)
}

#[test]
fn a_person_signs_in_to_the_monitor_with_a_password() {
    let home = crate::home();
    let o = set_password(home.path(), "bob", "short");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("a password has 12 to 1024 characters"),
        "{}",
        err(&o)
    );
    let o = set_password(home.path(), "bob", "first password, long enough");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = set_password(home.path(), "bob", "correct horse battery staple");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let server = Server::with_args(home.path(), Path::new("examples"), &[], browser());

    let login = |user: &str, password: &str| {
        server
            .client
            .post(format!("{}/login", server.url))
            .form(&[("user", user), ("password", password)])
            .send()
            .unwrap()
    };
    // A wrong password, the replaced one and an unknown user are refused alike.
    for (user, password) in [
        ("bob", "correct horse battery stapler"),
        ("bob", "first password, long enough"),
        ("nobody", "correct horse battery staple"),
    ] {
        let r = login(user, password);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{user}");
        assert!(session_cookie(&r).is_none());
        assert!(
            r.text()
                .unwrap()
                .contains("the user name or password is wrong")
        );
    }
    let r = login("bob", "correct horse battery staple");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = session_cookie(&r).expect("a session");
    let page = server
        .client
        .get(format!("{}/", server.url))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().unwrap().contains("bob"));
    // The session reads the API as bob, signed in by password.
    let (s, v) = answer(
        server
            .req(reqwest::Method::GET, "/api/v1/whoami", None)
            .header("cookie", &cookie),
    );
    assert_eq!(
        (s, v["name"].as_str(), v["via"].as_str()),
        (StatusCode::OK, Some("bob"), Some("password"))
    );

    // Guessing passwords counts against the address like guessing tokens.
    for _ in 0..7 {
        assert_eq!(
            login("bob", "guess guess guess").status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login("bob", "correct horse battery staple").status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    let o = sluice(home.path(), &["password", "remove", "--user", "bob"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = sluice(home.path(), &["password", "remove", "--user", "bob"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("`bob` has no password"), "{}", err(&o));
}

#[test]
fn a_trusted_proxy_names_the_user_and_nobody_else_can() {
    let home = crate::home();
    std::fs::write(home.path().join("permissions.yaml"), PERMISSIONS).unwrap();
    let ann = token(home.path(), "ann");
    let trusting = Server::with_args(
        home.path(),
        Path::new("examples"),
        &[
            "--auth-header",
            "X-Forwarded-User",
            "--trusted-proxy",
            "127.0.0.1",
        ],
        browser(),
    );
    let whoami = |server: &Server, user: &str| {
        answer(
            server
                .req(reqwest::Method::GET, "/api/v1/whoami", None)
                .header("x-forwarded-user", user),
        )
    };
    let (s, v) = whoami(&trusting, "carol");
    assert_eq!(
        (s, v["name"].as_str(), v["via"].as_str()),
        (StatusCode::OK, Some("carol"), Some("proxy"))
    );
    let (s, _) = whoami(&trusting, "two words");
    assert_eq!(s, StatusCode::UNAUTHORIZED, "not a user name");

    // carol approves through the proxy; a forged cross-site request through it is refused.
    let job = start_release(&trusting, &ann, home.path(), "5.0");
    trusting.until(&job, &ann, waiting);
    let decide = |site: &str| {
        answer(
            trusting
                .req(
                    reqwest::Method::POST,
                    &format!("/api/v1/jobs/{job}/decisions"),
                    None,
                )
                .header("x-forwarded-user", "carol")
                .header("sec-fetch-site", site)
                .json(&json!({ "decision": "approve", "inputs": { "window": "now" } })),
        )
    };
    let (s, v) = decide("cross-site");
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("cross-site"), "{v}");
    let (s, v) = decide("same-origin");
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let v = trusting.until(&job, &ann, |v| v["status"] == "succeeded");
    assert!(v.to_string().contains("\"carol\""), "{v}");

    // The monitor: the proxy's user gets a session (for the CSRF token) without signing in;
    // a form posted without the page's token is refused.
    let page = trusting
        .client
        .get(format!("{}/", trusting.url))
        .header("x-forwarded-user", "carol")
        .send()
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let cookie = session_cookie(&page).expect("a session for the proxy's user");
    let forged = trusting
        .client
        .post(format!("{}/jobs/{job}/annotate", trusting.url))
        .header("x-forwarded-user", "carol")
        .header("cookie", &cookie)
        .form(&[("text", "forged")])
        .send()
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    drop(trusting);

    // A server that trusts another address ignores the header: no token, no entry.
    let other = Server::with_args(
        home.path(),
        Path::new("examples"),
        &[
            "--auth-header",
            "X-Forwarded-User",
            "--trusted-proxy",
            "10.9.8.7",
        ],
        browser(),
    );
    let (s, _) = whoami(&other, "carol");
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let r = other
        .client
        .get(format!("{}/", other.url))
        .header("x-forwarded-user", "carol")
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "to the sign-in page");

    let o = sluice(
        home.path(),
        &["server", "--auth-header", "X-Forwarded-User"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("--trusted-proxy"), "{}", err(&o));
}

#[test]
fn the_server_speaks_https_with_the_given_certificate() {
    let home = crate::home();
    let (cert, key) = (home.path().join("cert.pem"), home.path().join("key.pem"));
    let o = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (installed by .ci/run)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ann = token(home.path(), "ann");
    let trusted = crate::server::fresh(Client::builder().add_root_certificate(
        reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap(),
    ));
    let server = Server::with_args(
        home.path(),
        Path::new("examples"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        trusted,
    );
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let (s, v) = server.get("/api/v1/whoami", &ann);
    assert_eq!((s, v["name"].as_str()), (StatusCode::OK, Some("ann")));
    // Plain HTTP to the HTTPS port gets no answer, and a client that does not trust the
    // certificate does not talk.
    let plain = server.url.replace("https://", "http://");
    assert!(
        Client::new()
            .get(format!("{plain}/healthz"))
            .send()
            .is_err()
    );
    assert!(
        Client::new()
            .get(format!("{}/healthz", server.url))
            .send()
            .is_err()
    );
    // A silent client holds up nobody: its handshake waits in its own task.
    let _silent = std::net::TcpStream::connect(server.url.trim_start_matches("https://")).unwrap();
    let (s, _) = server.get("/api/v1/whoami", &ann);
    assert_eq!(s, StatusCode::OK);

    // A key that is not one, or that fits another certificate: refused before listening.
    std::fs::write(home.path().join("bad.pem"), "not a key").unwrap();
    let o = sluice(
        home.path(),
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            home.path().join("bad.pem").to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("cannot read the private key"),
        "{}",
        err(&o)
    );
    assert!(
        err(&o).contains("fix --tls-cert and --tls-key"),
        "{}",
        err(&o)
    );
}

/// How many times the flaky webhook was called.
static FLAKY: AtomicUsize = AtomicUsize::new(0);

/// The messages a receiver got at `path`.
fn bodies(requests: &std::sync::Mutex<Vec<String>>, path: &str) -> Vec<Value> {
    requests
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| r.strip_prefix(&format!("POST {path} ")))
        .map(|b| serde_json::from_str(b).unwrap())
        .collect()
}

#[test]
fn a_gate_is_notified_from_the_outbox_even_when_no_server_ran_when_it_opened() {
    let home = crate::home();
    let receiver = serve(|path| match path {
        // Fails twice, then takes it: delivery retries.
        "/flaky" if FLAKY.fetch_add(1, Ordering::SeqCst) < 2 => (502, b"busy".to_vec()),
        "/gone" => (410, b"gone".to_vec()),
        _ => (200, b"ok".to_vec()),
    });
    let port = receiver.port;
    std::fs::write(
        home.path().join("notifications.yaml"),
        format!(
            "monitor: https://sluice.example.com\nwebhooks:\n  chat:\n    url: http://127.0.0.1:{port}/slack\n    format: slack\n  audit:\n    url: http://127.0.0.1:{port}/flaky\n  gone:\n    url: http://127.0.0.1:{port}/gone\n  qa-only:\n    url: http://127.0.0.1:{port}/qa\n    rules: [qa-release]\n"
        ),
    )
    .unwrap();

    // The command line drives the job to its gate; no server runs: the messages wait in the
    // journal, written with the gate's event.
    let o = sluice(
        home.path(),
        &[
            "run",
            "examples/web-release.yaml",
            "-p",
            "version=6.0",
            "-p",
            "env=production",
            "-p",
            &format!("root={}", home.path().display()),
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}{}", out(&o), err(&o));
    assert!(receiver.requests.lock().unwrap().is_empty());

    let ann = token(home.path(), "ann");
    let server = Server::start(home.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    while bodies(&receiver.requests, "/flaky").len() < 3
        || bodies(&receiver.requests, "/slack").is_empty()
        || bodies(&receiver.requests, "/gone").is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "not delivered: {:?}",
            receiver.requests.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let slack = bodies(&receiver.requests, "/slack");
    assert_eq!(slack.len(), 1, "delivered once: {slack:?}");
    let text = slack[0]["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        text.starts_with("*web-release-1* waits for approval at `go-live`"),
        "{text}"
    );
    assert_eq!(
        slack[0]["blocks"][2]["elements"][0]["url"],
        "https://sluice.example.com/jobs/web-release-1"
    );
    let audit = bodies(&receiver.requests, "/flaky");
    assert_eq!(
        audit.len(),
        3,
        "two failures, then delivered, then never again"
    );
    assert!(
        audit.iter().all(|a| a == &audit[0]),
        "the same message each time"
    );
    assert_eq!(audit[0]["type"], "dev.sluice.gate.waiting");
    assert_eq!(audit[0]["job"]["id"], "web-release-1");
    assert_eq!(audit[0]["job"]["params"]["version"], "6.0");
    assert_eq!(audit[0]["gate"]["step"], "go-live");
    assert!(
        bodies(&receiver.requests, "/qa").is_empty(),
        "another rule's webhook"
    );
    assert_eq!(
        bodies(&receiver.requests, "/gone").len(),
        1,
        "410 is not retried"
    );

    // What was delivered, and what was given up, is in the journal.
    let messages = |home: &Path| {
        let (s, v) = server.get("/api/v1/jobs/web-release-1/notifications", &ann);
        assert_eq!(s, StatusCode::OK, "{v}");
        let _ = home;
        v
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let v = loop {
        let v = messages(home.path());
        let settled = v["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["delivered_at"].is_u64() || m["gave_up"] == true);
        if settled {
            break v;
        }
        assert!(Instant::now() < deadline, "{v:#}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let by_sink = |sink: &str| {
        v["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["sink"] == sink)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_sink("audit")["attempts"], 3);
    assert_eq!(by_sink("gone")["gave_up"], true);
    assert_eq!(
        by_sink("gone")["last_error"],
        "the webhook answered 410 Gone"
    );
    assert!(
        by_sink("audit")["body"].is_null(),
        "the API shows no bodies: {v}"
    );
    let metrics = server
        .client
        .get(format!("{}/metrics", server.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("sluice_notifications_pending 0"),
        "{metrics}"
    );
}

#[test]
fn op_calls_and_gate_waits_are_measured() {
    let home = crate::home();
    let ann = token(home.path(), "ann");
    let bob = token(home.path(), "bob");
    let server = Server::start(home.path());
    let job = start_release(&server, &ann, home.path(), "7.0");
    server.until(&job, &ann, waiting);
    let (s, v) = server.post(
        &format!("/api/v1/jobs/{job}/decisions"),
        &bob,
        json!({ "decision": "approve", "inputs": { "window": "now" } }),
    );
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    server.until(&job, &ann, |v| v["status"] == "succeeded");
    let metrics = server
        .client
        .get(format!("{}/metrics", server.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let count = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}_count ")))
            .unwrap_or_else(|| panic!("no {name}: {metrics}"))
            .parse()
            .unwrap()
    };
    let steps = server.get(&format!("/api/v1/jobs/{job}"), &ann).1["steps"]
        .as_object()
        .unwrap()
        .values()
        .filter(|s| s["attempt"].as_u64().unwrap_or(0) > 0)
        .count() as u64;
    assert!(steps >= 5, "{steps}");
    assert_eq!(count("sluice_op_call_duration_seconds"), steps, "{metrics}");
    assert_eq!(count("sluice_gate_wait_seconds"), 1, "{metrics}");
}

/// The `csrf` field of a page's forms.
fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a form with its CSRF token")
        .to_string()
}

#[test]
fn a_trapped_step_is_retried_from_the_page_with_edited_inputs() {
    let home = crate::home();
    let rules = home.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("smoke.yaml"),
        "rule: smoke\nphases:\n  run:\n    - { id: check, op: assert, on-error: trap, with: { that: false, message: not yet } }\n",
    )
    .unwrap();
    let ann = token(home.path(), "ann");
    let server = Server::with_args(home.path(), &rules, &[], browser());
    let (s, v) = server.post("/api/v1/jobs", &ann, json!({ "rule": "smoke" }));
    assert_eq!(s, StatusCode::CREATED, "{v}");
    server.until("smoke-1", &ann, waiting);

    let r = server
        .client
        .post(format!("{}/login", server.url))
        .form(&[("token", ann.as_str())])
        .send()
        .unwrap();
    let cookie = session_cookie(&r).expect("a session");
    let page = |cookie: &str| {
        server
            .client
            .get(format!("{}/jobs/smoke-1", server.url))
            .header("cookie", cookie)
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    let html = page(&cookie);
    assert!(html.contains("Edit the input for a retry"), "{html}");
    assert!(html.contains("name=\"editjson.that\""), "{html}");
    assert!(
        html.contains("name=\"edit.message\" value=\"not yet\""),
        "{html}"
    );
    let csrf = csrf_of(&html);
    let retry = |that: &str| {
        server
            .client
            .post(format!("{}/jobs/smoke-1/decide", server.url))
            .header("cookie", &cookie)
            .form(&[
                ("csrf", csrf.as_str()),
                ("step", "check"),
                ("decision", "retry"),
                ("editjson.that", that),
                ("edit.message", "not yet"),
                ("comment", "the check was wrong"),
            ])
            .send()
            .unwrap()
    };
    let r = retry("tru");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.text()
            .unwrap()
            .contains("the edited input `that` is not JSON")
    );
    assert_eq!(
        server.get("/api/v1/jobs/smoke-1", &ann).1["steps"]["check"]["attempt"],
        1,
        "nothing recorded"
    );

    let r = retry("true");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let v = server.until("smoke-1", &ann, |v| v["status"] == "succeeded");
    assert_eq!(v["steps"]["check"]["attempt"], 2);
    assert_eq!(v["steps"]["check"]["input"]["that"], true);
    let retried: Vec<&Value> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| &h["event"])
        .filter(|e| e["type"] == "decided")
        .collect();
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert_eq!(retried[0]["kind"], "retry");
    assert_eq!(
        retried[0]["inputs"],
        json!({ "that": true }),
        "only what was changed"
    );
    assert_eq!(retried[0]["by"]["name"], "ann");
}

#[test]
fn the_openapi_document_describes_every_route_the_api_serves() {
    let home = crate::home();
    let ann = token(home.path(), "ann");
    let server = Server::start(home.path());
    let r = server
        .client
        .get(format!("{}/api/v1/openapi.json", server.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "no token needed");
    let doc: Value = r.json().unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["servers"][0]["url"], "/api/v1");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = Vec::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"]["401"].is_object(),
                "{method} {path} documents 401"
            );
            operations.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    operations.sort();
    assert_eq!(
        operations,
        [
            "DELETE /chat/follows",
            "GET /jobs",
            "GET /jobs/{job}",
            "GET /jobs/{job}/annotations",
            "GET /jobs/{job}/annotations/{id}",
            "GET /jobs/{job}/logs",
            "GET /jobs/{job}/logs/stream",
            "GET /jobs/{job}/notifications",
            "GET /locks",
            "GET /rules",
            "GET /whoami",
            "GET /workers",
            "POST /chat/follows",
            "POST /events",
            "POST /jobs",
            "POST /jobs/{job}/annotations",
            "POST /jobs/{job}/cancel",
            "POST /jobs/{job}/decisions",
            "POST /rules/validate",
        ]
    );
    assert_eq!(
        paths["/jobs/{job}/decisions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/DecideBody"
    );
    // Every documented GET is served there (none falls through to "no such endpoint").
    for op in operations.iter().filter_map(|o| o.strip_prefix("GET ")) {
        if op.ends_with("/stream") {
            continue;
        }
        let path = op.replace("{job}", "nope-1").replace("{id}", "1");
        let (s, v) = server.get(&format!("/api/v1{path}"), &ann);
        let fell_through = v["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("no such endpoint"));
        assert!(!fell_through, "{op}: {s} {v}");
    }
}

/// How many times the CloudEvents sink was called.
static SINK: AtomicUsize = AtomicUsize::new(0);

#[test]
fn every_transition_goes_out_as_a_cloud_event_in_order_after_the_sink_comes_back() {
    let home = crate::home();
    let receiver = serve(|path| match path {
        // Down for the first two requests.
        "/ce" if SINK.fetch_add(1, Ordering::SeqCst) < 2 => (503, b"down".to_vec()),
        _ => (202, Vec::new()),
    });
    std::fs::write(
        home.path().join("notifications.yaml"),
        format!(
            "monitor: https://sluice.example.com\nwebhooks:\n  events:\n    url: http://127.0.0.1:{}/ce\n    format: cloudevents\n",
            receiver.port
        ),
    )
    .unwrap();
    let rule = crate::jobs::write_rule(
        home.path(),
        "tiny.yaml",
        "rule: tiny\nphases:\n  run:\n    - { id: hello, op: log, with: { message: hi } }\n    - { id: sure, op: assert, with: { that: true } }\n  post:\n    - { id: bye, op: log, with: { message: bye } }\n",
    );
    // The job runs and ends in a terminal; no server runs, so every event waits in the outbox.
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let shown: Value =
        serde_json::from_str(&out(&sluice(home.path(), &["show", "tiny-1", "--json"]))).unwrap();
    let history = shown["history"].as_array().unwrap();
    assert!(history.len() >= 8, "{history:?}");

    let _server = Server::start(home.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    let received = loop {
        let got = bodies(&receiver.requests, "/ce");
        if got.len() >= history.len() + 2 {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {}",
            got.len(),
            history.len() + 2
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let ids: Vec<&str> = received.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut expected = vec!["tiny-1:1", "tiny-1:1"];
    let all: Vec<String> = (1..=history.len()).map(|n| format!("tiny-1:{n}")).collect();
    expected.extend(all.iter().map(String::as_str));
    assert_eq!(
        ids, expected,
        "the first one twice (the sink was down), then each once, in order"
    );
    for (e, h) in received[2..].iter().zip(history) {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["source"], "https://sluice.example.com");
        assert_eq!(e["subject"], "tiny-1");
        assert_eq!(e["datacontenttype"], "application/json");
        assert_eq!(
            e["data"]["event"], h["event"],
            "data carries the journal entry"
        );
        assert_eq!(e["data"]["job"]["rule"], "tiny");
        let ty = e["type"].as_str().unwrap();
        assert!(ty.starts_with("dev.sluice."), "{ty}");
    }
    let types: Vec<&str> = received[2..]
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"dev.sluice.job.created"));
    assert_eq!(types.last(), Some(&"dev.sluice.job.finished"));
    assert!(types.contains(&"dev.sluice.step.finished"));
    let last = received.last().unwrap();
    assert_eq!(last["data"]["job"]["status"], "succeeded");
    let step = received[2..]
        .iter()
        .find(|e| e["type"] == "dev.sluice.step.finished")
        .unwrap();
    assert!(step["data"]["step"]["status"].is_string(), "{step}");
}
