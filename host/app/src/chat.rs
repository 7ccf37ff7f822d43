//! ChatOps, the chat-side half of a front end: a room follows jobs (their transitions are
//! posted there), what is said in it while a job lives is recorded in the job, and the
//! commands chat may use (the allowlist of `$SLUICE_HOME/chat.yaml`, Clarive's TalkBack) run as
//! the chat user's mapped sluice user, through the same operations and permission checks as
//! the command line and the API. Nothing typed in chat is run as a shell command or evaluated
//! as an expression: a command is words, split on spaces, matched against a fixed list.
//!
//! The backends (Slack's request signatures and Web API, Matrix's client-server API) live in
//! [`crate::slack`] and the server; what they hand in here is a [`ChatOrigin`] and text.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};
use sluice_engine::{Event, StepStatus};
use sluice_model::{Actor, AuthMethod, DecisionKind};
use sluice_rule::chat::ChatSettings;
use sluice_runner::Observer;
use sluice_store::{LogRow, NewAnnotation};

use crate::{App, AppError, Decision};

/// Where a chat message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatOrigin {
    /// `slack` or `matrix`.
    pub backend: String,
    /// The channel or room id.
    pub room: String,
    /// The chat user's id (`U024BE7LH`, `@bob:example.org`).
    pub user: String,
    /// The message's id (Slack's `ts`, Matrix's event id), or the slash command's trigger id.
    pub message: String,
}

impl ChatOrigin {
    /// `slack:U024BE7LH`, as the chat file maps it.
    pub fn who(&self) -> String {
        format!("{}:{}", self.backend, self.user)
    }
}

/// The answer to a command, posted in its thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatReply {
    /// Whether it was done (a refusal is not).
    pub ok: bool,
    /// What happened, or why not.
    pub text: String,
}

impl ChatReply {
    fn done(text: impl Into<String>) -> Self {
        ChatReply {
            ok: true,
            text: text.into(),
        }
    }

    fn refused(text: impl Into<String>) -> Self {
        ChatReply {
            ok: false,
            text: text.into(),
        }
    }
}

/// A message for a room that follows a job.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatPost {
    /// `slack` or `matrix`.
    pub backend: String,
    /// The room.
    pub room: String,
    /// The job.
    pub job: String,
    /// The last event it covers: once posted, the follow moves past it.
    pub seq: u64,
    /// The text.
    pub text: String,
    /// A gate opened: its step and the decisions it takes, for buttons.
    pub gate: Option<GateButtons>,
    /// The job ended: the room stops following it once this is posted.
    pub last: bool,
}

/// How many log lines of a failed step a post carries.
const FAILURE_LINES: usize = 5;

/// The longest text recorded from one chat message.
pub const MAX_CHAT_TEXT: usize = 16 * 1024;

/// The largest file posted in a room that is kept in the jobs it follows.
pub const MAX_CHAT_FILE: u64 = 16 * 1024 * 1024;

/// Downloads a file posted in chat with `token`, refusing one over [`MAX_CHAT_FILE`] (by its
/// announced length, and again while reading).
pub(crate) async fn download(
    client: &reqwest::Client,
    url: reqwest::Url,
    token: &str,
) -> Result<Vec<u8>, String> {
    let mut r = client
        .get(url)
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| format!("cannot download it: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("the download answered {}", r.status()));
    }
    if r.content_length().is_some_and(|n| n > MAX_CHAT_FILE) {
        return Err(format!("it is over the {} MiB limit", MAX_CHAT_FILE >> 20));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = r
        .chunk()
        .await
        .map_err(|e| format!("the download broke: {e}"))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > MAX_CHAT_FILE {
            return Err(format!("it is over the {} MiB limit", MAX_CHAT_FILE >> 20));
        }
    }
    Ok(bytes)
}

impl App {
    /// The chat file (`$SLUICE_HOME/chat.yaml`, or `SLUICE_CHAT`); chat is not set up without it.
    pub fn chat_settings(&self) -> Result<ChatSettings, AppError> {
        let path = std::env::var_os("SLUICE_CHAT")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| self.home().join("chat.yaml"));
        crate::identity::read_settings(&path, "chat file", sluice_rule::chat::parse)?.ok_or_else(
            || {
                AppError::NotFound(format!(
                    "chat is not set up: write {} (docs/chatops.md)",
                    path.display()
                ))
            },
        )
    }

    /// Runs a command typed in chat (`approve web-release-42 looks good`) for `origin`, with
    /// the rules of `rules` for named actions. Never fails as a whole: a refusal is a reply.
    pub async fn chat_command(
        &self,
        origin: &ChatOrigin,
        text: &str,
        rules: Option<&Path>,
        observer: Arc<dyn Observer>,
    ) -> ChatReply {
        match self.chat_command_inner(origin, text, rules, observer).await {
            Ok(r) => r,
            Err(e) => ChatReply::refused(e.to_string()),
        }
    }

    async fn chat_command_inner(
        &self,
        origin: &ChatOrigin,
        text: &str,
        rules: Option<&Path>,
        observer: Arc<dyn Observer>,
    ) -> Result<ChatReply, AppError> {
        let settings = self.chat_settings()?;
        let words: Vec<&str> = text.split_whitespace().collect();
        let Some((&verb, rest)) = words.split_first() else {
            return Ok(ChatReply::refused(format!(
                "say what to do: {}",
                settings.allowed().join(", ")
            )));
        };
        if !settings.allows(verb) {
            return Ok(ChatReply::refused(format!(
                "`{verb}` is not allowed here; allowed: {}",
                settings.allowed().join(", ")
            )));
        }
        let mapped = settings
            .user(&origin.backend, &origin.user)
            .map(str::to_string);
        let actor = |who: &str| Actor {
            name: who.to_string(),
            groups: Vec::new(),
            via: AuthMethod::Chat,
            os_user: String::new(),
            chat: Some(sluice_model::ChatSource {
                source: origin.backend.clone(),
                room: origin.room.clone(),
                message: origin.message.clone(),
            }),
        };
        // What is said is recorded whoever says it; everything a command does or shows needs
        // a sluice user, as the API needs a token.
        let Some(who) = mapped else {
            return Ok(ChatReply::refused(format!(
                "{} is not mapped to a sluice user, so it may talk here but not use commands: map it under `users` in chat.yaml",
                origin.who()
            )));
        };
        let job_arg = |what: &str| -> Result<String, AppError> {
            rest.first().map(|j| j.to_string()).ok_or_else(|| {
                AppError::Usage(format!("`{verb}` needs the job: `{verb} JOB{what}`"))
            })
        };
        match verb {
            "follow" => {
                let job = job_arg("")?;
                self.chat_follow(&origin.backend, &origin.room, &job)
                    .await?;
                Ok(ChatReply::done(format!(
                    "this room follows {job}: its transitions are posted here, and what is said here is recorded in it"
                )))
            }
            "unfollow" => {
                let job = job_arg("")?;
                self.chat_unfollow(&origin.backend, &origin.room, &job)
                    .await?;
                Ok(ChatReply::done(format!(
                    "this room no longer follows {job}"
                )))
            }
            "status" => {
                let job = job_arg("")?;
                Ok(ChatReply::done(self.chat_status(&job).await?))
            }
            "logs" => {
                let job = job_arg(" STEP")?;
                let step = rest.get(1).copied();
                let lines: Vec<String> = self
                    .logs(&job, 0)
                    .await?
                    .into_iter()
                    .filter(|l| step.is_none_or(|s| l.step == s))
                    .map(|l| format!("{}#{} {}", l.step, l.attempt, l.line.message))
                    .collect();
                let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                Ok(ChatReply::done(if tail.is_empty() {
                    format!("no log lines for {job}")
                } else {
                    tail
                }))
            }
            "annotate" => {
                let job = job_arg(" TEXT")?;
                let text = rest[1..].join(" ");
                if text.trim().is_empty() {
                    return Ok(ChatReply::refused("say what to note: `annotate JOB TEXT`"));
                }
                // Checked against `annotate:` in the permissions file, like `sluice annotate`.
                self.annotate(&job, crate::Note::Comment(text), actor(&who))
                    .await?;
                Ok(ChatReply::done(format!("noted in {job}")))
            }
            "cancel" => {
                let job = job_arg(" [REASON]")?;
                let reason = rest[1..].join(" ");
                self.cancel(&job, &reason, actor(&who), observer).await?;
                Ok(ChatReply::done(format!("{job} cancelled by {who}")))
            }
            verb if sluice_rule::chat::COMMANDS.contains(&verb) => {
                let kind = decision_kind(verb).ok_or_else(|| {
                    AppError::Internal(format!("`{verb}` is a command without a meaning"))
                })?;
                let job = job_arg(" [step=STEP] [NAME=VALUE]... [COMMENT]")?;
                let (step, inputs, comment) = split_decision(&rest[1..]);
                // The reason skip-window asks for is the person's own words, not where they
                // were typed.
                if kind == DecisionKind::SkipWindow && comment.trim().is_empty() {
                    return Ok(ChatReply::refused(format!(
                        "skipping the deploy window needs a reason: `skip-window {job} WHY`"
                    )));
                }
                let decision = Decision {
                    kind,
                    step,
                    comment,
                    inputs,
                    detach: true,
                };
                self.decide(&job, decision, actor(&who), observer).await?;
                Ok(ChatReply::done(format!(
                    "{verb}: recorded for {job} by {who}"
                )))
            }
            action => {
                let a = settings.actions.get(action).cloned().ok_or_else(|| {
                    AppError::Internal(format!("`{action}` is allowed but not an action"))
                })?;
                let dir = rules.ok_or_else(|| {
                    AppError::NotFound(
                        "named actions start rules of the server's --rules, and it has none".into(),
                    )
                })?;
                let mut params: Vec<String> =
                    a.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                for w in rest {
                    let Some((k, _)) = w.split_once('=') else {
                        return Ok(ChatReply::refused(format!(
                            "`{w}`: `{action}` takes NAME=VALUE for {}",
                            if a.allow.is_empty() {
                                "nothing".to_string()
                            } else {
                                a.allow.join(", ")
                            }
                        )));
                    };
                    if !a.allow.iter().any(|p| p == k) {
                        return Ok(ChatReply::refused(format!(
                            "`{action}` may not set `{k}`; it may set {}",
                            if a.allow.is_empty() {
                                "nothing".to_string()
                            } else {
                                a.allow.join(", ")
                            }
                        )));
                    }
                    params.push(w.to_string());
                }
                let path = self.rule_path(dir, &a.rule).await?;
                let (id, _) = self.start(&path, &params, actor(&who), observer).await?;
                Ok(ChatReply::done(format!("{action}: started {id} for {who}")))
            }
        }
    }

    /// Records what was said in a room in every live job it follows, as annotations of kind
    /// `chat` (`chat-edit`, `chat-delete` for edits and deletions). Returns the jobs.
    pub async fn chat_record(
        &self,
        origin: &ChatOrigin,
        kind: &str,
        text: &str,
    ) -> Result<Vec<String>, AppError> {
        let (who, jobs) = self.speaker_and_live_jobs(origin).await?;
        for job in &jobs {
            self.chat_annotate(job, origin, &who, kind, text).await?;
        }
        Ok(jobs)
    }

    /// Who said something in a room (the mapped sluice user, or the chat id), and the live
    /// jobs the room follows: where it is recorded.
    async fn speaker_and_live_jobs(
        &self,
        origin: &ChatOrigin,
    ) -> Result<(String, Vec<String>), AppError> {
        let settings = self.chat_settings()?;
        let who = settings
            .user(&origin.backend, &origin.user)
            .map(str::to_string)
            .unwrap_or_else(|| origin.who());
        let mut jobs = Vec::new();
        for (job, _) in self
            .journal
            .chat_following(&origin.backend, &origin.room)
            .await
            .map_err(|e| self.store_error(e))?
        {
            let live = self
                .row(&job)
                .await
                .is_ok_and(|r| !matches!(r.status, sluice_model::JobState::Ended(_)));
            if live {
                jobs.push(job);
            }
        }
        Ok((who, jobs))
    }

    /// Keeps a file posted in a room as a `file` annotation of every live job it follows;
    /// one that could not be had (too big, the download failed) is recorded as `chat-file`
    /// with why.
    pub async fn chat_record_file(
        &self,
        origin: &ChatOrigin,
        name: &str,
        bytes: Result<Vec<u8>, String>,
    ) -> Result<Vec<String>, AppError> {
        let bytes = match bytes {
            Ok(b) => b,
            Err(why) => {
                let text = format!("[posted {name}; not kept: {why}]");
                return self.chat_record(origin, "chat-file", &text).await;
            }
        };
        let (who, jobs) = self.speaker_and_live_jobs(origin).await?;
        for job in &jobs {
            let meta = NewAnnotation {
                at: sluice_runner::now(),
                author: who.clone(),
                kind: "file".into(),
                title: name.to_string(),
            };
            let body = Box::new(std::io::Cursor::new(bytes.clone()));
            self.journal
                .annotate(job, meta, body, bytes.len() as u64)
                .await
                .map_err(|e| self.store_error(e))?;
        }
        Ok(jobs)
    }

    async fn chat_annotate(
        &self,
        job: &str,
        origin: &ChatOrigin,
        who: &str,
        kind: &str,
        text: &str,
    ) -> Result<(), AppError> {
        let mut text = text.to_string();
        if text.len() > MAX_CHAT_TEXT {
            let mut cut = MAX_CHAT_TEXT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(" [cut]");
        }
        let meta = NewAnnotation {
            at: sluice_runner::now(),
            author: who.to_string(),
            kind: kind.to_string(),
            title: format!(
                "{} ({} in {}, message {}): {text}",
                who,
                origin.who(),
                origin.room,
                origin.message
            ),
        };
        self.journal
            .annotate(job, meta, Box::new(std::io::empty()), 0)
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(())
    }

    /// `room` (`slack:C0123`, `matrix:!room:server`) follows `job`: the form the command line
    /// and the API take.
    pub async fn chat_follow_room(
        &self,
        room: &str,
        job: &str,
        follow: bool,
    ) -> Result<(), AppError> {
        let Some((backend, id)) = room
            .split_once(':')
            .filter(|(b, r)| matches!(*b, "slack" | "matrix") && !r.is_empty())
        else {
            return Err(AppError::Usage(format!(
                "room `{room}`: write slack:CHANNEL_ID or matrix:!room:server"
            )));
        };
        if follow {
            self.chat_follow(backend, id, job).await
        } else {
            self.chat_unfollow(backend, id, job).await
        }
    }

    /// `room` of `backend` follows `job` from its next event on.
    pub async fn chat_follow(&self, backend: &str, room: &str, job: &str) -> Result<(), AppError> {
        let row = self.row(job).await?;
        if matches!(row.status, sluice_model::JobState::Ended(_)) {
            return Err(AppError::Refused(format!(
                "{job} has ended ({}); there is nothing to follow",
                row.message
            )));
        }
        self.journal
            .chat_follow(backend, room, job, 0)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// The rooms a job's rule names (`chat: { follow: [...] }`) follow it from its first event
    /// (posts catch up from the journal). Best effort: a job that did not start (its check
    /// failed) has nothing to follow, and a failure to record a follow is logged, not fatal.
    pub(crate) async fn follow_in_rooms(
        &self,
        job: &str,
        standing: &sluice_runner::Standing,
        rooms: &[String],
    ) {
        if matches!(standing, sluice_runner::Standing::CheckFailed { .. }) {
            return;
        }
        for room in rooms {
            let Some((backend, id)) = room.split_once(':') else {
                continue;
            };
            if let Err(e) = self.journal.chat_follow(backend, id, job, 0).await {
                tracing::warn!(job, room, error = %e, "cannot follow the job in a chat room");
            }
        }
    }

    /// `room` no longer follows `job`.
    pub async fn chat_unfollow(
        &self,
        backend: &str,
        room: &str,
        job: &str,
    ) -> Result<(), AppError> {
        let was = self
            .journal
            .chat_unfollow(backend, room, job)
            .await
            .map_err(|e| self.store_error(e))?;
        if was {
            Ok(())
        } else {
            Err(AppError::NotFound(format!(
                "this room does not follow {job}"
            )))
        }
    }

    /// A job in a few lines: status, the step it is at, the gates it waits at.
    pub async fn chat_status(&self, job: &str) -> Result<String, AppError> {
        let view = self.job(job).await?;
        let row = self.row(job).await?;
        let mut s = format!("{job}: {} {}", row.status.as_str(), row.message);
        for g in view.job.waiting_gates() {
            s.push_str(&format!(
                "\nwaits at `{}` ({}): {} (decide with {})",
                g.step,
                g.kind.as_str(),
                g.message,
                g.choices
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(s.trim_end().to_string())
    }

    /// What each room must be told: the events of the jobs it follows that it was not told
    /// yet, as posts, in order.
    pub async fn chat_pending(&self, backend: &str) -> Result<Vec<ChatPost>, AppError> {
        let mut out = Vec::new();
        // Rooms following one job read it once a round; a job with nothing new is not read.
        let mut read: std::collections::BTreeMap<String, (crate::JobView, Vec<LogRow>)> =
            Default::default();
        for (room, job, posted) in self
            .journal
            .chat_follows(backend)
            .await
            .map_err(|e| self.store_error(e))?
        {
            if self.row(&job).await.is_ok_and(|r| r.last_seq <= posted) {
                continue;
            }
            if !read.contains_key(&job) {
                let Ok(view) = self.job(&job).await else {
                    continue;
                };
                // Log lines only go into the post of a failed step.
                let failed = view.history.iter().skip(posted as usize).any(|(e, _)| {
                    matches!(e, Event::StepFinished { result, .. } if result.status == sluice_engine::ResultStatus::Failure)
                });
                let logs = if failed {
                    self.logs(&job, 0).await.unwrap_or_default()
                } else {
                    Vec::new()
                };
                read.insert(job.clone(), (view, logs));
            }
            let (view, logs) = &read[&job];
            for (i, (e, _)) in view.history.iter().enumerate().skip(posted as usize) {
                // An event with nothing to say still moves the follow past it (empty text).
                let (text, gate) = describe(view, e, logs).unwrap_or_default();
                out.push(ChatPost {
                    backend: backend.to_string(),
                    room: room.clone(),
                    job: job.clone(),
                    seq: i as u64 + 1,
                    text,
                    gate,
                    last: matches!(e, Event::Finished { .. }),
                });
            }
        }
        Ok(out)
    }

    /// Records that `post` was posted (or had nothing to say): the room's follow moves past
    /// it, and ends with the job's end.
    pub async fn chat_posted(&self, post: &ChatPost) -> Result<(), AppError> {
        let r = if post.last {
            self.journal
                .chat_unfollow(&post.backend, &post.room, &post.job)
                .await
                .map(|_| ())
        } else {
            self.journal
                .chat_follow(&post.backend, &post.room, &post.job, post.seq)
                .await
        };
        r.map_err(|e| self.store_error(e))
    }

    /// Forgets a delivery seen but not recorded, so its retry is.
    pub async fn chat_unsee(&self, key: &str) -> Result<(), AppError> {
        self.journal
            .chat_unsee(key)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// Whether a chat delivery (Slack's `event_id`) is seen for the first time: retries of one
    /// delivery are acted on once, across servers on one journal.
    pub async fn chat_first_seen(&self, key: &str) -> Result<bool, AppError> {
        self.journal
            .chat_seen(key, sluice_runner::now())
            .await
            .map_err(|e| self.store_error(e))
    }
}

/// The decision a chat command word stands for.
fn decision_kind(verb: &str) -> Option<DecisionKind> {
    Some(match verb {
        "approve" => DecisionKind::Approve,
        "reject" => DecisionKind::Reject,
        "resume" => DecisionKind::Resume,
        "retry" => DecisionKind::Retry,
        "skip" => DecisionKind::Skip,
        "rollback" => DecisionKind::Rollback,
        "abort" => DecisionKind::Abort,
        "skip-window" => DecisionKind::SkipWindow,
        _ => return None,
    })
}

/// `step=STEP`, `NAME=VALUE` inputs, then the comment: the words after the job.
fn split_decision(words: &[&str]) -> (Option<String>, Map<String, Value>, String) {
    let mut step = None;
    let mut inputs = Map::new();
    let mut i = 0;
    while let Some((k, v)) = words.get(i).and_then(|w| w.split_once('=')) {
        if k.is_empty() {
            break;
        }
        if k == "step" {
            step = Some(v.to_string());
        } else {
            // As on the command line: a value that reads as JSON keeps its type.
            let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
            inputs.insert(k.to_string(), value);
        }
        i += 1;
    }
    (step, inputs, words[i..].join(" "))
}

/// A gate's step and the decisions it takes: a post's buttons.
type GateButtons = (String, Vec<DecisionKind>);

/// What a room is told of one event: text, and a gate's buttons.
fn describe(
    view: &crate::JobView,
    e: &Event,
    logs: &[LogRow],
) -> Option<(String, Option<GateButtons>)> {
    let job = &view.job.id;
    Some(match e {
        Event::Created { started_by, .. } => {
            (format!("{job} started by {}", started_by.name), None)
        }
        Event::Queued { behind } => (
            format!("{job} waits in line behind {}", behind.join(", ")),
            None,
        ),
        Event::StepStarted { step, attempt, .. } => {
            // Each phase once: when its first step starts.
            let (phase, _) = view.job.step_def(step)?;
            let first = *attempt == 1
                && view
                    .job
                    .rule
                    .all_steps()
                    .iter()
                    .find(|(p, _)| *p == phase)
                    .is_some_and(|(_, s)| s.id == *step);
            if !first {
                return None;
            }
            (format!("{job}: phase `{}` started", phase.as_str()), None)
        }
        Event::StepFinished {
            step,
            attempt,
            result,
        } if result.status == sluice_engine::ResultStatus::Failure => {
            let lines: Vec<&str> = logs
                .iter()
                .filter(|l| l.step == *step && l.attempt == *attempt)
                .map(|l| l.line.message.as_str())
                .collect();
            let tail = lines[lines.len().saturating_sub(FAILURE_LINES)..].join("\n");
            let mut text = format!("{job}: `{step}` failed: {}", result.message);
            if !tail.is_empty() {
                text.push_str(&format!("\nlast log lines:\n{tail}"));
            }
            (text, None)
        }
        Event::GateOpened { step, gate, .. } => {
            let choices = sluice_engine::choices(gate.kind).to_vec();
            let still = view
                .job
                .steps
                .get(step)
                .is_some_and(|s| s.status == StepStatus::Waiting);
            (
                format!(
                    "{job} waits at `{step}` ({}): {}",
                    gate.kind.described(),
                    gate.message
                ),
                still.then(|| (step.clone(), choices)),
            )
        }
        Event::Decided {
            step,
            kind,
            by,
            comment,
            ..
        } => (
            format!(
                "{job}: {} at `{step}` by {}{}",
                kind.as_str(),
                by.name,
                if comment.is_empty() {
                    String::new()
                } else {
                    format!(": {comment}")
                }
            ),
            None,
        ),
        Event::RollbackStarted { step, message } => (
            format!("{job}: rolling back after `{step}` failed: {message}"),
            None,
        ),
        Event::CancelRequested { by, reason } => (
            format!("{job}: cancel asked by {}: {reason}", by.name),
            None,
        ),
        Event::Finished { status, message } => {
            (format!("{job} ended {}: {message}", status.as_str()), None)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::split_decision;

    #[test]
    fn decision_words_are_step_inputs_then_comment() {
        let (step, inputs, comment) =
            split_decision(&["step=go-live", "region=eu", "n=3", "looks", "good", "a=b"]);
        assert_eq!(step.as_deref(), Some("go-live"));
        assert_eq!(inputs["region"], "eu");
        assert_eq!(inputs["n"], 3);
        assert_eq!(comment, "looks good a=b");
        let (step, inputs, comment) = split_decision(&["ship", "it"]);
        assert_eq!((step, inputs.len(), comment.as_str()), (None, 0, "ship it"));
    }
}
