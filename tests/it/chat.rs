//! ChatOps on Slack, against a running `sluice server`: requests signed in the test as Slack
//! signs them (and forged, stale, replayed ones), and Slack's Web API played by a recording
//! server on 127.0.0.1 (`--slack-api-url`), whose requests are checked for what the real
//! service takes. Run alone: `cargo test --test it chat::`.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::server::{Server, token};

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

const CHAT: &str = "users:\n  slack:U1: bob\n  slack:U2: dave\ncommands: [follow, unfollow, status, approve, reject, annotate]\nactions:\n  again: { rule: chatty, allow: [] }\n  slow: { rule: slow }\n";
/// A rule whose first step takes longer than Slack waits for a command's answer.
const SLOW: &str = "rule: slow\ngrants: { test: [\"exec:sleep\"] }\nphases:\n  run:\n    - { id: nap, op: test, with: { checks: [{ name: nap, command: { program: sleep, args: [\"3\"] } }] } }\n";
const PERMISSIONS: &str = "groups:\n  release-managers: [bob]\nallow:\n  approve: [group:release-managers]\n  annotate: ['*']\n  cancel: [ann]\n";
const RULE: &str = "rule: chatty\nchat: { follow: [\"slack:C3\"] }\nphases:\n  run:\n    - { id: approval, op: approve, with: { message: \"ship it?\" } }\n    - { id: ship, op: log, with: { message: shipped } }\n";

/// `X-Slack-Signature` for `body` at `ts`, as Slack computes it.
fn sign(ts: u64, body: &str) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Posts `body` to `path` signed at `ts` (with `signature`, or the right one).
fn slack(
    server: &Server,
    path: &str,
    content_type: &str,
    body: &str,
    ts: u64,
    signature: Option<&str>,
) -> (StatusCode, Value) {
    let sig = signature.map_or_else(|| sign(ts, body), str::to_string);
    crate::server::answer(
        server
            .req(reqwest::Method::POST, path, None)
            .header("content-type", content_type)
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig)
            .body(body.to_string()),
    )
}

/// A slash command `/sluice TEXT` from `user` in channel C1.
fn command(server: &Server, user: &str, text: &str) -> (StatusCode, Value) {
    let body = serde_urlencoded::to_string([
        ("command", "/sluice"),
        ("text", text),
        ("user_id", user),
        ("channel_id", "C1"),
        ("trigger_id", "13345224609.738474920.8088930838d88f008e0"),
    ])
    .unwrap();
    slack(
        server,
        "/chat/slack/commands",
        "application/x-www-form-urlencoded",
        &body,
        now(),
        None,
    )
}

/// Waits until the recording Slack got a request matching `what`; returns it and its headers.
fn posted(api: &crate::sandbox::Server, what: impl Fn(&str) -> bool) -> (String, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let requests = api.requests.lock().unwrap().clone();
        if let Some(i) = requests.iter().position(|r| what(r)) {
            return (requests[i].clone(), api.headers.lock().unwrap()[i].clone());
        }
        assert!(
            Instant::now() < deadline,
            "Slack never got it: {requests:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_slack_channel_follows_a_job_records_what_is_said_and_decides_with_the_same_permissions() {
    let home = crate::home();
    std::fs::write(home.path().join("chat.yaml"), CHAT).unwrap();
    std::fs::write(home.path().join("permissions.yaml"), PERMISSIONS).unwrap();
    let rules = home.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("chatty.yaml"), RULE).unwrap();
    std::fs::write(rules.join("slow.yaml"), SLOW).unwrap();
    let api = crate::sandbox::serve(|path| match path {
        "/files/canary.txt" => (200, b"p95 240 ms, 0 errors".to_vec()),
        _ => (200, br#"{"ok": true, "ts": "1700000000.000100"}"#.to_vec()),
    });
    let api_url = format!("http://127.0.0.1:{}/api", api.port);
    let server = Server::with_env(
        home.path(),
        &rules,
        &["--slack-api-url", &api_url],
        &[
            ("SLUICE_SLACK_SIGNING_SECRET", SECRET),
            ("SLUICE_SLACK_BOT_TOKEN", "xoxb-test"),
        ],
        crate::server::client(),
    );
    let ann = token(home.path(), "ann");
    let (s, v) = server.post("/api/v1/jobs", &ann, json!({ "rule": "chatty" }));
    assert_eq!(s, StatusCode::CREATED, "{v}");
    server.until("chatty-1", &ann, |v| v["status"] == "waiting");

    // The rule names a room: it follows every job of the rule from the start.
    posted(&api, |r| {
        r.contains(r#""channel":"C3""#) && r.contains("chatty-1 started by ann")
    });

    // A room can follow from the command line too.
    let o = crate::jobs::sluice(
        home.path(),
        &["chat", "follow", "chatty-1", "--room", "slack:C2"],
    );
    assert!(o.status.success(), "{}", crate::jobs::err(&o));
    posted(&api, |r| {
        r.contains(r#""channel":"C2""#) && r.contains("waits at `approval`")
    });

    // And over the API.
    let (s, v) = server.post(
        "/api/v1/chat/follows",
        &ann,
        json!({ "job": "chatty-1", "room": "slack:C4" }),
    );
    assert_eq!(s, StatusCode::CREATED, "{v}");
    posted(&api, |r| {
        r.contains(r#""channel":"C4""#) && r.contains("waits at `approval`")
    });
    let (s, v) = server.post(
        "/api/v1/chat/follows",
        &ann,
        json!({ "job": "chatty-1", "room": "#releases" }),
    );
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = crate::server::answer(server.req(
        reqwest::Method::DELETE,
        "/api/v1/chat/follows?job=chatty-1&room=slack:C4",
        Some(&ann),
    ));
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Follow from the channel: the gate's message comes with its buttons.
    let (s, v) = command(&server, "U1", "follow chatty-1");
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["response_type"], "in_channel");
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("this room follows chatty-1"),
        "{v}"
    );
    let (gate, headers) = posted(&api, |r| {
        r.contains(r#""channel":"C1""#) && r.contains("waits at `approval`")
    });
    assert!(gate.starts_with("POST /api/chat.postMessage "), "{gate}");
    assert!(
        headers.contains(&"authorization: Bearer xoxb-test".to_string()),
        "{headers:?}"
    );
    assert!(
        headers
            .iter()
            .any(|h| h.starts_with("content-type: application/json")),
        "{headers:?}"
    );
    let body: Value = serde_json::from_str(gate.splitn(3, ' ').nth(2).unwrap()).unwrap();
    assert_eq!(body["channel"], "C1");
    let buttons = &body["blocks"][1]["elements"];
    assert_eq!(buttons[0]["action_id"], "sluice-approve");
    assert_eq!(buttons[0]["value"], "chatty-1 approval");
    assert_eq!(buttons[1]["action_id"], "sluice-reject");

    // Forged, stale and unsigned requests are refused before anything is read.
    let body = "command=%2Fsluice&text=approve+chatty-1&user_id=U1&channel_id=C1";
    let (s, _) = slack(
        &server,
        "/chat/slack/commands",
        "application/x-www-form-urlencoded",
        body,
        now(),
        Some("v0=00ff"),
    );
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = slack(
        &server,
        "/chat/slack/commands",
        "application/x-www-form-urlencoded",
        body,
        now() - 600,
        None,
    );
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["detail"].as_str().unwrap().contains("window"), "{v}");
    let (s, _) = crate::server::answer(
        server
            .req(reqwest::Method::POST, "/chat/slack/commands", None)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
    );
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Said in the channel: recorded in the job, once however often Slack retries.
    let said = json!({
        "type": "event_callback", "event_id": "Ev0001",
        "event": { "type": "message", "channel": "C1", "user": "U2", "text": "canary looks fine to me", "ts": "1700000001.000200" }
    })
    .to_string();
    for _ in 0..2 {
        let (s, _) = slack(
            &server,
            "/chat/slack/events",
            "application/json",
            &said,
            now(),
            None,
        );
        assert_eq!(s, StatusCode::OK);
    }
    let (_, v) = server.get("/api/v1/jobs/chatty-1/annotations", &ann);
    let chat: Vec<&Value> = v["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "chat")
        .collect();
    assert_eq!(chat.len(), 1, "{v}");
    assert_eq!(chat[0]["author"], "dave");
    assert!(
        chat[0]["title"]
            .as_str()
            .unwrap()
            .contains("canary looks fine to me"),
        "{v}"
    );
    // A file posted there is kept in the job (downloaded with the bot token from Slack only).
    let shared = json!({
        "type": "event_callback", "event_id": "Ev0002",
        "event": { "type": "message", "subtype": "file_share", "channel": "C1", "user": "U1", "text": "", "ts": "1700000002.000300",
            "files": [
                { "name": "canary.txt", "url_private_download": format!("http://127.0.0.1:{}/files/canary.txt", api.port) },
                { "name": "elsewhere.txt", "url_private_download": "http://198.51.100.7/steal" }
            ] }
    })
    .to_string();
    let (s, _) = slack(
        &server,
        "/chat/slack/events",
        "application/json",
        &shared,
        now(),
        None,
    );
    assert_eq!(s, StatusCode::OK);
    let (_, v) = server.get("/api/v1/jobs/chatty-1/annotations", &ann);
    let file = v["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "file")
        .unwrap_or_else(|| panic!("{v}"))
        .clone();
    assert_eq!(
        (file["title"].as_str(), file["author"].as_str()),
        (Some("canary.txt"), Some("bob"))
    );
    let body = server
        .req(
            reqwest::Method::GET,
            &format!("/api/v1/jobs/chatty-1/annotations/{}", file["id"]),
            Some(&ann),
        )
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(&body[..], b"p95 240 ms, 0 errors");
    let (_, download_headers) = posted(&api, |r| r.starts_with("GET /files/canary.txt"));
    assert!(download_headers.contains(&"authorization: Bearer xoxb-test".to_string()));
    assert!(
        v["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "chat-file"
                && a["title"]
                    .as_str()
                    .unwrap_or("")
                    .contains("not kept: `http://198.51.100.7/steal` is not Slack's")),
        "{v}"
    );

    // The URL check when the events URL is set.
    let (_, v) = slack(
        &server,
        "/chat/slack/events",
        "application/json",
        r#"{"type":"url_verification","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#,
        now(),
        None,
    );
    assert_eq!(
        v["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );

    // Refusals, with their reasons: a chat user no one mapped, a command not allowed, a
    // mapped user the permissions file does not let approve.
    let (_, v) = command(&server, "U9", "status chatty-1");
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("may talk here but not use commands"),
        "{v}"
    );
    let (_, v) = command(&server, "U9", "approve chatty-1");
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("slack:U9 is not mapped to a sluice user"),
        "{v}"
    );
    let (_, v) = command(&server, "U1", "cancel chatty-1");
    assert!(
        v["text"].as_str().unwrap().contains("`cancel` is not allowed here; allowed: follow, unfollow, status, approve, reject, annotate"),
        "{v}"
    );
    let (_, v) = command(&server, "U2", "approve chatty-1");
    assert!(
        v["text"].as_str().unwrap().contains("dave may not approve"),
        "{v}"
    );
    let (_, v) = command(&server, "U1", "deploy $(rm -rf /)");
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .starts_with("refused: `deploy` is not allowed here"),
        "{v}"
    );
    assert_eq!(
        server.get("/api/v1/jobs/chatty-1", &ann).1["status"],
        "waiting"
    );
    let (_, v) = command(&server, "U2", "status chatty-1");
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("waits at `approval` (approval): ship it?"),
        "{v}"
    );

    // bob presses Approve: the job goes on, the message loses its buttons.
    let payload = json!({
        "type": "block_actions",
        "user": { "id": "U1" },
        "channel": { "id": "C1" },
        "message": { "ts": "1700000000.000100" },
        "actions": [{ "action_id": "sluice-approve", "value": "chatty-1 approval" }]
    })
    .to_string();
    let form = serde_urlencoded::to_string([("payload", payload.as_str())]).unwrap();
    let (s, v) = slack(
        &server,
        "/chat/slack/interactive",
        "application/x-www-form-urlencoded",
        &form,
        now(),
        None,
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("approve: recorded for chatty-1 by bob"),
        "{v}"
    );
    let job = server.until("chatty-1", &ann, |v| v["status"] == "succeeded");
    let decided = job["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["event"]["type"] == "decided")
        .unwrap()
        .clone();
    assert_eq!(decided["event"]["by"]["name"], "bob");
    assert_eq!(decided["event"]["by"]["via"], "chat");
    assert_eq!(
        decided["event"]["by"]["chat"],
        json!({ "source": "slack", "room": "C1", "message": "1700000000.000100" })
    );
    let (update, _) = posted(&api, |r| r.starts_with("POST /api/chat.update "));
    assert!(update.contains(r#""ts":"1700000000.000100""#), "{update}");
    posted(&api, |r| r.contains("chatty-1 ended succeeded"));

    // A named action starts its rule with the params it fixes and nothing else.
    let (_, v) = command(&server, "U1", "again env=production");
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("`again` may not set `env`"),
        "{v}"
    );
    let (_, v) = command(&server, "U2", "again");
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("started chatty-2 for dave"),
        "{v}"
    );
    let job = server.until("chatty-2", &ann, |v| v["status"] == "waiting");
    assert_eq!(job["started_by"], "dave");

    // Slack waits 3 s for an answer: a longer command is answered at once, and its answer is
    // posted when it is done.
    let (s, v) = command(&server, "U1", "slow");
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["text"], "working on `slow`: the answer follows here");
    posted(&api, |r| r.contains("slow: started slow-1 for bob"));
}
