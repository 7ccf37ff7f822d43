//! ChatOps over HTTP, Slack's side: its slash commands, button presses and Events API
//! deliveries, each checked against the app's signing secret before anything is read, then
//! handed to the service layer; and the loop that posts the transitions of followed jobs.
//! Outside `/api/v1`: Slack authenticates by signature, not token.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sluice_app::slack::{self, SlackApp};
use tokio_util::sync::CancellationToken;

use crate::Server;
use crate::problem::Problem;

/// Slack as set up on this server, and the request checked against its signing secret.
fn checked<'a>(
    server: &'a Server,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<&'a SlackApp, Problem> {
    let Some(app) = &server.config.slack else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "Slack is not set up on this server: set SLUICE_SLACK_SIGNING_SECRET and SLUICE_SLACK_BOT_TOKEN (docs/chatops.md)",
        ));
    };
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    app.verify(
        h("x-slack-request-timestamp"),
        h("x-slack-signature"),
        body,
        sluice_app::now() / 1000,
    )?;
    Ok(app)
}

/// The answer Slack shows in the channel of a command.
fn say(reply: &sluice_app::ChatReply) -> Response {
    let text = if reply.ok {
        reply.text.clone()
    } else {
        format!("refused: {}", reply.text)
    };
    axum::Json(json!({ "response_type": "in_channel", "text": text })).into_response()
}

/// `POST /chat/slack/commands`: `/sluice approve web-release-42 looks good`.
pub(crate) async fn slack_command(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    checked(&server, &headers, &body)?;
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("not a form: {e}")))?;
    let (origin, text) = slack::slash_command(&form)?;
    // Slack waits 3 s for the answer. A command that takes longer (a named action runs its job
    // to its first gate, a cancel runs post) is answered "working on it", and its answer is
    // posted to the channel when it is done.
    let task = {
        let server = server.clone();
        let origin = origin.clone();
        let text = text.clone();
        server.clone().tasks.spawn(async move {
            let reply = server
                .app
                .chat_command(
                    &origin,
                    &text,
                    server.config.rules.as_deref(),
                    server.live.clone(),
                )
                .await;
            drive_named(&server, &text);
            reply
        })
    };
    let mut task = task;
    match tokio::time::timeout(SLACK_ANSWER, &mut task).await {
        Ok(Ok(reply)) => Ok(say(&reply)),
        Ok(Err(e)) => Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the command failed: {e}"),
        )),
        Err(_) => {
            let app = server.config.slack.clone().expect("checked above");
            let late = server.clone();
            server.tasks.spawn(async move {
                let Ok(reply) = task.await else { return };
                let text = if reply.ok {
                    reply.text.clone()
                } else {
                    format!("refused: {}", reply.text)
                };
                if let Err(e) = late
                    .app
                    .slack_say(&app, &client(), &origin.room, &text)
                    .await
                {
                    tracing::warn!(error = %e, "a command's late answer was not posted");
                }
            });
            Ok(axum::Json(json!({
                "response_type": "in_channel",
                "text": format!("working on `{text}`: the answer follows here"),
            }))
            .into_response())
        }
    }
}

/// How long a slash command's answer may take before it is answered "working on it" (Slack
/// gives up after 3 s).
const SLACK_ANSWER: Duration = Duration::from_millis(2_500);

/// `POST /chat/slack/interactive`: a button on a gate's message was pressed; the message's
/// buttons are replaced with what it did.
pub(crate) async fn slack_pressed(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    let app = checked(&server, &headers, &body)?.clone();
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("not a form: {e}")))?;
    let payload = form
        .iter()
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| Problem::new(StatusCode::BAD_REQUEST, "no `payload` field"))?;
    let pressed = slack::pressed(payload)?;
    let reply = server
        .app
        .chat_command(
            &pressed.origin,
            &pressed.command,
            server.config.rules.as_deref(),
            server.live.clone(),
        )
        .await;
    drive_named(&server, &pressed.command);
    let text = if reply.ok {
        reply.text.clone()
    } else {
        format!("refused: {}", reply.text)
    };
    // Only a decision that landed closes the buttons; a refused press leaves them for others.
    if reply.ok
        && let Err(e) = server
            .app
            .slack_update(
                &app,
                &client(),
                &pressed.origin.room,
                &pressed.message_ts,
                &text,
            )
            .await
    {
        tracing::warn!(error = %e, "cannot update the pressed message");
    }
    Ok(axum::Json(
        json!({ "response_type": "in_channel", "replace_original": false, "text": text }),
    )
    .into_response())
}

/// `POST /chat/slack/events`: the URL check, and what is said in channels (recorded in the
/// jobs they follow; a retried delivery is recorded once).
pub(crate) async fn slack_events(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    checked(&server, &headers, &body)?;
    match slack::delivery(&body)? {
        slack::Delivery::Challenge(c) => Ok(axum::Json(json!({ "challenge": c })).into_response()),
        slack::Delivery::Ignored => Ok(StatusCode::OK.into_response()),
        slack::Delivery::Said {
            event_id,
            origin,
            kind,
            text,
            files,
        } => {
            let key = format!("slack:{event_id}");
            if server.app.chat_first_seen(&key).await? {
                let recorded = async {
                    if !text.is_empty() || files.is_empty() {
                        server.app.chat_record(&origin, kind, &text).await?;
                    }
                    let app = server.config.slack.as_ref().expect("checked above");
                    server
                        .app
                        .slack_files(app, &client(), &origin, &files)
                        .await
                }
                .await;
                if let Err(e) = recorded {
                    // Not recorded: forget it, so Slack's retry of this delivery is.
                    let _ = server.app.chat_unsee(&key).await;
                    return Err(e.into());
                }
            }
            Ok(StatusCode::OK.into_response())
        }
    }
}

/// A decision from chat is recorded detached; the job goes on in a task of this process.
fn drive_named(server: &Arc<Server>, command: &str) {
    if let Some(job) = command.split_whitespace().nth(1) {
        crate::api::drive_on(server, job);
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap_or_default()
}

/// Posts the transitions of followed jobs to their rooms until `stop`: every worker
/// interval, and again at once while a round posted something.
pub(crate) async fn post(server: Arc<Server>, stop: CancellationToken) {
    let Some(slack) = server.config.slack.clone() else {
        return;
    };
    let client = client();
    loop {
        let round = tokio::select! {
            r = server.app.slack_round(&slack, &client) => r,
            () = stop.cancelled() => return,
        };
        let busy = match round {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::warn!(error = %e, "cannot post to chat");
                false
            }
        };
        if !busy {
            tokio::select! {
                () = tokio::time::sleep(server.config.worker_every) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

/// Logs the Matrix bot in, retrying with doubling waits (the homeserver may start after us).
async fn matrix_login(
    bot: &sluice_app::matrix::MatrixBot,
    client: &reqwest::Client,
    stop: &CancellationToken,
) -> Option<sluice_app::matrix::MatrixSession> {
    let mut wait = Duration::from_millis(500);
    loop {
        match sluice_app::matrix::MatrixSession::login(bot, client).await {
            Ok(s) => return Some(s),
            Err(e) => tracing::warn!(error = %e, "the Matrix bot cannot log in; trying again"),
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return None,
        }
        wait = (wait * 2).min(Duration::from_secs(60));
    }
}

/// Reads Matrix until `stop`: long-polls `/sync` as the bot, joining, answering and recording.
pub(crate) async fn matrix_read(server: Arc<Server>, stop: CancellationToken) {
    let Some(bot) = server.config.matrix.clone() else {
        return;
    };
    let client = reqwest::Client::new();
    let Some(mut session) = matrix_login(&bot, &client, &stop).await else {
        return;
    };
    tracing::info!(user = session.user_id, "the Matrix bot is logged in");
    loop {
        let round = tokio::select! {
            r = server.app.matrix_sync(
                &mut session,
                &client,
                Duration::from_secs(10),
                server.config.rules.as_deref(),
                server.live.clone(),
            ) => r,
            () = stop.cancelled() => return,
        };
        match round {
            Ok(decided) => {
                for job in decided {
                    crate::api::drive_on(&server, &job);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "a Matrix sync failed");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }
}

/// Posts followed jobs' transitions to Matrix rooms until `stop`.
pub(crate) async fn matrix_post(server: Arc<Server>, stop: CancellationToken) {
    let Some(bot) = server.config.matrix.clone() else {
        return;
    };
    let client = client();
    let Some(mut session) = matrix_login(&bot, &client, &stop).await else {
        return;
    };
    loop {
        let round = tokio::select! {
            r = server.app.matrix_round(&mut session, &client) => r,
            () = stop.cancelled() => return,
        };
        let busy = match round {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::warn!(error = %e, "cannot post to Matrix");
                false
            }
        };
        if !busy {
            tokio::select! {
                () = tokio::time::sleep(server.config.worker_every) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}
