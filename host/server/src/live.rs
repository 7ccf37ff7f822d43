//! What the jobs this process drives report, for watchers: every recorded event and log line
//! wakes the log streams of that job. Jobs driven by other processes (a command-line decision,
//! another server) are seen by the streams' periodic re-read of the journal.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sluice_app::{Event, Job, LogLine, Millis, Observer};
use tokio::sync::{broadcast, oneshot};

/// The server's observer: a broadcast of "job X changed", and the op-call and gate-wait
/// metrics.
pub(crate) struct Live {
    changed: broadcast::Sender<String>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// When each step attempt this process runs started: (job, step, attempt).
    attempts: Mutex<HashMap<(String, String, u32), Millis>>,
}

impl Live {
    pub(crate) fn new(metrics: std::sync::Arc<crate::metrics::Metrics>) -> Self {
        Live {
            changed: broadcast::channel(1024).0,
            metrics,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// Wakes when any job this process drives changes.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changed.subscribe()
    }
}

impl Observer for Live {
    fn event(&self, job: &Job, event: &Event, at: Millis) {
        let took = |since: Millis| Duration::from_millis(at.saturating_sub(since));
        match event {
            Event::StepStarted { step, attempt, .. } => {
                let mut a = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
                // Attempts interrupted by a crash never finish here: keep the map bounded.
                if a.len() > 10_000 {
                    a.clear();
                }
                a.insert((job.id.clone(), step.clone(), *attempt), at);
            }
            Event::StepFinished { step, attempt, .. } => {
                let started = self
                    .attempts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&(job.id.clone(), step.clone(), *attempt));
                if let Some(t) = started {
                    self.metrics.op_calls.observe(took(t));
                }
            }
            Event::Decided { step, .. } => {
                // Counted once, by the decision that closed the gate (not each approval of a
                // quorum).
                if let Some(g) = job.steps.get(step).and_then(|s| s.gate.as_ref())
                    && g.decision.is_some()
                {
                    self.metrics.gate_waits.observe(took(g.opened_at));
                }
            }
            _ => {}
        }
        let _ = self.changed.send(job.id.clone());
    }

    fn logs(&self, job: &str, _step: &str, _lines: &[LogLine]) {
        let _ = self.changed.send(job.to_string());
    }

    fn note(&self, text: &str) {
        tracing::info!("{text}");
    }
}

/// The observer of one start over HTTP: tells the request the job's id once the job is in the
/// journal (its check passed), and passes everything on to [`Live`].
pub(crate) struct StartWatch {
    pub(crate) created: Mutex<Option<oneshot::Sender<String>>>,
    pub(crate) live: std::sync::Arc<Live>,
}

impl Observer for StartWatch {
    fn event(&self, job: &Job, event: &Event, at: Millis) {
        self.live.event(job, event, at);
    }

    fn logs(&self, job: &str, step: &str, lines: &[LogLine]) {
        self.live.logs(job, step, lines);
    }

    fn note(&self, text: &str) {
        self.live.note(text);
    }

    fn created(&self, job: &str) {
        let sender = self
            .created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(s) = sender {
            let _ = s.send(job.to_string());
        }
    }
}
