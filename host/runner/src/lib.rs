//! Drives jobs: carries out the engine's actions with the runtime and the journal.
//!
//! [`Runner::start`] makes a job from a rule (binding params, loading and describing its ops,
//! running `check` in memory: a failed check writes nothing), then [`Runner::drive`]s it:
//! decide, record, call ops (parallel branches at once), record their results, until the job
//! ends or waits. Every event is in the journal before the next decision, so any process can
//! pick a job up from its events. When a job ends it gives back its locks and drives the jobs
//! that waited for them.
//!
//! Architecture Invariant: the runner decides nothing. What happens next is `sluice_engine::decide`;
//! what an op did is `sluice_runtime`'s report; the runner only moves data between them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sluice_engine::{
    Action, DecisionKind, DecisionRequest, Event, GateView, Job, JobStatus, Millis, OpMeta,
    ResultStatus, StepCall, StepResult, decide,
};
use sluice_model::{JobContext, Outcome};
use sluice_rule::{OpSource, Rule};
use sluice_runtime::{Call, Grants, LoadedOp, Runtime, process_start_ticks as start_ticks};
use sluice_store::{Acquired, Extra, GroupMode, JobRow, Journal, LockAsk, StoreError};
use tokio::task::JoinSet;

/// Why a job could not be started or driven.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The params do not fit the rule.
    #[error("{}", .0.join("\n"))]
    Params(Vec<String>),
    /// An op could not be loaded or described.
    #[error("op `{op}`: {message}")]
    Op {
        /// The op.
        op: String,
        /// What is wrong.
        message: String,
    },
    /// The rule does not grant what its ops need, or a grant cannot be honoured.
    #[error("{}", .0.join("\n"))]
    NotGranted(Vec<String>),
    /// The journal failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A decision was refused; nothing changed.
    #[error("{0}")]
    Refused(String),
    /// The job has ended; there is nothing to cancel or decide.
    #[error("job {job} has already ended: {} ({message})", .status.as_str())]
    Ended {
        /// The job.
        job: String,
        /// How it ended.
        status: JobStatus,
        /// In a sentence.
        message: String,
    },
    /// A stored event could not be read.
    #[error("job {job}: event {seq} is unreadable: {message}")]
    Corrupt {
        /// The job.
        job: String,
        /// The event.
        seq: u64,
        /// The parse error.
        message: String,
    },
}

/// Where a job stands when the runner stops driving it.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing {
    /// It ended.
    Finished {
        /// How.
        status: JobStatus,
        /// In a sentence.
        message: String,
    },
    /// It waits in line for locks held by these jobs.
    Queued {
        /// The jobs ahead.
        behind: Vec<String>,
    },
    /// Its check failed; no job was created.
    CheckFailed {
        /// What failed.
        message: String,
    },
    /// Steps of it run in another process; that process carries it on.
    ElsewhereRunning,
    /// Every live branch waits at a gate: the job hibernates (only its journal rows remain).
    Waiting {
        /// The gates.
        gates: Vec<GateView>,
    },
    /// A decision was recorded and the job left for a worker (`--detach`).
    Handed,
}

/// What the runner reports as it goes, for the CLI to print.
pub trait Observer: Send + Sync {
    /// An event was recorded for `job`.
    fn event(&self, job: &Job, event: &Event, at: Millis);
    /// Log lines of a step attempt.
    fn logs(&self, job: &str, step: &str, lines: &[sluice_model::LogLine]);
}

/// An observer that says nothing.
pub struct Quiet;

impl Observer for Quiet {
    fn event(&self, _: &Job, _: &Event, _: Millis) {}
    fn logs(&self, _: &str, _: &str, _: &[sluice_model::LogLine]) {}
}

/// The current time in milliseconds.
pub fn now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Drives jobs.
pub struct Runner {
    runtime: Arc<Runtime>,
    journal: Arc<dyn Journal>,
    observer: Arc<dyn Observer>,
    /// Who this process is, for leases: `host:pid:start-ticks`.
    holder: String,
    /// Ops this process has loaded and checked, by name and sha256: a step does not read and
    /// hash its component again, and runs exactly the pinned one.
    loaded: std::sync::Mutex<std::collections::HashMap<(String, String), Arc<LoadedOp>>>,
}

/// How long a lease lasts without renewal; a driver renews it every third of that.
const LEASE_MS: u64 = 60_000;

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn this_holder() -> String {
    let pid = std::process::id();
    format!("{}:{pid}:{}", hostname(), start_ticks(pid).unwrap_or(0))
}

/// Whether a lease holder is a process of this host that no longer runs.
fn holder_dead(holder: &str) -> bool {
    let mut parts = holder.rsplitn(3, ':');
    let (Some(ticks), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != hostname() {
        return false; // another host: only the lease's expiry tells
    }
    match (pid.parse::<u32>(), ticks.parse::<u64>()) {
        (Ok(pid), Ok(ticks)) => start_ticks(pid) != Some(ticks),
        _ => false,
    }
}

/// Whether a program an op started (`c`) still runs: its process, or any process of its
/// process group (what it started in turn). Only this host's children can be told. A zombie
/// (dead, not yet reaped) does not run.
fn child_alive(c: &sluice_store::ChildRow) -> bool {
    if c.host != hostname() {
        return false;
    }
    match proc_stat(c.pid) {
        Some((_, ticks, state)) if ticks == c.start_ticks && state != 'Z' => return true,
        // The leader is dead (a zombie nobody reaped): members of its group may live on.
        Some((_, ticks, _)) if ticks == c.start_ticks => {}
        // The pid was reused: the group it led is gone (a pid is never reused while a process
        // group of that id exists).
        Some(_) => return false,
        None => {}
    }
    // The leader is gone; do members of its group live on?
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .and_then(proc_stat)
            .is_some_and(|(pgrp, _, state)| pgrp == c.pid && state != 'Z')
    })
}

/// Process group, start time (clock ticks since boot) and state letter of process `pid`.
fn proc_stat(pid: u32) -> Option<(u32, u64, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    Some((
        fields.get(2)?.parse().ok()?,
        fields.get(19)?.parse().ok()?,
        state,
    ))
}

/// Records every program an op starts in the journal, before it runs (so a later process can
/// tell whether it still runs).
struct ChildLog {
    journal: Arc<dyn Journal>,
    job: String,
    step: String,
    attempt: u32,
    host: String,
}

impl sluice_runtime::ExecWatch for ChildLog {
    fn started(&self, program: &str, pid: u32, start_ticks: u64) -> Result<(), String> {
        self.journal
            .add_child(
                &self.job,
                &sluice_store::ChildRow {
                    step: self.step.clone(),
                    attempt: self.attempt,
                    host: self.host.clone(),
                    pid,
                    start_ticks,
                    program: program.to_string(),
                    at: now(),
                },
            )
            .map_err(|e| format!("could not record it in the journal: {e}"))
    }
}

/// One job being driven: its state, and whether it is in the journal yet.
struct Driving {
    job: Job,
    last_seq: u64,
    /// False while `check` runs: events wait in `pending` until the job is created.
    persisted: bool,
    pending: Vec<(Millis, Event)>,
    pending_logs: Vec<(String, u32, Vec<sluice_model::LogLine>)>,
}

type CallDone = (StepCall, sluice_runtime::OpReport);

impl Runner {
    /// A runner over `runtime` and `journal`, reporting to `observer`.
    pub fn new(
        runtime: Arc<Runtime>,
        journal: Arc<dyn Journal>,
        observer: Arc<dyn Observer>,
    ) -> Self {
        Runner {
            runtime,
            journal,
            observer,
            holder: this_holder(),
            loaded: Default::default(),
        }
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    /// Starts a job of `rule` (read from a file in `rule_dir`) with `params`, as `user` (whose
    /// process runs as OS account `os_user`), and drives it until it ends or waits.
    pub async fn start(
        &self,
        mut rule: Rule,
        rule_dir: &Path,
        params: &[(String, String)],
        user: &str,
        os_user: &str,
    ) -> Result<(String, Standing), RunError> {
        let params = rule.bind_params(params).map_err(RunError::Params)?;
        // Op files are pinned by absolute path and digest in the job's snapshot.
        for (name, src) in rule.ops.iter_mut() {
            let OpSource::Path(p) = src else {
                return Err(RunError::Op {
                    op: name.clone(),
                    message: "its package is not resolved to a file: resolve packages with the lock before starting".into(),
                });
            };
            let abs = rule_dir.join(&*p);
            *p = abs.canonicalize().unwrap_or(abs).display().to_string();
        }
        let mut ops = BTreeMap::new();
        for name in rule.op_names() {
            let (op, _) = self.load_op(&rule, &name, None)?;
            let info = self.runtime.describe(&op).await.map_err(|e| RunError::Op {
                op: name.clone(),
                message: e.to_string(),
            })?;
            ops.insert(
                name,
                OpMeta {
                    digest: op.digest().to_string(),
                    can_rollback: info.can_rollback,
                    idempotent: info.idempotent,
                    needs: info.needs.iter().map(ToString::to_string).collect(),
                },
            );
        }
        let needs: BTreeMap<String, Vec<sluice_model::Capability>> = ops
            .iter()
            .map(|(name, m): (&String, &OpMeta)| {
                (
                    name.clone(),
                    m.needs.iter().filter_map(|c| c.parse().ok()).collect(),
                )
            })
            .collect();
        let mut missing = rule.missing_grants(&needs);
        for (op, caps) in &rule.grants {
            for c in caps {
                if let sluice_model::Capability::Exec(program) = c
                    && resolve_program(program).is_none()
                {
                    missing.push(format!("program `{program}` granted to op `{op}` is not on this host's PATH: install it or grant its absolute path"));
                }
            }
        }
        if !missing.is_empty() {
            return Err(RunError::NotGranted(missing));
        }
        let id = self.journal.next_job_id(&rule.name)?;
        let created = Event::Created {
            job_id: id.clone(),
            rule: Box::new(rule),
            params,
            started_by: user.to_string(),
            ops,
            os_user: os_user.to_string(),
        };
        let at = now();
        let job = Job::new(&created, at).expect("a Created event makes a job");
        self.observer.event(&job, &created, at);
        let mut d = Driving {
            job,
            last_seq: 0,
            persisted: false,
            pending: vec![(at, created)],
            pending_logs: vec![],
        };
        let standing = self.run(&mut d).await;
        let standing = match standing {
            Ok(standing) if d.persisted => {
                if self
                    .journal
                    .unlease(&d.job.id, &self.holder, Some(d.last_seq))?
                {
                    standing
                } else {
                    // Someone decided while this process drove the job: carry it on.
                    self.drive_one(&d.job.id).await?
                }
            }
            Ok(standing) => standing,
            Err(e) => {
                if d.persisted {
                    self.journal.unlease(&d.job.id, &self.holder, None)?;
                }
                return Err(e);
            }
        };
        if d.persisted {
            self.after(&d.job.id, &standing).await?;
        }
        Ok((id, standing))
    }

    /// Drives a job that is in the journal until it ends or waits.
    pub async fn drive(&self, job_id: &str) -> Result<Standing, RunError> {
        let standing = self.drive_one(job_id).await?;
        self.after(job_id, &standing).await?;
        Ok(standing)
    }

    /// Records a decision at a gate of `job_id` (checked by the engine: a refused decision
    /// changes nothing; of two concurrent ones on a gate, exactly one lands), then drives the
    /// job on, or leaves it to a worker when `detach`.
    pub async fn decide(
        &self,
        job_id: &str,
        req: &DecisionRequest<'_>,
        detach: bool,
    ) -> Result<Standing, RunError> {
        self.recover(job_id).await?;
        loop {
            let d = self.load(job_id)?;
            let e = d.job.check_decision(req).map_err(RunError::Refused)?;
            if let Event::Decided { step, kind, .. } = &e
                && matches!(kind, DecisionKind::Retry | DecisionKind::Rollback)
            {
                let alive = self.live_children(job_id, step, None)?;
                if !alive.is_empty() {
                    return Err(RunError::Refused(format!(
                        "`{step}` started programs that still run ({}): a {} now would run beside them; wait for them to end or stop them (kill -- -PID), then decide again",
                        alive.join(", "),
                        if *kind == DecisionKind::Retry {
                            "retry"
                        } else {
                            "rollback"
                        }
                    )));
                }
            }
            let at = now();
            let mut next = d.job.clone();
            next.apply(&e, at);
            let status = if detach {
                ("ready".to_string(), String::new())
            } else {
                status_of(&next)
            };
            let extra = Extra {
                wake_at: Some(next.next_timer()),
                logs: None,
            };
            match self.journal.append(
                job_id,
                d.last_seq,
                &[(at, json(&e))],
                Some((&status.0, &status.1)),
                &extra,
            ) {
                Ok(_) => {
                    self.observer.event(&next, &e, at);
                    break;
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        if detach {
            return Ok(Standing::Handed);
        }
        self.drive(job_id).await
    }

    /// Asks `job_id` to stop: nothing new starts, running steps finish, post runs. Then drives
    /// it, unless another process is running its steps.
    /// A job that already ended is refused ([`RunError::Ended`]).
    pub async fn cancel(
        &self,
        job_id: &str,
        by: &str,
        os_user: &str,
        reason: &str,
    ) -> Result<Standing, RunError> {
        self.recover(job_id).await?;
        loop {
            let d = self.load(job_id)?;
            if let Some((status, message)) = &d.job.finished {
                return Err(RunError::Ended {
                    job: job_id.to_string(),
                    status: *status,
                    message: message.clone(),
                });
            }
            let e = Event::CancelRequested {
                by: by.to_string(),
                reason: reason.to_string(),
                os_user: os_user.to_string(),
            };
            match self.journal.append(
                job_id,
                d.last_seq,
                &[(now(), json(&e))],
                None,
                &Extra::default(),
            ) {
                Ok(_) => break,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.drive(job_id).await
    }

    /// Rebuilds a job from the journal.
    fn load(&self, job_id: &str) -> Result<Driving, RunError> {
        let rows = self.journal.events(job_id, 0)?;
        if rows.is_empty() {
            return Err(StoreError::NoJob(job_id.to_string()).into());
        }
        let events = parse_events(job_id, &rows)?;
        let job = Job::replay(events.iter().map(|(e, at)| (e, *at))).ok_or_else(|| {
            RunError::Corrupt {
                job: job_id.into(),
                seq: 1,
                message: "the first event is not `created`".into(),
            }
        })?;
        Ok(Driving {
            job,
            last_seq: rows.last().map(|r| r.seq).unwrap_or(0),
            persisted: true,
            pending: vec![],
            pending_logs: vec![],
        })
    }

    /// After a job stops: if it ended, give back its locks (again: harmless) and drive the jobs
    /// that waited for them.
    async fn after(&self, job_id: &str, standing: &Standing) -> Result<(), RunError> {
        if !matches!(standing, Standing::Finished { .. }) {
            return Ok(());
        }
        let mut waiting = self.journal.release(job_id)?;
        let mut seen = vec![job_id.to_string()];
        while let Some(next) = waiting.first().cloned() {
            waiting.remove(0);
            if seen.contains(&next) {
                continue;
            }
            seen.push(next.clone());
            let standing = Box::pin(self.drive_one(&next)).await?;
            if matches!(standing, Standing::Finished { .. }) {
                for w in self.journal.release(&next)? {
                    if !waiting.contains(&w) {
                        waiting.push(w);
                    }
                }
            }
        }
        Ok(())
    }

    /// Drives one job under a lease: if another live process holds it, leaves it alone.
    async fn drive_one(&self, job_id: &str) -> Result<Standing, RunError> {
        let t = now();
        if let Err(current) = self
            .journal
            .lease(job_id, &self.holder, t, t + LEASE_MS, None)?
        {
            if !holder_dead(&current)
                || self
                    .journal
                    .lease(job_id, &self.holder, t, t + LEASE_MS, Some(&current))?
                    .is_err()
            {
                return Ok(Standing::ElsewhereRunning);
            }
            tracing::warn!(
                job = job_id,
                dead = current,
                "took over a job whose driver stopped"
            );
        }
        loop {
            let mut d = match self.load(job_id) {
                Ok(d) => d,
                Err(e) => {
                    self.journal.unlease(job_id, &self.holder, None)?;
                    return Err(e);
                }
            };
            let result = async {
                // We hold the lease, so whoever ran these attempts is gone: they never
                // finished. Programs they started may still run; the engine hears of them.
                let mut orphans = Vec::new();
                for (k, s) in &d.job.steps {
                    if s.status == sluice_engine::StepStatus::Running {
                        orphans.push(Event::Interrupted {
                            step: k.clone(),
                            attempt: s.attempt,
                            live_children: self.live_children(job_id, k, Some(s.attempt))?,
                        });
                    }
                }
                if !orphans.is_empty() {
                    self.record(&mut d, orphans)?;
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
                        .unlease(job_id, &self.holder, Some(d.last_seq))?
                    {
                        return Ok(standing);
                    }
                    tracing::debug!(job = job_id, "the job moved while this process drove it");
                }
                Err(e) => {
                    self.journal.unlease(job_id, &self.holder, None)?;
                    return Err(e);
                }
            }
        }
    }

    /// Takes over `job_id` when the process that drove it is gone (as the worker would),
    /// before a decision or a cancel looks at it: a job whose driver was killed mid-step turns
    /// into its `interrupted` trap (or runs the step again when that is safe) here.
    async fn recover(&self, job_id: &str) -> Result<(), RunError> {
        let Some(row) = self.journal.job(job_id)? else {
            return Err(StoreError::NoJob(job_id.to_string()).into());
        };
        if !matches!(
            row.status.as_str(),
            "running" | "cancelling" | "rolling-back" | "ready"
        ) {
            return Ok(());
        }
        match self.journal.lease_holder(job_id, now())? {
            Some(holder) if !holder_dead(&holder) => Ok(()),
            _ => {
                let standing = self.drive_one(job_id).await?;
                self.after(job_id, &standing).await
            }
        }
    }

    /// Programs started for `step` of `job_id` (by `attempt`, or any attempt) that still run
    /// on this host, described for people: `pid 4242 (kubectl)`.
    fn live_children(
        &self,
        job_id: &str,
        step: &str,
        attempt: Option<u32>,
    ) -> Result<Vec<String>, RunError> {
        Ok(self
            .journal
            .children(job_id, step)?
            .into_iter()
            .filter(|c| attempt.is_none_or(|a| a == c.attempt) && child_alive(c))
            .map(|c| format!("pid {} ({})", c.pid, c.program))
            .collect())
    }

    /// Drives every job a worker should (queued, due timers, decided and detached) once.
    pub async fn work_once(&self) -> Result<Vec<(String, Standing)>, RunError> {
        let mut out = Vec::new();
        for job in self.journal.due(now())? {
            let standing = self.drive(&job).await?;
            out.push((job, standing));
        }
        Ok(out)
    }

    fn load_op(
        &self,
        rule: &Rule,
        name: &str,
        pinned: Option<&str>,
    ) -> Result<(Arc<LoadedOp>, String), RunError> {
        let err = |message: String| RunError::Op {
            op: name.to_string(),
            message,
        };
        if let Some(digest) = pinned {
            let key = (name.to_string(), digest.to_string());
            let cached = self
                .loaded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned();
            if let Some(op) = cached {
                return Ok((op, name.to_string()));
            }
        }
        let bytes: Vec<u8> = match rule.ops.get(name) {
            Some(OpSource::Path(p)) => {
                std::fs::read(p).map_err(|e| err(format!("cannot read {p}: {e}")))?
            }
            Some(OpSource::Package(r)) => {
                return Err(err(format!("package {r} is not resolved to a file")));
            }
            None => match sluice_ops::std_op(name) {
                Some(op) => op.wasm.to_vec(),
                None => {
                    return Err(err(
                        "no such standard op, and the rule's `ops:` does not declare it".into(),
                    ));
                }
            },
        };
        let (op, _) = self.runtime.load(&bytes).map_err(|e| err(e.to_string()))?;
        if let Some(digest) = pinned
            && op.digest() != digest
        {
            return Err(err(format!(
                "the component changed since the job started (sha256 {} now, {digest} then); start a new job to use it",
                op.digest()
            )));
        }
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((name.to_string(), op.digest().to_string()), op.clone());
        Ok((op, name.to_string()))
    }

    /// Appends `events` (or buffers them before the job exists); on a conflict, reloads.
    /// Returns false when the journal had moved on: the caller decides again.
    fn record(&self, d: &mut Driving, events: Vec<Event>) -> Result<bool, RunError> {
        self.record_with(d, events, None)
    }

    /// [`Self::record`], writing a step attempt's log lines in the same transaction.
    fn record_with(
        &self,
        d: &mut Driving,
        events: Vec<Event>,
        logs: Option<sluice_store::StepLogs<'_>>,
    ) -> Result<bool, RunError> {
        let at = now();
        if !d.persisted {
            for e in events {
                d.job.apply(&e, at);
                self.observer.event(&d.job, &e, at);
                d.pending.push((at, e));
            }
            return Ok(true);
        }
        let mut next = d.job.clone();
        for e in &events {
            next.apply(e, at);
        }
        let status = status_of(&next);
        let bodies: Vec<(Millis, String)> = events.iter().map(|e| (at, json(e))).collect();
        // Events, status, next timer and logs: one transaction, one fsync.
        let extra = Extra {
            wake_at: Some(next.next_timer()),
            logs,
        };
        match self.journal.append(
            &d.job.id,
            d.last_seq,
            &bodies,
            Some((&status.0, &status.1)),
            &extra,
        ) {
            Ok(seq) => {
                d.last_seq = seq;
                for e in &events {
                    d.job.apply(e, at);
                    self.observer.event(&d.job, e, at);
                }
                Ok(true)
            }
            Err(StoreError::Conflict { .. }) => {
                self.catch_up(d)?;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Applies events other processes appended.
    fn catch_up(&self, d: &mut Driving) -> Result<(), RunError> {
        let rows = self.journal.events(&d.job.id, d.last_seq)?;
        for (e, at) in parse_events(&d.job.id, &rows)? {
            d.job.apply(&e, at);
            self.observer.event(&d.job, &e, at);
        }
        if let Some(r) = rows.last() {
            d.last_seq = r.seq;
        }
        Ok(())
    }

    /// Creates the job in the journal with everything buffered during `check`.
    fn persist(&self, d: &mut Driving) -> Result<(), RunError> {
        let status = status_of(&d.job);
        let row = JobRow {
            id: d.job.id.clone(),
            rule: d.job.rule.name.clone(),
            status: status.0,
            message: status.1,
            started_by: d.job.started_by.clone(),
            created_at: d.job.created_at,
            updated_at: d.job.created_at,
            last_seq: 0,
        };
        let bodies: Vec<(Millis, String)> =
            d.pending.drain(..).map(|(at, e)| (at, json(&e))).collect();
        d.last_seq = self.journal.create_job(&row, &bodies)?;
        d.persisted = true;
        let t = now();
        let _ = self
            .journal
            .lease(&d.job.id, &self.holder, t, t + LEASE_MS, None)?;
        for (step, attempt, lines) in std::mem::take(&mut d.pending_logs) {
            self.store_logs(&d.job.id, &step, attempt, &lines)?;
        }
        Ok(())
    }

    fn store_logs(
        &self,
        job: &str,
        step: &str,
        attempt: u32,
        lines: &[sluice_model::LogLine],
    ) -> Result<(), RunError> {
        let rows = log_rows(lines);
        if !rows.is_empty() {
            self.journal.add_logs(job, step, attempt, now(), &rows)?;
        }
        Ok(())
    }

    async fn run(&self, d: &mut Driving) -> Result<Standing, RunError> {
        let mut inflight: JoinSet<CallDone> = JoinSet::new();
        loop {
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
                            self.persist(d)?;
                        }
                        if let Some(standing) = self.acquire(d, &locks, mode).await? {
                            return Ok(standing);
                        }
                        moved = true;
                    }
                }
            }
            if !records.is_empty() {
                if !self.record(d, records)? {
                    continue;
                }
                moved = true;
            }
            // An input the job could not keep is not sent: the step fails with why.
            let (calls, unfit): (Vec<StepCall>, Vec<StepCall>) = calls.into_iter().partition(|c| {
                sluice_engine::json_depth(&c.input) <= sluice_engine::MAX_VALUE_DEPTH
            });
            if !unfit.is_empty() {
                let failed: Vec<Event> = unfit
                    .iter()
                    .map(|c| Event::StepFinished {
                        step: c.step.clone(),
                        attempt: c.attempt,
                        result: StepResult::failure(format!(
                            "its rendered input nests {} levels deep; the limit is {}",
                            sluice_engine::json_depth(&c.input),
                            sluice_engine::MAX_VALUE_DEPTH
                        )),
                    })
                    .collect();
                if !self.record(d, failed)? {
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
                if !self.record(d, started)? {
                    continue;
                }
                for c in calls {
                    self.spawn(d, c, &mut inflight)?;
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
                        // Hibernate: nothing of the job stays in this process.
                        return Ok(Standing::Waiting {
                            gates: d.job.waiting_gates(),
                        });
                    }
                    None if d.job.running() => return Ok(Standing::ElsewhereRunning),
                    None => {
                        return Err(RunError::Corrupt {
                            job: d.job.id.clone(),
                            seq: d.last_seq,
                            message: "the engine has nothing to do and the job is not finished"
                                .into(),
                        });
                    }
                }
            }
            // Wait for an op, the next retry, or the time to renew the lease.
            let until = wake.unwrap_or(u64::MAX).min(now() + LEASE_MS / 3);
            let done = tokio::select! {
                r = inflight.join_next() => r,
                _ = tokio::time::sleep(Duration::from_millis(until.saturating_sub(now()))) => {
                    if d.persisted {
                        let t = now();
                        let _ = self.journal.lease(&d.job.id, &self.holder, t, t + LEASE_MS, None)?;
                    }
                    continue;
                }
            };
            let Some(done) = done else { continue };
            let (call, report) = done.map_err(|e| RunError::Op {
                op: "?".into(),
                message: format!("op task failed: {e}"),
            })?;
            self.finish_call(d, call, report)?;
        }
    }

    fn spawn(
        &self,
        d: &Driving,
        c: StepCall,
        inflight: &mut JoinSet<CallDone>,
    ) -> Result<(), RunError> {
        let job = &d.job;
        let pinned = job.ops.get(&c.op).map(|m| m.digest.clone());
        let loaded = self.load_op(&job.rule, &c.op, pinned.as_deref());
        let ctx = JobContext {
            job_id: job.id.clone(),
            rule: job.rule.name.clone(),
            phase: c.phase,
            step_id: c.step.clone(),
            attempt: c.attempt,
            started_by: job.started_by.clone(),
            previous: c.previous.clone(),
        };
        let mut grants = self.grants_for(job, &c.op);
        if !grants.programs.is_empty() {
            grants.exec_watch = Some(sluice_runtime::ExecWatcher(Arc::new(ChildLog {
                journal: self.journal.clone(),
                job: job.id.clone(),
                step: c.step.clone(),
                attempt: c.attempt,
                host: hostname(),
            })));
        }
        let secrets = secret_values(&grants);
        let runtime = self.runtime.clone();
        inflight.spawn(async move {
            let report = match loaded {
                Err(e) => sluice_runtime::OpReport {
                    outcome: Outcome::failure(e.to_string()),
                    fault: Some(sluice_runtime::Fault::Instantiate),
                    logs: vec![],
                    annotations: vec![],
                    progress: None,
                },
                Ok((op, name)) => {
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
                        .call(&op, &name, call, Arc::new(grants), timeout)
                        .await;
                    mask_report(&mut report, &secrets);
                    report
                }
            };
            (c, report)
        });
        Ok(())
    }

    /// What `op` may use in `job`, from the rule's grants; the workspace is the job's own
    /// directory (`$SLUICE_HOME/workspaces/<job>`).
    fn grants_for(&self, job: &Job, op: &str) -> Grants {
        let caps = job.rule.grants.get(op).map(Vec::as_slice).unwrap_or(&[]);
        host_grants(
            caps,
            &self.runtime.config().home.join("workspaces").join(&job.id),
        )
    }

    /// Records how a call ended (re-reading the journal as often as others append to it).
    fn finish_call(
        &self,
        d: &mut Driving,
        call: StepCall,
        report: sluice_runtime::OpReport,
    ) -> Result<(), RunError> {
        let mut lines = report.logs.clone();
        for a in &report.annotations {
            lines.push(sluice_model::LogLine {
                level: sluice_model::LogLevel::Info,
                source: sluice_model::LogSource::Op,
                message: format!("annotation `{}`: {}", a.title, a.body),
            });
        }
        self.observer.logs(&d.job.id, &call.step, &lines);
        let (step, attempt) = (call.step.clone(), call.attempt);
        let rows = log_rows(&lines);
        if !d.persisted {
            d.pending_logs
                .push((call.step.clone(), call.attempt, lines));
        }
        let fault = report.fault.map(|f| {
            serde_json::to_value(f)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        });
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
        let logs =
            (d.persisted && !rows.is_empty()).then_some((step.as_str(), attempt, rows.as_slice()));
        while !self.record_with(d, vec![e.clone()], logs)? {}
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
        let (acquired, pushed_out) = self.journal.acquire(&d.job.id, &asks, mode)?;
        for other in pushed_out {
            let superseded = Box::pin(self.cancel(
                &other,
                "concurrency",
                "",
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
        match acquired {
            Acquired::Held => {
                let names = locks.iter().map(|l| l.name.clone()).collect();
                self.record(d, vec![Event::Started { locks: names }])?;
                Ok(None)
            }
            Acquired::Queued { behind } => {
                if d.job.queued_behind.as_ref() != Some(&behind) {
                    self.record(
                        d,
                        vec![Event::Queued {
                            behind: behind.clone(),
                        }],
                    )?;
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
                        by: "concurrency".into(),
                        reason,
                        os_user: String::new(),
                    }],
                )?;
                Ok(None)
            }
        }
    }
}

/// Log lines as the store keeps them: level, source, message.
fn log_rows(lines: &[sluice_model::LogLine]) -> Vec<(String, String, String)> {
    lines
        .iter()
        .map(|l| {
            let source = serde_json::to_value(l.source)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            (l.level.as_str().to_string(), source, l.message.clone())
        })
        .collect()
}

/// What `caps` grant on this host: secrets from `SLUICE_SECRET_<NAME>` variables, programs
/// resolved on `PATH`, env values, `workspace` as the workspace directory (created), origins.
pub fn host_grants(caps: &[sluice_model::Capability], workspace: &Path) -> Grants {
    let mut g = Grants::none();
    for c in caps {
        match c {
            sluice_model::Capability::Secret(name) => {
                let var = format!("SLUICE_SECRET_{}", name.to_uppercase().replace('-', "_"));
                match std::env::var(&var) {
                    Ok(v) => {
                        g.secrets.insert(name.clone(), v);
                    }
                    Err(_) => {
                        g.unset_secrets.insert(name.clone(), var);
                    }
                }
            }
            sluice_model::Capability::Exec(p) => {
                if let Some(path) = resolve_program(p) {
                    g.programs.insert(p.clone(), path);
                }
            }
            sluice_model::Capability::Env(name) => {
                if let Ok(v) = std::env::var(name) {
                    g.env.insert(name.clone(), v);
                }
            }
            sluice_model::Capability::Workspace(access) => {
                if std::fs::create_dir_all(workspace).is_ok() {
                    g.workspace = Some((workspace.to_path_buf(), *access));
                }
            }
            sluice_model::Capability::Http(o) => {
                if let Ok(origin) = sluice_model::Origin::parse(o) {
                    g.http.push(origin);
                }
            }
        }
    }
    g
}

/// An absolute program path: as given when absolute, else found on `PATH`.
fn resolve_program(program: &str) -> Option<PathBuf> {
    let p = Path::new(program);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    if program.contains('/') {
        return None;
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|c| c.is_file())
}

/// The granted secret values worth masking (four characters or more).
pub fn secret_values(grants: &Grants) -> Vec<String> {
    grants
        .secrets
        .values()
        .filter(|v| v.len() >= 4)
        .cloned()
        .collect()
}

/// Replaces every granted secret value in what the op reported with `***`, before anything of
/// it is stored or printed.
pub fn mask_report(r: &mut sluice_runtime::OpReport, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    let mask = |s: &mut String| {
        for v in secrets {
            if s.contains(v.as_str()) {
                *s = s.replace(v.as_str(), "***");
            }
        }
    };
    for l in &mut r.logs {
        mask(&mut l.message);
    }
    for a in &mut r.annotations {
        mask(&mut a.title);
        mask(&mut a.body);
    }
    if let Some(p) = &mut r.progress {
        mask(&mut p.message);
    }
    match &mut r.outcome {
        Outcome::Success { output } | Outcome::Warning { output } => mask(output),
        Outcome::Failure(f) => {
            mask(&mut f.message);
            mask(&mut f.details);
        }
        Outcome::Suspend(g) => mask(&mut g.message),
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

fn json(e: &Event) -> String {
    serde_json::to_string(e).expect("events serialize")
}

fn parse_events(
    job: &str,
    rows: &[sluice_store::Recorded],
) -> Result<Vec<(Event, Millis)>, RunError> {
    rows.iter()
        .map(|r| {
            serde_json::from_str::<Event>(&r.body)
                .map(|e| (e, r.at))
                .map_err(|e| RunError::Corrupt {
                    job: job.to_string(),
                    seq: r.seq,
                    message: e.to_string(),
                })
        })
        .collect()
}

/// Whether `job_id` is under way (running, cancelling, rolling back, decided) with no live
/// process driving it: its driver was killed. Any decision, a cancel or the worker carries it
/// on; `show` says so.
pub fn stranded(journal: &dyn Journal, job_id: &str) -> Result<bool, StoreError> {
    let Some(row) = journal.job(job_id)? else {
        return Ok(false);
    };
    if !matches!(
        row.status.as_str(),
        "running" | "cancelling" | "rolling-back"
    ) {
        return Ok(false);
    }
    Ok(match journal.lease_holder(job_id, now())? {
        Some(holder) => holder_dead(&holder),
        None => true,
    })
}

/// The job index's status word and message for `job`.
pub fn status_of(job: &Job) -> (String, String) {
    if let Some((s, m)) = &job.finished {
        return (s.as_str().to_string(), m.clone());
    }
    if let Some(behind) = &job.queued_behind {
        return (
            "queued".into(),
            format!("waiting for {}", behind.join(", ")),
        );
    }
    if job.cancel.is_some() {
        return ("cancelling".into(), String::new());
    }
    let waiting = job.waiting_steps();
    if !waiting.is_empty() && !job.running() {
        let at: Vec<String> = waiting.iter().map(|s| format!("`{s}`")).collect();
        return ("waiting".into(), format!("waiting at {}", at.join(", ")));
    }
    if job.rollback.is_some() {
        return ("rolling-back".into(), String::new());
    }
    ("running".into(), String::new())
}

/// Where a rule file's relative op paths are resolved from.
pub fn rule_dir(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."))
}
