//! [`simulate`]: walk a rule with scripted outcomes, calling no op, and report the path.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use sluice_rule::Rule;

use crate::{Action, Event, Job, JobStatus, OpMeta, ResultStatus, StepResult, decide};

/// Scripted outcomes: per step key, one status per attempt (the last one repeats), and outputs.
#[derive(Debug, Clone, Default)]
pub struct Script {
    outcomes: BTreeMap<String, Vec<ResultStatus>>,
    outputs: BTreeMap<String, Value>,
}

impl Script {
    /// Reads `STEP=STATUS[,STATUS...]` entries (`success`, `warning`, `failure`); a step key is
    /// a step id, or `undo:ID` for the undo of a step.
    pub fn parse(outcomes: &[String], outputs: &[String]) -> Result<Script, String> {
        let mut s = Script::default();
        for o in outcomes {
            let (step, list) = o
                .split_once('=')
                .ok_or_else(|| format!("`{o}`: write STEP=success|warning|failure"))?;
            let statuses = list
                .split(',')
                .map(|x| match x.trim() {
                    "success" => Ok(ResultStatus::Success),
                    "warning" => Ok(ResultStatus::Warning),
                    "failure" => Ok(ResultStatus::Failure),
                    other => Err(format!(
                        "`{other}` in `{o}` is not success, warning or failure"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            s.outcomes.insert(step.trim().to_string(), statuses);
        }
        for o in outputs {
            let (step, json) = o
                .split_once('=')
                .ok_or_else(|| format!("`{o}`: write STEP=JSON"))?;
            let v = serde_json::from_str(json)
                .map_err(|e| format!("output of `{step}` is not JSON: {e}"))?;
            s.outputs.insert(step.trim().to_string(), v);
        }
        Ok(s)
    }

    /// The step keys the script names, to check them against the rule.
    pub fn steps(&self) -> impl Iterator<Item = &str> {
        self.outcomes
            .keys()
            .chain(self.outputs.keys())
            .map(String::as_str)
    }

    fn result(&self, step: &str, attempt: u32) -> StepResult {
        let status = self
            .outcomes
            .get(step)
            .and_then(|l| l.get(attempt as usize - 1).or(l.last()).copied())
            .unwrap_or(ResultStatus::Success);
        let output = self
            .outputs
            .get(step)
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        match status {
            ResultStatus::Failure => StepResult::failure("scripted failure"),
            s => StepResult {
                status: s,
                output,
                message: String::new(),
                fault: None,
                details: Value::Null,
            },
        }
    }
}

/// One line of a simulated path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimLine {
    /// The phase, or `job`.
    pub phase: String,
    /// The step key, or empty for job-level lines.
    pub step: String,
    /// What happened.
    pub what: String,
}

/// Walks `rule` with `script`, calling no op, and returns the path and the final status.
pub fn simulate(
    rule: &Rule,
    params: Map<String, Value>,
    ops: BTreeMap<String, OpMeta>,
    script: &Script,
) -> Result<(Vec<SimLine>, JobStatus), String> {
    let created = Event::Created {
        job_id: format!("{}-simulated", rule.name),
        rule: Box::new(rule.clone()),
        params,
        started_by: sluice_model::Actor::system("simulation"),
        ops,
        rule_version: crate::RULE_VERSION,
        cause: None,
    };
    let mut now = 0;
    let mut job = Job::new(&created, now).ok_or("internal: no job")?;
    let mut lines = Vec::new();
    let line = |phase: &str, step: &str, what: String| SimLine {
        phase: phase.into(),
        step: step.into(),
        what,
    };
    let phase_of = |job: &Job, key: &str| -> String {
        let id = key.strip_prefix("undo:").unwrap_or(key);
        if key.starts_with("undo:") {
            return "rollback".into();
        }
        job.rule
            .step(id)
            .map(|(p, _)| p.as_str().to_string())
            .unwrap_or_default()
    };

    for _ in 0..100_000 {
        let actions = decide(&job, now);
        if actions.is_empty() {
            return match &job.finished {
                Some((s, _)) => Ok((lines, *s)),
                None => Err("the job stopped without finishing (a gate?): simulation cannot decide for people".into()),
            };
        }
        for a in actions {
            match a {
                Action::Record(e) => {
                    match &e {
                        Event::StepSkipped { step, reason } => lines.push(line(
                            &phase_of(&job, step),
                            step,
                            format!("skipped: {reason}"),
                        )),
                        Event::StepFinished { step, result, .. } => lines.push(line(
                            &phase_of(&job, step),
                            step,
                            format!("failure: {}", result.message),
                        )),
                        Event::RollbackStarted { step, .. } => {
                            lines.push(line("job", "", format!("rollback: `{step}` failed")))
                        }
                        Event::Finished { status, message } => {
                            lines.push(line("job", "", format!("{}: {message}", status.as_str())))
                        }
                        _ => {}
                    }
                    job.apply(&e, now);
                }
                Action::Call(c) => {
                    job.apply(
                        &Event::StepStarted {
                            step: c.step.clone(),
                            attempt: c.attempt,
                            input: c.input.clone(),
                        },
                        now,
                    );
                    let result = script.result(&c.step, c.attempt);
                    let verb = if c.rollback_of.is_some() {
                        "undo"
                    } else {
                        "run"
                    };
                    let status = match result.status {
                        ResultStatus::Success => "success",
                        ResultStatus::Warning => "warning",
                        ResultStatus::Failure => "failure",
                    };
                    let attempt = if c.attempt > 1 {
                        format!(" (attempt {})", c.attempt)
                    } else {
                        String::new()
                    };
                    lines.push(line(
                        c.phase.as_str(),
                        &c.step,
                        format!("{verb} {}{attempt}: {status}", c.op),
                    ));
                    job.apply(
                        &Event::StepFinished {
                            step: c.step,
                            attempt: c.attempt,
                            result,
                        },
                        now,
                    );
                }
                Action::AcquireLocks { locks, .. } => {
                    let names: Vec<String> = locks.iter().map(|l| l.name.clone()).collect();
                    if !names.is_empty() {
                        lines.push(line("job", "", format!("takes {}", names.join(", "))));
                    }
                    job.apply(&Event::Started { locks: names }, now);
                }
                Action::ReleaseLocks => {}
                Action::WakeAt(t) => now = now.max(t),
            }
        }
    }
    Err("the simulation did not end after 100000 actions".into())
}
