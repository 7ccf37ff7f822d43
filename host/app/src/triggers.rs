//! Rules that start by themselves: `on: [{ job-finished: ... }]`. When a job ends, the runner
//! writes a "job finished" message into the journal's outbox with its last event; a server
//! with `--rules DIR` claims it, finds the rules there that follow the finished job's rule,
//! and starts each once: the trigger's key (`JOB:RULE`) is stored with the new job in the same
//! transaction, so a message seen twice, or by two servers, starts one job.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sluice_engine::Cause;
use sluice_model::{Actor, AuthMethod};
use sluice_rule::Trigger;
use sluice_store::{MessageRow, StoreError};

use crate::{App, AppError};

/// How many triggered jobs may follow one another; a longer chain (rules that follow each
/// other in a circle) is stopped there, with a warning.
pub const MAX_CHAIN: u32 = 10;

/// A job a finished job's end starts.
#[derive(Debug, Clone)]
pub struct TriggeredStart {
    /// The rule file.
    pub path: PathBuf,
    /// Its params, rendered (`NAME=VALUE`).
    pub params: Vec<String>,
    /// Why it starts.
    pub cause: Cause,
}

impl App {
    /// Claims "job finished" messages of the outbox for `holder`.
    pub async fn claim_finished(&self, holder: &str) -> Result<Vec<MessageRow>, AppError> {
        let now = sluice_runner::now();
        self.journal
            .claim_messages(now, holder, now + 60_000, 16, true)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// Records that a "job finished" message was handled (or, with `why`, that it cannot be).
    pub async fn finished_handled(&self, id: i64, why: Option<&str>) -> Result<(), AppError> {
        let r = match why {
            None => {
                self.journal
                    .message_delivered(id, sluice_runner::now())
                    .await
            }
            Some(why) => self.journal.message_failed(id, why, None).await,
        };
        r.map_err(|e| self.store_error(e))
    }

    /// The jobs `finished`'s end starts among the rules of `dir`, with their params rendered
    /// from `trigger.job`. A rule file that does not parse is skipped (`GET /rules` says why).
    pub async fn triggered_starts(
        &self,
        dir: &Path,
        finished: &str,
    ) -> Result<Vec<TriggeredStart>, AppError> {
        let view = self.job(finished).await?;
        let job = &view.job;
        let Some((status, _)) = &job.finished else {
            return Ok(Vec::new());
        };
        let depth = job.cause.as_ref().map_or(0, |c| c.depth) + 1;
        let steps: serde_json::Map<String, Value> = job
            .steps
            .iter()
            .map(|(k, s)| {
                let output = s.result.as_ref().map(|r| r.output.clone());
                (k.clone(), json!({ "status": s.status, "output": output }))
            })
            .collect();
        let ctx = json!({ "trigger": { "job": {
            "id": job.id,
            "rule": job.rule.name,
            "status": status.as_str(),
            "params": job.params,
            "steps": steps,
            "started_by": job.started_by,
        }}});
        let mut out = Vec::new();
        for (path, rule) in self.rules_in(dir).await? {
            for t in &rule.on {
                let Trigger::JobFinished(f) = t else {
                    continue;
                };
                if !f.matches(&job.rule.name, *status, &job.params) {
                    continue;
                }
                if depth > MAX_CHAIN {
                    tracing::warn!(
                        job = job.id,
                        rule = rule.name,
                        "a chain of {MAX_CHAIN} triggered jobs stops here: do the rules follow each other in a circle?"
                    );
                    continue;
                }
                let ev = sluice_rule::expr::Evaluator::new();
                out.push(TriggeredStart {
                    path: path.clone(),
                    params: render_params(&ev, &f.params, &ctx, &path)?,
                    cause: Cause {
                        kind: "job-finished".into(),
                        from: job.id.clone(),
                        key: format!("{}:{}", job.id, rule.name),
                        depth,
                    },
                });
            }
        }
        Ok(out)
    }

    /// The jobs a CloudEvent starts among the rules of `dir` (`on: cloudevent` of its type,
    /// source and filter), with their params rendered from `trigger.event` (its `id`,
    /// `source`, `type`, `subject`, `time` and `data`). One job per event and rule: the key is
    /// `ce:SOURCE#ID:RULE`.
    pub async fn event_starts(
        &self,
        dir: &Path,
        event: &Value,
    ) -> Result<Vec<TriggeredStart>, AppError> {
        let (Some(id), Some(source), Some(ty)) = (
            event["id"].as_str(),
            event["source"].as_str(),
            event["type"].as_str(),
        ) else {
            return Err(AppError::Usage(
                "a CloudEvent needs `id`, `source` and `type`".into(),
            ));
        };
        let ctx = json!({ "trigger": { "event": event } });
        let ev = sluice_rule::expr::Evaluator::new();
        let mut out = Vec::new();
        for (path, rule) in self.rules_in(dir).await? {
            for t in &rule.on {
                let Trigger::Cloudevent(c) = t else {
                    continue;
                };
                if c.ty != ty || c.source.as_deref().is_some_and(|s| s != source) {
                    continue;
                }
                if let Some(filter) = &c.filter {
                    let pass = ev.condition(filter, &ctx).map_err(|e| {
                        AppError::Usage(format!("{}: `on: cloudevent` filter: {e}", path.display()))
                    })?;
                    if !pass {
                        continue;
                    }
                }
                out.push(TriggeredStart {
                    path: path.clone(),
                    params: render_params(&ev, &c.params, &ctx, &path)?,
                    cause: Cause {
                        kind: "cloudevent".into(),
                        from: format!("{source}#{id}"),
                        key: format!("ce:{source}#{id}:{}", rule.name),
                        depth: 1,
                    },
                });
            }
        }
        Ok(out)
    }

    /// Starts a triggered job and drives it until it ends or waits; `Ok(None)` when its key
    /// started a job already (the message was seen before).
    pub async fn start_triggered(
        &self,
        start: TriggeredStart,
        observer: std::sync::Arc<dyn sluice_runner::Observer>,
    ) -> Result<Option<(String, sluice_runner::Standing)>, AppError> {
        // Seen before: nothing runs again, not even its check. (Two starts racing past this
        // are still one job: the key is stored with the job.)
        if self
            .journal
            .triggered(&start.cause.key)
            .await
            .map_err(|e| self.store_error(e))?
            .is_some()
        {
            return Ok(None);
        }
        let mut rule = self.validate(&start.path).await?.rule;
        self.resolve_packages(&mut rule, &start.path).await?;
        let params = crate::rules::split_params(&start.params)?;
        let dir = sluice_runner::rule_dir(&start.path);
        let actor = Actor {
            name: format!("trigger:{}", start.cause.from),
            groups: Vec::new(),
            via: AuthMethod::System,
            os_user: String::new(),
            chat: None,
        };
        let rooms = rule.chat_follow.clone();
        match self
            .runner(observer)?
            .start_caused(rule, &dir, &params, actor, Some(start.cause))
            .await
        {
            Ok(r) => {
                self.follow_in_rooms(&r.0, &r.1, &rooms).await;
                Ok(Some(r))
            }
            Err(sluice_runner::RunError::Store(StoreError::Triggered { .. })) => Ok(None),
            Err(e) => Err(self.run_error(e)),
        }
    }

    /// The rules of `dir` that parse, with their files (one that does not is skipped: `GET
    /// /rules` says why).
    async fn rules_in(&self, dir: &Path) -> Result<Vec<(PathBuf, sluice_rule::Rule)>, AppError> {
        let mut out = Vec::new();
        for file in self.rule_files(dir).await? {
            let path = dir.join(&file.file);
            if let Ok(rule) = self.read_rule(&path) {
                out.push((path, rule));
            }
        }
        Ok(out)
    }

    /// The jobs `job`'s end started through triggers.
    pub async fn started_by_job(&self, job: &str) -> Result<Vec<String>, AppError> {
        self.journal
            .started_by_job(job)
            .await
            .map_err(|e| self.store_error(e))
    }
}

/// A trigger's `params:` rendered over `ctx`, as `NAME=VALUE` (a param that renders to null is
/// left to its default).
fn render_params(
    ev: &sluice_rule::expr::Evaluator,
    params: &std::collections::BTreeMap<String, String>,
    ctx: &Value,
    path: &Path,
) -> Result<Vec<String>, AppError> {
    let mut out = Vec::new();
    for (name, template) in params {
        let value = ev.render_str(template, ctx).map_err(|e| {
            AppError::Usage(format!("{}: trigger param `{name}`: {e}", path.display()))
        })?;
        let text = match value {
            Value::String(s) => s,
            Value::Null => continue,
            other => other.to_string(),
        };
        out.push(format!("{name}={text}"));
    }
    Ok(out)
}

/// A delivery to `POST /hooks/NAME`, as it came.
#[derive(Debug, Clone, Copy)]
pub struct HookDelivery<'a> {
    /// The hook's name, from the path.
    pub name: &'a str,
    /// `X-Hub-Signature-256`: `sha256=` and the hex HMAC-SHA256 of the body.
    pub signature: Option<&'a str>,
    /// `X-GitHub-Delivery` (or `X-Delivery-Id`): what makes a redelivery the same delivery.
    pub delivery: Option<&'a str>,
    /// `X-GitHub-Event`: what happened (`push`, `release`...).
    pub event: Option<&'a str>,
    /// The raw body, as signed.
    pub body: &'a [u8],
}

/// The jobs a schedule starts now, and when to look again.
#[derive(Debug, Default)]
pub struct ScheduleRound {
    /// The runs due now, one job each.
    pub starts: Vec<TriggeredStart>,
    /// The next time any schedule runs.
    pub next: Option<u64>,
}

impl App {
    /// The jobs a signed webhook starts among the rules of `dir` (`on: webhook` with its
    /// name): the body must be signed with each rule's secret (HMAC-SHA256, compared in
    /// constant time), be JSON, and pass the rule's filter. One job per signed body and rule:
    /// the key is `hook:NAME#sha256:BODY:RULE` (the delivery id header is not signed).
    pub async fn webhook_starts(
        &self,
        dir: &Path,
        hook: HookDelivery<'_>,
    ) -> Result<Vec<TriggeredStart>, AppError> {
        let mut matching = Vec::new();
        for (path, rule) in self.rules_in(dir).await? {
            for t in &rule.on {
                if let Trigger::Webhook(w) = t
                    && w.name == hook.name
                {
                    matching.push((path.clone(), rule.name.clone(), w.clone()));
                }
            }
        }
        if matching.is_empty() {
            return Err(AppError::NotFound(format!(
                "no rule in this server's --rules has `on: webhook` named `{}`",
                hook.name
            )));
        }
        let Some(signature) = hook.signature else {
            return Err(AppError::Unauthenticated(
                "the delivery is not signed: send X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body under the hook's secret>".into(),
            ));
        };
        let mut signed = Vec::new();
        let mut unset = Vec::new();
        for (path, rule, w) in matching {
            let var = format!(
                "SLUICE_SECRET_{}",
                w.secret.to_uppercase().replace('-', "_")
            );
            let Ok(secret) = std::env::var(&var) else {
                tracing::warn!(
                    hook = w.name,
                    rule,
                    "the hook's secret is not set on this server: set {var}"
                );
                unset.push(var);
                continue;
            };
            if signed_by(secret.as_bytes(), hook.body, signature) {
                signed.push((path, rule, w));
            }
        }
        if signed.is_empty() && !unset.is_empty() {
            return Err(AppError::Internal(format!(
                "webhook `{}` is signed with a secret this server does not have: set {} where it runs",
                hook.name,
                unset.join(", ")
            )));
        }
        if signed.is_empty() {
            return Err(AppError::Unauthenticated(format!(
                "the signature does not match the body under the secret of webhook `{}`: check the secret the sender signs with",
                hook.name
            )));
        }
        let body: Value = serde_json::from_slice(hook.body).map_err(|e| {
            AppError::Usage(format!(
                "the body is not JSON ({e}): send application/json (GitHub: the webhook's content type)"
            ))
        })?;
        // The delivery id and event headers are not signed: once per delivery is once per
        // signed body (a redelivery sends the same body), so a captured body replayed under
        // new delivery ids starts nothing new.
        let body_hash = {
            use sha2::Digest as _;
            hex::encode(sha2::Sha256::digest(hook.body))
        };
        let delivery = hook
            .delivery
            .map(str::to_string)
            .unwrap_or_else(|| format!("sha256:{body_hash}"));
        let ctx = json!({ "trigger": { "webhook": {
            "name": hook.name,
            "event": hook.event,
            "delivery": delivery,
            "body": body,
        }}});
        let ev = sluice_rule::expr::Evaluator::new();
        let mut out = Vec::new();
        for (path, rule, w) in signed {
            if let Some(filter) = &w.filter {
                let pass = ev.condition(filter, &ctx).map_err(|e| {
                    AppError::Usage(format!("{}: `on: webhook` filter: {e}", path.display()))
                })?;
                if !pass {
                    continue;
                }
            }
            out.push(TriggeredStart {
                params: render_params(&ev, &w.params, &ctx, &path)?,
                path,
                cause: Cause {
                    kind: "webhook".into(),
                    from: format!("hook:{}#{delivery}", w.name),
                    key: format!("hook:{}#sha256:{body_hash}:{rule}", w.name),
                    depth: 1,
                },
            });
        }
        Ok(out)
    }

    /// The runs of the rules' schedules (`on: schedule`) due at `now`, for a server that
    /// started at `since` (a schedule that never ran counts from then). A schedule's latest
    /// run is read from the journal (the key of the job it started ends with its time), so
    /// every server on one journal agrees, and the key makes each run one job.
    pub async fn schedule_starts(
        &self,
        dir: &Path,
        since: u64,
        now: u64,
    ) -> Result<ScheduleRound, AppError> {
        let mut round = ScheduleRound::default();
        let ev = sluice_rule::expr::Evaluator::new();
        for (path, rule) in self.rules_in(dir).await? {
            for t in &rule.on {
                let Trigger::Schedule(s) = t else {
                    continue;
                };
                let prefix = format!("cron:{}:{} {}@", rule.name, s.cron, s.timezone);
                let last = self
                    .journal
                    .last_trigger(&prefix)
                    .await
                    .map_err(|e| self.store_error(e))?
                    .and_then(|k| sluice_rule::calendar::parse_utc(&k[prefix.len()..]));
                // A rule that cannot be read this way is skipped, not every schedule with it.
                let due = match sluice_engine::schedule::due(s, last, since, now) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(rule = rule.name, "`on: schedule`: {e}");
                        continue;
                    }
                };
                if let Some(n) = due.next {
                    round.next = Some(round.next.map_or(n, |m: u64| m.min(n)));
                }
                let Some(run) = due.run else {
                    continue;
                };
                let time = sluice_rule::calendar::utc_text(run);
                let ctx = json!({ "trigger": { "schedule": {
                    "time": time,
                    "cron": s.cron,
                    "timezone": s.timezone,
                }}});
                let params = match render_params(&ev, &s.params, &ctx, &path) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(rule = rule.name, "`on: schedule`: {e}");
                        continue;
                    }
                };
                round.starts.push(TriggeredStart {
                    params,
                    path: path.clone(),
                    cause: Cause {
                        kind: "schedule".into(),
                        from: format!("schedule `{}` ({}) at {time}", s.cron, s.timezone),
                        key: format!("{prefix}{time}"),
                        depth: 1,
                    },
                });
            }
        }
        Ok(round)
    }
}

/// Whether `signature` (`sha256=HEX`, GitHub's `X-Hub-Signature-256`) is the HMAC-SHA256 of
/// `body` under `secret`; compared in constant time.
fn signed_by(secret: &[u8], body: &[u8], signature: &str) -> bool {
    use hmac::Mac as _;
    let Some(given) = signature
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h.trim()).ok())
    else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::signed_by;

    #[test]
    fn signatures_are_checked_as_github_makes_them() {
        // GitHub's documented example: secret "It's a Secret to Everybody", payload
        // "Hello, World!".
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signed_by(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            sig
        ));
        assert!(!signed_by(
            b"It's a Secret to Everybody",
            b"Hello, World?",
            sig
        ));
        assert!(!signed_by(b"another secret", b"Hello, World!", sig));
        assert!(!signed_by(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            &sig[7..]
        ));
        assert!(!signed_by(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            "sha256=zz"
        ));
    }
}
