//! Gates: what a waiting step needs, who may decide, and what a decision does.
//!
//! A gate opens when an op suspends (`approve`, `pause`, `trap`, or any op) or when a step with
//! `on-error: trap` fails. Deciding is two halves: [`Job::check_decision`] says whether a
//! decision is acceptable and turns it into an `Event::Decided` (pure: the caller appends it
//! with the journal's sequence guard, so of two concurrent decisions exactly one lands), and
//! `Job::apply` folds it in.

use serde::Serialize;
use serde_json::{Map, Value};
use sluice_model::{DecisionKind, GateKind, InputKind};
use sluice_rule::StepKind;

use crate::{Closed, Ending, Event, Job, Millis, StepStatus};

/// A decision someone asks for.
#[derive(Debug, Clone)]
pub struct DecisionRequest<'a> {
    /// The step, when the job waits at more than one gate.
    pub step: Option<&'a str>,
    /// What.
    pub kind: DecisionKind,
    /// Who, with their groups (from the permissions file).
    pub actor: sluice_model::Actor,
    /// A comment.
    pub comment: &'a str,
    /// Answers to the gate's inputs, or edited inputs for a retry.
    pub inputs: Map<String, Value>,
}

/// Why a decision was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The job ended.
    #[error("job {job} has ended ({status}); there is nothing to decide")]
    Ended {
        /// The job.
        job: String,
        /// How it ended.
        status: crate::JobStatus,
    },
    /// No gate waits, or none at the step named.
    #[error("job {job} is not waiting at {}", match (.step, .waiting.is_empty()) {
        (Some(step), false) => format!("step `{step}`; it waits at {}", .waiting.join(", ")),
        _ => "a gate".to_string(),
    })]
    NotWaiting {
        /// The job.
        job: String,
        /// The step asked for.
        step: Option<String>,
        /// The steps that do wait.
        waiting: Vec<String>,
    },
    /// Several gates wait and no step was named.
    #[error("job {job} waits at {}: pass --step ID", .waiting.join(", "))]
    WhichGate {
        /// The job.
        job: String,
        /// The steps that wait.
        waiting: Vec<String>,
    },
    /// This kind of gate does not take this decision.
    #[error("step `{step}` waits at {} gate, which takes {}, not {kind}", .gate.described(), .takes.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "))]
    NotAChoice {
        /// The step.
        step: String,
        /// Its gate's kind.
        gate: GateKind,
        /// What it takes.
        takes: Vec<DecisionKind>,
        /// What was asked.
        kind: DecisionKind,
    },
    /// The gate names its approvers, and the user is not one.
    #[error("{user} may not decide at `{step}`: its approvers are {}", .approvers.join(", "))]
    NotAnApprover {
        /// Who asked.
        user: String,
        /// The step.
        step: String,
        /// Who may.
        approvers: Vec<String>,
    },
    /// The job's starter may not approve it (four eyes).
    #[error("{user} started job {job} and may not approve it (four eyes); another approver must")]
    FourEyes {
        /// Who asked.
        user: String,
        /// The job.
        job: String,
    },
    /// The user approved already.
    #[error(
        "{user} has already approved `{step}` ({given} of {quorum} approvals so far); another approver must"
    )]
    AlreadyApproved {
        /// Who asked.
        user: String,
        /// The step.
        step: String,
        /// Approvals so far.
        given: usize,
        /// Approvals needed.
        quorum: u32,
    },
    /// The inputs nest deeper than a job may keep.
    #[error(
        "the inputs nest {depth} levels deep; the limit is {}",
        crate::MAX_VALUE_DEPTH
    )]
    TooDeep {
        /// How deep.
        depth: usize,
    },
    /// An input the gate does not ask for.
    #[error("`{step}` asks for {}, not `{name}`", if .known.is_empty() { "no inputs".to_string() } else { .known.join(", ") })]
    UnknownInput {
        /// The step.
        step: String,
        /// The input given.
        name: String,
        /// The inputs it asks for.
        known: Vec<String>,
    },
    /// A required input is missing.
    #[error("`{step}` needs input `{name}` ({description}): pass --input {name}=VALUE")]
    MissingInput {
        /// The step.
        step: String,
        /// The input.
        name: String,
        /// What it is.
        description: String,
    },
    /// A choice input with a value it does not offer.
    #[error("input `{name}` is `{value}`; pick one of {}", .choices.join(", "))]
    NotOffered {
        /// The input.
        name: String,
        /// What was given.
        value: String,
        /// What it offers.
        choices: Vec<String>,
    },
    /// The trap's retries are used up.
    #[error(
        "`{step}` was retried {retries} times, the most its trap allows; skip, rollback or abort"
    )]
    RetriesUsed {
        /// The step.
        step: String,
        /// How many times.
        retries: u32,
    },
    /// Starting outside a deploy window needs a reason.
    #[error("skipping the deploy window of `{step}` needs a comment saying why: pass --comment")]
    NeedsComment {
        /// The step (`window:job` for the job's window).
        step: String,
    },
    /// The gate was decided already; nothing waits there now.
    #[error("`{step}` of job {job} was already decided: {kind} by {by}; nothing waits there now")]
    AlreadyDecided {
        /// The job.
        job: String,
        /// The step.
        step: String,
        /// What was decided.
        kind: DecisionKind,
        /// Who decided (approvers joined by `, ` for a quorum).
        by: String,
    },
}

/// What a refusal says about the request, for front ends that answer by class (an HTTP
/// status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalClass {
    /// The person may not decide this (not an approver, four eyes).
    Denied,
    /// The request is wrong as asked (inputs, which gate): asking differently can succeed.
    Invalid,
    /// The job is not where the request expects (ended, not waiting, already decided).
    Conflict,
}

impl Refusal {
    /// The class of this refusal.
    pub fn class(&self) -> RefusalClass {
        match self {
            Refusal::NotAnApprover { .. } | Refusal::FourEyes { .. } => RefusalClass::Denied,
            Refusal::WhichGate { .. }
            | Refusal::NotAChoice { .. }
            | Refusal::TooDeep { .. }
            | Refusal::UnknownInput { .. }
            | Refusal::MissingInput { .. }
            | Refusal::NotOffered { .. }
            | Refusal::NeedsComment { .. } => RefusalClass::Invalid,
            Refusal::Ended { .. }
            | Refusal::NotWaiting { .. }
            | Refusal::AlreadyApproved { .. }
            | Refusal::RetriesUsed { .. }
            | Refusal::AlreadyDecided { .. } => RefusalClass::Conflict,
        }
    }
}

/// A gate as a person sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateView {
    /// The step.
    pub step: String,
    /// Approval, pause or trap.
    pub kind: GateKind,
    /// What is asked.
    pub message: String,
    /// Who may decide.
    pub approvers: Vec<String>,
    /// Approvals needed, and given.
    pub quorum: u32,
    /// Who approved so far.
    pub approved_by: Vec<String>,
    /// When it times out, and what happens then.
    pub deadline: Option<Millis>,
    /// The action on timeout.
    pub on_timeout: Option<DecisionKind>,
    /// For a deploy window: when it opens, and the job goes on by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<Millis>,
    /// The decisions it takes.
    pub choices: Vec<DecisionKind>,
    /// The ops (name, sha256, capabilities) the job runs: what an approval approves.
    pub bundle: Vec<(String, String, Vec<String>)>,
    /// sha256 over the bundle.
    pub bundle_digest: String,
}

/// What each kind of gate takes.
pub fn choices(kind: GateKind) -> &'static [DecisionKind] {
    match kind {
        GateKind::Approval => &[
            DecisionKind::Approve,
            DecisionKind::Reject,
            DecisionKind::Abort,
        ],
        GateKind::Pause => &[DecisionKind::Resume, DecisionKind::Abort],
        GateKind::Trap => &[
            DecisionKind::Retry,
            DecisionKind::Skip,
            DecisionKind::Rollback,
            DecisionKind::Abort,
        ],
        // Cancel stops a job waiting for its window; nothing else is decided there.
        GateKind::Window => &[DecisionKind::SkipWindow],
    }
}

/// sha256 over the lines, hex.
fn digest_hex(parts: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

impl Job {
    /// The ops the job runs, pinned at its start: name, sha256, capabilities; and a digest
    /// over them. An approval is recorded against this digest.
    pub fn bundle(&self) -> (Vec<(String, String, Vec<String>)>, String) {
        let list: Vec<(String, String, Vec<String>)> = self
            .ops
            .iter()
            .map(|(n, m)| (n.clone(), m.digest.clone(), m.needs.clone()))
            .collect();
        let parts: Vec<String> = list
            .iter()
            .map(|(n, d, c)| format!("{n} {d} {}", c.join(",")))
            .collect();
        (list, digest_hex(&parts))
    }

    /// The gates waiting for a decision.
    pub fn waiting_gates(&self) -> Vec<GateView> {
        let waiting = self.waiting_steps();
        if waiting.is_empty() {
            return vec![];
        }
        let (bundle, bundle_digest) = self.bundle();
        waiting
            .into_iter()
            .filter_map(|k| {
                let g = self.steps[k].gate.as_ref()?;
                Some(GateView {
                    step: k.to_string(),
                    kind: g.gate.kind,
                    message: g.gate.message.clone(),
                    approvers: g.gate.approvers.clone(),
                    quorum: g.gate.quorum.max(1),
                    approved_by: g.approvals.iter().map(|(u, _, _)| u.clone()).collect(),
                    deadline: g.gate.timeout_seconds.map(|t| g.opened_at + t * 1000),
                    on_timeout: g.gate.timeout_action,
                    opens_at: g.gate.opens_at,
                    choices: choices(g.gate.kind).to_vec(),
                    bundle: bundle.clone(),
                    bundle_digest: bundle_digest.clone(),
                })
            })
            .collect()
    }

    /// The steps at a gate nobody has decided yet (no bundle digest computed: cheap).
    pub fn waiting_steps(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|(_, s)| {
                s.status == StepStatus::Waiting
                    && s.gate.as_ref().is_some_and(|g| g.decision.is_none())
            })
            .map(|(k, _)| k.as_str())
            .collect()
    }

    /// When something is due without anyone acting: a gate's timeout, a deploy window's
    /// opening, or a retry's delay.
    pub fn next_timer(&self) -> Option<Millis> {
        if self.finished.is_some() {
            return None;
        }
        let gates = self
            .steps
            .values()
            .filter(|s| s.status == StepStatus::Waiting)
            .filter_map(|s| {
                let g = s.gate.as_ref().filter(|g| g.decision.is_none())?;
                let timeout = g.gate.timeout_seconds.map(|t| g.opened_at + t * 1000);
                match (timeout, g.gate.opens_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            });
        let retries = self
            .steps
            .values()
            .filter(|s| s.status == StepStatus::RetryWait)
            .filter_map(|s| s.retry_at);
        gates.chain(retries).min()
    }

    /// The latest decision that closed the gate of `step` (or, with no step, the gate closed
    /// last), as a refusal naming who decided.
    fn decided_at(&self, step: Option<&str>) -> Option<Refusal> {
        let (key, gate) = self
            .steps
            .iter()
            .filter(|(k, _)| step.is_none_or(|s| s == k.as_str()))
            .filter_map(|(k, s)| Some((k, s.gate.as_ref()?)))
            .filter(|(_, g)| g.decision.is_some())
            .max_by_key(|(_, g)| g.opened_at)?;
        let closed = gate.decision.as_ref()?;
        Some(Refusal::AlreadyDecided {
            job: self.id.clone(),
            step: key.clone(),
            kind: closed.kind,
            by: closed.by.clone(),
        })
    }

    /// Checks a decision against the job and turns it into the event to append. Nothing
    /// changes here: a refused decision changes nothing.
    pub fn check_decision(&self, req: &DecisionRequest<'_>) -> Result<Event, Refusal> {
        if let Some((status, _)) = &self.finished {
            return Err(Refusal::Ended {
                job: self.id.clone(),
                status: *status,
            });
        }
        let gates = self.waiting_gates();
        let waiting = || gates.iter().map(|g| g.step.clone()).collect::<Vec<_>>();
        let gate = match req.step {
            Some(step) => match gates.iter().find(|g| g.step == step) {
                Some(g) => g,
                None => {
                    return Err(self.decided_at(Some(step)).unwrap_or_else(|| {
                        Refusal::NotWaiting {
                            job: self.id.clone(),
                            step: Some(step.to_string()),
                            waiting: waiting(),
                        }
                    }));
                }
            },
            None => match gates.as_slice() {
                [] => {
                    return Err(self
                        .decided_at(None)
                        .unwrap_or_else(|| Refusal::NotWaiting {
                            job: self.id.clone(),
                            step: None,
                            waiting: vec![],
                        }));
                }
                [one] => one,
                _ => {
                    return Err(Refusal::WhichGate {
                        job: self.id.clone(),
                        waiting: waiting(),
                    });
                }
            },
        };
        if !gate.choices.contains(&req.kind) {
            return Err(Refusal::NotAChoice {
                step: gate.step.clone(),
                gate: gate.kind,
                takes: gate.choices.clone(),
                kind: req.kind,
            });
        }
        let state = &self.steps[&gate.step];
        let g = state.gate.as_ref().expect("a waiting gate");
        if !gate.approvers.is_empty() {
            let allowed = gate
                .approvers
                .iter()
                .any(|a| match a.strip_prefix("group:") {
                    Some(group) => req.actor.groups.iter().any(|g| g == group),
                    None => *a == req.actor.name,
                });
            if !allowed {
                return Err(Refusal::NotAnApprover {
                    user: req.actor.name.clone(),
                    step: gate.step.clone(),
                    approvers: gate.approvers.clone(),
                });
            }
        }
        if req.kind == DecisionKind::Approve {
            if req.actor.name == self.started_by && !g.gate.allow_self_approval {
                return Err(Refusal::FourEyes {
                    user: req.actor.name.clone(),
                    job: self.id.clone(),
                });
            }
            if g.approvals.iter().any(|(u, _, _)| *u == req.actor.name) {
                return Err(Refusal::AlreadyApproved {
                    user: req.actor.name.clone(),
                    step: gate.step.clone(),
                    given: g.approvals.len(),
                    quorum: gate.quorum,
                });
            }
        }
        if req.kind == DecisionKind::SkipWindow && req.comment.trim().is_empty() {
            return Err(Refusal::NeedsComment {
                step: gate.step.clone(),
            });
        }
        let depth = crate::json_depth(&Value::Object(req.inputs.clone()));
        if depth > crate::MAX_VALUE_DEPTH {
            return Err(Refusal::TooDeep { depth });
        }
        let mut inputs = req.inputs.clone();
        if matches!(req.kind, DecisionKind::Approve | DecisionKind::Resume) {
            for (name, _) in &req.inputs {
                if !g.gate.inputs.iter().any(|i| &i.name == name) {
                    return Err(Refusal::UnknownInput {
                        step: gate.step.clone(),
                        name: name.clone(),
                        known: g.gate.inputs.iter().map(|i| i.name.clone()).collect(),
                    });
                }
            }
            for i in &g.gate.inputs {
                match inputs.get(&i.name) {
                    None => match &i.default {
                        Some(d) => {
                            inputs.insert(i.name.clone(), Value::String(d.clone()));
                        }
                        None if i.required => {
                            return Err(Refusal::MissingInput {
                                step: gate.step.clone(),
                                name: i.name.clone(),
                                description: i.description.clone(),
                            });
                        }
                        None => {}
                    },
                    Some(v) => {
                        if let InputKind::Choice(values) = &i.kind {
                            let text = v
                                .as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string());
                            if !values.contains(&text) {
                                return Err(Refusal::NotOffered {
                                    name: i.name.clone(),
                                    value: text,
                                    choices: values.clone(),
                                });
                            }
                        }
                    }
                }
            }
        }
        if req.kind == DecisionKind::Retry
            && let Some(max) = self.trap_policy(&gate.step).and_then(|t| t.max_retries)
            && state.trap_retries >= max
        {
            return Err(Refusal::RetriesUsed {
                step: gate.step.clone(),
                retries: state.trap_retries,
            });
        }
        Ok(Event::Decided {
            step: gate.step.clone(),
            kind: req.kind,
            by: req.actor.clone(),
            comment: req.comment.to_string(),
            inputs,
            bundle: gate.bundle_digest.clone(),
        })
    }

    pub(crate) fn trap_policy(&self, key: &str) -> Option<sluice_rule::TrapPolicy> {
        match &self.step_def(key)?.1.kind {
            StepKind::Op(c) => Some(c.trap),
            StepKind::Parallel(_) => None,
        }
    }

    /// Folds a decision into the step it is for.
    pub(crate) fn decided(
        &mut self,
        step: &str,
        kind: DecisionKind,
        by: &str,
        comment: &str,
        inputs: &Map<String, Value>,
        at: Millis,
    ) {
        let Some(s) = self.steps.get_mut(step) else {
            return;
        };
        let Some(g) = s.gate.as_mut() else { return };
        if s.status != StepStatus::Waiting || g.decision.is_some() {
            return; // a late duplicate: the first decision stands
        }
        let close = |kind: DecisionKind, by: String| Closed {
            kind,
            by,
            comment: comment.to_string(),
            inputs: inputs.clone(),
            resumed: false,
        };
        match kind {
            DecisionKind::Approve => {
                g.approvals.push((by.to_string(), comment.to_string(), at));
                let quorum = g.gate.quorum.max(1) as usize;
                if by == "timeout" || g.approvals.len() >= quorum {
                    let who: Vec<String> = g.approvals.iter().map(|(u, _, _)| u.clone()).collect();
                    g.decision = Some(close(kind, who.join(", ")));
                }
            }
            DecisionKind::Reject | DecisionKind::Resume | DecisionKind::SkipWindow => {
                g.decision = Some(close(kind, by.to_string()))
            }
            DecisionKind::Abort => {
                g.decision = Some(close(kind, by.to_string()));
                s.status = StepStatus::Failed;
                s.finished_at = Some(at);
                s.ending = Some(Ending::Aborted(by.to_string()));
            }
            DecisionKind::Skip => {
                g.decision = Some(close(kind, by.to_string()));
                s.status = StepStatus::Skipped;
                s.finished_at = Some(at);
                let why = if comment.is_empty() {
                    String::new()
                } else {
                    format!(": {comment}")
                };
                s.skip_reason = Some(format!(
                    "skipped by {by} at a {}{why}",
                    if g.gate.kind == GateKind::Trap {
                        "trap"
                    } else {
                        "gate"
                    }
                ));
            }
            DecisionKind::Retry => {
                g.decision = Some(close(kind, by.to_string()));
                s.status = StepStatus::RetryWait;
                s.retry_at = Some(at);
                s.trap_retries += 1;
                // Edited inputs replace the fields they name.
                if let Value::Object(m) = &mut s.input {
                    for (k, v) in inputs {
                        m.insert(k.clone(), v.clone());
                    }
                }
            }
            DecisionKind::Rollback => {
                g.decision = Some(close(kind, by.to_string()));
                s.status = StepStatus::Failed;
                s.finished_at = Some(at);
                s.ending = Some(Ending::RollbackAsked(by.to_string()));
            }
        }
    }
}
