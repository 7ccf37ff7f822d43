//! Notifications of gates and CloudEvents of every transition: for each event a job records,
//! a message for each webhook of the notifications file (`$SLUICE_HOME/notifications.yaml`)
//! that wants it goes into the journal's outbox with the event (a gate opening for `slack`
//! and `json` webhooks, everything for `cloudevents` ones), and [`App::deliver_messages`]
//! posts them, at least once, in order per job and webhook, with retries and backoff. Any
//! process that drives a job writes the messages; a server delivers them.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_engine::{Event, GateView, Job, Millis};
use sluice_rule::notifications::{self, Format, Notifications};
use sluice_store::{MessageRow, NewMessage};

use crate::{App, AppError};

/// Attempts before a message is given up (the waits double from 1 s to 10 min: about 2 hours).
pub const DELIVERY_ATTEMPTS: u32 = 20;
/// How long a request to a webhook may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The notifications file, when there is one.
pub(crate) fn load(path: &Path) -> Result<Option<Notifications>, AppError> {
    crate::identity::read_settings(path, "notifications file", notifications::parse)
}

/// Turns a gate opening into a message per webhook that wants it.
pub(crate) struct Notifier(pub(crate) Notifications);

impl sluice_runner::Outbox for Notifier {
    fn messages(&self, job: &Job, event: &Event, seq: u64, at: Millis) -> Vec<NewMessage> {
        let mut out: Vec<NewMessage> = self
            .0
            .webhooks
            .iter()
            .filter(|(_, w)| w.format == Format::CloudEvents && w.wants(&job.rule.name, ""))
            .filter_map(|(name, _)| {
                let body = cloud_event(job, event, seq, at, self.0.monitor.as_deref())?;
                Some(NewMessage {
                    sink: name.clone(),
                    body,
                })
            })
            .collect();
        out.extend(self.gate_messages(job, event));
        out
    }
}

/// The CloudEvents `type` of a journal event.
fn event_type(event: &Event) -> &'static str {
    match event {
        Event::Created { .. } => "dev.sluice.job.created",
        Event::Queued { .. } => "dev.sluice.job.queued",
        Event::Started { .. } => "dev.sluice.job.started",
        Event::StepStarted { .. } => "dev.sluice.step.started",
        Event::StepFinished { .. } => "dev.sluice.step.finished",
        Event::StepSkipped { .. } => "dev.sluice.step.skipped",
        Event::GateOpened { .. } => "dev.sluice.gate.waiting",
        Event::Decided { .. } => "dev.sluice.gate.decided",
        Event::Interrupted { .. } => "dev.sluice.step.interrupted",
        Event::RollbackStarted { .. } => "dev.sluice.job.rolling-back",
        Event::CancelRequested { .. } => "dev.sluice.job.cancelling",
        Event::Finished { .. } => "dev.sluice.job.finished",
    }
}

/// `event`, the `seq`th of `job`, as a CloudEvent 1.0 in structured mode: `id` is
/// `JOB:SEQ` (the same on every delivery, so a receiver can drop repeats), `subject` the job,
/// `data` the job's summary, the journal entry and, for a step's event, the step as
/// `sluice show --json` shows them.
fn cloud_event(
    job: &Job,
    event: &Event,
    seq: u64,
    at: Millis,
    monitor: Option<&str>,
) -> Option<String> {
    use cloudevents::EventBuilder as _;
    let entry = serde_json::to_value(event).ok()?;
    let (status, message) = sluice_runner::status_of(job);
    let step = entry["step"]
        .as_str()
        .and_then(|s| job.steps.get(s))
        .map(|s| serde_json::to_value(s).unwrap_or_default());
    let mut data = json!({
        "job": {
            "id": job.id,
            "rule": job.rule.name,
            "status": status,
            "message": message,
            "started_by": job.started_by,
            "params": job.params,
        },
        "event": entry,
    });
    if let Some(step) = step {
        data["step"] = step;
    }
    let built = cloudevents::EventBuilderV10::new()
        .id(format!("{}:{seq}", job.id))
        .source(monitor.map_or_else(|| "urn:sluice".to_string(), |m| m.to_string()))
        .ty(event_type(event))
        .subject(job.id.clone())
        .time(chrono::DateTime::<chrono::Utc>::from_timestamp_millis(
            at as i64,
        )?)
        .data("application/json", data)
        .build();
    match built {
        Ok(e) => serde_json::to_string(&e).ok(),
        Err(e) => {
            tracing::error!(job = job.id, error = %e, "a CloudEvent could not be built");
            None
        }
    }
}

impl Notifier {
    /// The notifications of a gate opening, for the `slack` and `json` webhooks that want it.
    fn gate_messages(&self, job: &Job, event: &Event) -> Vec<NewMessage> {
        let Event::GateOpened { step, .. } = event else {
            return Vec::new();
        };
        let Some(gate) = job.waiting_gates().into_iter().find(|g| &g.step == step) else {
            return Vec::new();
        };
        let link = self
            .0
            .monitor
            .as_ref()
            .map(|m| format!("{m}/jobs/{}", job.id));
        self.0
            .webhooks
            .iter()
            .filter(|(_, w)| w.wants(&job.rule.name, gate.kind.as_str()))
            .filter_map(|(name, w)| {
                let body = match w.format {
                    Format::Slack => slack_body(job, &gate, link.as_deref()),
                    Format::Json => json_body(job, &gate, link.as_deref()),
                    Format::CloudEvents => return None,
                };
                Some(NewMessage {
                    sink: name.clone(),
                    body: body.to_string(),
                })
            })
            .collect()
    }
}

/// sluice's own JSON for a gate that opened.
fn json_body(job: &Job, gate: &GateView, link: Option<&str>) -> Value {
    json!({
        "type": "dev.sluice.gate.waiting",
        "job": {
            "id": job.id,
            "rule": job.rule.name,
            "started_by": job.started_by,
            "params": job.params,
        },
        "gate": gate,
        "link": link,
    })
}

/// Text safe inside Slack's mrkdwn (`&`, `<` and `>` are its markup).
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack incoming-webhook body: `text` for notifications, `blocks` for the message.
fn slack_body(job: &Job, gate: &GateView, link: Option<&str>) -> Value {
    let what = match gate.kind.as_str() {
        "approval" => "waits for approval",
        "pause" => "is paused",
        _ => "is trapped",
    };
    let headline = format!(
        "*{}* {what} at `{}`: {}",
        slack_escape(&job.id),
        slack_escape(&gate.step),
        slack_escape(&gate.message)
    );
    let mut context = Vec::new();
    if !gate.approvers.is_empty() {
        context.push(format!(
            "approvers: {}",
            slack_escape(&gate.approvers.join(", "))
        ));
    }
    if gate.quorum > 1 {
        context.push(format!(
            "approvals: {} of {}",
            gate.approved_by.len(),
            gate.quorum
        ));
    }
    context.push(format!(
        "takes: {}",
        gate.choices
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": headline}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context.join(" · ")}]}),
    ];
    let mut text = format!("{} {what} at {}: {}", job.id, gate.step, gate.message);
    if let Some(link) = link {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": {"type": "plain_text", "text": "Open in sluice"},
                "url": link,
            }],
        }));
        text.push_str(&format!(" <{link}|open>"));
    }
    json!({ "text": text, "blocks": blocks })
}

/// How long to wait before attempt `attempts + 1`: doubling from 1 s, at most 10 minutes.
fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(10)).min(Duration::from_secs(600))
}

/// What one delivery round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Messages posted and accepted.
    pub delivered: usize,
    /// Messages that failed (retried later, or given up).
    pub failed: usize,
}

impl App {
    /// The notifications file of this home (`SLUICE_NOTIFICATIONS` overrides where it is).
    pub(crate) fn notifications(&self) -> Result<Option<Notifications>, AppError> {
        load(&self.notifications)
    }

    /// Posts the messages of the outbox that are due, as `holder` (claims keep two servers
    /// from posting one message at once; a crash mid-post leaves it to be posted again when
    /// the claim runs out: delivery is at least once). A 2xx answer delivers; a 4xx other than
    /// 408 and 429 gives up at once (the webhook is gone or refuses the body); anything else
    /// is retried with doubling waits, [`DELIVERY_ATTEMPTS`] times in all.
    pub async fn deliver_messages(
        &self,
        client: &reqwest::Client,
        holder: &str,
    ) -> Result<Delivered, AppError> {
        let now = sluice_runner::now();
        let claim_for = REQUEST_TIMEOUT.as_millis() as u64 * 3;
        let due = self
            .journal
            .claim_messages(now, holder, now + claim_for, 32, false)
            .await
            .map_err(|e| self.store_error(e))?;
        if due.is_empty() {
            return Ok(Delivered::default());
        }
        let hooks = self.notifications()?.unwrap_or_default().webhooks;
        let mut done = Delivered::default();
        for m in due {
            let outcome = match hooks.get(&m.sink) {
                None => Err((
                    format!("no webhook `{}` in the notifications file any more", m.sink),
                    false,
                )),
                Some(w) => {
                    let content_type = match w.format {
                        Format::CloudEvents => "application/cloudevents+json",
                        Format::Slack | Format::Json => "application/json",
                    };
                    post(client, &w.url, content_type, &m).await
                }
            };
            let store = match outcome {
                Ok(()) => {
                    done.delivered += 1;
                    self.journal
                        .message_delivered(m.id, sluice_runner::now())
                        .await
                }
                Err((why, retry)) => {
                    done.failed += 1;
                    let retry_at = (retry && m.attempts + 1 < DELIVERY_ATTEMPTS)
                        .then(|| sluice_runner::now() + backoff(m.attempts).as_millis() as u64);
                    tracing::warn!(
                        job = m.job,
                        sink = m.sink,
                        attempt = m.attempts + 1,
                        gave_up = retry_at.is_none(),
                        "a notification was not delivered: {why}"
                    );
                    self.journal.message_failed(m.id, &why, retry_at).await
                }
            };
            store.map_err(|e| self.store_error(e))?;
        }
        Ok(done)
    }

    /// The notifications `job`'s events caused, and how their delivery went.
    pub async fn messages(&self, job: &str) -> Result<Vec<MessageRow>, AppError> {
        self.journal
            .messages(job)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// How many notifications wait for delivery.
    pub async fn outbox_backlog(&self) -> Result<u64, AppError> {
        self.journal
            .outbox_backlog()
            .await
            .map_err(|e| self.store_error(e))
    }
}

/// Posts one message; on failure, why and whether to try again.
async fn post(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    m: &MessageRow,
) -> Result<(), (String, bool)> {
    let answer = client
        .post(url)
        .header("content-type", content_type)
        .header("user-agent", concat!("sluice/", env!("CARGO_PKG_VERSION")))
        .header("x-sluice-delivery", m.id.to_string())
        .timeout(REQUEST_TIMEOUT)
        .body(m.body.clone())
        .send()
        .await;
    match answer {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => {
            let status = r.status();
            let retry =
                !status.is_client_error() || status.as_u16() == 408 || status.as_u16() == 429;
            Err((format!("the webhook answered {status}"), retry))
        }
        Err(e) => Err((format!("cannot reach the webhook: {e}"), true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_ten_minutes() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(9), Duration::from_secs(512));
        assert_eq!(backoff(10), Duration::from_secs(600));
        assert_eq!(backoff(19), Duration::from_secs(600));
    }

    #[test]
    fn slack_markup_in_names_is_escaped() {
        assert_eq!(slack_escape("a<b>&c"), "a&lt;b&gt;&amp;c");
    }
}
