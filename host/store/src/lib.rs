//! The journal: every job's events, append-only, plus the job index, step logs, locks, leases,
//! annotations and the programs ops started.
//!
//! [`Journal`] is the trait every other crate uses: async, typed, with no database type in its
//! shape, so a network database fits behind it. [`SqliteJournal`] is the embedded default: one
//! file (`$SLUICE_HOME/sluice.db`), WAL, `synchronous=FULL`, so an event is on disk before the
//! next action is taken; its calls run on tokio's blocking pool. Events are stored as JSON text
//! with a format version: this crate does not know their shape.
//!
//! Appends are guarded by the last sequence number the writer saw: a writer whose view is stale
//! (someone else appended, such as `sluice cancel` from another process) gets
//! [`StoreError::Conflict`], reloads and decides again. Nothing is kept only in memory.
//!
//! Who gets a lock next is plain code in [`locks`], tested on its own; a journal only loads the
//! lock table and writes the plan atomically. [`conformance`] is the test suite every journal
//! must pass.

use std::io::{Read, Write};

use serde::Serialize;
pub use sluice_model::{JobState, JobStatus, LogLevel, LogLine, LogSource};

pub mod conformance;
pub mod locks;
mod postgres;
mod sqlite;

pub use locks::{Acquired, Acquisition, GroupMode, LockAsk, LockRow};
pub use postgres::{Imported, MAX_BLOB as MAX_PG_BLOB, PgJournal, redact as redact_url};
pub use sqlite::SqliteJournal;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// The deepest nesting of arrays and objects an event may have: reading JSON back stops at 128,
/// and an event that cannot be read would leave its job unreadable for good.
pub const MAX_EVENT_NESTING: usize = 100;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (its own message).
    #[error("journal database: {0}")]
    Backend(String),
    /// The disk holding the journal is full.
    #[error("the journal cannot be written: no space left on its disk")]
    NoSpace,
    /// The journal (or its directory) cannot be written.
    #[error("the journal is read-only here: {0}")]
    ReadOnly(String),
    /// Someone else appended since this writer last read.
    #[error(
        "job {job} changed under this writer (expected event {expected}, found {found}); reload and retry"
    )]
    Conflict {
        /// The job.
        job: String,
        /// The last sequence the writer saw.
        expected: u64,
        /// The last sequence in the journal.
        found: u64,
    },
    /// No such job.
    #[error("no job `{0}`: `sluice jobs` lists them")]
    NoJob(String),
    /// A job with this id exists already.
    #[error("job `{0}` exists already")]
    Exists(String),
    /// A trigger's key started a job already.
    #[error("trigger `{key}` started job `{job}` already")]
    Triggered {
        /// The key.
        key: String,
        /// The job it started.
        job: String,
    },
    /// An event nests deeper than can be read back; it was not written.
    #[error(
        "job {job}: an event nests {depth} levels deep, more than the {MAX_EVENT_NESTING} the journal can read back; it was not written"
    )]
    TooDeep {
        /// The job.
        job: String,
        /// How deep it nests.
        depth: usize,
    },
    /// An annotation's body could not be read or written whole.
    #[error("{0}")]
    Body(String),
    /// The database directory could not be made.
    #[error("cannot create {path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// What failed.
        message: String,
    },
    /// A driver's lease was taken over (it was paused or cut off past its expiry): what it
    /// wanted to write is refused, and it must stop driving the job.
    #[error(
        "job {job}: the lease this driver ({holder}) took with epoch {epoch} was taken over; nothing was written and it stops driving the job"
    )]
    Fenced {
        /// The job.
        job: String,
        /// The driver.
        holder: String,
        /// The epoch it held.
        epoch: u64,
    },
    /// The journal was written by a newer sluice.
    #[error(
        "the journal's schema is version {found}, newer than the {supported} this sluice knows: use the sluice that wrote it, or a newer one"
    )]
    NewerSchema {
        /// Its version.
        found: u32,
        /// Ours.
        supported: u32,
    },
}

/// An event to store: its time, its format version and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// When it happened.
    pub at: Millis,
    /// The version of the event format the body is written in.
    pub version: u32,
    /// The event as JSON.
    pub body: String,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// 1, 2, 3... per job.
    pub seq: u64,
    /// When it was appended.
    pub at: Millis,
    /// The version of the event format the body is written in.
    pub version: u32,
    /// The event as JSON.
    pub body: String,
}

/// A job's row in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct JobRow {
    /// Its id.
    pub id: String,
    /// Its rule's name.
    pub rule: String,
    /// Where it stands.
    pub status: JobState,
    /// A sentence about the status.
    pub message: String,
    /// Who started it.
    pub started_by: String,
    /// When it was created.
    pub created_at: Millis,
    /// When it last changed.
    pub updated_at: Millis,
    /// The last event's sequence number.
    pub last_seq: u64,
}

/// Which jobs to list: by status and rule, newest first, a page at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobQuery {
    /// Only jobs in this status.
    pub status: Option<JobState>,
    /// Only jobs of this rule.
    pub rule: Option<String>,
    /// Skip this many of the newest matching jobs.
    pub offset: usize,
    /// At most this many.
    pub limit: usize,
}

impl JobQuery {
    /// The newest `limit` jobs, whatever their status and rule.
    pub fn newest(limit: usize) -> Self {
        JobQuery {
            status: None,
            rule: None,
            offset: 0,
            limit,
        }
    }
}

/// An API token as stored: never its secret, only a hash of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRow {
    /// Its public id (`tok_...`), for listing and revoking.
    pub id: String,
    /// The user it authenticates.
    pub user: String,
    /// Groups it adds to the user's groups in the permissions file.
    pub groups: Vec<String>,
    /// When it was made.
    pub created_at: Millis,
    /// Who made it.
    pub created_by: String,
    /// When it was revoked; a revoked token authenticates nobody.
    pub revoked_at: Option<Millis>,
}

/// One stored log line of a step attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LogRow {
    /// Increasing across the whole store: `logs --follow` continues after it.
    pub id: i64,
    /// The step key.
    pub step: String,
    /// The attempt.
    pub attempt: u32,
    /// When it was stored.
    pub at: Millis,
    /// Level, source and text.
    #[serde(flatten)]
    pub line: LogLine,
}

/// Log lines of one step attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLogs {
    /// The step key.
    pub step: String,
    /// The attempt.
    pub attempt: u32,
    /// The lines.
    pub lines: Vec<LogLine>,
}

/// What an append writes in one transaction (one fsync, not three).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Append {
    /// The events.
    pub events: Vec<NewEvent>,
    /// The job's new state and message.
    pub status: Option<(JobState, String)>,
    /// Sets the job's next timer (`Some(None)` clears it).
    pub wake_at: Option<Option<Millis>>,
    /// Log lines of a step attempt.
    pub logs: Option<StepLogs>,
    /// Messages the events cause (gate notifications), put in the outbox in the same
    /// transaction: an event is never recorded without its messages, nor a message without it.
    pub outbox: Vec<NewMessage>,
    /// The lease the writer drives the job under: the append is refused
    /// ([`StoreError::Fenced`]) unless that lease still runs under this epoch. A decision or
    /// a cancel from someone not driving the job has none.
    pub fence: Option<Fence>,
}

/// A driver's lease as it took it: the fencing token of its appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The driver.
    pub holder: String,
    /// The epoch [`Journal::lease`] answered (a job created under a lease starts at
    /// [`FIRST_EPOCH`]).
    pub epoch: u64,
}

/// The epoch of the lease a job is created under.
pub const FIRST_EPOCH: u64 = 1;

/// A message for a sink (a webhook), delivered at least once from the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The sink's name in the server's configuration.
    pub sink: String,
    /// What is posted (JSON).
    pub body: String,
}

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageRow {
    /// Its id, increasing.
    pub id: i64,
    /// The job whose event caused it.
    pub job: String,
    /// The sink's name.
    pub sink: String,
    /// What is posted.
    pub body: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When it was written.
    pub created_at: Millis,
    /// When it was delivered.
    pub delivered_at: Option<Millis>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Set when sluice stopped trying.
    pub gave_up: bool,
}

/// A new job's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Its id (from [`Journal::next_job_id`]).
    pub id: String,
    /// Its rule's name.
    pub rule: String,
    /// Where it stands.
    pub status: JobState,
    /// A sentence about the status.
    pub message: String,
    /// Who started it.
    pub started_by: String,
    /// When it was created.
    pub created_at: Millis,
    /// The lease its creator drives it under (holder, until), taken in the same transaction,
    /// so no worker picks up a job whose creator is about to drive it.
    pub lease: Option<(String, Millis)>,
    /// Messages its first events cause, written in the same transaction.
    pub outbox: Vec<NewMessage>,
    /// The trigger that starts it (its key, and the job whose end it follows): one job per
    /// key, refused with [`StoreError::Triggered`] after the first.
    pub trigger: Option<(String, String)>,
    /// When something is due without anyone acting (a job created waiting for its deploy
    /// window): [`Journal::due`] lists it from then.
    pub wake_at: Option<Millis>,
}

/// A request for the right to drive a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    /// Who asks (`host:pid:start`).
    pub holder: String,
    /// Now.
    pub now: Millis,
    /// Until when.
    pub until: Millis,
    /// Take it even from this holder (found dead).
    pub steal: Option<String>,
    /// Renews the lease taken with this epoch: refused unless the asker still holds it under
    /// that epoch (nobody took it over meanwhile, even after it ran out).
    pub renew: Option<u64>,
}

/// The answer to [`Journal::lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// The asker holds it until the time it asked for, under this epoch: the same epoch when
    /// it held it already, one more than the last when it takes it from nobody or another.
    Taken {
        /// The fencing token for [`Append::fence`].
        epoch: u64,
    },
    /// Another holder's lease runs (or, renewing, the lease was taken over: its holder, or
    /// empty when nobody holds it now).
    HeldBy(String),
}

/// A program an op started through `exec`, as recorded before it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChildRow {
    /// The step key.
    pub step: String,
    /// The attempt.
    pub attempt: u32,
    /// The host it runs on.
    pub host: String,
    /// Its process id, which is also its process group id.
    pub pid: u32,
    /// When it started, in clock ticks since boot (tells a reused pid apart).
    pub start_ticks: u64,
    /// The program.
    pub program: String,
    /// When it was recorded.
    pub at: Millis,
}

/// What [`Journal::annotate`] records besides the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAnnotation {
    /// When.
    pub at: Millis,
    /// Who.
    pub author: String,
    /// `comment`, `file` or `log`.
    pub kind: String,
    /// A comment's text, or a file's name.
    pub title: String,
}

/// An annotation of a job, without its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnnotationRow {
    /// Its id.
    pub id: i64,
    /// When.
    pub at: Millis,
    /// Who.
    pub author: String,
    /// `comment`, `file` or `log`.
    pub kind: String,
    /// A comment's text, or a file's name.
    pub title: String,
    /// Body size in bytes.
    pub size: u64,
}

/// The journal of every job. Every implementation passes [`conformance`].
#[async_trait::async_trait]
pub trait Journal: Send + Sync {
    /// A new job id for `rule`: `<rule>-<n>`, n counting from 1 per rule.
    async fn next_job_id(&self, rule: &str) -> Result<String, StoreError>;
    /// Creates the job with its first events; fails if the id exists.
    async fn create_job(&self, job: NewJob, events: Vec<NewEvent>) -> Result<u64, StoreError>;
    /// Appends if the job's last sequence is still `expected`, with its new status, timer and
    /// logs in the same transaction; returns the new last sequence.
    async fn append(&self, job: &str, expected: u64, append: Append) -> Result<u64, StoreError>;
    /// The job's events after sequence `after` (0 for all).
    async fn events(&self, job: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError>;
    /// The job's row.
    async fn job(&self, job: &str) -> Result<Option<JobRow>, StoreError>;
    /// Jobs matching `query`, newest first.
    async fn jobs(&self, query: &JobQuery) -> Result<Vec<JobRow>, StoreError>;
    /// How many jobs are in each status.
    async fn job_counts(&self) -> Result<Vec<(JobState, u64)>, StoreError>;
    /// Stores log lines of a step attempt.
    async fn add_logs(&self, job: &str, at: Millis, logs: StepLogs) -> Result<(), StoreError>;
    /// Log lines of a job after log id `after`.
    async fn logs(&self, job: &str, after: i64) -> Result<Vec<LogRow>, StoreError>;
    /// Takes all of `asks` at once for `job`, or queues it ([`locks::plan_acquire`]).
    async fn acquire(
        &self,
        job: &str,
        asks: Vec<LockAsk>,
        mode: GroupMode,
    ) -> Result<Acquisition, StoreError>;
    /// Gives back every lock of `job` (held or asked for); returns jobs still waiting, in line
    /// order, so the caller can try them, and marks those that were `queued` `ready` in the
    /// same transaction: a queued job is not polled, this is what wakes it.
    async fn release(&self, job: &str) -> Result<Vec<String>, StoreError>;
    /// Every lock held or waited for.
    async fn locks(&self) -> Result<Vec<LockRow>, StoreError>;
    /// Takes the right to drive `job`. Refused while another holder's lease runs, unless
    /// `steal` names that holder (found dead).
    async fn lease(&self, job: &str, request: LeaseRequest) -> Result<Lease, StoreError>;
    /// Gives the lease back if `holder` has it. With `if_last_seq`, only when the job's last
    /// event is still that one: when someone appended meanwhile (a decision that found the
    /// lease taken), the lease is kept and `false` returned, so the holder drives on and no
    /// decided job is left undriven.
    async fn unlease(
        &self,
        job: &str,
        holder: &str,
        if_last_seq: Option<u64>,
    ) -> Result<bool, StoreError>;
    /// The current lease holder of `job`, if any lease runs at `now`.
    async fn lease_holder(&self, job: &str, now: Millis) -> Result<Option<String>, StoreError>;
    /// Jobs a worker should drive at `now`: waiting ones whose timer is due, and ones decided,
    /// woken or under way (`ready`, `running`...), oldest first. Queued jobs are not: they
    /// are woken by [`Journal::release`].
    async fn due(&self, now: Millis) -> Result<Vec<String>, StoreError>;
    /// Takes the lease of the oldest due job (as [`Journal::due`]) whose lease is free or ran
    /// out, other than `skip`, for `holder` until `until`; returns it and the lease's epoch.
    /// Several workers claiming at once get different jobs, without waiting for each other.
    async fn claim(
        &self,
        now: Millis,
        holder: &str,
        until: Millis,
        skip: &[String],
    ) -> Result<Option<(String, u64)>, StoreError>;
    /// Waits up to `max` for a hint that there may be work (a job became ready, locks were
    /// given back): a shared journal tells other hosts at once; otherwise this only sleeps.
    /// A hint can be lost, so callers look anyway when it returns.
    async fn wait_for_work(&self, max: std::time::Duration) {
        tokio::time::sleep(max).await;
    }
    /// Attaches a note, file or log to a job; returns its id. The body is streamed from
    /// `body`, which must yield exactly `len` bytes (a source that shrinks or grows while it is
    /// read is refused, and nothing is stored).
    async fn annotate(
        &self,
        job: &str,
        note: NewAnnotation,
        body: Box<dyn Read + Send>,
        len: u64,
    ) -> Result<i64, StoreError>;
    /// A job's annotations (without their bodies).
    async fn annotations(&self, job: &str) -> Result<Vec<AnnotationRow>, StoreError>;
    /// One annotation of `job` (without its body).
    async fn annotation(&self, job: &str, id: i64) -> Result<Option<AnnotationRow>, StoreError>;
    /// Streams one annotation's body into `out`; returns the bytes written.
    async fn copy_annotation(&self, id: i64, out: Box<dyn Write + Send>)
    -> Result<u64, StoreError>;
    /// Records a program an op started for a step attempt.
    async fn add_child(&self, job: &str, child: ChildRow) -> Result<(), StoreError>;
    /// The programs recorded for a step of `job`, oldest first.
    async fn children(&self, job: &str, step: &str) -> Result<Vec<ChildRow>, StoreError>;
    /// A worker says it runs and looks for work every `every_ms` (or, with `every_ms` 0,
    /// that it stopped).
    async fn worker_seen(&self, holder: &str, now: Millis, every_ms: u64)
    -> Result<(), StoreError>;
    /// Workers that said they run and are not overdue at `now` (three of their intervals
    /// and a second).
    async fn workers(&self, now: Millis) -> Result<Vec<String>, StoreError>;
    /// Stores a new token under the hash of its secret; fails if the id or hash exists.
    async fn add_token(&self, hash: &str, token: TokenRow) -> Result<(), StoreError>;
    /// The token whose secret hashes to `hash`, unless it was revoked.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError>;
    /// Every token, revoked ones included, oldest first.
    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError>;
    /// Revokes token `id` at `at`; `false` when there is no such token not yet revoked.
    async fn revoke_token(&self, id: &str, at: Millis) -> Result<bool, StoreError>;
    /// Sets `user`'s password hash (a PHC string), replacing theirs if any.
    async fn set_password(&self, user: &str, phc: &str, at: Millis) -> Result<(), StoreError>;
    /// `user`'s password hash.
    async fn password(&self, user: &str) -> Result<Option<String>, StoreError>;
    /// Removes `user`'s password; `false` when they had none.
    async fn remove_password(&self, user: &str) -> Result<bool, StoreError>;
    /// Claims up to `limit` undelivered messages due at `now` for `holder` until `until`
    /// (another claimer skips them meanwhile), oldest first: those for sluice itself (sinks
    /// `sluice:...`) when `internal`, the others otherwise. Messages of one job to one sink go
    /// in order: one is claimable only when every earlier one of that job and sink was
    /// delivered or given up.
    async fn claim_messages(
        &self,
        now: Millis,
        holder: &str,
        until: Millis,
        limit: usize,
        internal: bool,
    ) -> Result<Vec<MessageRow>, StoreError>;
    /// Records a delivery of message `id`.
    async fn message_delivered(&self, id: i64, at: Millis) -> Result<(), StoreError>;
    /// Records a failed attempt of message `id`: tried again from `retry_at`, or never again
    /// with `None`.
    async fn message_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<Millis>,
    ) -> Result<(), StoreError>;
    /// The messages `job`'s events caused, oldest first.
    async fn messages(&self, job: &str) -> Result<Vec<MessageRow>, StoreError>;
    /// How many messages wait for delivery (not delivered, not given up).
    async fn outbox_backlog(&self) -> Result<u64, StoreError>;
    /// The job a trigger's key started, if any.
    async fn triggered(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// The jobs that `job`'s end started through triggers, oldest first.
    async fn started_by_job(&self, job: &str) -> Result<Vec<String>, StoreError>;
    /// `room` of `backend` follows `job`, told up to event `posted` (a follow that exists
    /// keeps its place unless `posted` is past it).
    async fn chat_follow(
        &self,
        backend: &str,
        room: &str,
        job: &str,
        posted: u64,
    ) -> Result<(), StoreError>;
    /// `room` no longer follows `job`; false when it did not.
    async fn chat_unfollow(&self, backend: &str, room: &str, job: &str)
    -> Result<bool, StoreError>;
    /// The jobs `room` follows, with the last event it was told.
    async fn chat_following(
        &self,
        backend: &str,
        room: &str,
    ) -> Result<Vec<(String, u64)>, StoreError>;
    /// Every follow of `backend`: room, job, last event told; oldest first.
    async fn chat_follows(&self, backend: &str) -> Result<Vec<(String, String, u64)>, StoreError>;
    /// Records a chat delivery's key; true the first time it is seen.
    async fn chat_seen(&self, key: &str, at: Millis) -> Result<bool, StoreError>;
    /// Forgets a chat delivery's key: it was seen but not recorded, and its retry must be.
    async fn chat_unsee(&self, key: &str) -> Result<(), StoreError>;
    /// The greatest trigger key that starts with `prefix` (a schedule's latest run, whose
    /// keys end with the run's time), if any.
    async fn last_trigger(&self, prefix: &str) -> Result<Option<String>, StoreError>;
}

/// A stored log level (as [`LogLevel::as_str`] wrote it); anything else reads as info.
pub(crate) fn parse_level(s: &str) -> LogLevel {
    match s {
        "trace" => LogLevel::Trace,
        "debug" => LogLevel::Debug,
        "warn" => LogLevel::Warn,
        "error" => LogLevel::Error,
        _ => LogLevel::Info,
    }
}

/// A stored log source (as [`LogSource::as_str`] wrote it); anything else reads as the op.
pub(crate) fn parse_source(s: &str) -> LogSource {
    match s {
        "stdout" => LogSource::Stdout,
        "stderr" => LogSource::Stderr,
        "host" => LogSource::Host,
        _ => LogSource::Op,
    }
}

/// How deeply `json` nests arrays and objects (text inside strings does not count).
pub fn json_nesting(json: &str) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for b in json.bytes() {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Refuses events that could not be read back; every journal calls this before writing.
pub fn check_nesting(job: &str, events: &[NewEvent]) -> Result<(), StoreError> {
    for e in events {
        let depth = json_nesting(&e.body);
        if depth > MAX_EVENT_NESTING {
            return Err(StoreError::TooDeep {
                job: job.to_string(),
                depth,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_skips_text_in_strings() {
        assert_eq!(json_nesting(r#"{"a":"[[[[","b":[1,{"c":"\\\"{"}]}"#), 3);
        assert_eq!(json_nesting("12"), 0);
    }
}
