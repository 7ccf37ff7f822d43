//! Jobs: start one, decide at its gates (cancel included), annotate it, read it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};
use sluice_engine::{DecisionKind, DecisionRequest, Event, GateKind, Job, Millis};
use sluice_model::Actor;
use sluice_runner::{Observer, Standing};
use sluice_store::{AnnotationRow, JobQuery, JobRow, LockRow, LogRow, NewAnnotation};

use crate::identity::{self, Permission};
use crate::{App, AppError, MAX_ANNOTATION_BYTES};

/// A decision someone asks for at a gate.
#[derive(Debug, Clone)]
pub struct Decision {
    /// What.
    pub kind: DecisionKind,
    /// The step, when the job waits at more than one gate.
    pub step: Option<String>,
    /// A comment recorded with the decision.
    pub comment: String,
    /// Answers to the gate's inputs (or, for retry, edited inputs of the step).
    pub inputs: Map<String, Value>,
    /// Record it and leave the job to a worker instead of driving it in this process.
    pub detach: bool,
}

/// What an annotation attaches.
#[derive(Debug, Clone)]
pub enum Note {
    /// A comment.
    Comment(String),
    /// A regular file.
    File(PathBuf),
    /// A log file.
    Log(PathBuf),
}

/// A job as a front end shows it: its state, its whole history, its annotations, and whether
/// the process that drove it is gone.
#[derive(Debug, Clone)]
pub struct JobView {
    /// The state.
    pub job: Job,
    /// Every event with its time.
    pub history: Vec<(Event, Millis)>,
    /// Annotations, without their bodies.
    pub annotations: Vec<AnnotationRow>,
    /// The job is under way and nothing drives it (its driver was killed).
    pub driver_gone: bool,
    /// The jobs its end started through triggers (`on: job-finished` of other rules).
    pub started: Vec<String>,
}

/// `NAME=VALUE` answers: a value that reads as JSON (a number, true, an object) keeps its type.
pub fn parse_inputs(inputs: &[String]) -> Result<Map<String, Value>, AppError> {
    let mut out = Map::new();
    for i in inputs {
        let Some((k, v)) = i.split_once('=') else {
            return Err(AppError::Usage(format!("--input {i}: write NAME=VALUE")));
        };
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        out.insert(k.to_string(), value);
    }
    Ok(out)
}

impl App {
    /// Starts a job of the rule at `rule_path` with `params` (`NAME=VALUE`) for `actor` and
    /// drives it until it ends or waits, reporting to `observer`.
    pub async fn start(
        &self,
        rule_path: &Path,
        params: &[String],
        actor: Actor,
        observer: Arc<dyn Observer>,
    ) -> Result<(String, Standing), AppError> {
        // Everything validate checks (op inputs and grants included) before anything runs.
        let mut rule = self.validate(rule_path).await?.rule;
        self.resolve_packages(&mut rule, rule_path).await?;
        let params = crate::rules::split_params(params)?;
        let dir = sluice_runner::rule_dir(rule_path);
        let rooms = rule.chat_follow.clone();
        let started = self
            .runner(observer)?
            .start(rule, &dir, &params, actor)
            .await
            .map_err(|e| self.run_error(e))?;
        self.follow_in_rooms(&started.0, &started.1, &rooms).await;
        Ok(started)
    }

    /// Decides at a gate of `job`, checked against the permissions file and the gate (its
    /// approvers, four eyes, quorum, inputs), then drives the job on (or leaves it to a worker
    /// with `detach`).
    pub async fn decide(
        &self,
        job: &str,
        decision: Decision,
        mut actor: Actor,
        observer: Arc<dyn Observer>,
    ) -> Result<Standing, AppError> {
        let view = self.load(job).await?;
        let perms = identity::load(&self.permissions)?;
        identity::allow(&perms, &mut actor, permission_for(&view, &decision))?;
        let req = DecisionRequest {
            step: decision.step.as_deref(),
            kind: decision.kind,
            actor,
            comment: &decision.comment,
            inputs: decision.inputs,
        };
        self.runner(observer)?
            .decide(job, &req, decision.detach)
            .await
            .map_err(|e| self.run_error(e))
    }

    /// The decisions `actor` may take at each gate `view` waits at: allowed by the permissions
    /// file and by the gate (its approvers, four eyes, one approval each). What inputs to give
    /// is not judged here. For front ends that show only the buttons a person may press.
    pub fn decisions_for(
        &self,
        view: &JobView,
        actor: &Actor,
    ) -> Result<Vec<(String, Vec<DecisionKind>)>, AppError> {
        let perms = identity::load(&self.permissions)?;
        let mut out = vec![];
        for gate in view.job.waiting_gates() {
            let mut kinds = vec![];
            for kind in gate.choices.iter().copied() {
                let decision = Decision {
                    kind,
                    step: Some(gate.step.clone()),
                    comment: String::new(),
                    inputs: Map::new(),
                    detach: true,
                };
                let mut who = actor.clone();
                if identity::allow(&perms, &mut who, permission_for(view, &decision)).is_err() {
                    continue;
                }
                let req = DecisionRequest {
                    step: Some(&gate.step),
                    kind,
                    actor: who,
                    comment: "",
                    inputs: Map::new(),
                };
                let may = match view.job.check_decision(&req) {
                    Ok(_) => true,
                    Err(r) => r.class() == sluice_engine::RefusalClass::Invalid,
                };
                if may {
                    kinds.push(kind);
                }
            }
            out.push((gate.step.clone(), kinds));
        }
        Ok(out)
    }

    /// Cancels `job`: checked against `cancel:` in the permissions file; refused when it
    /// already ended.
    pub async fn cancel(
        &self,
        job: &str,
        reason: &str,
        mut actor: Actor,
        observer: Arc<dyn Observer>,
    ) -> Result<Standing, AppError> {
        let perms = identity::load(&self.permissions)?;
        identity::allow(&perms, &mut actor, Permission::Cancel)?;
        self.row(job).await?;
        self.runner(observer)?
            .cancel(job, actor, reason)
            .await
            .map_err(|e| self.run_error(e))
    }

    /// Attaches a comment, file or log to `job`; returns its id. A file or log must be a
    /// regular file of at most [`MAX_ANNOTATION_BYTES`]; it is streamed in whole, or not at all.
    pub async fn annotate(&self, job: &str, note: Note, mut actor: Actor) -> Result<i64, AppError> {
        let perms = identity::load(&self.permissions)?;
        identity::allow(&perms, &mut actor, Permission::Annotate)?;
        self.row(job).await?;
        let at = sluice_runner::now();
        let record = |kind: &str, title: String| NewAnnotation {
            at,
            author: actor.name.clone(),
            kind: kind.into(),
            title,
        };
        let (meta, body, len): (NewAnnotation, Box<dyn std::io::Read + Send>, u64) = match note {
            Note::Comment(c) => (record("comment", c), Box::new(std::io::empty()), 0),
            Note::File(p) => {
                let (file, len) = open_attachment(&p)?;
                (record("file", file_name(&p)), Box::new(file), len)
            }
            Note::Log(p) => {
                let (file, len) = open_attachment(&p)?;
                (record("log", file_name(&p)), Box::new(file), len)
            }
        };
        self.journal
            .annotate(job, meta, body, len)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// The newest jobs first.
    pub async fn jobs(&self, limit: usize) -> Result<Vec<JobRow>, AppError> {
        self.jobs_matching(&JobQuery::newest(limit)).await
    }

    /// Jobs matching `query`, newest first.
    pub async fn jobs_matching(&self, query: &JobQuery) -> Result<Vec<JobRow>, AppError> {
        self.journal
            .jobs(query)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// How many jobs are in each status.
    pub async fn job_counts(&self) -> Result<Vec<(sluice_model::JobState, u64)>, AppError> {
        self.journal
            .job_counts()
            .await
            .map_err(|e| self.store_error(e))
    }

    /// Drives `job` until it ends or waits, unless another live process drives it.
    pub async fn drive(
        &self,
        job: &str,
        observer: Arc<dyn Observer>,
    ) -> Result<Standing, AppError> {
        self.runner(observer)?
            .drive(job)
            .await
            .map_err(|e| self.run_error(e))
    }

    /// A job's index row, or a usage error naming how to list jobs.
    pub async fn row(&self, job: &str) -> Result<JobRow, AppError> {
        self.journal
            .job(job)
            .await
            .map_err(|e| self.store_error(e))?
            .ok_or_else(|| AppError::NotFound(format!("no job `{job}`: `sluice jobs` lists them")))
    }

    /// A job with its history and annotations.
    pub async fn job(&self, job: &str) -> Result<JobView, AppError> {
        let mut view = self.load(job).await?;
        view.annotations = self.annotations(job).await?;
        view.driver_gone = sluice_runner::stranded(&*self.journal, job)
            .await
            .map_err(|e| self.store_error(e))?;
        view.started = self.started_by_job(job).await?;
        Ok(view)
    }

    async fn load(&self, job: &str) -> Result<JobView, AppError> {
        let rows = self
            .journal
            .events(job, 0)
            .await
            .map_err(|e| self.store_error(e))?;
        if rows.is_empty() {
            return Err(AppError::NotFound(format!(
                "no job `{job}`: `sluice jobs` lists them"
            )));
        }
        let (state, history) = sluice_engine::history::replay(
            rows.iter()
                .map(|r| (r.seq, r.at, r.version, r.body.as_str())),
        )
        .map_err(|e| AppError::Internal(format!("job {job}: {e}")))?;
        Ok(JobView {
            job: state,
            history,
            annotations: vec![],
            driver_gone: false,
            started: vec![],
        })
    }

    /// Step log lines of `job` after log id `after`.
    pub async fn logs(&self, job: &str, after: i64) -> Result<Vec<LogRow>, AppError> {
        self.journal
            .logs(job, after)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// A job's annotations, without bodies.
    pub async fn annotations(&self, job: &str) -> Result<Vec<AnnotationRow>, AppError> {
        self.journal
            .annotations(job)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// One annotation of `job`, or a usage error saying how to list them.
    pub async fn annotation(&self, job: &str, id: i64) -> Result<AnnotationRow, AppError> {
        self.journal
            .annotation(job, id)
            .await
            .map_err(|e| self.store_error(e))?
            .ok_or_else(|| {
                AppError::NotFound(format!(
                    "job {job} has no annotation {id}: `sluice annotations {job}` lists them"
                ))
            })
    }

    /// Streams annotation `row`'s body (a comment's text) into `out`.
    pub async fn copy_annotation(
        &self,
        row: &AnnotationRow,
        mut out: Box<dyn std::io::Write + Send>,
    ) -> Result<u64, AppError> {
        if row.kind == "comment" {
            let text = format!("{}\n", row.title);
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| AppError::Usage(format!("writing the comment out: {e}")))?;
            return Ok(text.len() as u64);
        }
        self.journal
            .copy_annotation(row.id, out)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// Annotation `row`'s body in memory (at most [`MAX_ANNOTATION_BYTES`]).
    pub async fn annotation_bytes(&self, row: &AnnotationRow) -> Result<Vec<u8>, AppError> {
        let buf = Arc::new(std::sync::Mutex::new(Vec::with_capacity(
            row.size.min(MAX_ANNOTATION_BYTES) as usize,
        )));
        self.copy_annotation(row, Box::new(Shared(buf.clone())))
            .await?;
        let out = std::mem::take(&mut *buf.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(out)
    }

    /// The workers running now.
    pub async fn workers(&self) -> Result<Vec<String>, AppError> {
        self.journal
            .workers(sluice_runner::now())
            .await
            .map_err(|e| self.store_error(e))
    }

    /// Every lock held or waited for.
    pub async fn locks(&self) -> Result<Vec<LockRow>, AppError> {
        self.journal.locks().await.map_err(|e| self.store_error(e))
    }

    /// A worker: drives everything due (queued jobs, due timers, detached decisions, jobs
    /// whose driver died) every `every` until `stop` resolves, telling the journal it runs (so
    /// other processes leave unblocked jobs to it) and that it stopped. `once` drives what is
    /// due one time and returns.
    pub async fn work(
        &self,
        observer: Arc<dyn Observer>,
        every: std::time::Duration,
        once: bool,
        stop: impl Future<Output = ()>,
    ) -> Result<(), AppError> {
        let runner = self.runner(observer)?.for_worker();
        let every_ms = every.as_millis() as u64;
        tokio::pin!(stop);
        let result = async {
            loop {
                // A continuous worker outlives what fails in a round (the database restarting,
                // one job that cannot be driven): it says so and looks again next round.
                match runner.work_once(every_ms).await {
                    Ok(round) => {
                        for (job, standing) in round {
                            match standing {
                                Ok(standing) => tracing::info!(job, ?standing, "drove"),
                                Err(e) if once => return Err(self.run_error(e)),
                                Err(e) => tracing::warn!(
                                    job,
                                    "could not drive the job, trying again next round: {}",
                                    self.run_error(e)
                                ),
                            }
                        }
                    }
                    Err(e) if once => return Err(self.run_error(e)),
                    Err(e) => tracing::warn!(
                        "the worker's round failed, trying again: {}",
                        self.run_error(e)
                    ),
                }
                if once {
                    return Ok(());
                }
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = self.journal.wait_for_work(every) => {}
                }
            }
        }
        .await;
        runner
            .worker_stopped()
            .await
            .map_err(|e| self.run_error(e))?;
        result
    }
}

/// A writer into a shared buffer (`copy_annotation` takes its writer by value).
struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl JobView {
    /// The job as `sluice show --json` prints it and the API serves it: its state, the gates
    /// it waits at, its annotations and its whole history.
    pub fn to_json(&self) -> Value {
        let job = &self.job;
        let (status, message) = sluice_runner::status_of(job);
        let history: Vec<Value> = self
            .history
            .iter()
            .map(|(e, at)| serde_json::json!({ "at": at, "event": e }))
            .collect();
        serde_json::json!({
            "id": job.id,
            "rule": job.rule.name,
            "status": status,
            "message": message,
            "driver_gone": self.driver_gone,
            "started_by": job.started_by,
            "triggered_by": job.cause,
            "started_jobs": self.started,
            "params": job.params,
            "locks": job.locks,
            "steps": job.steps,
            "waiting": job.waiting_gates(),
            "annotations": self.annotations,
            "history": history,
        })
    }
}

/// Which permission a decision needs: what is decided, and for an abort the kind of gate it
/// ends.
fn permission_for(view: &JobView, d: &Decision) -> Permission {
    match d.kind {
        DecisionKind::Approve | DecisionKind::Reject => Permission::Approve,
        DecisionKind::Resume => Permission::Resume,
        DecisionKind::Retry | DecisionKind::Skip | DecisionKind::Rollback => Permission::Trap,
        DecisionKind::SkipWindow => Permission::SkipWindow,
        DecisionKind::Abort => {
            let job = &view.job;
            let step = d
                .step
                .clone()
                .or_else(|| job.waiting_steps().first().map(|s| s.to_string()));
            match step.and_then(|s| job.steps.get(&s)?.gate.as_ref().map(|g| g.gate.kind)) {
                Some(GateKind::Trap) => Permission::Trap,
                Some(GateKind::Pause) => Permission::Resume,
                _ => Permission::Approve,
            }
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Opens a file to attach: a regular file (not a FIFO, a device or a directory, which could
/// block or never end) of at most [`MAX_ANNOTATION_BYTES`]. Opened without blocking, then
/// checked, so a path swapped for a FIFO cannot hang the call.
fn open_attachment(path: &Path) -> Result<(std::fs::File, u64), AppError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let cannot =
        |e: std::io::Error| AppError::Usage(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(AppError::Usage(format!(
            "{} is not a regular file: attach a file (save a stream's output to one first)",
            path.display()
        )));
    }
    if meta.len() > MAX_ANNOTATION_BYTES {
        return Err(AppError::Usage(format!(
            "{} is {} bytes; an annotation holds at most {} MiB: attach an excerpt, or keep the file elsewhere and annotate its location",
            path.display(),
            meta.len(),
            MAX_ANNOTATION_BYTES >> 20
        )));
    }
    Ok((file, meta.len()))
}
