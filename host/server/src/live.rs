//! What the jobs this process drives report, for watchers: every recorded event and log line
//! wakes the log streams of that job. Jobs driven by other processes (a command-line decision,
//! another server) are seen by the streams' periodic re-read of the journal.

use std::sync::Mutex;

use sluice_app::{Event, Job, LogLine, Millis, Observer};
use tokio::sync::{broadcast, oneshot};

/// The server's observer: a broadcast of "job X changed".
pub(crate) struct Live {
    changed: broadcast::Sender<String>,
}

impl Live {
    pub(crate) fn new() -> Self {
        Live {
            changed: broadcast::channel(1024).0,
        }
    }

    /// Wakes when any job this process drives changes.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changed.subscribe()
    }
}

impl Observer for Live {
    fn event(&self, job: &Job, _event: &Event, _at: Millis) {
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
