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
        for file in self.rule_files(dir).await? {
            let path = dir.join(&file.file);
            let Ok(rule) = self.read_rule(&path) else {
                continue;
            };
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
        for file in self.rule_files(dir).await? {
            let path = dir.join(&file.file);
            let Ok(rule) = self.read_rule(&path) else {
                continue;
            };
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
        };
        match self
            .runner(observer)?
            .start_caused(rule, &dir, &params, actor, Some(start.cause))
            .await
        {
            Ok(r) => Ok(Some(r)),
            Err(sluice_runner::RunError::Store(StoreError::Triggered { .. })) => Ok(None),
            Err(e) => Err(self.run_error(e)),
        }
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
