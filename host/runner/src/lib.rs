//! Drives jobs: carries out the engine's actions with the runtime and the journal.
//!
//! [`Runner::start`] makes a job from a rule (binding params, pinning and describing its ops,
//! running `check` in memory: a failed check writes nothing), then the job is driven: decide,
//! record, call ops (parallel branches at once), record their results, until the job ends or
//! waits. Every event is in the journal before the next decision, so any process can pick a
//! job up from its events.
//!
//! By concern: `drive.rs` is the loop over one job under its lease; `lease.rs` who drives (and
//! whether a driver or a program an op started still lives); `ops.rs` loading pinned ops;
//! `grants.rs` capabilities on this host and secret masking.
//!
//! Architecture Invariant: the runner decides nothing. What happens next is
//! `sluice_engine::decide`; what an op did is `sluice_runtime`'s report; the runner only moves
//! data between them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_engine::{DecisionKind, DecisionRequest, Event, GateView, Job, JobStatus, Millis};
use sluice_model::{Actor, JobState};
use sluice_rule::{OpSource, Rule};
use sluice_runtime::Runtime;
use sluice_store::{Append, Journal, StoreError};

mod drive;
mod grants;
mod lease;
mod ops;

pub use grants::{host_grants, mask_report, secret_values};
pub use lease::stranded;

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
    /// The engine refused a decision; nothing changed.
    #[error("{0}")]
    Decision(sluice_engine::Refusal),
    /// The job has ended; there is nothing to cancel or decide.
    #[error("job {job} has already ended: {status} ({message})")]
    Ended {
        /// The job.
        job: String,
        /// How it ended.
        status: JobStatus,
        /// In a sentence.
        message: String,
    },
    /// A stored event could not be read.
    #[error("job {job}: {source}")]
    Corrupt {
        /// The job.
        job: String,
        /// What is wrong with its history.
        source: sluice_engine::DecodeError,
    },
    /// The engine had nothing to do for a job that has not ended.
    #[error(
        "job {job} is stuck at event {seq}: the engine has nothing to do and the job has not ended"
    )]
    Stuck {
        /// The job.
        job: String,
        /// Its last event.
        seq: u64,
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

/// What the runner reports as it goes, for a front end to print.
pub trait Observer: Send + Sync {
    /// An event was recorded for `job`.
    fn event(&self, job: &Job, event: &Event, at: Millis);
    /// Log lines of a step attempt.
    fn logs(&self, job: &str, step: &str, lines: &[sluice_model::LogLine]);
    /// Something a person watching should know that is not an event of the job driven (a job
    /// it unblocked, and who carries that one on).
    fn note(&self, _text: &str) {}
    /// `job` is in the journal now (its check passed): it will be there whatever happens.
    fn created(&self, _job: &str) {}
}

/// Messages recorded events cause (gate notifications, and later CloudEvents), written in the
/// same transaction as the events: a crash never records one without the other.
pub trait Outbox: Send + Sync {
    /// The messages `event`, the job's `seq`th, recorded at `at`, causes; `job` is the job once
    /// `event` applied.
    fn messages(
        &self,
        job: &Job,
        event: &Event,
        seq: u64,
        at: Millis,
    ) -> Vec<sluice_store::NewMessage>;
}

/// The outbox sink of "a job ended" messages, read by servers to start the jobs that follow.
pub const JOB_FINISHED_SINK: &str = "sluice:job-finished";

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
    /// Whether this runner is a worker's: a worker drives the jobs a finished job unblocks;
    /// anyone else leaves them to a running worker.
    worker: bool,
    /// Each loaded op's input schema, by sha256 (`None`: it declares none this host can use).
    schemas: ops::Schemas,
    /// What recorded events put in the outbox.
    outbox: Option<Arc<dyn Outbox>>,
}

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
            holder: lease::this_holder(),
            worker: false,
            schemas: Default::default(),
            outbox: None,
        }
    }

    /// Recorded events put what `outbox` makes of them in the journal's outbox.
    pub fn with_outbox(mut self, outbox: Arc<dyn Outbox>) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// The messages `event` (the job's `seq`th, at `at`) causes for `job` (once applied).
    pub(crate) fn messages(
        &self,
        job: &Job,
        event: &Event,
        seq: u64,
        at: Millis,
    ) -> Vec<sluice_store::NewMessage> {
        let mut out: Vec<sluice_store::NewMessage> = self
            .outbox
            .as_ref()
            .map(|o| o.messages(job, event, seq, at))
            .unwrap_or_default();
        // A server looks for the rules whose `on: job-finished` follow this one.
        if matches!(event, Event::Finished { .. }) && job.finished.is_some() {
            out.push(sluice_store::NewMessage {
                sink: JOB_FINISHED_SINK.to_string(),
                body: job.id.clone(),
            });
        }
        out
    }

    /// This runner is a worker's: it says so in the journal on every [`Runner::work_once`]
    /// and drives the jobs a finished job unblocks itself.
    pub fn for_worker(mut self) -> Self {
        self.worker = true;
        self
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    /// Starts a job of `rule` (read from a file in `rule_dir`) with `params`, for `actor`, and
    /// drives it until it ends or waits.
    pub async fn start(
        &self,
        rule: Rule,
        rule_dir: &Path,
        params: &[(String, String)],
        actor: Actor,
    ) -> Result<(String, Standing), RunError> {
        self.start_caused(rule, rule_dir, params, actor, None).await
    }

    /// [`Runner::start`] for a job a trigger starts: `cause` goes into its `created` event, and
    /// the journal refuses a second job with the same cause key ([`StoreError::Triggered`]).
    pub async fn start_caused(
        &self,
        mut rule: Rule,
        rule_dir: &Path,
        params: &[(String, String)],
        actor: Actor,
        cause: Option<sluice_engine::Cause>,
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
        let mut metas = std::collections::BTreeMap::new();
        for name in rule.op_names() {
            let meta = ops::meta(&self.runtime, &rule, &name).await?;
            metas.insert(name, meta);
        }
        let needs = metas
            .iter()
            .map(|(name, m)| {
                (
                    name.clone(),
                    m.needs.iter().filter_map(|c| c.parse().ok()).collect(),
                )
            })
            .collect();
        let mut missing = rule.missing_grants(&needs);
        missing.extend(grants::unresolvable(&rule.grants));
        if !missing.is_empty() {
            return Err(RunError::NotGranted(missing));
        }
        let id = self.journal.next_job_id(&rule.name).await?;
        let created = Event::Created {
            job_id: id.clone(),
            rule: Box::new(rule),
            params,
            started_by: actor,
            ops: metas,
            rule_version: sluice_engine::RULE_VERSION,
            cause,
        };
        let standing = self.drive_new(created).await?;
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
    /// job on, or leaves it to a worker when `detach`. A job whose driver died is taken over
    /// first, as the worker would.
    pub async fn decide(
        &self,
        job_id: &str,
        req: &DecisionRequest<'_>,
        detach: bool,
    ) -> Result<Standing, RunError> {
        self.recover(job_id).await?;
        loop {
            let d = self.load(job_id).await?;
            let e = d.job.check_decision(req).map_err(RunError::Decision)?;
            if let Event::Decided { step, kind, .. } = &e
                && matches!(kind, DecisionKind::Retry | DecisionKind::Rollback)
            {
                let alive = self.live_children(job_id, step, None).await?;
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
                (JobState::Ready, String::new())
            } else {
                status_of(&next)
            };
            let append = Append {
                events: vec![drive::stored(at, &e)],
                status: Some(status),
                wake_at: Some(next.next_timer()),
                logs: None,
                outbox: self.messages(&next, &e, d.last_seq + 1, at),
                fence: None,
            };
            match self.journal.append(job_id, d.last_seq, append).await {
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

    /// Asks `job_id` to stop: nothing new starts, running steps finish, gates nobody decided
    /// close, post runs. Then drives it, unless another process is running its steps. A job
    /// that already ended is refused ([`RunError::Ended`]).
    pub async fn cancel(
        &self,
        job_id: &str,
        by: Actor,
        reason: &str,
    ) -> Result<Standing, RunError> {
        self.recover(job_id).await?;
        loop {
            let d = self.load(job_id).await?;
            if let Some((status, message)) = &d.job.finished {
                return Err(RunError::Ended {
                    job: job_id.to_string(),
                    status: *status,
                    message: message.clone(),
                });
            }
            let e = Event::CancelRequested {
                by: by.clone(),
                reason: reason.to_string(),
            };
            let at = now();
            let mut next = d.job.clone();
            next.apply(&e, at);
            let append = Append {
                events: vec![drive::stored(at, &e)],
                outbox: self.messages(&next, &e, d.last_seq + 1, at),
                ..Append::default()
            };
            match self.journal.append(job_id, d.last_seq, append).await {
                Ok(_) => break,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.drive(job_id).await
    }

    /// Drives every job a worker should (queued, due timers, decided and detached, and those
    /// whose driver died) once, having told the journal this worker runs and comes back every
    /// `every_ms`. A job that cannot be driven does not hold up the others: each job's outcome
    /// is returned; only a journal that cannot be asked what is due fails the round.
    pub async fn work_once(
        &self,
        every_ms: u64,
    ) -> Result<Vec<(String, Result<Standing, RunError>)>, RunError> {
        self.journal
            .worker_seen(&self.holder, now(), every_ms.max(1))
            .await?;
        let mut out = Vec::new();
        // Claim due jobs one at a time (several workers, on several hosts, get different
        // ones), each driven before the next is claimed.
        let mut claimed: Vec<String> = Vec::new();
        loop {
            let t = now();
            let until = t + lease::lease_ms();
            let Some((job, _)) = self.journal.claim(t, &self.holder, until, &claimed).await? else {
                break;
            };
            claimed.push(job.clone());
            let standing = self.drive(&job).await;
            out.push((job, standing));
        }
        // What is left is leased: taken over here only when its driver was a process of this
        // host that died (another host's lease has to run out first, and is then claimed).
        for job in self.journal.due(now()).await? {
            if claimed.contains(&job) {
                continue;
            }
            if let Some(holder) = self.journal.lease_holder(&job, now()).await?
                && !lease::holder_dead(&holder)
            {
                continue;
            }
            let standing = self.drive(&job).await;
            out.push((job, standing));
        }
        Ok(out)
    }

    /// Tells the journal this worker stopped.
    pub async fn worker_stopped(&self) -> Result<(), RunError> {
        Ok(self.journal.worker_seen(&self.holder, now(), 0).await?)
    }

    /// Workers that run now (a dead one of this host does not count).
    async fn live_workers(&self) -> Result<Vec<String>, RunError> {
        let mut workers = self.journal.workers(now()).await?;
        workers.retain(|w| !lease::holder_dead(w));
        Ok(workers)
    }

    /// Takes over `job_id` when the process that drove it is gone (as the worker would),
    /// before a decision or a cancel looks at it: a job whose driver was killed mid-step turns
    /// into its `interrupted` trap (or runs the step again when that is safe) here.
    async fn recover(&self, job_id: &str) -> Result<(), RunError> {
        let Some(row) = self.journal.job(job_id).await? else {
            return Err(StoreError::NoJob(job_id.to_string()).into());
        };
        if !row.status.is_active() {
            return Ok(());
        }
        match self.journal.lease_holder(job_id, now()).await? {
            Some(holder) if !lease::holder_dead(&holder) => Ok(()),
            _ => {
                let standing = self.drive_one(job_id).await?;
                self.after(job_id, &standing).await
            }
        }
    }

    /// Programs started for `step` of `job_id` (by `attempt`, or any attempt) that still run
    /// on this host, described for people: `pid 4242 (kubectl)`.
    async fn live_children(
        &self,
        job_id: &str,
        step: &str,
        attempt: Option<u32>,
    ) -> Result<Vec<String>, RunError> {
        Ok(self
            .journal
            .children(job_id, step)
            .await?
            .into_iter()
            .filter(|c| attempt.is_none_or(|a| a == c.attempt) && lease::child_alive(c))
            .map(|c| format!("pid {} ({})", c.pid, c.program))
            .collect())
    }

    /// After a job stops: if it ended, give back its locks (again: harmless), which marks the
    /// jobs that waited for them ready. A worker claims them in its round; anyone else leaves
    /// them to a running worker, so approving one job does not run another in the approver's
    /// terminal, and drives them here only when no worker runs (and says so).
    async fn after(&self, job_id: &str, standing: &Standing) -> Result<(), RunError> {
        if !matches!(standing, Standing::Finished { .. }) {
            return Ok(());
        }
        let mut waiting = self.journal.release(job_id).await?;
        // A worker leaves them to its round: the release marked them ready, and claiming
        // shares them with every other worker (of this host or another) in line order.
        if waiting.is_empty() || self.worker {
            return Ok(());
        }
        let workers = self.live_workers().await?;
        if let Some(w) = workers.first() {
            for next in &waiting {
                self.observer.note(&format!(
                    "job {next} may go on now that {job_id} ended; the worker {w} carries it on"
                ));
            }
            return Ok(());
        }
        for next in &waiting {
            self.observer.note(&format!(
                "job {next} may go on now that {job_id} ended; no worker runs, so it is driven here (start `sluice worker` to leave such jobs to it)"
            ));
        }
        // In line order, each job once (a set each: thousands can wait on one lock).
        let mut seen: std::collections::HashSet<String> =
            std::iter::once(job_id.to_string()).collect();
        let mut queued: std::collections::HashSet<String> = waiting.iter().cloned().collect();
        let mut waiting: std::collections::VecDeque<String> = waiting.drain(..).collect();
        while let Some(next) = waiting.pop_front() {
            if !seen.insert(next.clone()) {
                continue;
            }
            let standing = Box::pin(self.drive_one(&next)).await?;
            if matches!(standing, Standing::Finished { .. }) {
                for w in self.journal.release(&next).await? {
                    if !seen.contains(&w) && queued.insert(w.clone()) {
                        waiting.push_back(w);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The job index's state and message for `job`.
pub fn status_of(job: &Job) -> (JobState, String) {
    if let Some((s, m)) = &job.finished {
        return (JobState::Ended(*s), m.clone());
    }
    if let Some(behind) = &job.queued_behind {
        return (
            JobState::Queued,
            format!("waiting for {}", behind.join(", ")),
        );
    }
    if job.cancel.is_some() {
        return (JobState::Cancelling, String::new());
    }
    let waiting = job.waiting_steps();
    if !waiting.is_empty() && !job.running() {
        let at: Vec<String> = waiting.iter().map(|s| format!("`{s}`")).collect();
        return (JobState::Waiting, format!("waiting at {}", at.join(", ")));
    }
    if job.rollback.is_some() {
        return (JobState::RollingBack, String::new());
    }
    (JobState::Running, String::new())
}

/// Where a rule file's relative op paths are resolved from.
pub fn rule_dir(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."))
}
