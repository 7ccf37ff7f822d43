//! [`decide`]: from a job's state to the actions that move it on.
//!
//! The path of a job: `check` (before it exists) → take locks → `init`, `pre`, `run` in order →
//! on an untrapped failure: undo completed steps in reverse order, then `rollback:` → `post`
//! (always) → finished, locks given back. A cancel stops new steps from starting; what runs
//! finishes, then post runs.

use serde_json::Value;
use sluice_model::Phase;
use sluice_rule::calendar::{self, Windows};
use sluice_rule::expr::Evaluator;
use sluice_rule::{OnError, OpCall, Parallel, Step, StepKind};

use crate::{
    Action, DecisionKind, Ending, Event, Gate, GateKind, Job, JobStatus, LockRequest, Millis,
    StepCall, StepResult, StepState, StepStatus,
};

/// The key the job's own deploy window waits under, beside its steps (no step id has a `:`).
pub const JOB_WINDOW: &str = "window:job";

/// Where a deploy window stands.
enum Window {
    /// It may go: the window is open, opened, or was skipped.
    Go,
    /// It waits at its `window` gate (opened, or opened again, just now).
    Wait,
    /// It never opens.
    Never(String),
}

/// A step a person ended: rejected, aborted, or sent to rollback at its trap.
fn ended_by_person(step: &Step, state: &StepState) -> Option<Flow> {
    if matches!(state.status, StepStatus::Running | StepStatus::Waiting) {
        return None;
    }
    if let Some(e) = &state.ending {
        return Some(match e {
            Ending::Aborted(by) => Flow::Ended {
                status: JobStatus::Failed,
                message: format!("aborted by {by} at `{}`", step.id),
            },
            Ending::RollbackAsked(by) => Flow::Failed {
                step: step.id.clone(),
                message: format!("{by} picked rollback at the trap"),
            },
        });
    }
    // An op that declines by itself (a Keptn approval after a failed step) says so in its
    // failure's details.
    if state.status == StepStatus::Failed
        && let Some(r) = &state.result
        && r.details.get("decision").and_then(Value::as_str) == Some("reject")
        && state.gate.as_ref().is_none_or(|g| g.decision.is_none())
    {
        return Some(Flow::Ended {
            status: JobStatus::Rejected,
            message: format!("`{}` {}", step.id, r.message),
        });
    }
    let d = state.gate.as_ref()?.decision.as_ref()?;
    (d.kind == DecisionKind::Reject).then(|| {
        let why = if d.comment.is_empty() {
            String::new()
        } else {
            format!(": {}", d.comment)
        };
        Flow::Ended {
            status: JobStatus::Rejected,
            message: format!("rejected by {} at `{}`{why}", d.by, step.id),
        }
    })
}

/// How a step ended, as `steps.ID.outcome` reads it; a parallel group by its worst branch step.
fn outcome_word(job: &Job, step: &Step) -> Option<String> {
    if let Some(s) = job.steps.get(&step.id) {
        return Some(
            match s.status {
                StepStatus::Succeeded => "success",
                StepStatus::Warning => "warning",
                StepStatus::Failed => "failure",
                StepStatus::Skipped => "skipped",
                StepStatus::Cancelled => "cancelled",
                StepStatus::Running | StepStatus::RetryWait | StepStatus::Waiting => return None,
            }
            .to_string(),
        );
    }
    let StepKind::Parallel(p) = &step.kind else {
        return None;
    };
    let words: Vec<String> = p
        .branches
        .iter()
        .flatten()
        .filter_map(|s| outcome_word(job, s))
        .collect();
    ["failure", "cancelled", "warning", "success", "skipped"]
        .iter()
        .find(|w| words.iter().any(|x| x == *w))
        .map(|w| w.to_string())
}

/// How a list of steps stands.
#[derive(Debug, Clone, PartialEq)]
enum Flow {
    /// Every step is over (succeeded, skipped, or failed without stopping the list).
    Done,
    /// Something runs or was just asked for; decide again after the next event.
    Busy,
    /// A step failed and stops the list.
    Failed { step: String, message: String },
    /// Not done, but starting new steps is not allowed (cancel, fail-fast).
    Stopped,
    /// A person ended the job at a gate (reject, abort): no rollback; post runs.
    Ended { status: JobStatus, message: String },
}

struct Ctx<'a> {
    job: &'a Job,
    now: Millis,
    ev: &'static Evaluator,
    /// The expression context, built on first use (most decisions need none).
    data: Option<Value>,
    /// `job.status` as post reads it, once the run part is over.
    status_override: Option<&'static str>,
    actions: Vec<Action>,
    phase: Phase,
    /// Start nothing new.
    no_start: bool,
    /// Failures do not stop the list (post).
    keep_going: bool,
    /// How the step before the current one in its list ended.
    prev: Option<String>,
}

/// What should happen next to `job` at time `now`. Empty when the job is finished, or when it
/// waits for running steps (their results come back as events).
pub fn decide(job: &Job, now: Millis) -> Vec<Action> {
    if job.finished.is_some() {
        return vec![];
    }
    let mut c = Ctx {
        job,
        now,
        ev: evaluator(),
        data: None,
        status_override: None,
        actions: Vec::new(),
        phase: Phase::Check,
        no_start: false,
        keep_going: false,
        prev: None,
    };

    // check: before the job exists.
    match c.seq(&job.rule.phases.check) {
        Flow::Done => {}
        Flow::Failed { step, message } => {
            return vec![finish(
                JobStatus::CheckFailed,
                format!("check step `{step}` failed: {message}"),
            )];
        }
        Flow::Busy | Flow::Stopped | Flow::Ended { .. } => return c.actions,
    }

    // Locks and the concurrency group, taken all at once.
    if job.locks.is_none() {
        if let Some((by, reason)) = &job.cancel {
            return vec![
                finish(
                    JobStatus::Cancelled,
                    format!("cancelled by {by} before it started: {reason}"),
                ),
                Action::ReleaseLocks,
            ];
        }
        // Once in line for its locks it keeps its place: a window is looked at before asking,
        // not while waiting (a job at a window gate must not hold others up in the line).
        if let Some(w) = &job.rule.windows
            && job.queued_behind.is_none()
        {
            match c.window(JOB_WINDOW, w) {
                Window::Go => {}
                Window::Wait => return c.actions,
                Window::Never(message) => {
                    return vec![finish(JobStatus::Failed, message), Action::ReleaseLocks];
                }
            }
        }
        return match lock_requests(&c) {
            Ok((locks, mode)) => vec![Action::AcquireLocks { locks, mode }],
            Err(message) => vec![finish(JobStatus::Failed, message), Action::ReleaseLocks],
        };
    }

    // init, pre, run.
    let mut ended: Option<String> = None;
    let path = match &job.rollback {
        None => {
            c.no_start = job.cancel.is_some();
            match c.forward() {
                Flow::Busy => return c.actions,
                Flow::Failed { step, message } if job.cancel.is_none() => {
                    return vec![Action::Record(Event::RollbackStarted { step, message })];
                }
                Flow::Ended { status, message } => {
                    ended = Some(message);
                    status
                }
                Flow::Failed { .. } | Flow::Stopped => JobStatus::Cancelled,
                Flow::Done if job.cancel.is_some() => JobStatus::Cancelled,
                Flow::Done => JobStatus::Succeeded,
            }
        }
        Some(_) => {
            c.no_start = false;
            c.phase = Phase::Rollback;
            match c.rollback() {
                Flow::Busy => return c.actions,
                Flow::Failed { .. } | Flow::Ended { .. } => JobStatus::RollbackFailed,
                Flow::Done | Flow::Stopped => JobStatus::RolledBack,
            }
        }
    };

    // post: always, every step, whatever failed before.
    c.phase = Phase::Post;
    c.no_start = false;
    c.keep_going = true;
    c.status_override = Some(path.as_str());
    c.data = None;
    if c.seq(&job.rule.phases.post) == Flow::Busy {
        return c.actions;
    }
    let post_failures = failed_steps(job, &job.rule.phases.post);
    let (status, message) = match path {
        JobStatus::Succeeded if !post_failures.is_empty() => (
            JobStatus::Failed,
            format!("post step {} failed", post_failures.join(", ")),
        ),
        JobStatus::Succeeded => (JobStatus::Succeeded, success_message(job)),
        JobStatus::RolledBack | JobStatus::RollbackFailed => {
            let (step, message) = job.rollback.clone().unwrap_or_default();
            let how = if path == JobStatus::RolledBack {
                "rolled back"
            } else {
                "rollback failed too"
            };
            (path, format!("step `{step}` failed ({message}); {how}"))
        }
        JobStatus::Rejected | JobStatus::Failed if ended.is_some() => {
            (path, ended.unwrap_or_default())
        }
        JobStatus::Cancelled => {
            let (by, reason) = job.cancel.clone().unwrap_or_default();
            (JobStatus::Cancelled, format!("cancelled by {by}: {reason}"))
        }
        other => (other, String::new()),
    };
    vec![finish(status, message), Action::ReleaseLocks]
}

/// What a success was made of: "every step succeeded", or what was let through on the way
/// (steps that failed under `on-error: continue`, traps a person skipped).
fn success_message(job: &Job) -> String {
    let mut continued = Vec::new();
    let mut skipped = Vec::new();
    for (phase, step) in job.rule.all_steps() {
        if !matches!(phase, Phase::Init | Phase::Pre | Phase::Run) {
            continue;
        }
        let Some(s) = job.steps.get(&step.id) else {
            continue;
        };
        if s.status == StepStatus::Failed && matches!(step.kind, StepKind::Op(_)) {
            continued.push(step.id.as_str());
        }
        let skipped_at_gate = s
            .gate
            .as_ref()
            .and_then(|g| g.decision.as_ref())
            .is_some_and(|d| d.kind == DecisionKind::Skip);
        if s.status == StepStatus::Skipped && skipped_at_gate {
            skipped.push(step.id.as_str());
        }
    }
    if continued.is_empty() && skipped.is_empty() {
        return "every step succeeded".to_string();
    }
    let count = |n: usize, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    let mut parts = Vec::new();
    if !continued.is_empty() {
        parts.push(format!(
            "{} and {} continued: {}",
            count(continued.len(), "step failed", "steps failed"),
            if continued.len() == 1 { "was" } else { "were" },
            continued.join(", ")
        ));
    }
    if !skipped.is_empty() {
        parts.push(format!(
            "{} skipped at a gate: {}",
            count(skipped.len(), "step was", "steps were"),
            skipped.join(", ")
        ));
    }
    parts.join("; ")
}

fn finish(status: JobStatus, message: String) -> Action {
    Action::Record(Event::Finished { status, message })
}

/// The status the job is headed for once its run part is over; `None` while it runs.
pub(crate) fn path_status(job: &Job) -> Option<JobStatus> {
    if let Some((s, _)) = &job.finished {
        return Some(*s);
    }
    if job.rollback.is_some() {
        let rb_failed = job.steps.iter().any(|(k, s)| {
            s.status == StepStatus::Failed
                && (k.starts_with("undo:")
                    || job.step_def(k).is_some_and(|(p, _)| p == Phase::Rollback))
        });
        return Some(if rb_failed {
            JobStatus::RollbackFailed
        } else {
            JobStatus::RolledBack
        });
    }
    if job.cancel.is_some() {
        return Some(JobStatus::Cancelled);
    }
    let in_post = job
        .steps
        .keys()
        .any(|k| job.step_def(k).is_some_and(|(p, _)| p == Phase::Post));
    in_post.then_some(JobStatus::Succeeded)
}

fn lock_requests(c: &Ctx<'_>) -> Result<(Vec<LockRequest>, sluice_rule::ConcurrencyMode), String> {
    let rule = &c.job.rule;
    let mut locks = Vec::new();
    let mut mode = sluice_rule::ConcurrencyMode::Queue;
    if let Some(conc) = &rule.concurrency {
        let name = render_name(c, &conc.group)
            .map_err(|e| format!("could not name the concurrency group: {e}"))?;
        locks.push(LockRequest {
            name: format!("group:{name}"),
            exclusive: true,
        });
        mode = conc.mode;
    }
    for l in &rule.locks {
        let name = render_name(c, &l.name)
            .map_err(|e| format!("could not name lock `{}`: {e}", l.name))?;
        locks.push(LockRequest {
            name,
            exclusive: l.mode == sluice_rule::LockMode::Exclusive,
        });
    }
    Ok((locks, mode))
}

fn render_name(c: &Ctx<'_>, template: &str) -> Result<String, sluice_rule::expr::ExprError> {
    let data = c.job.context();
    match c.ev.render_str(template, &data)? {
        Value::String(s) => Ok(s),
        other => Ok(other.to_string()),
    }
}

/// Ids of the steps in `steps` (and their groups) that failed for good.
fn failed_steps(job: &Job, steps: &[Step]) -> Vec<String> {
    let mut out = Vec::new();
    for s in steps {
        if job
            .steps
            .get(&s.id)
            .is_some_and(|st| st.status == StepStatus::Failed)
        {
            out.push(format!("`{}`", s.id));
        }
        if let StepKind::Parallel(p) = &s.kind {
            for b in &p.branches {
                out.extend(failed_steps(job, b));
            }
        }
    }
    out
}

/// One evaluator for the process: minijinja's environment is immutable once built.
fn evaluator() -> &'static Evaluator {
    static EV: std::sync::OnceLock<Evaluator> = std::sync::OnceLock::new();
    EV.get_or_init(Evaluator::new)
}

impl Ctx<'_> {
    fn data(&mut self) -> &Value {
        if self.data.is_none() {
            let mut d = self.job.context();
            if let Some(s) = self.status_override {
                d["job"]["status"] = Value::String(s.to_string());
            }
            self.data = Some(d);
        }
        self.data.as_ref().expect("just built")
    }

    fn record(&mut self, e: Event) {
        self.actions.push(Action::Record(e));
    }

    fn forward(&mut self) -> Flow {
        for phase in [Phase::Init, Phase::Pre, Phase::Run] {
            self.phase = phase;
            match self.seq(self.job.rule.phases.get(phase)) {
                Flow::Done => {}
                other => return other,
            }
        }
        Flow::Done
    }

    /// Undo completed steps in reverse, then the rule's `rollback:` steps. Stops at the first
    /// failure: later undos may depend on earlier ones.
    fn rollback(&mut self) -> Flow {
        let job = self.job;
        for id in job.completed.iter().rev() {
            let Some((_, step)) = job.step_def(id) else {
                continue;
            };
            let StepKind::Op(call) = &step.kind else {
                continue;
            };
            if !job.ops.get(&call.op).is_some_and(|m| m.can_rollback) {
                continue;
            }
            let key = format!("undo:{id}");
            match job.steps.get(&key).map(|s| s.status) {
                None => {
                    let done = &job.steps[id];
                    let output = done
                        .result
                        .as_ref()
                        .map(|r| r.output.clone())
                        .unwrap_or(Value::Null);
                    self.actions.push(Action::Call(StepCall {
                        step: key,
                        op: call.op.clone(),
                        phase: Phase::Rollback,
                        attempt: 1,
                        input: done.input.clone(),
                        rollback_of: Some(output),
                        timeout_ms: call.timeout_ms,
                        resume: None,
                        previous: None,
                    }));
                    return Flow::Busy;
                }
                Some(StepStatus::Running | StepStatus::RetryWait) => return Flow::Busy,
                Some(StepStatus::Failed) => {
                    let message = job.steps[&key]
                        .result
                        .as_ref()
                        .map(|r| r.message.clone())
                        .unwrap_or_default();
                    return Flow::Failed { step: key, message };
                }
                Some(_) => {}
            }
        }
        self.seq(&job.rule.rollback)
    }

    fn seq(&mut self, steps: &[Step]) -> Flow {
        for (i, step) in steps.iter().enumerate() {
            self.prev = if i == 0 {
                None
            } else {
                outcome_word(self.job, &steps[i - 1])
            };
            let flow = match &step.kind {
                StepKind::Op(call) => self.op_step(step, call),
                StepKind::Parallel(p) => self.parallel(step, p),
            };
            match flow {
                Flow::Done => {}
                other => return other,
            }
        }
        Flow::Done
    }

    /// Evaluates `when` for a step never seen before: `Some(flow)` when it does not run.
    fn gate_when(&mut self, step: &Step) -> Option<Flow> {
        let w = step.when.as_ref()?;
        match self.ev.condition(w, self.data()) {
            Ok(true) => None,
            Ok(false) => {
                self.record(Event::StepSkipped {
                    step: step.id.clone(),
                    reason: format!("`when: {w}` is false"),
                });
                Some(Flow::Busy)
            }
            Err(e) => {
                let result = StepResult::failure(format!("`when` could not be evaluated: {e}"));
                self.record(Event::StepFinished {
                    step: step.id.clone(),
                    attempt: 1,
                    result,
                });
                Some(Flow::Busy)
            }
        }
    }

    fn op_step(&mut self, step: &Step, call: &OpCall) -> Flow {
        let Some(state) = self.job.steps.get(&step.id) else {
            if self.no_start {
                return Flow::Stopped;
            }
            if let Some(flow) = self.gate_when(step) {
                return flow;
            }
            if let Some(w) = &call.windows
                && let Some(flow) = self.step_window(step, w)
            {
                return flow;
            }
            return self.first_attempt(step, call);
        };
        if state.attempt == 0
            && state.status == StepStatus::Waiting
            && let (Some(g), Some(w)) = (&state.gate, &call.windows)
            && g.gate.kind == GateKind::Window
        {
            // Cancelled (or a fail-fast branch stopped) after the window opened: it never starts.
            if self.no_start {
                return Flow::Stopped;
            }
            return match self.step_window(step, w) {
                Some(flow) => flow,
                None => self.first_attempt(step, call),
            };
        }
        if let Some(flow) = ended_by_person(step, state) {
            return flow;
        }
        match state.status {
            StepStatus::Running => Flow::Busy,
            StepStatus::Waiting => {
                self.waiting(step, call, state);
                Flow::Busy
            }
            StepStatus::RetryWait => {
                if self.no_start {
                    return Flow::Stopped;
                }
                let at = state.retry_at.unwrap_or(0);
                if self.now >= at {
                    let call = self.call(step, call, state.attempt + 1, state.input.clone());
                    self.actions.push(Action::Call(call));
                } else {
                    self.actions.push(Action::WakeAt(at));
                }
                Flow::Busy
            }
            StepStatus::Succeeded | StepStatus::Warning | StepStatus::Skipped => Flow::Done,
            // Only a cancel closes a gate this way: nothing after it starts.
            StepStatus::Cancelled => Flow::Stopped,
            StepStatus::Failed => {
                let message = state
                    .result
                    .as_ref()
                    .map(|r| r.message.clone())
                    .unwrap_or_default();
                let trapped_now = state
                    .gate
                    .as_ref()
                    .is_some_and(|g| g.gate.kind == GateKind::Trap && g.attempt >= state.attempt);
                if call.on_error == OnError::Trap
                    && !self.keep_going
                    && !trapped_now
                    && self.job.cancel.is_none()
                {
                    let policy = call.trap;
                    self.record(Event::GateOpened {
                        step: step.id.clone(),
                        attempt: state.attempt,
                        gate: Gate {
                            timeout_seconds: policy.timeout_ms.map(|ms| ms.div_ceil(1000)),
                            timeout_action: policy
                                .on_timeout
                                .or(policy.timeout_ms.map(|_| DecisionKind::Abort)),
                            ..Gate::trap(format!("`{}` failed: {message}", step.id))
                        },
                    });
                    return Flow::Busy;
                }
                if call.on_error == OnError::Continue || self.keep_going {
                    Flow::Done
                } else {
                    Flow::Failed {
                        step: step.id.clone(),
                        message,
                    }
                }
            }
        }
    }

    /// The first attempt of a step: its input rendered, its op called.
    fn first_attempt(&mut self, step: &Step, call: &OpCall) -> Flow {
        let templates = self
            .job
            .ops
            .get(&call.op)
            .map(|m| m.templates.clone())
            .unwrap_or_default();
        match self
            .ev
            .render_templated(&call.with, self.data(), &templates)
        {
            Ok(input) => self
                .actions
                .push(Action::Call(self.call(step, call, 1, input))),
            Err(e) => {
                let result = StepResult::failure(format!("`with` could not be rendered: {e}"));
                self.record(Event::StepFinished {
                    step: step.id.clone(),
                    attempt: 1,
                    result,
                });
            }
        }
        Flow::Busy
    }

    /// A step's deploy window: `None` when it may start, else how the list stands (it waits,
    /// or fails because the window never opens).
    fn step_window(&mut self, step: &Step, w: &Windows) -> Option<Flow> {
        match self.window(&step.id, w) {
            Window::Go => None,
            Window::Wait => Some(Flow::Busy),
            Window::Never(message) => {
                self.record(Event::StepFinished {
                    step: step.id.clone(),
                    attempt: 1,
                    result: StepResult::failure(message),
                });
                Some(Flow::Busy)
            }
        }
    }

    /// A deploy window before `key` starts (the job's, before it takes its locks; a step's,
    /// before its first attempt). Outside it, a `window` gate opens with a timer at the
    /// opening; when the timer fires the window is looked at again (a host that was down may
    /// wake after it closed again, and then waits for the next opening).
    fn window(&mut self, key: &str, w: &Windows) -> Window {
        let gate = self
            .job
            .steps
            .get(key)
            .and_then(|s| s.gate.as_ref())
            .filter(|g| g.gate.kind == GateKind::Window);
        if let Some(g) = gate {
            if g.decision.is_some() {
                return Window::Go;
            }
            if g.gate.opens_at.is_some_and(|t| self.now < t) {
                return Window::Wait;
            }
        }
        match w.next_open(self.now) {
            Err(e) => Window::Never(e),
            Ok(None) if gate.is_none() => Window::Go,
            Ok(None) => {
                self.record(Event::Decided {
                    step: key.to_string(),
                    kind: DecisionKind::Resume,
                    by: sluice_model::Actor::system("window"),
                    comment: format!("the deploy window is open: {}", w.describe()),
                    inputs: Default::default(),
                    bundle: self.job.bundle().1,
                });
                Window::Wait
            }
            Ok(Some(opens)) => {
                let why = match w.closed_at(self.now) {
                    Ok(Some(calendar::Closed::Frozen(why))) => format!("in {why}"),
                    _ => format!("outside its deploy window, {}", w.describe()),
                };
                let what = if key == JOB_WINDOW {
                    "the job".to_string()
                } else {
                    format!("`{key}`")
                };
                self.record(Event::GateOpened {
                    step: key.to_string(),
                    attempt: 0,
                    gate: Gate {
                        kind: GateKind::Window,
                        opens_at: Some(opens),
                        // Nobody is named: who may skip it is the permissions file's say.
                        ..Gate::trap(format!(
                            "{what} is {why}: it starts by itself at {}, or now with skip-window",
                            calendar::local_text(opens, &w.timezone)
                        ))
                    },
                });
                Window::Wait
            }
        }
    }

    /// A step at a gate: resume it once decided, time it out when due, else wait.
    fn waiting(&mut self, step: &Step, call: &OpCall, state: &StepState) {
        let Some(g) = &state.gate else { return };
        match &g.decision {
            Some(d)
                if matches!(
                    d.kind,
                    DecisionKind::Approve | DecisionKind::Resume | DecisionKind::Reject
                ) =>
            {
                let actor = sluice_model::Decider {
                    user: d.by.clone(),
                    comment: d.comment.clone(),
                    inputs: d
                        .inputs
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| v.to_string()),
                            )
                        })
                        .collect(),
                };
                // A timeout that rejects reaches the op as a reject (by `timeout`), the same
                // shape as a person's, so the step says it was rejected; one that approves or
                // resumes reaches it as `timed-out`.
                let decision = if d.by == "timeout" && d.kind != DecisionKind::Reject {
                    sluice_model::Decision::TimedOut
                } else {
                    sluice_model::Decision::By {
                        kind: d.kind,
                        actor,
                    }
                };
                let mut c = self.call(step, call, state.attempt, state.input.clone());
                c.resume = Some((g.gate.state.clone(), decision));
                self.actions.push(Action::Call(c));
            }
            Some(_) => {}
            None => {
                let Some(secs) = g.gate.timeout_seconds else {
                    return;
                };
                if self.now >= g.opened_at + secs * 1000 {
                    let kind = g.gate.timeout_action.unwrap_or(DecisionKind::Abort);
                    self.record(Event::Decided {
                        step: step.id.clone(),
                        kind,
                        by: sluice_model::Actor::system("timeout"),
                        comment: format!("no decision within {secs} s"),
                        inputs: Default::default(),
                        bundle: self.job.bundle().1,
                    });
                }
            }
        }
    }

    fn call(&self, step: &Step, call: &OpCall, attempt: u32, input: Value) -> StepCall {
        StepCall {
            step: step.id.clone(),
            op: call.op.clone(),
            phase: self.phase,
            attempt,
            input,
            rollback_of: None,
            timeout_ms: call.timeout_ms,
            resume: None,
            previous: self.prev.clone(),
        }
    }

    fn parallel(&mut self, step: &Step, p: &Parallel) -> Flow {
        if let Some(state) = self.job.steps.get(&step.id) {
            return match state.status {
                StepStatus::Failed if !self.keep_going => Flow::Failed {
                    step: step.id.clone(),
                    message: state
                        .result
                        .as_ref()
                        .map(|r| r.message.clone())
                        .unwrap_or_default(),
                },
                _ => Flow::Done,
            };
        }
        let entered = p.branches.iter().flatten().any(|s| self.touched(s));
        if !entered {
            if self.no_start {
                return Flow::Stopped;
            }
            if let Some(flow) = self.gate_when(step) {
                return flow;
            }
        }

        // First look without acting: does a branch fail while fail-fast is on?
        let saved = std::mem::take(&mut self.actions);
        let flows: Vec<Flow> = p.branches.iter().map(|b| self.seq(b)).collect();
        let first_failure = flows
            .iter()
            .find(|f| matches!(f, Flow::Failed { .. } | Flow::Ended { .. }))
            .cloned();
        let stop_others = p.fail_fast && first_failure.is_some() && !self.keep_going;
        let flows = if stop_others {
            self.actions = saved;
            let was = self.no_start;
            self.no_start = true;
            let flows: Vec<Flow> = p.branches.iter().map(|b| self.seq(b)).collect();
            self.no_start = was;
            flows
        } else {
            let mut acted = std::mem::replace(&mut self.actions, saved);
            self.actions.append(&mut acted);
            flows
        };

        if flows.contains(&Flow::Busy) {
            Flow::Busy
        } else if let Some(f) = first_failure {
            f
        } else if flows.contains(&Flow::Stopped) {
            Flow::Stopped
        } else {
            Flow::Done
        }
    }

    /// Whether `step` (or anything inside it) has any journal entry.
    fn touched(&self, step: &Step) -> bool {
        self.job.steps.contains_key(&step.id)
            || match &step.kind {
                StepKind::Parallel(p) => p.branches.iter().flatten().any(|s| self.touched(s)),
                StepKind::Op(_) => false,
            }
    }
}
