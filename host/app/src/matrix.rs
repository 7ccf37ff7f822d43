//! Matrix, the open chat backend: the server logs in as a bot account (client-server API v3),
//! long-polls `/sync`, joins the rooms it is invited to, answers `!sluice ...` commands in
//! the command's thread, records what else is said, and posts followed jobs' transitions with
//! `m.room.message`. What it reads goes to [`crate::chat`] like Slack's.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_runner::Observer;

use crate::chat::ChatOrigin;
use crate::{App, AppError};

/// How a command is written in a Matrix room: `!sluice approve web-release-1`.
pub const PREFIX: &str = "!sluice";

/// The bot account: the homeserver, from `--matrix-homeserver`, and its user and password from
/// `SLUICE_MATRIX_USER` and `SLUICE_MATRIX_PASSWORD`.
#[derive(Debug, Clone)]
pub struct MatrixBot {
    /// `https://matrix.example.org`.
    pub homeserver: String,
    /// `sluice` or `@sluice:example.org`.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl MatrixBot {
    /// The bot from the environment, `None` without a homeserver or a user.
    pub fn from_env(homeserver: Option<&str>) -> Option<MatrixBot> {
        Some(MatrixBot {
            homeserver: homeserver?.trim_end_matches('/').to_string(),
            user: std::env::var("SLUICE_MATRIX_USER").ok()?,
            password: std::env::var("SLUICE_MATRIX_PASSWORD").unwrap_or_default(),
        })
    }
}

/// A logged-in bot: its access token, its user id, where its sync is.
#[derive(Debug)]
pub struct MatrixSession {
    bot: MatrixBot,
    token: String,
    /// `@sluice:example.org`: its own messages are not read back.
    pub user_id: String,
    since: Option<String>,
    txn: u64,
}

const CALL_TIMEOUT: Duration = Duration::from_secs(20);

impl MatrixSession {
    /// Logs in with the password (`m.login.password`).
    pub async fn login(bot: &MatrixBot, client: &reqwest::Client) -> Result<Self, AppError> {
        let body = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": bot.user },
            "password": bot.password,
            "initial_device_display_name": "sluice",
        });
        let url = url(&bot.homeserver, &["login"])?;
        let answer = send(client.post(url).json(&body), "log in").await?;
        let (Some(token), Some(user_id)) =
            (answer["access_token"].as_str(), answer["user_id"].as_str())
        else {
            return Err(AppError::Load(format!(
                "the homeserver's login answer has no access token: {answer}"
            )));
        };
        Ok(MatrixSession {
            bot: bot.clone(),
            token: token.to_string(),
            user_id: user_id.to_string(),
            since: None,
            txn: 0,
        })
    }

    /// Sends a text message to `room`, in the thread of `thread` when given.
    pub async fn say(
        &mut self,
        client: &reqwest::Client,
        room: &str,
        text: &str,
        thread: Option<&str>,
    ) -> Result<(), AppError> {
        self.txn += 1;
        let txn = format!("sluice-{}-{}", sluice_runner::now(), self.txn);
        let mut content = json!({ "msgtype": "m.text", "body": text });
        if let Some(event) = thread {
            content["m.relates_to"] = json!({
                "rel_type": "m.thread",
                "event_id": event,
                "is_falling_back": true,
                "m.in_reply_to": { "event_id": event },
            });
        }
        let url = url(
            &self.bot.homeserver,
            &["rooms", room, "send", "m.room.message", &txn],
        )?;
        send(
            client.put(url).bearer_auth(&self.token).json(&content),
            "post a message",
        )
        .await
        .map(|_| ())
    }
}

/// `HOMESERVER/_matrix/client/v3/` and the path segments, each escaped.
fn url(homeserver: &str, segments: &[&str]) -> Result<reqwest::Url, AppError> {
    let mut u = reqwest::Url::parse(homeserver)
        .map_err(|e| AppError::Usage(format!("--matrix-homeserver {homeserver}: {e}")))?;
    u.path_segments_mut()
        .map_err(|_| AppError::Usage(format!("--matrix-homeserver {homeserver}: not a base URL")))?
        .pop_if_empty()
        .extend(["_matrix", "client", "v3"])
        .extend(segments);
    Ok(u)
}

/// Where the homeserver serves the content of an `mxc://SERVER/ID` address (authenticated
/// media, `/_matrix/client/v1/media/download`).
fn media_url(homeserver: &str, mxc: Option<&str>) -> Option<reqwest::Url> {
    let (server, id) = mxc?.strip_prefix("mxc://")?.split_once('/')?;
    let mut u = reqwest::Url::parse(homeserver).ok()?;
    u.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .extend(["_matrix", "client", "v1", "media", "download", server, id]);
    Some(u)
}

/// One call; the homeserver's `errcode` and `error` when it refuses.
async fn send(r: reqwest::RequestBuilder, what: &str) -> Result<Value, AppError> {
    let r = r
        .timeout(CALL_TIMEOUT + Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| AppError::Load(format!("cannot {what} on the Matrix homeserver: {e}")))?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        Ok(v)
    } else {
        Err(AppError::Load(format!(
            "the Matrix homeserver refused to {what}: {status} {} {}",
            v["errcode"].as_str().unwrap_or(""),
            v["error"].as_str().unwrap_or("")
        )))
    }
}

impl App {
    /// One `/sync` (waiting up to `wait` for something to happen): joins rooms the bot is
    /// invited to, answers commands, records what is said in rooms that follow jobs. The first
    /// sync of a session only finds where now is: history is not read again. Returns the
    /// jobs a command decided on, for the caller to drive on.
    pub async fn matrix_sync(
        &self,
        s: &mut MatrixSession,
        client: &reqwest::Client,
        wait: Duration,
        rules: Option<&std::path::Path>,
        observer: Arc<dyn Observer>,
    ) -> Result<Vec<String>, AppError> {
        let mut decided = Vec::new();
        let mut u = url(&s.bot.homeserver, &["sync"])?;
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("timeout", &wait.as_millis().to_string());
            if let Some(since) = &s.since {
                q.append_pair("since", since);
            }
        }
        let answer = send(client.get(u).bearer_auth(&s.token), "sync").await?;
        let first = s.since.is_none();
        s.since = answer["next_batch"].as_str().map(str::to_string);
        if let Some(invites) = answer["rooms"]["invite"].as_object() {
            let settings = self.chat_settings().ok();
            for (room, invite) in invites {
                // Only a mapped user brings the bot into a room: anyone else could read the
                // jobs it follows there.
                let inviter = invite["invite_state"]["events"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| {
                        e["type"] == "m.room.member"
                            && e["state_key"] == s.user_id.as_str()
                            && e["content"]["membership"] == "invite"
                    })
                    .and_then(|e| e["sender"].as_str());
                let known = inviter.is_some_and(|who| {
                    settings
                        .as_ref()
                        .is_some_and(|c| c.user("matrix", who).is_some())
                });
                if !known {
                    tracing::warn!(
                        room,
                        inviter,
                        "an invite from a user chat.yaml does not map: not joined"
                    );
                    continue;
                }
                let join = url(&s.bot.homeserver, &["join", room])?;
                if let Err(e) = send(
                    client.post(join).bearer_auth(&s.token).json(&json!({})),
                    "join a room",
                )
                .await
                {
                    tracing::warn!(room, error = %e, "cannot join a room the bot was invited to");
                }
            }
        }
        if first {
            return Ok(decided);
        }
        let Some(joined) = answer["rooms"]["join"].as_object() else {
            return Ok(decided);
        };
        for (room, r) in joined {
            let Some(events) = r["timeline"]["events"].as_array() else {
                continue;
            };
            for e in events {
                let (Some(id), Some(sender)) = (e["event_id"].as_str(), e["sender"].as_str())
                else {
                    continue;
                };
                if sender == s.user_id {
                    continue;
                }
                match self.chat_first_seen(&format!("matrix:{id}")).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(room, event = id, error = %e, "a Matrix event was not read");
                        continue;
                    }
                }
                let origin = ChatOrigin {
                    backend: "matrix".into(),
                    room: room.clone(),
                    user: sender.to_string(),
                    message: id.to_string(),
                };
                match e["type"].as_str() {
                    Some("m.room.message") => {
                        let c = &e["content"];
                        if c["m.relates_to"]["rel_type"] == "m.replace" {
                            let text = c["m.new_content"]["body"].as_str().unwrap_or("");
                            self.record_or_log(&origin, "chat-edit", text).await;
                            continue;
                        }
                        let body = c["body"].as_str().unwrap_or("");
                        if let Some(command) = body.strip_prefix(PREFIX) {
                            let reply = self
                                .chat_command(&origin, command.trim(), rules, observer.clone())
                                .await;
                            let text = if reply.ok {
                                reply.text
                            } else {
                                format!("refused: {}", reply.text)
                            };
                            if let Err(e) = s.say(client, room, &text, Some(id)).await {
                                tracing::warn!(room, error = %e, "a command's answer was not posted");
                            }
                            if reply.ok
                                && let Some(job) = command.split_whitespace().nth(1)
                            {
                                decided.push(job.to_string());
                            }
                            continue;
                        }
                        if matches!(
                            c["msgtype"].as_str(),
                            Some("m.file" | "m.image" | "m.video" | "m.audio")
                        ) {
                            let bytes = match media_url(&s.bot.homeserver, c["url"].as_str()) {
                                Some(u) => crate::chat::download(client, u, &s.token).await,
                                None => Err("it has no mxc:// address".to_string()),
                            };
                            if let Err(e) = self.chat_record_file(&origin, body, bytes).await {
                                tracing::warn!(room, error = %e, "a posted file was not recorded");
                            }
                            continue;
                        }
                        self.record_or_log(&origin, "chat", body).await;
                    }
                    Some("m.room.redaction") => {
                        let what = e["redacts"]
                            .as_str()
                            .or_else(|| e["content"]["redacts"].as_str())
                            .unwrap_or("");
                        self.record_or_log(
                            &origin,
                            "chat-delete",
                            &format!("deleted message {what}"),
                        )
                        .await;
                    }
                    _ => {}
                }
            }
        }
        Ok(decided)
    }

    /// Records a message; a failure is logged, and the rest of the sync is still read.
    async fn record_or_log(&self, origin: &ChatOrigin, kind: &str, text: &str) {
        if let Err(e) = self.chat_record(origin, kind, text).await {
            tracing::warn!(room = origin.room, message = origin.message, error = %e, "a chat message was not recorded");
        }
    }

    /// Posts what the rooms following jobs on Matrix were not told yet, in order; a gate's
    /// post carries the exact commands that decide it.
    pub async fn matrix_round(
        &self,
        s: &mut MatrixSession,
        client: &reqwest::Client,
    ) -> Result<usize, AppError> {
        let mut posted = 0;
        let mut failed_rooms: Vec<(String, String)> = Vec::new();
        for post in self.chat_pending("matrix").await? {
            let key = (post.room.clone(), post.job.clone());
            if failed_rooms.contains(&key) {
                continue;
            }
            if !post.text.is_empty() {
                let mut text = post.text.clone();
                if let Some((step, kinds)) = &post.gate {
                    let commands: Vec<String> = kinds
                        .iter()
                        .map(|k| {
                            let why = if *k == sluice_model::DecisionKind::SkipWindow {
                                " WHY"
                            } else {
                                ""
                            };
                            format!("{PREFIX} {} {} step={step}{why}", k.as_str(), post.job)
                        })
                        .collect();
                    text.push_str(&format!("\nto decide: {}", commands.join("  |  ")));
                }
                if let Err(e) = s.say(client, &post.room, &text, None).await {
                    tracing::warn!(room = post.room, job = post.job, error = %e, "a chat post failed");
                    failed_rooms.push(key);
                    continue;
                }
                posted += 1;
            }
            self.chat_posted(&post).await?;
        }
        Ok(posted)
    }
}
