//! The loop over one job: decide, record, call ops, record their results, under the job's
//! lease, until the job ends or waits.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sluice_engine::{
    Action, Event, Job, JobStatus, Millis, ResultStatus, StepCall, StepResult, decide,
};
use sluice_model::{JobContext, LogLine, Outcome};
use sluice_runtime::{Call, OpReport};
use sluice_store::{
    Acquired, Append, Fence, GroupMode, Lease, LeaseRequest, LockAsk, NewEvent, NewJob, StepLogs,
    StoreError,
};
use tokio::task::JoinSet;

use crate::lease::{self, lease_ms};
use crate::{RunError, Runner, Standing, grants, now, ops, status_of};

/// One job being driven: its state, and whether it is in the journal yet.
pub(crate) struct Driving {
    pub(crate) job: Job,
    pub(crate) last_seq: u64,
    /// False while `check` runs: events wait in `pending` until the job is created.
    persisted: bool,
    pending: Vec<(Millis, Event)>,
    pending_logs: Vec<StepLogs>,
    pending_outbox: Vec<sluice_store::NewMessage>,
    /// The epoch of the lease this driver holds: every append is fenced by it, so a driver
    /// whose lease was taken over (paused, cut off) writes nothing more.
    fence: Option<u64>,
}

type CallDone = (StepCall, OpReport);

/// An event as the journal stores it.
pub(crate) fn stored(at: Millis, e: &Event) -> NewEvent {
    NewEvent {
        at,
        version: sluice_engine::EVENT_VERSION,
        body: sluice_engine::encode(e),
    }
}

/// Whether `e` says this driver's lease was taken over: it stops driving, writing nothing more.
fn lost_lease(e: &RunError) -> bool {
    matches!(e, RunError::Store(StoreError::Fenced { .. }))
}

impl Runner {
    /// Drives a job that does not exist yet (its `created` event): `check` runs in memory, the
    /// job is written once it passes.
    pub(crate) async fn drive_new(&self, created: Event) -> Result<Standing, RunError> {
        let at = now();
        let job = Job::new(&created, at).expect("a Created event makes a job");
        self.observer.event(&job, &created, at);
        let pending_outbox = self.messages(&job, &created, 1, at);
        let mut d = Driving {
            job,
            last_seq: 0,
            persisted: false,
            pending: vec![(at, created)],
            pending_logs: vec![],
            pending_outbox,
            fence: None,
        };
        let standing = match self.run(&mut d).await {
            Ok(standing) if d.persisted => {
                if self
                    .journal
                    .unlease(&d.job.id, &self.holder, Some(d.last_seq))
                    .await?
                {
                    standing
                } else {
                    // Someone decided while this process drove the job: carry it on.
                    self.drive_one(&d.job.id).await?
                }
            }
            Ok(standing) => standing,
            Err(e) if lost_lease(&e) => {
                tracing::warn!(job = d.job.id, "{e}");
                return Ok(Standing::ElsewhereRunning);
            }
            Err(e) => {
                if d.persisted {
                    self.journal.unlease(&d.job.id, &self.holder, None).await?;
                }
                return Err(e);
            }
        };
        if d.persisted {
            self.after(&d.job.id, &standing).await?;
        }
        Ok(standing)
    }

    /// Drives one job under a lease: if another live process holds it, leaves it alone.
    pub(crate) async fn drive_one(&self, job_id: &str) -> Result<Standing, RunError> {
        let t = now();
        let ask = |steal: Option<String>| LeaseRequest {
            holder: self.holder.clone(),
            now: t,
            until: t + lease_ms(),
            steal,
            renew: None,
        };
        let epoch = match self.journal.lease(job_id, ask(None)).await? {
            Lease::Taken { epoch } => epoch,
            Lease::HeldBy(current) => {
                if !lease::holder_dead(&current) {
                    return Ok(Standing::ElsewhereRunning);
                }
                let Lease::Taken { epoch } = self
                    .journal
                    .lease(job_id, ask(Some(current.clone())))
                    .await?
                else {
                    return Ok(Standing::ElsewhereRunning);
                };
                tracing::warn!(
                    job = job_id,
                    dead = current,
                    "took over a job whose driver stopped"
                );
                epoch
            }
        };
        loop {
            let mut d = match self.load(job_id).await {
                Ok(d) => d,
                Err(e) => {
                    self.journal.unlease(job_id, &self.holder, None).await?;
                    return Err(e);
                }
            };
            d.fence = Some(epoch);
            let result = async {
                // We hold the lease, so whoever ran these attempts is gone: they never
                // finished. Programs they started may still run; the engine hears of them.
                let mut orphans = Vec::new();
                for (k, s) in &d.job.steps {
                    if s.status == sluice_engine::StepStatus::Running {
                        orphans.push(Event::Interrupted {
                            step: k.clone(),
                            attempt: s.attempt,
                            live_children: self.live_children(job_id, k, Some(s.attempt)).await?,
                        });
                    }
                }
                if !orphans.is_empty() {
                    self.record(&mut d, orphans).await?;
                }
                self.run(&mut d).await
            }
            .await;
            match result {
                // Give the lease back only if nobody appended since the last read: a decision
                // that landed meanwhile found the lease taken and left the job to this process.
                Ok(standing) => {
                    if self
                        .journal
                        .unlease(job_id, &self.holder, Some(d.last_seq))
                        .await?
                    {
                        return Ok(standing);
                    }
                    tracing::debug!(job = job_id, "the job moved while this process drove it");
                }
                Err(e) if lost_lease(&e) => {
                    tracing::warn!(job = job_id, "{e}");
                    return Ok(Standing::ElsewhereRunning);
                }
                Err(e) => {
                    self.journal.unlease(job_id, &self.holder, None).await?;
                    return Err(e);
                }
            }
        }
    }

    /// Rebuilds a job from the journal.
    pub(crate) async fn load(&self, job_id: &str) -> Result<Driving, RunError> {
        let rows = self.journal.events(job_id, 0).await?;
        if rows.is_empty() {
            return Err(StoreError::NoJob(job_id.to_string()).into());
        }
        let (job, _) = sluice_engine::history::replay(
            rows.iter()
                .map(|r| (r.seq, r.at, r.version, r.body.as_str())),
        )
        .map_err(|source| RunError::Corrupt {
            job: job_id.into(),
            source,
        })?;
        Ok(Driving {
            job,
            last_seq: rows.last().map(|r| r.seq).unwrap_or(0),
            persisted: true,
            pending: vec![],
            pending_logs: vec![],
            pending_outbox: vec![],
            fence: None,
        })
    }

    /// Appends `events` (or buffers them before the job exists); on a conflict, reloads.
    /// Returns false when the journal had moved on: the caller decides again.
    async fn record(&self, d: &mut Driving, events: Vec<Event>) -> Result<bool, RunError> {
        self.record_with(d, events, None).await
    }

    /// [`Self::record`], writing a step attempt's log lines in the same transaction.
    async fn record_with(
        &self,
        d: &mut Driving,
        events: Vec<Event>,
        logs: Option<StepLogs>,
    ) -> Result<bool, RunError> {
        let at = now();
        if !d.persisted {
            for e in events {
                d.job.apply(&e, at);
                let seq = d.pending.len() as u64 + 1;
                d.pending_outbox.extend(self.messages(&d.job, &e, seq, at));
                self.observer.event(&d.job, &e, at);
                d.pending.push((at, e));
            }
            return Ok(true);
        }
        let mut next = d.job.clone();
        let mut outbox = Vec::new();
        for (i, e) in events.iter().enumerate() {
            next.apply(e, at);
            outbox.extend(self.messages(&next, e, d.last_seq + i as u64 + 1, at));
        }
        // Events, status, next timer and logs: one transaction, one fsync.
        let append = Append {
            events: events.iter().map(|e| stored(at, e)).collect(),
            status: Some(status_of(&next)),
            wake_at: Some(next.next_timer()),
            logs,
            outbox,
            fence: d.fence.map(|epoch| Fence {
                holder: self.holder.clone(),
                epoch,
            }),
        };
        match self.journal.append(&d.job.id, d.last_seq, append).await {
            Ok(seq) => {
                d.last_seq = seq;
                for e in &events {
                    d.job.apply(e, at);
                    self.observer.event(&d.job, e, at);
                }
                Ok(true)
            }
            Err(StoreError::Conflict { .. }) => {
                self.catch_up(d).await?;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Applies events other processes appended.
    async fn catch_up(&self, d: &mut Driving) -> Result<(), RunError> {
        let rows = self.journal.events(&d.job.id, d.last_seq).await?;
        for r in &rows {
            let e = sluice_engine::decode(r.seq, r.version, &r.body).map_err(|source| {
                RunError::Corrupt {
                    job: d.job.id.clone(),
                    source,
                }
            })?;
            d.job.apply(&e, r.at);
            self.observer.event(&d.job, &e, r.at);
        }
        if let Some(r) = rows.last() {
            d.last_seq = r.seq;
        }
        Ok(())
    }

    /// Creates the job in the journal with everything buffered during `check`.
    async fn persist(&self, d: &mut Driving) -> Result<(), RunError> {
        let (status, message) = status_of(&d.job);
        let row = NewJob {
            id: d.job.id.clone(),
            rule: d.job.rule.name.clone(),
            status,
            message,
            started_by: d.job.started_by.clone(),
            created_at: d.job.created_at,
            lease: Some((self.holder.clone(), now() + lease_ms())),
            outbox: std::mem::take(&mut d.pending_outbox),
            trigger: d
                .job
                .cause
                .as_ref()
                .map(|c| (c.key.clone(), c.from.clone())),
            wake_at: d.job.next_timer(),
        };
        let events = d.pending.drain(..).map(|(at, e)| stored(at, &e)).collect();
        d.last_seq = self.journal.create_job(row, events).await?;
        d.persisted = true;
        d.fence = Some(sluice_store::FIRST_EPOCH);
        self.observer.created(&d.job.id);
        for logs in std::mem::take(&mut d.pending_logs) {
            if !logs.lines.is_empty() {
                self.journal.add_logs(&d.job.id, now(), logs).await?;
            }
        }
        Ok(())
    }

    async fn run(&self, d: &mut Driving) -> Result<Standing, RunError> {
        let mut inflight: JoinSet<CallDone> = JoinSet::new();
        loop {
            // Ended before it took its locks (its deploy window never opens): it existed.
            if !d.persisted
                && d.job
                    .finished
                    .as_ref()
                    .is_some_and(|(s, _)| *s != JobStatus::CheckFailed)
            {
                self.persist(d).await?;
            }
            if let Some((status, message)) = &d.job.finished {
                if *status == JobStatus::CheckFailed {
                    return Ok(Standing::CheckFailed {
                        message: message.clone(),
                    });
                }
                return Ok(Standing::Finished {
                    status: *status,
                    message: message.clone(),
                });
            }
            let actions = decide(&d.job, now());
            let mut wake: Option<Millis> = None;
            let mut moved = false;
            let mut records = Vec::new();
            let mut calls = Vec::new();
            for a in actions {
                match a {
                    Action::Record(e) => records.push(e),
                    Action::Call(c) => calls.push(c),
                    Action::WakeAt(t) => wake = Some(wake.map_or(t, |w: Millis| w.min(t))),
                    Action::ReleaseLocks => {} // after the job stops: see `after`
                    Action::AcquireLocks { locks, mode } => {
                        if !d.persisted {
                            self.persist(d).await?;
                        }
                        if let Some(standing) = self.acquire(d, &locks, mode).await? {
                            return Ok(standing);
                        }
                        moved = true;
                    }
                }
            }
            if !records.is_empty() {
                if !self.record(d, records).await? {
                    continue;
                }
                moved = true;
            }
            // An input the job could not keep, or that does not fit the op's input schema once
            // rendered, is not sent: the step fails with why, in validate's words.
            let mut fit = Vec::new();
            let mut failed = Vec::new();
            for c in calls {
                match self.unfit_input(d, &c).await {
                    None => fit.push(c),
                    Some(why) => failed.push(Event::StepFinished {
                        step: c.step.clone(),
                        attempt: c.attempt,
                        result: StepResult::failure(why),
                    }),
                }
            }
            let calls = fit;
            if !failed.is_empty() {
                if !self.record(d, failed).await? {
                    continue;
                }
                moved = true;
            }
            if !calls.is_empty() {
                let started: Vec<Event> = calls
                    .iter()
                    .map(|c| Event::StepStarted {
                        step: c.step.clone(),
                        attempt: c.attempt,
                        input: c.input.clone(),
                    })
                    .collect();
                if !self.record(d, started).await? {
                    continue;
                }
                for c in calls {
                    self.spawn(d, c, &mut inflight);
                }
                moved = true;
            }
            if moved {
                continue;
            }
            // Nothing to do now: wait for a running op, or the next retry.
            if inflight.is_empty() {
                match wake {
                    Some(t) => {
                        tokio::time::sleep(Duration::from_millis(t.saturating_sub(now()))).await;
                        continue;
                    }
                    None if !d.job.waiting_steps().is_empty() && !d.job.running() => {
                        // Waiting before its locks (its deploy window): it exists from here.
                        if !d.persisted {
                            self.persist(d).await?;
                        }
                        // Hibernate: nothing of the job stays in this process.
                        return Ok(Standing::Waiting {
                            gates: d.job.waiting_gates(),
                        });
                    }
                    None if d.job.running() => return Ok(Standing::ElsewhereRunning),
                    None => {
                        return Err(RunError::Stuck {
                            job: d.job.id.clone(),
                            seq: d.last_seq,
                        });
                    }
                }
            }
            // Wait for an op, the next retry, or the time to renew the lease.
            let until = wake.unwrap_or(u64::MAX).min(now() + lease_ms() / 3);
            let done = tokio::select! {
                r = inflight.join_next() => r,
                _ = tokio::time::sleep(Duration::from_millis(until.saturating_sub(now()))) => {
                    if d.persisted {
                        let t = now();
                        let renew = LeaseRequest {
                            holder: self.holder.clone(),
                            now: t,
                            until: t + lease_ms(),
                            steal: None,
                            renew: d.fence,
                        };
                        // Taken over while this process was paused or cut off: stop here,
                        // leaving the running ops' results unrecorded (the new driver found
                        // their steps interrupted).
                        if let Lease::HeldBy(_) = self.journal.lease(&d.job.id, renew).await? {
                            return Err(StoreError::Fenced {
                                job: d.job.id.clone(),
                                holder: self.holder.clone(),
                                epoch: d.fence.unwrap_or_default(),
                            }
                            .into());
                        }
                    }
                    continue;
                }
            };
            let Some(done) = done else { continue };
            let (call, report) = done.map_err(|e| RunError::Op {
                op: "?".into(),
                message: format!("op task failed: {e}"),
            })?;
            self.finish_call(d, call, report).await?;
        }
    }

    /// Why `c`'s input must not be sent, if it must not: nested deeper than a job keeps, or
    /// (for a `run`) not fitting the op's input schema once rendered.
    async fn unfit_input(&self, d: &Driving, c: &StepCall) -> Option<String> {
        let depth = sluice_engine::json_depth(&c.input);
        if depth > sluice_engine::MAX_VALUE_DEPTH {
            return Some(format!(
                "its rendered input nests {depth} levels deep; the limit is {}",
                sluice_engine::MAX_VALUE_DEPTH
            ));
        }
        if c.rollback_of.is_some() || c.resume.is_some() {
            return None; // the input was checked when the step ran
        }
        let pinned = d.job.ops.get(&c.op).map(|m| m.digest.clone());
        let ready = ops::load(&self.runtime, &d.job.rule, &c.op, pinned.as_deref()).ok()?;
        let schema = ops::schema(&self.runtime, &self.schemas, &c.op, &ready.op).await?;
        let problems = schema.check(&c.input);
        if problems.is_empty() {
            return None;
        }
        let said: Vec<String> = problems
            .iter()
            .map(|p| match &p.hint {
                Some(h) => format!("{} ({h})", p.message),
                None => p.message.clone(),
            })
            .collect();
        Some(format!(
            "its rendered input does not fit op `{}`: {}",
            c.op,
            said.join("; ")
        ))
    }

    fn spawn(&self, d: &Driving, c: StepCall, inflight: &mut JoinSet<CallDone>) {
        let job = &d.job;
        let pinned = job.ops.get(&c.op).map(|m| m.digest.clone());
        let loaded = ops::load(&self.runtime, &job.rule, &c.op, pinned.as_deref());
        let ctx = JobContext {
            job_id: job.id.clone(),
            rule: job.rule.name.clone(),
            phase: c.phase,
            step_id: c.step.clone(),
            attempt: c.attempt,
            started_by: job.started_by.clone(),
            previous: c.previous.clone(),
        };
        let caps = job.rule.grants.get(&c.op).map(Vec::as_slice).unwrap_or(&[]);
        let workspace = self.runtime.config().home.join("workspaces").join(&job.id);
        let mut grants = grants::host_grants(caps, &workspace);
        if !grants.programs.is_empty() {
            grants.exec_watch = Some(sluice_runtime::ExecWatcher(Arc::new(lease::ChildLog {
                journal: self.journal.clone(),
                job: job.id.clone(),
                step: c.step.clone(),
                attempt: c.attempt,
                host: lease::hostname(),
            })));
        }
        let secrets = grants::secret_values(&grants);
        let runtime = self.runtime.clone();
        inflight.spawn(async move {
            let report = match loaded {
                Err(e) => OpReport {
                    outcome: Outcome::failure(e.to_string()),
                    fault: Some(sluice_runtime::Fault::Instantiate),
                    logs: vec![],
                    annotations: vec![],
                    progress: None,
                },
                Ok(ready) => {
                    let input = c.input.to_string();
                    let call = match (&c.rollback_of, &c.resume) {
                        (Some(output), _) => Call::Rollback {
                            ctx,
                            input,
                            output: output.to_string(),
                        },
                        (None, Some((state, decision))) => Call::Resume {
                            ctx,
                            input,
                            state: state.clone(),
                            decision: decision.clone(),
                        },
                        (None, None) => Call::Run { ctx, input },
                    };
                    let timeout = c.timeout_ms.map(Duration::from_millis);
                    let mut report = runtime
                        .call(&ready.op, &c.op, call, Arc::new(grants), timeout)
                        .await;
                    grants::mask_report(&mut report, &secrets);
                    if let Some(note) = ready.note {
                        report.logs.insert(0, note);
                    }
                    report
                }
            };
            (c, report)
        });
    }

    /// Records how a call ended (re-reading the journal as often as others append to it).
    async fn finish_call(
        &self,
        d: &mut Driving,
        call: StepCall,
        report: OpReport,
    ) -> Result<(), RunError> {
        let mut lines = report.logs.clone();
        for a in &report.annotations {
            lines.push(LogLine {
                level: sluice_model::LogLevel::Info,
                source: sluice_model::LogSource::Op,
                message: format!("annotation `{}`: {}", a.title, a.body),
            });
        }
        self.observer.logs(&d.job.id, &call.step, &lines);
        let logs = StepLogs {
            step: call.step.clone(),
            attempt: call.attempt,
            lines,
        };
        if !d.persisted {
            d.pending_logs.push(logs.clone());
        }
        let fault = report.fault.map(|f| f.as_str().to_string());
        let result = |status, output: Value, message: String, details: Value| StepResult {
            status,
            output,
            message,
            fault: fault.clone(),
            details,
        };
        let e = match report.outcome {
            Outcome::Suspend(gate) => Event::GateOpened {
                step: call.step,
                attempt: call.attempt,
                gate,
            },
            outcome => {
                let ok = |status, output: Value, message: String| {
                    result(status, output, message, Value::Null)
                };
                let result = match outcome {
                    Outcome::Success { output } => {
                        bounded_output(ResultStatus::Success, &output, ok)
                    }
                    Outcome::Warning { output } => {
                        bounded_output(ResultStatus::Warning, &output, ok)
                    }
                    Outcome::Failure(f) => {
                        let details = if f.details.is_empty() {
                            Value::Null
                        } else {
                            Some(parse_output(&f.details))
                                .filter(|d| {
                                    sluice_engine::json_depth(d) <= sluice_engine::MAX_VALUE_DEPTH
                                })
                                .unwrap_or_else(|| {
                                    Value::String("(details nested too deep; dropped)".into())
                                })
                        };
                        result(ResultStatus::Failure, Value::Null, f.message, details)
                    }
                    Outcome::Suspend(_) => unreachable!("handled above"),
                };
                Event::StepFinished {
                    step: call.step,
                    attempt: call.attempt,
                    result,
                }
            }
        };
        let logs = (d.persisted && !logs.lines.is_empty()).then_some(logs);
        while !self.record_with(d, vec![e.clone()], logs.clone()).await? {}
        Ok(())
    }

    async fn acquire(
        &self,
        d: &mut Driving,
        locks: &[sluice_engine::LockRequest],
        mode: sluice_rule::ConcurrencyMode,
    ) -> Result<Option<Standing>, RunError> {
        let asks: Vec<LockAsk> = locks
            .iter()
            .map(|l| LockAsk {
                name: l.name.clone(),
                exclusive: l.exclusive,
            })
            .collect();
        let mode = match mode {
            sluice_rule::ConcurrencyMode::Queue => GroupMode::Queue,
            sluice_rule::ConcurrencyMode::Reject => GroupMode::Reject,
            sluice_rule::ConcurrencyMode::CancelPending => GroupMode::CancelPending,
        };
        let mut got = self.journal.acquire(&d.job.id, asks.clone(), mode).await?;
        for other in std::mem::take(&mut got.pushed_out) {
            let superseded = Box::pin(self.cancel(
                &other,
                sluice_model::Actor::system("concurrency"),
                &format!("superseded by {} in its concurrency group", d.job.id),
            ))
            .await;
            match superseded {
                // It ended by itself meanwhile: nothing to supersede.
                Err(RunError::Ended { .. }) => {}
                other => {
                    other?;
                }
            }
        }
        if let Acquired::Queued { behind } = &got.acquired {
            if d.job.queued_behind.as_ref() != Some(behind) {
                self.record(
                    d,
                    vec![Event::Queued {
                        behind: behind.clone(),
                    }],
                )
                .await?;
            }
            // A queued job is not polled: whoever gives the locks back marks it ready. Ask
            // once more now that it is recorded as queued, so a release that came between
            // the first ask and that record (and found it not queued yet) is not missed.
            got = self.journal.acquire(&d.job.id, asks, mode).await?;
        }
        match got.acquired {
            Acquired::Held => {
                let names = locks.iter().map(|l| l.name.clone()).collect();
                self.record(d, vec![Event::Started { locks: names }])
                    .await?;
                Ok(None)
            }
            Acquired::Queued { behind } => {
                if d.job.queued_behind.as_ref() != Some(&behind) {
                    self.record(
                        d,
                        vec![Event::Queued {
                            behind: behind.clone(),
                        }],
                    )
                    .await?;
                }
                Ok(Some(Standing::Queued { behind }))
            }
            Acquired::Rejected { by } => {
                let group = locks
                    .iter()
                    .find(|l| l.name.starts_with("group:"))
                    .map(|l| l.name.clone())
                    .unwrap_or_default();
                let reason = format!(
                    "{group} is busy with {} and the rule rejects new jobs meanwhile",
                    by.join(", ")
                );
                self.record(
                    d,
                    vec![Event::CancelRequested {
                        by: sluice_model::Actor::system("concurrency"),
                        reason,
                    }],
                )
                .await?;
                Ok(None)
            }
        }
    }
}

fn parse_output(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

/// The result of an op's output: the output, or a failure when it nests deeper than a job can
/// keep (the journal must be able to read every event back).
fn bounded_output(
    status: ResultStatus,
    output: &str,
    make: impl Fn(ResultStatus, Value, String) -> StepResult,
) -> StepResult {
    let value = parse_output(output);
    let depth = sluice_engine::json_depth(&value);
    if depth > sluice_engine::MAX_VALUE_DEPTH {
        return make(
            ResultStatus::Failure,
            Value::Null,
            format!(
                "the op's output nests {depth} levels deep; the limit is {}",
                sluice_engine::MAX_VALUE_DEPTH
            ),
        );
    }
    make(status, value, String::new())
}
