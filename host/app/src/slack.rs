//! Slack, one of the chat backends: request signatures (`v0:` HMAC-SHA256 over the timestamp
//! and the raw body, with the app's signing secret, compared in constant time, five minutes of
//! replay window), what its slash commands, interactive messages and Events API deliveries
//! carry, and the Web API calls sluice makes (`chat.postMessage`, `chat.update`) with the bot
//! token. The front end (the server) hands requests in; the rest is [`crate::chat`].

use std::time::Duration;

use serde_json::{Value, json};
use sluice_model::DecisionKind;

use crate::chat::{ChatOrigin, ChatPost};
use crate::{App, AppError};

/// How old a signed request may be, in seconds (Slack's advice: five minutes).
pub const REPLAY_WINDOW_SECS: u64 = 300;

/// How long one Web API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The Slack app's settings on this server: from `SLUICE_SLACK_SIGNING_SECRET`,
/// `SLUICE_SLACK_BOT_TOKEN`, and the Web API's address.
#[derive(Debug, Clone)]
pub struct SlackApp {
    /// Signs every request Slack sends.
    pub signing_secret: String,
    /// Authorises the Web API calls (`xoxb-...`).
    pub bot_token: String,
    /// `https://slack.com/api` (a test's recording server otherwise).
    pub api_url: String,
}

impl SlackApp {
    /// The settings from the environment, `None` when Slack is not set up here.
    pub fn from_env(api_url: &str) -> Option<SlackApp> {
        let signing_secret = std::env::var("SLUICE_SLACK_SIGNING_SECRET").ok()?;
        let bot_token = std::env::var("SLUICE_SLACK_BOT_TOKEN").unwrap_or_default();
        Some(SlackApp {
            signing_secret,
            bot_token,
            api_url: api_url.trim_end_matches('/').to_string(),
        })
    }

    /// Checks a request's `X-Slack-Signature` and `X-Slack-Request-Timestamp` against its raw
    /// body at `now` (seconds since the epoch).
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: u64,
    ) -> Result<(), AppError> {
        let (Some(ts), Some(sig)) = (timestamp, signature) else {
            return Err(AppError::Unauthenticated(
                "not signed by Slack: X-Slack-Signature and X-Slack-Request-Timestamp are missing"
                    .into(),
            ));
        };
        let Ok(t) = ts.trim().parse::<u64>() else {
            return Err(AppError::Unauthenticated(
                "X-Slack-Request-Timestamp is not a time".into(),
            ));
        };
        if now.abs_diff(t) > REPLAY_WINDOW_SECS {
            return Err(AppError::Unauthenticated(format!(
                "the request was signed {} s from now, outside the {REPLAY_WINDOW_SECS} s window: a replay, or a clock off",
                now.abs_diff(t)
            )));
        }
        if !signed(self.signing_secret.as_bytes(), ts.trim(), body, sig) {
            return Err(AppError::Unauthenticated(
                "the signature does not match: check SLUICE_SLACK_SIGNING_SECRET against the app's signing secret".into(),
            ));
        }
        Ok(())
    }
}

/// Whether `sig` (`v0=HEX`) is the HMAC-SHA256 of `v0:TS:BODY` under `secret`.
fn signed(secret: &[u8], ts: &str, body: &[u8], sig: &str) -> bool {
    use hmac::Mac as _;
    let Some(given) = sig
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h.trim()).ok())
    else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(b"v0:");
    mac.update(ts.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// A slash command (`application/x-www-form-urlencoded`): who, where, and the text after
/// `/sluice`.
pub fn slash_command(form: &[(String, String)]) -> Result<(ChatOrigin, String), AppError> {
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (user, room) = (get("user_id"), get("channel_id"));
    if user.is_empty() || room.is_empty() {
        return Err(AppError::Usage(
            "a slash command carries user_id and channel_id".into(),
        ));
    }
    Ok((
        ChatOrigin {
            backend: "slack".into(),
            room,
            user,
            message: get("trigger_id"),
        },
        get("text"),
    ))
}

/// A button pressed on a message sluice posted (`block_actions`): who, where, and the command
/// it stands for (`approve JOB step=STEP`), with the message to update.
#[derive(Debug, Clone)]
pub struct Pressed {
    /// Who pressed it, where.
    pub origin: ChatOrigin,
    /// The command.
    pub command: String,
    /// The pressed message's `ts`, to replace its buttons with what happened.
    pub message_ts: String,
}

/// Reads an interactive payload (the `payload` field of the form).
pub fn pressed(payload: &str) -> Result<Pressed, AppError> {
    let v: Value = serde_json::from_str(payload)
        .map_err(|e| AppError::Usage(format!("the interactive payload is not JSON: {e}")))?;
    let action = &v["actions"][0];
    let (Some(id), Some(value)) = (action["action_id"].as_str(), action["value"].as_str()) else {
        return Err(AppError::Usage("the payload has no action".into()));
    };
    let Some(kind) = id.strip_prefix("sluice-") else {
        return Err(AppError::Usage(format!("`{id}` is not a sluice button")));
    };
    let Some((job, step)) = value.split_once(' ') else {
        return Err(AppError::Usage(format!("`{value}` is not JOB STEP")));
    };
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    Ok(Pressed {
        origin: ChatOrigin {
            backend: "slack".into(),
            room: s("/channel/id"),
            user: s("/user/id"),
            message: s("/message/ts"),
        },
        command: format!("{kind} {job} step={step}"),
        message_ts: s("/message/ts"),
    })
}

/// An Events API delivery, read.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// The URL check when the app's events URL is set: answer the challenge.
    Challenge(String),
    /// Something said in a channel (or edited, or deleted).
    Said {
        /// `event_id`: retries carry the same one.
        event_id: String,
        /// Who, where.
        origin: ChatOrigin,
        /// `chat`, `chat-edit`, `chat-delete` or `chat-file`.
        kind: &'static str,
        /// What.
        text: String,
        /// Files posted with it: name and where Slack keeps it.
        files: Vec<(String, String)>,
    },
    /// Anything else (a bot's own message, an event sluice does not use).
    Ignored,
}

/// Reads an Events API body.
pub fn delivery(body: &[u8]) -> Result<Delivery, AppError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| AppError::Usage(format!("the event is not JSON: {e}")))?;
    match v["type"].as_str() {
        Some("url_verification") => {
            return Ok(Delivery::Challenge(
                v["challenge"].as_str().unwrap_or("").to_string(),
            ));
        }
        Some("event_callback") => {}
        _ => return Ok(Delivery::Ignored),
    }
    let e = &v["event"];
    if e["type"] != "message" || e["bot_id"].is_string() {
        return Ok(Delivery::Ignored);
    }
    let s = |x: &Value| x.as_str().unwrap_or("").to_string();
    let mut files = Vec::new();
    let (kind, user, text, ts) = match e["subtype"].as_str() {
        None | Some("thread_broadcast") => ("chat", s(&e["user"]), s(&e["text"]), s(&e["ts"])),
        Some("message_changed") => (
            "chat-edit",
            s(&e["message"]["user"]),
            s(&e["message"]["text"]),
            s(&e["message"]["ts"]),
        ),
        Some("message_deleted") => (
            "chat-delete",
            s(&e["previous_message"]["user"]),
            format!("deleted: {}", s(&e["previous_message"]["text"])),
            s(&e["deleted_ts"]),
        ),
        Some("file_share") => {
            for f in e["files"].as_array().into_iter().flatten() {
                files.push((s(&f["name"]), s(&f["url_private_download"])));
            }
            ("chat", s(&e["user"]), s(&e["text"]), s(&e["ts"]))
        }
        _ => return Ok(Delivery::Ignored),
    };
    Ok(Delivery::Said {
        event_id: s(&v["event_id"]),
        origin: ChatOrigin {
            backend: "slack".into(),
            room: s(&e["channel"]),
            user,
            message: ts,
        },
        kind,
        text,
        files,
    })
}

/// The blocks of a post: the text, and for a gate a button per decision it takes (action id
/// `sluice-KIND`, value `JOB STEP`).
pub fn blocks(post: &ChatPost) -> Value {
    let mut blocks = vec![json!({
        "type": "section",
        "text": { "type": "mrkdwn", "text": escape(&post.text) },
    })];
    if let Some((step, kinds)) = &post.gate {
        // skip-window asks for a reason a button cannot give: it is typed (`/sluice skip-window
        // JOB WHY`), and the text says so.
        let buttons: Vec<Value> = kinds
            .iter()
            .filter(|k| **k != DecisionKind::SkipWindow)
            .map(|k| {
                let mut b = json!({
                    "type": "button",
                    "action_id": format!("sluice-{}", k.as_str()),
                    "text": { "type": "plain_text", "text": label(*k) },
                    "value": format!("{} {step}", post.job),
                });
                match k {
                    DecisionKind::Approve | DecisionKind::Resume | DecisionKind::Retry => {
                        b["style"] = json!("primary")
                    }
                    DecisionKind::Reject | DecisionKind::Abort | DecisionKind::Rollback => {
                        b["style"] = json!("danger")
                    }
                    DecisionKind::Skip | DecisionKind::SkipWindow => {}
                }
                b
            })
            .collect();
        blocks.push(
            json!({ "type": "actions", "block_id": format!("gate {step}"), "elements": buttons }),
        );
    }
    Value::Array(blocks)
}

fn label(k: DecisionKind) -> String {
    let s = k.as_str().replace('-', " ");
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// Slack's three markup characters, escaped.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl SlackApp {
    /// Where Slack keeps a posted file, if it is Slack's: its files host, or the Web API's own
    /// (the bot token goes nowhere else).
    pub fn file_url(&self, url: &str) -> Option<reqwest::Url> {
        let u = reqwest::Url::parse(url).ok()?;
        let api = reqwest::Url::parse(&self.api_url).ok()?;
        let slacks = u.scheme() == "https" && u.host_str() == Some("files.slack.com");
        let same = u.scheme() == api.scheme()
            && u.host_str() == api.host_str()
            && u.port_or_known_default() == api.port_or_known_default();
        (slacks || same).then_some(u)
    }
}

impl App {
    /// Keeps the files of a message posted in a followed Slack channel (see
    /// [`App::chat_record_file`]).
    pub async fn slack_files(
        &self,
        slack: &SlackApp,
        client: &reqwest::Client,
        origin: &ChatOrigin,
        files: &[(String, String)],
    ) -> Result<(), AppError> {
        for (name, url) in files {
            let bytes = match slack.file_url(url) {
                Some(u) => crate::chat::download(client, u, &slack.bot_token).await,
                None => Err(format!("`{url}` is not Slack's")),
            };
            self.chat_record_file(origin, name, bytes).await?;
        }
        Ok(())
    }

    /// Posts what the rooms following jobs on Slack were not told yet, in order; a room whose
    /// post fails is tried again next round (at least once).
    pub async fn slack_round(
        &self,
        slack: &SlackApp,
        client: &reqwest::Client,
    ) -> Result<usize, AppError> {
        let mut posted = 0;
        let mut failed_rooms: Vec<(String, String)> = Vec::new();
        for post in self.chat_pending("slack").await? {
            let key = (post.room.clone(), post.job.clone());
            if failed_rooms.contains(&key) {
                continue;
            }
            if !post.text.is_empty() {
                let body = json!({
                    "channel": post.room,
                    "text": post.text,
                    "blocks": blocks(&post),
                    "unfurl_links": false,
                });
                if let Err(why) = call(client, slack, "chat.postMessage", &body).await {
                    tracing::warn!(
                        room = post.room,
                        job = post.job,
                        "a chat post failed: {why}"
                    );
                    failed_rooms.push(key);
                    continue;
                }
                posted += 1;
            }
            self.chat_posted(&post).await?;
        }
        Ok(posted)
    }

    /// Posts `text` to a channel (a command's late answer).
    pub async fn slack_say(
        &self,
        slack: &SlackApp,
        client: &reqwest::Client,
        room: &str,
        text: &str,
    ) -> Result<(), AppError> {
        let body = json!({ "channel": room, "text": text });
        call(client, slack, "chat.postMessage", &body)
            .await
            .map_err(AppError::Load)
    }

    /// Replaces a pressed message's buttons with what the press did.
    pub async fn slack_update(
        &self,
        slack: &SlackApp,
        client: &reqwest::Client,
        room: &str,
        ts: &str,
        text: &str,
    ) -> Result<(), AppError> {
        let body = json!({
            "channel": room,
            "ts": ts,
            "text": text,
            "blocks": [{ "type": "section", "text": { "type": "mrkdwn", "text": escape(text) } }],
        });
        call(client, slack, "chat.update", &body)
            .await
            .map_err(AppError::Load)
    }
}

/// One Web API call; Slack answers 200 with `"ok": false` and an `error` when it refuses.
async fn call(
    client: &reqwest::Client,
    slack: &SlackApp,
    method: &str,
    body: &Value,
) -> Result<(), String> {
    let r = client
        .post(format!("{}/{method}", slack.api_url))
        .bearer_auth(&slack.bot_token)
        .header("content-type", "application/json; charset=utf-8")
        .timeout(CALL_TIMEOUT)
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("cannot reach Slack's Web API: {e}"))?;
    let status = r.status();
    let answer: Value = r.json().await.unwrap_or(Value::Null);
    if status.is_success() && answer["ok"] == true {
        Ok(())
    } else {
        Err(format!(
            "{method} answered {status}: {}",
            answer["error"].as_str().unwrap_or("no error given")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> SlackApp {
        SlackApp {
            signing_secret: "8f742231b10e8888abcd99yyyzzz85a5".into(),
            bot_token: "xoxb-test".into(),
            api_url: "http://127.0.0.1:1".into(),
        }
    }

    #[test]
    fn signatures_are_checked_as_slack_documents_them() {
        // Slack's documented example request.
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        let s = app();
        assert!(
            s.verify(Some("1531420618"), Some(sig), body, 1_531_420_618)
                .is_ok()
        );
        // Stale, tampered, unsigned.
        assert!(
            s.verify(Some("1531420618"), Some(sig), body, 1_531_420_618 + 301)
                .is_err()
        );
        let mut other = body.to_vec();
        other[0] = b'T';
        assert!(
            s.verify(Some("1531420618"), Some(sig), &other, 1_531_420_618)
                .is_err()
        );
        assert!(s.verify(None, Some(sig), body, 1_531_420_618).is_err());
        assert!(
            s.verify(Some("1531420618"), Some("v0=00"), body, 1_531_420_618)
                .is_err()
        );
    }

    #[test]
    fn gate_posts_carry_one_button_per_choice() {
        let post = ChatPost {
            backend: "slack".into(),
            room: "C1".into(),
            job: "web-release-1".into(),
            seq: 5,
            text: "web-release-1 waits at `go-live` <b>".into(),
            gate: Some((
                "go-live".into(),
                vec![DecisionKind::Approve, DecisionKind::Reject],
            )),
            last: false,
        };
        let b = blocks(&post);
        assert_eq!(
            b[0]["text"]["text"],
            "web-release-1 waits at `go-live` &lt;b&gt;"
        );
        let buttons = &b[1]["elements"];
        assert_eq!(buttons[0]["action_id"], "sluice-approve");
        assert_eq!(buttons[0]["value"], "web-release-1 go-live");
        assert_eq!(buttons[0]["style"], "primary");
        assert_eq!(buttons[1]["action_id"], "sluice-reject");
        assert_eq!(buttons[1]["style"], "danger");
    }

    #[test]
    fn events_read_messages_edits_and_deletions() {
        let said = |body: &str| delivery(body.as_bytes()).unwrap();
        match said(
            r#"{"type":"event_callback","event_id":"Ev1","event":{"type":"message","channel":"C1","user":"U1","text":"rollout looks fine","ts":"1.2"}}"#,
        ) {
            Delivery::Said {
                event_id,
                origin,
                kind,
                text,
                ..
            } => {
                assert_eq!(
                    (event_id.as_str(), kind, text.as_str()),
                    ("Ev1", "chat", "rollout looks fine")
                );
                assert_eq!(
                    (
                        origin.room.as_str(),
                        origin.user.as_str(),
                        origin.message.as_str()
                    ),
                    ("C1", "U1", "1.2")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            said(
                r#"{"type":"event_callback","event_id":"Ev2","event":{"type":"message","subtype":"message_changed","channel":"C1","message":{"user":"U1","text":"edited","ts":"1.2"}}}"#
            ),
            Delivery::Said {
                kind: "chat-edit",
                ..
            }
        ));
        assert!(matches!(
            said(
                r#"{"type":"event_callback","event_id":"Ev3","event":{"type":"message","subtype":"message_deleted","channel":"C1","deleted_ts":"1.2","previous_message":{"user":"U1","text":"x"}}}"#
            ),
            Delivery::Said {
                kind: "chat-delete",
                ..
            }
        ));
        assert!(matches!(
            said(
                r#"{"type":"event_callback","event_id":"Ev4","event":{"type":"message","bot_id":"B1","channel":"C1","text":"mine"}}"#
            ),
            Delivery::Ignored
        ));
        assert!(matches!(
            said(r#"{"type":"url_verification","challenge":"abc"}"#),
            Delivery::Challenge(c) if c == "abc"
        ));
    }
}
