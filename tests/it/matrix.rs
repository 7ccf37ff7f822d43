//! ChatOps on Matrix, end to end against a real Synapse homeserver started by the test on
//! 127.0.0.1 (SQLite, a config generated then overridden, users registered with its admin
//! script): a person invites the bot, follows a job, sees its gate with the commands that
//! decide it, talks (recorded in the job), is refused when not allowed, and approves.
//!
//! Synapse lives in a venv under `target/toolchains/synapse` (`.ci/run` installs it). Run
//! alone: `cargo test --test it matrix::`; about 20 s.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::server::{Server, token};

/// A Synapse homeserver of the test's own; killed when dropped.
struct Synapse {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> PathBuf {
    let p = crate::jobs::root().join("target/toolchains/synapse/bin/python");
    assert!(
        p.exists(),
        "Synapse is missing: python3 -m venv target/toolchains/synapse && target/toolchains/synapse/bin/pip install matrix-synapse==1.163.2 (.ci/run does)"
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Synapse {
    fn start(dir: &Path) -> Synapse {
        let py = python();
        let config = dir.join("homeserver.yaml");
        let o = Command::new(&py)
            .args([
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                "localhost",
                "--config-path",
            ])
            .arg(&config)
            .arg("--data-directory")
            .arg(dir)
            .args(["--generate-config", "--report-stats=no"])
            // Its log config names files relative to here: keep them in the test's directory.
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let port = free_port();
        // Later keys win: the listener on loopback, no key servers, no rate limits in the way.
        let limit = "{per_second: 1000, burst_count: 1000}";
        let overrides = format!(
            "\nlisteners:\n  - port: {port}\n    bind_addresses: ['127.0.0.1']\n    type: http\n    tls: false\n    x_forwarded: false\n    resources: [{{names: [client], compress: false}}]\ntrusted_key_servers: []\nsuppress_key_server_warning: true\nrc_message: {limit}\nrc_login: {{address: {limit}, account: {limit}, failed_attempts: {limit}}}\nrc_joins: {{local: {limit}, remote: {limit}}}\nrc_invites: {{per_room: {limit}, per_user: {limit}, per_issuer: {limit}}}\n"
        );
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&overrides);
        std::fs::write(&config, text).unwrap();
        let log = std::fs::File::create(dir.join("synapse.out")).unwrap();
        let child = Command::new(&py)
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(&config)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let s = Synapse {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = reqwest::blocking::Client::new();
        while client
            .get(format!("{}/_matrix/client/versions", s.url))
            .send()
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            assert!(
                Instant::now() < deadline,
                "Synapse did not start: see {}",
                dir.join("synapse.out").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        s
    }

    fn register(&self, user: &str, password: &str) {
        let o = Command::new(python())
            .args(["-m", "synapse._scripts.register_new_matrix_user", "-c"])
            .arg(self.dir.join("homeserver.yaml"))
            .args(["-u", user, "-p", password, "--no-admin", &self.url])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// A person in Matrix, through the client-server API.
struct Person {
    url: String,
    token: String,
    client: reqwest::blocking::Client,
    txn: std::cell::Cell<u32>,
}

impl Person {
    fn login(hs: &Synapse, user: &str, password: &str) -> Person {
        let client = reqwest::blocking::Client::new();
        let v: Value = client
            .post(format!("{}/_matrix/client/v3/login", hs.url))
            .json(&json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": user }, "password": password }))
            .send()
            .unwrap()
            .json()
            .unwrap();
        Person {
            url: hs.url.clone(),
            token: v["access_token"]
                .as_str()
                .unwrap_or_else(|| panic!("{v}"))
                .to_string(),
            client,
            txn: std::cell::Cell::new(0),
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self
            .client
            .request(method, format!("{}/_matrix/client/v3{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().unwrap();
        let status = r.status();
        let v: Value = r.json().unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::OK, "{path}: {v}");
        v
    }

    fn say(&self, room: &str, text: &str) {
        self.txn.set(self.txn.get() + 1);
        self.call(
            reqwest::Method::PUT,
            &format!("/rooms/{room}/send/m.room.message/t{}", self.txn.get()),
            Some(json!({ "msgtype": "m.text", "body": text })),
        );
    }

    /// Waits until a message in `room` contains `text`; returns its body.
    fn heard(&self, room: &str, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.call(
                reqwest::Method::GET,
                &format!("/rooms/{room}/messages?dir=b&limit=100"),
                None,
            );
            let bodies: Vec<String> = v["chunk"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_string))
                .collect();
            if let Some(b) = bodies.iter().find(|b| b.contains(text)) {
                return b.clone();
            }
            assert!(
                Instant::now() < deadline,
                "nobody said {text:?}: {bodies:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

const CHAT: &str = "users:\n  \"matrix:@alice:localhost\": alice\n  \"matrix:@eve:localhost\": eve\ncommands: [follow, status, approve, reject]\n";
const PERMISSIONS: &str = "allow:\n  approve: [alice]\n  annotate: ['*']\n";
const RULE: &str = "rule: chatty\nphases:\n  run:\n    - { id: approval, op: approve, with: { message: \"ship it?\" } }\n    - { id: ship, op: log, with: { message: shipped } }\n";

#[test]
fn a_matrix_room_follows_a_job_and_a_permitted_person_approves_it_there() {
    let home = crate::home();
    let hs_dir = home.path().join("synapse");
    std::fs::create_dir(&hs_dir).unwrap();
    let hs = Synapse::start(&hs_dir);
    for (u, p) in [
        ("sluice", "bot-pass"),
        ("alice", "alice-pass"),
        ("eve", "eve-pass"),
    ] {
        hs.register(u, p);
    }
    std::fs::write(home.path().join("chat.yaml"), CHAT).unwrap();
    std::fs::write(home.path().join("permissions.yaml"), PERMISSIONS).unwrap();
    let rules = home.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("chatty.yaml"), RULE).unwrap();
    let server = Server::with_env(
        home.path(),
        &rules,
        &["--matrix-homeserver", &hs.url],
        &[
            ("SLUICE_MATRIX_USER", "sluice"),
            ("SLUICE_MATRIX_PASSWORD", "bot-pass"),
        ],
        crate::server::client(),
    );
    let ann = token(home.path(), "ann");
    let (s, v) = server.post("/api/v1/jobs", &ann, json!({ "rule": "chatty" }));
    assert_eq!(s, StatusCode::CREATED, "{v}");
    server.until("chatty-1", &ann, |v| v["status"] == "waiting");

    // alice makes a room and invites the bot; eve joins; the bot joins by itself.
    let alice = Person::login(&hs, "alice", "alice-pass");
    let eve = Person::login(&hs, "eve", "eve-pass");
    let room = alice.call(
        reqwest::Method::POST,
        "/createRoom",
        Some(
            json!({ "preset": "private_chat", "invite": ["@sluice:localhost", "@eve:localhost"] }),
        ),
    )["room_id"]
        .as_str()
        .unwrap()
        .to_string();
    eve.call(
        reqwest::Method::POST,
        &format!("/join/{room}"),
        Some(json!({})),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !alice.call(
        reqwest::Method::GET,
        &format!("/rooms/{room}/joined_members"),
        None,
    )["joined"]
        .as_object()
        .unwrap()
        .contains_key("@sluice:localhost")
    {
        assert!(Instant::now() < deadline, "the bot never joined");
        std::thread::sleep(Duration::from_millis(200));
    }

    alice.say(&room, "!sluice follow chatty-1");
    alice.heard(&room, "this room follows chatty-1");
    let gate = alice.heard(&room, "waits at `approval`");
    assert!(
        gate.contains("!sluice approve chatty-1 step=approval"),
        "{gate}"
    );

    // Talk is recorded in the job.
    alice.say(&room, "canary is green");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = server.get("/api/v1/jobs/chatty-1/annotations", &ann);
        let said = v["annotations"].as_array().unwrap().iter().any(|a| {
            a["kind"] == "chat"
                && a["author"] == "alice"
                && a["title"]
                    .as_str()
                    .unwrap_or("")
                    .contains("canary is green")
        });
        if said {
            break;
        }
        assert!(Instant::now() < deadline, "not recorded: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A file posted there is kept in the job.
    let uri = alice
        .client
        .post(format!(
            "{}/_matrix/media/v3/upload?filename=notes.txt",
            hs.url
        ))
        .bearer_auth(&alice.token)
        .header("content-type", "text/plain")
        .body("release notes for 3.0")
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["content_uri"]
        .as_str()
        .unwrap()
        .to_string();
    alice.txn.set(alice.txn.get() + 1);
    alice.call(
        reqwest::Method::PUT,
        &format!("/rooms/{room}/send/m.room.message/t{}", alice.txn.get()),
        Some(json!({ "msgtype": "m.file", "body": "notes.txt", "url": uri, "info": { "size": 21, "mimetype": "text/plain" } })),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let file = loop {
        let (_, v) = server.get("/api/v1/jobs/chatty-1/annotations", &ann);
        if let Some(f) = v["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["kind"] == "file")
        {
            break f.clone();
        }
        assert!(Instant::now() < deadline, "the file was not kept: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(file["title"], "notes.txt");
    let body = server
        .req(
            reqwest::Method::GET,
            &format!("/api/v1/jobs/chatty-1/annotations/{}", file["id"]),
            Some(&ann),
        )
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(body, "release notes for 3.0");

    // eve may not approve; alice may.
    eve.say(&room, "!sluice approve chatty-1");
    alice.heard(&room, "eve may not approve");
    assert_eq!(
        server.get("/api/v1/jobs/chatty-1", &ann).1["status"],
        "waiting"
    );
    alice.say(&room, "!sluice approve chatty-1 ship it");
    let job = server.until("chatty-1", &ann, |v| {
        v["status"] != "waiting" && v["status"] != "running"
    });
    assert_eq!(job["status"], "succeeded", "{job}");
    alice.heard(&room, "chatty-1 ended succeeded");
}
