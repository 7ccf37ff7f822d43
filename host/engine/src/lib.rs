//! The job engine: a pure state machine over a job's journal.
//!
//! A job is its events ([`Event`]). [`Job::apply`] folds one event into the state; [`decide`]
//! looks at the state (and the clock it is handed) and returns what should happen next as
//! [`Action`]s: record an event the engine derived (a skipped step, the start of rollback, the
//! end), call an op, take or give back locks, wake up later. A runner carries the actions out
//! and feeds the results back as events. [`simulate`] is such a runner with scripted outcomes.
//!
//! Architecture Invariant: no I/O, no clock, no threads, no wasmtime, no tokio, no SQL. The
//! same events always give the same state and the same actions, which is what makes a job
//! recoverable from its journal and testable as data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sluice_rule::{Rule, StepKind};

pub use sluice_model::{Actor, AuthMethod, DecisionKind, Gate, GateKind, JobStatus};

mod decide;
mod gates;
pub mod history;
pub mod schedule;
mod simulate;

pub use decide::{JOB_WINDOW, decide};
pub use gates::{DecisionRequest, GateView, Refusal, RefusalClass, choices};
pub use history::{DecodeError, EVENT_VERSION, RULE_VERSION, decode, encode};
pub use simulate::{Script, SimLine, simulate};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// The deepest a value a job keeps may nest (op outputs, rendered inputs, decision inputs):
/// events carry them a few levels down, and the journal must read every event back.
pub const MAX_VALUE_DEPTH: usize = 64;

/// How deeply `v` nests arrays and objects (a scalar is 0).
pub fn json_depth(v: &Value) -> usize {
    // Iterative: a value handed in may be deeper than the stack would allow to recurse.
    let mut max = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(a) => {
                max = max.max(d + 1);
                stack.extend(a.iter().map(|x| (x, d + 1)));
            }
            Value::Object(m) => {
                max = max.max(d + 1);
                stack.extend(m.values().map(|x| (x, d + 1)));
            }
            _ => {}
        }
    }
    max
}

/// What the engine knows of an op when a job starts (from its `describe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpMeta {
    /// The component's sha256.
    pub digest: String,
    /// Whether it implements `rollback`.
    pub can_rollback: bool,
    /// Whether re-running it is harmless.
    pub idempotent: bool,
    /// The capabilities it needs (`exec:kubectl`, `secret:token`...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// Where its input holds brace templates (`x-sluice-templates` in its input schema):
    /// braces that expressions put there are escaped, so a param arrives verbatim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<String>,
}

/// How a step attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResultStatus {
    /// Done.
    Success,
    /// Done, with a warning.
    Warning,
    /// Not done.
    Failure,
}

/// The result of one step attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// Success, warning or failure.
    pub status: ResultStatus,
    /// The op's JSON output (null on failure).
    #[serde(default)]
    pub output: Value,
    /// The failure message; empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Set when the op did not return on its own (panic, timeout...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// The failure's JSON details, null when none.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub details: Value,
}

impl StepResult {
    /// A success with `output`.
    pub fn success(output: Value) -> Self {
        StepResult {
            status: ResultStatus::Success,
            output,
            message: String::new(),
            fault: None,
            details: Value::Null,
        }
    }

    /// A failure with `message`.
    pub fn failure(message: impl Into<String>) -> Self {
        StepResult {
            status: ResultStatus::Failure,
            output: Value::Null,
            message: message.into(),
            fault: None,
            details: Value::Null,
        }
    }
}

/// Why a job started by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// The trigger: `job-finished` or `cloudevent`.
    pub kind: String,
    /// What it follows: the job whose end started it, or the event (`SOURCE#ID`).
    pub from: String,
    /// Starts one job however often it is seen (`JOB:RULE`, `ce:SOURCE#ID:RULE`): a second
    /// start with it is refused by the journal.
    pub key: String,
    /// How many started-by-trigger jobs lead here, this one included (1 for the first).
    pub depth: u32,
}

/// One entry of a job's journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    /// The job exists, with a snapshot of its rule and the ops' metadata.
    Created {
        /// `<rule>-<n>`.
        job_id: String,
        /// The rule as it was when the job started.
        rule: Box<Rule>,
        /// Bound params.
        params: Map<String, Value>,
        /// Who started it.
        started_by: Actor,
        /// Every op the rule calls.
        ops: BTreeMap<String, OpMeta>,
        /// The format version of `rule` ([`RULE_VERSION`] when written now).
        #[serde(default = "first_version")]
        rule_version: u32,
        /// What started it by itself (a trigger of its rule's `on:`), if not a person.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<Cause>,
    },
    /// The job waits in line for locks or its concurrency group.
    Queued {
        /// The jobs holding what it needs.
        behind: Vec<String>,
    },
    /// The job holds its locks and runs.
    Started {
        /// Locks taken, by name.
        locks: Vec<String>,
    },
    /// An attempt of a step began.
    StepStarted {
        /// Step key (`id`, or `undo:<id>` for the undo of a step).
        step: String,
        /// 1, 2...
        attempt: u32,
        /// The rendered input.
        input: Value,
    },
    /// An attempt of a step ended.
    StepFinished {
        /// Step key.
        step: String,
        /// Which attempt.
        attempt: u32,
        /// How it went.
        result: StepResult,
    },
    /// A step did not run.
    StepSkipped {
        /// Step key.
        step: String,
        /// Why.
        reason: String,
    },
    /// A step waits for a person: an op suspended, or a step with `on-error: trap` failed.
    GateOpened {
        /// Step key.
        step: String,
        /// The attempt that opened it.
        attempt: u32,
        /// The gate (its `state` is the op's, handed back to `resume`).
        gate: Gate,
    },
    /// A person (or a timeout, `by: timeout`) decided at a gate.
    Decided {
        /// Step key.
        step: String,
        /// What was decided.
        kind: DecisionKind,
        /// Who (`timeout` for a gate's timeout).
        by: Actor,
        /// Their comment.
        #[serde(default)]
        comment: String,
        /// Answers to the gate's inputs, or edited inputs for a retry.
        #[serde(default)]
        inputs: Map<String, Value>,
        /// sha256 over the job's pinned ops: what the decision approved.
        #[serde(default)]
        bundle: String,
    },
    /// The host stopped while this attempt ran (found on recovery).
    Interrupted {
        /// Step key.
        step: String,
        /// The attempt that never finished.
        attempt: u32,
        /// Programs the attempt started that still run (found on recovery): while any does,
        /// the step is not run again by itself.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        live_children: Vec<String>,
    },
    /// A step failed for good: completed steps are undone, then `rollback:` runs.
    RollbackStarted {
        /// The step that failed.
        step: String,
        /// Its failure.
        message: String,
    },
    /// Someone asked the job to stop: no new step starts, gates still open close as
    /// cancelled; post runs.
    CancelRequested {
        /// Who (`concurrency` when its group pushed it out).
        by: Actor,
        /// Why.
        reason: String,
    },
    /// The job ended.
    Finished {
        /// How.
        status: JobStatus,
        /// In a sentence.
        message: String,
    },
}

fn first_version() -> u32 {
    1
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// An attempt is under way.
    Running,
    /// Waiting to retry.
    RetryWait,
    /// Succeeded.
    Succeeded,
    /// Succeeded with a warning.
    Warning,
    /// Failed for good.
    Failed,
    /// Did not run.
    Skipped,
    /// Waits at a gate for a person.
    Waiting,
    /// Was waiting at a gate when the job was cancelled.
    Cancelled,
}

impl StepStatus {
    /// Where the step is, in words (`waiting to retry` for a retry's wait).
    pub fn described(self) -> &'static str {
        match self {
            StepStatus::Running => "running",
            StepStatus::RetryWait => "waiting to retry",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Warning => "warning",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Waiting => "waiting",
            StepStatus::Cancelled => "cancelled",
        }
    }
}

/// What the journal says of one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepState {
    /// Where it is.
    pub status: StepStatus,
    /// The latest attempt (0 when it never started).
    pub attempt: u32,
    /// The rendered input of the latest attempt.
    pub input: Value,
    /// The latest result.
    pub result: Option<StepResult>,
    /// Why it was skipped.
    pub skip_reason: Option<String>,
    /// When the first attempt started.
    pub started_at: Option<Millis>,
    /// When it last finished.
    pub finished_at: Option<Millis>,
    /// When the next attempt may start.
    pub retry_at: Option<Millis>,
    /// The gate it waits at (or waited at last).
    pub gate: Option<GateState>,
    /// How many times a person picked retry at its trap.
    pub trap_retries: u32,
    /// How a person ended it, when that ends more than the step.
    pub ending: Option<Ending>,
}

impl StepState {
    fn new(status: StepStatus, at: Millis) -> Self {
        StepState {
            status,
            attempt: 0,
            input: Value::Null,
            result: None,
            skip_reason: None,
            started_at: Some(at),
            finished_at: None,
            retry_at: None,
            gate: None,
            trap_retries: 0,
            ending: None,
        }
    }
}

/// A gate a step waits (or waited) at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateState {
    /// The gate.
    pub gate: Gate,
    /// The attempt that opened it.
    pub attempt: u32,
    /// When.
    pub opened_at: Millis,
    /// Approvals so far (for a quorum): user, comment, time.
    pub approvals: Vec<(String, String, Millis)>,
    /// The decision that closed it.
    pub decision: Option<Closed>,
}

/// The decision that closed a gate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Closed {
    /// What.
    pub kind: DecisionKind,
    /// Who (approvers joined by `, ` for a quorum).
    pub by: String,
    /// Their comment.
    pub comment: String,
    /// Answers to the gate's inputs.
    pub inputs: Map<String, Value>,
    /// Whether the op's `resume` has been called with it.
    pub resumed: bool,
}

/// A person's decision that ends more than a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ending {
    /// Abort: the job ends as failed, no rollback.
    Aborted(String),
    /// Rollback picked at a trap.
    RollbackAsked(String),
}

/// A job's state, rebuilt from its events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    /// The job id.
    pub id: String,
    /// The rule snapshot (shared: a job's state is cloned often, its rule never changes).
    pub rule: std::sync::Arc<Rule>,
    /// Bound params.
    pub params: Map<String, Value>,
    /// Who started it.
    pub started_by: String,
    /// Op metadata.
    pub ops: BTreeMap<String, OpMeta>,
    /// When it was created.
    pub created_at: Millis,
    /// Steps by key.
    pub steps: BTreeMap<String, StepState>,
    /// Forward steps that succeeded, in the order they finished (the undo order, reversed).
    pub completed: Vec<String>,
    /// Set while waiting in line.
    pub queued_behind: Option<Vec<String>>,
    /// Locks held, once started.
    pub locks: Option<Vec<String>>,
    /// The failing step and message, once rollback started.
    pub rollback: Option<(String, String)>,
    /// Who cancelled and why.
    pub cancel: Option<(String, String)>,
    /// How it ended.
    pub finished: Option<(JobStatus, String)>,
    /// When it ended.
    pub finished_at: Option<Millis>,
    /// What started it by itself, if not a person.
    pub cause: Option<Cause>,
    /// Every step of the rule by id, with its phase: looked up on every event, so kept.
    #[serde(skip)]
    index: std::sync::Arc<BTreeMap<String, (sluice_model::Phase, sluice_rule::Step)>>,
}

/// An op call the runner should make.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepCall {
    /// Step key.
    pub step: String,
    /// The op.
    pub op: String,
    /// The phase it runs in.
    pub phase: sluice_model::Phase,
    /// Which attempt.
    pub attempt: u32,
    /// The rendered input.
    pub input: Value,
    /// `run`, or `rollback` with the output of the earlier run.
    pub rollback_of: Option<Value>,
    /// Deadline in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Call `resume` with the gate's state and this decision instead of `run`.
    pub resume: Option<(Vec<u8>, sluice_model::Decision)>,
    /// How the step before this one ended.
    pub previous: Option<String>,
}

/// A lock to take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockRequest {
    /// Rendered name (`group:<name>` for a concurrency group).
    pub name: String,
    /// Shared or exclusive.
    pub exclusive: bool,
}

/// What should happen next.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Action {
    /// Record this event (the engine derived it; no I/O needed).
    Record(Event),
    /// Record `StepStarted`, call the op, record `StepFinished`.
    Call(StepCall),
    /// Take these locks all at once, or queue; then record `Started` or `Queued`.
    AcquireLocks {
        /// The locks.
        locks: Vec<LockRequest>,
        /// What to do when the concurrency group is busy.
        mode: sluice_rule::ConcurrencyMode,
    },
    /// The job ended: give back its locks, and wake whoever waits for them.
    ReleaseLocks,
    /// Nothing to do before this time (a retry's delay).
    WakeAt(Millis),
}

impl Job {
    /// The state right after `Created`; `None` for any other first event.
    pub fn new(first: &Event, at: Millis) -> Option<Job> {
        let Event::Created {
            job_id,
            rule,
            params,
            started_by,
            ops,
            cause,
            ..
        } = first
        else {
            return None;
        };
        Some(Job {
            id: job_id.clone(),
            rule: std::sync::Arc::new((**rule).clone()),
            params: params.clone(),
            started_by: started_by.name.clone(),
            ops: ops.clone(),
            created_at: at,
            steps: BTreeMap::new(),
            completed: Vec::new(),
            queued_behind: None,
            locks: None,
            rollback: None,
            cancel: None,
            finished: None,
            finished_at: None,
            cause: cause.clone(),
            index: std::sync::Arc::new(
                rule.all_steps()
                    .into_iter()
                    .map(|(p, s)| (s.id.clone(), (p, s.clone())))
                    .collect(),
            ),
        })
    }

    /// Rebuilds a job from its events (with their times).
    pub fn replay<'a>(events: impl IntoIterator<Item = (&'a Event, Millis)>) -> Option<Job> {
        let mut it = events.into_iter();
        let (first, at) = it.next()?;
        let mut job = Job::new(first, at)?;
        for (e, at) in it {
            job.apply(e, at);
        }
        Some(job)
    }

    /// Folds one event into the state.
    pub fn apply(&mut self, event: &Event, at: Millis) {
        match event {
            Event::Created { .. } => {}
            Event::Queued { behind } => self.queued_behind = Some(behind.clone()),
            Event::Started { locks } => {
                self.queued_behind = None;
                self.locks = Some(locks.clone());
            }
            Event::StepStarted {
                step,
                attempt,
                input,
            } => {
                let s = self
                    .steps
                    .entry(step.clone())
                    .or_insert_with(|| StepState::new(StepStatus::Running, at));
                s.status = StepStatus::Running;
                s.attempt = *attempt;
                s.input = input.clone();
                s.retry_at = None;
            }
            Event::StepFinished {
                step,
                attempt,
                result,
            } => {
                let retry = self.retry_policy(step);
                let forward = !step.starts_with("undo:")
                    && self.step_def(step).is_some_and(|(p, _)| {
                        matches!(
                            p,
                            sluice_model::Phase::Init
                                | sluice_model::Phase::Pre
                                | sluice_model::Phase::Run
                        )
                    });
                let s = self
                    .steps
                    .entry(step.clone())
                    .or_insert_with(|| StepState::new(StepStatus::Failed, at));
                s.attempt = *attempt;
                s.finished_at = Some(at);
                s.result = Some(result.clone());
                s.status = match result.status {
                    ResultStatus::Success => StepStatus::Succeeded,
                    ResultStatus::Warning => StepStatus::Warning,
                    ResultStatus::Failure => match retry {
                        Some(r) if *attempt < r.attempts && self.cancel.is_none() => {
                            s.retry_at = Some(at + r.delay_before(attempt + 1));
                            StepStatus::RetryWait
                        }
                        _ => StepStatus::Failed,
                    },
                };
                if forward && matches!(s.status, StepStatus::Succeeded | StepStatus::Warning) {
                    self.completed.push(step.clone());
                }
            }
            Event::StepSkipped { step, reason } => {
                let mut st = StepState::new(StepStatus::Skipped, at);
                st.started_at = None;
                st.finished_at = Some(at);
                st.skip_reason = Some(reason.clone());
                self.steps.insert(step.clone(), st);
            }
            Event::GateOpened {
                step,
                attempt,
                gate,
            } => {
                let s = self
                    .steps
                    .entry(step.clone())
                    .or_insert_with(|| StepState::new(StepStatus::Waiting, at));
                s.status = StepStatus::Waiting;
                s.attempt = *attempt;
                s.gate = Some(GateState {
                    gate: gate.clone(),
                    attempt: *attempt,
                    opened_at: at,
                    approvals: vec![],
                    decision: None,
                });
            }
            Event::Decided {
                step,
                kind,
                by,
                comment,
                inputs,
                ..
            } => self.decided(step, *kind, &by.name, comment, inputs, at),
            Event::Interrupted {
                step,
                attempt,
                live_children,
            } => {
                let idempotent = self
                    .op_of(step)
                    .and_then(|op| self.ops.get(op))
                    .is_some_and(|m| m.idempotent);
                let Some(s) = self.steps.get_mut(step) else {
                    return;
                };
                // The call that never finished was the `resume` of a decided gate: calling it
                // again with the same recorded decision is safe, so nobody is asked twice.
                let resuming = s.gate.as_ref().is_some_and(|g| {
                    g.attempt == *attempt
                        && g.decision.as_ref().is_some_and(|d| {
                            matches!(
                                d.kind,
                                DecisionKind::Approve | DecisionKind::Resume | DecisionKind::Reject
                            )
                        })
                });
                if live_children.is_empty() && resuming {
                    s.status = StepStatus::Waiting;
                } else if live_children.is_empty() && idempotent {
                    s.status = StepStatus::RetryWait;
                    s.retry_at = Some(at);
                } else {
                    let why = if live_children.is_empty() {
                        "its op is not idempotent".to_string()
                    } else {
                        format!(
                            "programs it started still run ({}); wait for them to end or stop them before a retry",
                            live_children.join(", ")
                        )
                    };
                    let gate = Gate::trap(format!(
                        "interrupted: the host stopped while attempt {attempt} of `{step}` ran, and {why}; retry, skip, rollback or abort"
                    ));
                    s.status = StepStatus::Waiting;
                    s.result = Some(StepResult::failure("interrupted"));
                    s.gate = Some(GateState {
                        gate,
                        attempt: *attempt,
                        opened_at: at,
                        approvals: vec![],
                        decision: None,
                    });
                }
            }
            Event::RollbackStarted { step, message } => {
                self.rollback = Some((step.clone(), message.clone()));
            }
            Event::CancelRequested { by, reason } => {
                let by = &by.name;
                if self.cancel.is_none() {
                    self.cancel = Some((by.clone(), reason.clone()));
                }
                for s in self.steps.values_mut() {
                    match s.status {
                        // A step waiting to retry will not retry any more.
                        StepStatus::RetryWait => {
                            s.status = StepStatus::Failed;
                            s.retry_at = None;
                        }
                        // A gate nobody decided closes: the job does not wait for a decision
                        // that can no longer matter.
                        StepStatus::Waiting
                            if s.gate.as_ref().is_some_and(|g| g.decision.is_none()) =>
                        {
                            s.status = StepStatus::Cancelled;
                            s.finished_at = Some(at);
                            s.result = Some(StepResult::failure(format!(
                                "cancelled by {by} while waiting at the gate: {reason}"
                            )));
                        }
                        _ => {}
                    }
                }
            }
            Event::Finished { status, message } => {
                self.finished = Some((*status, message.clone()));
                self.finished_at = Some(at);
            }
        }
    }

    /// The phase and definition of the step with `id` (not `undo:` keys).
    pub fn step_def(&self, id: &str) -> Option<(sluice_model::Phase, &sluice_rule::Step)> {
        self.index.get(id).map(|(p, s)| (*p, s))
    }

    /// The op a step key calls.
    pub fn op_of(&self, key: &str) -> Option<&str> {
        let id = key.strip_prefix("undo:").unwrap_or(key);
        match &self.step_def(id)?.1.kind {
            StepKind::Op(c) => Some(c.op.as_str()),
            StepKind::Parallel(_) => None,
        }
    }

    fn retry_policy(&self, step: &str) -> Option<sluice_rule::Retry> {
        let (_, s) = self.step_def(step)?;
        match &s.kind {
            StepKind::Op(c) => c.retry,
            StepKind::Parallel(_) => None,
        }
    }

    /// Whether any step attempt is under way.
    pub fn running(&self) -> bool {
        self.steps.values().any(|s| s.status == StepStatus::Running)
    }

    /// What `job.status` reads in expressions: `running` until the run part is over, then the
    /// status the job will end with if post succeeds.
    pub fn status_word(&self) -> &'static str {
        if let Some((s, _)) = &self.finished {
            return s.as_str();
        }
        decide::path_status(self)
            .map(JobStatus::as_str)
            .unwrap_or("running")
    }

    /// The expression context: `params`, `job` and `steps`.
    pub fn context(&self) -> Value {
        let mut steps = Map::new();
        for (key, s) in &self.steps {
            let outcome = match s.status {
                StepStatus::Succeeded => "success",
                StepStatus::Warning => "warning",
                StepStatus::Failed => "failure",
                StepStatus::Skipped => "skipped",
                StepStatus::Cancelled => "cancelled",
                StepStatus::Running | StepStatus::RetryWait | StepStatus::Waiting => continue,
            };
            let (output, message) = match &s.result {
                Some(r) => (r.output.clone(), r.message.clone()),
                None => (Value::Null, s.skip_reason.clone().unwrap_or_default()),
            };
            // The decision taken at the step's gate: who, what, their comment and inputs.
            let decision = s.gate.as_ref().and_then(|g| g.decision.as_ref()).map_or(
                Value::Null,
                |d| json!({ "kind": d.kind, "by": d.by, "comment": d.comment, "inputs": d.inputs }),
            );
            steps.insert(
                key.clone(),
                json!({ "outcome": outcome, "output": output, "message": message, "decision": decision }),
            );
        }
        json!({
            "params": self.params,
            "job": {
                "id": self.id,
                "rule": self.rule.name,
                "started_by": self.started_by,
                "status": self.status_word(),
            },
            "steps": steps,
        })
    }
}

#[cfg(test)]
mod tests;
