//! The journal: every job's events, append-only, plus the job index, step logs and locks.
//!
//! [`Journal`] is the trait the runner uses; [`SqliteJournal`] is the embedded default: one
//! file (`$SLUICE_HOME/sluice.db`), WAL, `synchronous=FULL`, so an event is on disk before the
//! next action is taken. Events are stored as JSON text: this crate does not know their shape.
//!
//! Appends are guarded by the last sequence number the writer saw: a writer whose view is stale
//! (someone else appended, such as `sluice cancel` from another process) gets
//! [`StoreError::Conflict`], reloads and decides again. Nothing is kept only in memory.
//!
//! Locks: a job asks for all its locks at once; it gets them when no other job holds a
//! conflicting one and no job that asked earlier waits for a conflicting one (first come, first
//! served). Exclusive conflicts with everything; shared with exclusive only.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("journal database: {0}")]
    Sqlite(rusqlite::Error),
    /// The disk holding the journal is full.
    #[error("the journal cannot be written: no space left on its disk")]
    NoSpace,
    /// The journal (or its directory) cannot be written.
    #[error("the journal is read-only here: {0}")]
    ReadOnly(rusqlite::Error),
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
    #[error("cannot create {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        match e.sqlite_error_code() {
            Some(DiskFull) => StoreError::NoSpace,
            Some(ReadOnly) => StoreError::ReadOnly(e),
            _ => StoreError::Sqlite(e),
        }
    }
}

/// The deepest nesting of arrays and objects an event may have: reading JSON back stops at 128,
/// and an event that cannot be read would leave its job unreadable for good.
pub const MAX_EVENT_NESTING: usize = 100;

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

fn check_nesting(job: &str, events: &[(Millis, String)]) -> Result<(), StoreError> {
    for (_, body) in events {
        let depth = json_nesting(body);
        if depth > MAX_EVENT_NESTING {
            return Err(StoreError::TooDeep {
                job: job.to_string(),
                depth,
            });
        }
    }
    Ok(())
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// 1, 2, 3... per job.
    pub seq: u64,
    /// When it was appended.
    pub at: Millis,
    /// The event as JSON.
    pub body: String,
}

/// A job's row in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRow {
    /// Its id.
    pub id: String,
    /// Its rule's name.
    pub rule: String,
    /// `queued`, `running`, or how it ended.
    pub status: String,
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

/// One stored log line of a step attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogRow {
    /// Increasing across the whole store: `logs --follow` continues after it.
    pub id: i64,
    /// The step key.
    pub step: String,
    /// The attempt.
    pub attempt: u32,
    /// When it was stored.
    pub at: Millis,
    /// Level name.
    pub level: String,
    /// `op`, `stdout`, `stderr` or `host`.
    pub source: String,
    /// The text.
    pub message: String,
}

/// A lock a job asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockAsk {
    /// The name (`group:NAME` for a concurrency group).
    pub name: String,
    /// Exclusive or shared.
    pub exclusive: bool,
}

/// What a busy concurrency group does to a new job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupMode {
    /// Wait in line.
    Queue,
    /// Do not run.
    Reject,
    /// Cancel jobs waiting in the group, then wait.
    CancelPending,
}

/// The answer to [`Journal::acquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// Held now.
    Held,
    /// Waiting behind these jobs.
    Queued {
        /// Holders or earlier waiters of conflicting locks.
        behind: Vec<String>,
    },
    /// The concurrency group is busy and the rule says reject.
    Rejected {
        /// The jobs in the group.
        by: Vec<String>,
    },
}

/// A row of `sluice locks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockRow {
    /// Lock name.
    pub name: String,
    /// The job.
    pub job: String,
    /// Exclusive or shared.
    pub exclusive: bool,
    /// Held, or waiting.
    pub held: bool,
    /// Place in line (lower is earlier).
    pub ticket: i64,
}

/// The journal of every job, behind a trait so that other stores (PostgreSQL) can follow.
pub trait Journal: Send + Sync {
    /// A new job id for `rule`: `<rule>-<n>`, n counting from 1 per rule.
    fn next_job_id(&self, rule: &str) -> Result<String, StoreError>;
    /// Creates the job with its first events; fails if the id exists.
    fn create_job(&self, job: &JobRow, events: &[(Millis, String)]) -> Result<u64, StoreError>;
    /// Appends events if the job's last sequence is still `expected`; updates its status.
    fn append(
        &self,
        job: &str,
        expected: u64,
        events: &[(Millis, String)],
        status: Option<(&str, &str)>,
        extra: &Extra<'_>,
    ) -> Result<u64, StoreError>;
    /// The job's events after sequence `after` (0 for all).
    fn events(&self, job: &str, after: u64) -> Result<Vec<Recorded>, StoreError>;
    /// The job's row.
    fn job(&self, job: &str) -> Result<Option<JobRow>, StoreError>;
    /// The newest jobs first, at most `limit`.
    fn jobs(&self, limit: usize) -> Result<Vec<JobRow>, StoreError>;
    /// Stores log lines of a step attempt.
    fn add_logs(
        &self,
        job: &str,
        step: &str,
        attempt: u32,
        at: Millis,
        lines: &[(String, String, String)],
    ) -> Result<(), StoreError>;
    /// Log lines of a job after log id `after`.
    fn logs(&self, job: &str, after: i64) -> Result<Vec<LogRow>, StoreError>;
    /// Takes all of `asks` at once for `job`, or queues it. With `CancelPending`, the jobs it
    /// pushes out of the group's line are returned in `cancelled`.
    fn acquire(
        &self,
        job: &str,
        asks: &[LockAsk],
        mode: GroupMode,
    ) -> Result<(Acquired, Vec<String>), StoreError>;
    /// Gives back every lock of `job` (held or asked for); returns jobs still waiting, in line
    /// order, so the caller can try them.
    fn release(&self, job: &str) -> Result<Vec<String>, StoreError>;
    /// Every lock held or waited for.
    fn locks(&self) -> Result<Vec<LockRow>, StoreError>;
    /// Takes the right to drive `job` until `until` for `holder`. Refused (with the current
    /// holder) while another holder's lease runs, unless `steal` names that holder (found dead).
    fn lease(
        &self,
        job: &str,
        holder: &str,
        now: Millis,
        until: Millis,
        steal: Option<&str>,
    ) -> Result<Result<(), String>, StoreError>;
    /// Gives the lease back if `holder` has it. With `if_last_seq`, only when the job's last
    /// event is still that one: when someone appended meanwhile (a decision that found the
    /// lease taken), the lease is kept and `false` returned, so the holder drives on and no
    /// decided job is left undriven.
    fn unlease(
        &self,
        job: &str,
        holder: &str,
        if_last_seq: Option<u64>,
    ) -> Result<bool, StoreError>;
    /// The current lease holder of `job`, if any lease runs at `now`.
    fn lease_holder(&self, job: &str, now: Millis) -> Result<Option<String>, StoreError>;
    /// Jobs a worker should drive at `now`: queued ones, waiting ones whose timer is due, and
    /// ones decided but not driven (`ready`), oldest first.
    fn due(&self, now: Millis) -> Result<Vec<String>, StoreError>;
    /// Attaches a note, file or log to a job; returns its id. The body is streamed from
    /// `body`, which must yield exactly `len` bytes (a source that shrinks or grows while it is
    /// read is refused, and nothing is stored).
    fn annotate(
        &self,
        job: &str,
        note: &NewAnnotation<'_>,
        body: &mut dyn std::io::Read,
        len: u64,
    ) -> Result<i64, StoreError>;
    /// A job's annotations (without their bodies): id, time, author, kind, title, size.
    fn annotations(&self, job: &str) -> Result<Vec<AnnotationRow>, StoreError>;
    /// One annotation of `job` (without its body).
    fn annotation(&self, job: &str, id: i64) -> Result<Option<AnnotationRow>, StoreError>;
    /// Streams one annotation's body into `out`; returns the bytes written.
    fn copy_annotation(&self, id: i64, out: &mut dyn std::io::Write) -> Result<u64, StoreError>;
    /// Records a program an op started for a step attempt, before it does any work.
    fn add_child(&self, job: &str, child: &ChildRow) -> Result<(), StoreError>;
    /// The programs recorded for a step of `job`, oldest first.
    fn children(&self, job: &str, step: &str) -> Result<Vec<ChildRow>, StoreError>;
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
#[derive(Debug, Clone, Copy)]
pub struct NewAnnotation<'a> {
    /// When.
    pub at: Millis,
    /// Who.
    pub author: &'a str,
    /// `comment`, `file` or `log`.
    pub kind: &'a str,
    /// A comment's text, or a file's name.
    pub title: &'a str,
}

/// Log lines of one step attempt: step, attempt, and (level, source, message) rows.
pub type StepLogs<'a> = (&'a str, u32, &'a [(String, String, String)]);

/// What else an append writes in the same transaction (one fsync, not three).
#[derive(Debug, Default, Clone, Copy)]
pub struct Extra<'a> {
    /// Sets the job's next timer.
    pub wake_at: Option<Option<Millis>>,
    /// Log lines of a step attempt: step, attempt, (level, source, message).
    pub logs: Option<StepLogs<'a>>,
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

/// The embedded journal: one SQLite file.
pub struct SqliteJournal {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS counters (rule TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    started_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    wake_at INTEGER,
    lease_holder TEXT,
    lease_until INTEGER
);
CREATE TABLE IF NOT EXISTS annotations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    author TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    step TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at INTEGER NOT NULL,
    level TEXT NOT NULL,
    source TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_job ON logs (job_id, id);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (status, wake_at);
CREATE TABLE IF NOT EXISTS children (
    job_id TEXT NOT NULL,
    step TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    start_ticks INTEGER NOT NULL,
    program TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS children_by_step ON children (job_id, step);
CREATE TABLE IF NOT EXISTS lock_line (
    ticket INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS lock_asks (
    job_id TEXT NOT NULL,
    name TEXT NOT NULL,
    exclusive INTEGER NOT NULL,
    held INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, name)
);
";

impl SqliteJournal {
    /// Opens (creating if needed) the journal at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteJournal {
            conn: Mutex::new(conn),
        })
    }

    /// Opens the journal at `path` for reading only: nothing is created or changed, so `jobs`,
    /// `show` and `logs` work in a read-only `$SLUICE_HOME`. A journal that does not exist
    /// reads as empty.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        use rusqlite::OpenFlags;
        if !path.exists() {
            let conn = Connection::open_in_memory()?;
            conn.execute_batch(SCHEMA)?;
            return Ok(SqliteJournal {
                conn: Mutex::new(conn),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let usable = |conn: &Connection| {
            conn.query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get::<_, i64>(0))
                .is_ok()
        };
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        if usable(&conn) {
            return Ok(SqliteJournal {
                conn: Mutex::new(conn),
            });
        }
        // A WAL journal needs its `-shm` file, which cannot be made in a read-only directory:
        // read the file as it is, without locks (nobody can write there either).
        let conn = Connection::open_with_flags(format!("{}?immutable=1", file_uri(path)), flags)?;
        conn.query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get::<_, i64>(0))?;
        Ok(SqliteJournal {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `path` as an SQLite `file:` URI (absolute, with URI-special characters escaped).
fn file_uri(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = String::from("file:");
    for b in abs.as_os_str().as_encoded_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                out.push(*b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        rule: r.get(1)?,
        status: r.get(2)?,
        message: r.get(3)?,
        started_by: r.get(4)?,
        created_at: r.get::<_, i64>(5)? as u64,
        updated_at: r.get::<_, i64>(6)? as u64,
        last_seq: r.get::<_, i64>(7)? as u64,
    })
}

const JOB_COLUMNS: &str = "id, rule, status, message, started_by, created_at, updated_at, last_seq";

impl Journal for SqliteJournal {
    fn next_job_id(&self, rule: &str) -> Result<String, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n: i64 = tx
            .query_row("SELECT next FROM counters WHERE rule = ?1", [rule], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(1);
        tx.execute(
            "INSERT INTO counters (rule, next) VALUES (?1, ?2) ON CONFLICT(rule) DO UPDATE SET next = ?2",
            params![rule, n + 1],
        )?;
        tx.commit()?;
        Ok(format!("{rule}-{n}"))
    }

    fn create_job(&self, job: &JobRow, events: &[(Millis, String)]) -> Result<u64, StoreError> {
        check_nesting(&job.id, events)?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO jobs (id, rule, status, message, started_by, created_at, updated_at, last_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 0)",
            params![job.id, job.rule, job.status, job.message, job.started_by, job.created_at as i64],
        )?;
        let last = insert_events(&tx, &job.id, 0, events)?;
        tx.execute(
            "UPDATE jobs SET last_seq = ?2 WHERE id = ?1",
            params![job.id, last as i64],
        )?;
        tx.commit()?;
        Ok(last)
    }

    fn append(
        &self,
        job: &str,
        expected: u64,
        events: &[(Millis, String)],
        status: Option<(&str, &str)>,
        extra: &Extra<'_>,
    ) -> Result<u64, StoreError> {
        check_nesting(job, events)?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found: i64 = tx
            .query_row("SELECT last_seq FROM jobs WHERE id = ?1", [job], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or_else(|| StoreError::NoJob(job.to_string()))?;
        if found as u64 != expected {
            return Err(StoreError::Conflict {
                job: job.to_string(),
                expected,
                found: found as u64,
            });
        }
        let last = insert_events(&tx, job, expected, events)?;
        let now = events.last().map(|(at, _)| *at as i64).unwrap_or(0);
        match status {
            Some((s, m)) => tx.execute(
                "UPDATE jobs SET last_seq = ?2, status = ?3, message = ?4, updated_at = ?5 WHERE id = ?1",
                params![job, last as i64, s, m, now],
            )?,
            None => tx.execute(
                "UPDATE jobs SET last_seq = ?2, updated_at = ?3 WHERE id = ?1",
                params![job, last as i64, now],
            )?,
        };
        if let Some(wake) = extra.wake_at {
            tx.execute(
                "UPDATE jobs SET wake_at = ?2 WHERE id = ?1",
                params![job, wake.map(|w| w as i64)],
            )?;
        }
        if let Some((step, attempt, lines)) = extra.logs {
            let mut st = tx.prepare_cached(
                "INSERT INTO logs (job_id, step, attempt, at, level, source, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (level, source, message) in lines {
                st.execute(params![job, step, attempt, now, level, source, message])?;
            }
        }
        tx.commit()?;
        Ok(last)
    }

    fn events(&self, job: &str, after: u64) -> Result<Vec<Recorded>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT seq, at, body FROM events WHERE job_id = ?1 AND seq > ?2 ORDER BY seq",
        )?;
        let rows = st.query_map(params![job, after as i64], |r| {
            Ok(Recorded {
                seq: r.get::<_, i64>(0)? as u64,
                at: r.get::<_, i64>(1)? as u64,
                body: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn job(&self, job: &str) -> Result<Option<JobRow>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [job],
                job_row,
            )
            .optional()?)
    }

    fn jobs(&self, limit: usize) -> Result<Vec<JobRow>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?1"
        ))?;
        let rows = st.query_map([limit as i64], job_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn add_logs(
        &self,
        job: &str,
        step: &str,
        attempt: u32,
        at: Millis,
        lines: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO logs (job_id, step, attempt, at, level, source, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (level, source, message) in lines {
                st.execute(params![
                    job, step, attempt, at as i64, level, source, message
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn logs(&self, job: &str, after: i64) -> Result<Vec<LogRow>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT id, step, attempt, at, level, source, message FROM logs WHERE job_id = ?1 AND id > ?2 ORDER BY id",
        )?;
        let rows = st.query_map(params![job, after], |r| {
            Ok(LogRow {
                id: r.get(0)?,
                step: r.get(1)?,
                attempt: r.get(2)?,
                at: r.get::<_, i64>(3)? as u64,
                level: r.get(4)?,
                source: r.get(5)?,
                message: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn acquire(
        &self,
        job: &str,
        asks: &[LockAsk],
        mode: GroupMode,
    ) -> Result<(Acquired, Vec<String>), StoreError> {
        if asks.is_empty() {
            return Ok((Acquired::Held, vec![]));
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut cancelled = Vec::new();

        // Already held (a second call after a crash): nothing to do.
        let held: i64 = tx.query_row(
            "SELECT COUNT(*) FROM lock_asks WHERE job_id = ?1 AND held = 1",
            [job],
            |r| r.get(0),
        )?;
        if held > 0 {
            return Ok((Acquired::Held, vec![]));
        }

        for ask in asks.iter().filter(|a| a.name.starts_with("group:")) {
            let others: Vec<(String, bool)> = {
                let mut st = tx.prepare(
                    "SELECT a.job_id, a.held FROM lock_asks a JOIN lock_line l ON l.job_id = a.job_id
                     WHERE a.name = ?1 AND a.job_id != ?2 ORDER BY l.ticket",
                )?;
                st.query_map(params![ask.name, job], |r| {
                    Ok((r.get(0)?, r.get::<_, i64>(1)? == 1))
                })?
                .collect::<Result<_, _>>()?
            };
            match mode {
                GroupMode::Reject if !others.is_empty() => {
                    let by = others.into_iter().map(|(j, _)| j).collect();
                    return Ok((Acquired::Rejected { by }, vec![]));
                }
                GroupMode::CancelPending => {
                    for (other, is_held) in others {
                        if !is_held {
                            tx.execute("DELETE FROM lock_asks WHERE job_id = ?1", [&other])?;
                            tx.execute("DELETE FROM lock_line WHERE job_id = ?1", [&other])?;
                            cancelled.push(other);
                        }
                    }
                }
                _ => {}
            }
        }

        tx.execute(
            "INSERT OR IGNORE INTO lock_line (job_id) VALUES (?1)",
            [job],
        )?;
        let ticket: i64 = tx.query_row(
            "SELECT ticket FROM lock_line WHERE job_id = ?1",
            [job],
            |r| r.get(0),
        )?;
        for ask in asks {
            tx.execute(
                "INSERT OR IGNORE INTO lock_asks (job_id, name, exclusive, held) VALUES (?1, ?2, ?3, 0)",
                params![job, ask.name, ask.exclusive as i64],
            )?;
        }

        let mut behind = Vec::new();
        for ask in asks {
            let mut st = tx.prepare(
                "SELECT a.job_id FROM lock_asks a JOIN lock_line l ON l.job_id = a.job_id
                 WHERE a.name = ?1 AND a.job_id != ?2 AND (a.exclusive = 1 OR ?3 = 1)
                   AND (a.held = 1 OR l.ticket < ?4)
                 ORDER BY l.ticket",
            )?;
            let rows = st.query_map(params![ask.name, job, ask.exclusive as i64, ticket], |r| {
                r.get::<_, String>(0)
            })?;
            for r in rows {
                let r = r?;
                if !behind.contains(&r) {
                    behind.push(r);
                }
            }
        }
        let result = if behind.is_empty() {
            tx.execute("UPDATE lock_asks SET held = 1 WHERE job_id = ?1", [job])?;
            Acquired::Held
        } else {
            Acquired::Queued { behind }
        };
        tx.commit()?;
        Ok((result, cancelled))
    }

    fn release(&self, job: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM lock_asks WHERE job_id = ?1", [job])?;
        tx.execute("DELETE FROM lock_line WHERE job_id = ?1", [job])?;
        let waiting: Vec<String> = {
            let mut st = tx.prepare(
                "SELECT DISTINCT l.job_id, l.ticket FROM lock_line l JOIN lock_asks a ON a.job_id = l.job_id
                 WHERE a.held = 0 ORDER BY l.ticket",
            )?;
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()?
        };
        tx.commit()?;
        Ok(waiting)
    }

    fn lease(
        &self,
        job: &str,
        holder: &str,
        now: Millis,
        until: Millis,
        steal: Option<&str>,
    ) -> Result<Result<(), String>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<(Option<String>, Option<i64>)> = tx
            .query_row(
                "SELECT lease_holder, lease_until FROM jobs WHERE id = ?1",
                [job],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((current, current_until)) = current else {
            return Err(StoreError::NoJob(job.to_string()));
        };
        let free = match (&current, current_until) {
            (None, _) => true,
            (Some(h), _) if h == holder => true,
            (Some(h), _) if Some(h.as_str()) == steal => true,
            (Some(_), Some(u)) => (u as u64) < now,
            (Some(_), None) => true,
        };
        if !free {
            return Ok(Err(current.unwrap_or_default()));
        }
        tx.execute(
            "UPDATE jobs SET lease_holder = ?2, lease_until = ?3 WHERE id = ?1",
            params![job, holder, until as i64],
        )?;
        tx.commit()?;
        Ok(Ok(()))
    }

    fn unlease(
        &self,
        job: &str,
        holder: &str,
        if_last_seq: Option<u64>,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        let n = match if_last_seq {
            None => conn.execute(
                "UPDATE jobs SET lease_holder = NULL, lease_until = NULL WHERE id = ?1 AND lease_holder = ?2",
                params![job, holder],
            )?,
            Some(seq) => conn.execute(
                "UPDATE jobs SET lease_holder = NULL, lease_until = NULL WHERE id = ?1 AND lease_holder = ?2 AND last_seq = ?3",
                params![job, holder, seq as i64],
            )?,
        };
        if n == 1 || if_last_seq.is_none() {
            return Ok(true);
        }
        // Not released: either the job moved on (keep driving), or the lease was not ours.
        let ours: bool = conn
            .query_row(
                "SELECT lease_holder = ?2 FROM jobs WHERE id = ?1",
                params![job, holder],
                |r| r.get::<_, Option<bool>>(0),
            )
            .optional()?
            .flatten()
            .unwrap_or(false);
        Ok(!ours)
    }

    fn lease_holder(&self, job: &str, now: Millis) -> Result<Option<String>, StoreError> {
        let row: Option<(Option<String>, Option<i64>)> = self
            .conn()
            .query_row(
                "SELECT lease_holder, lease_until FROM jobs WHERE id = ?1",
                [job],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(match row {
            Some((Some(h), Some(u))) if u as u64 >= now => Some(h),
            _ => None,
        })
    }

    fn due(&self, now: Millis) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT id FROM (
                SELECT id, created_at, rowid AS r FROM jobs WHERE status IN ('queued', 'ready', 'running', 'cancelling', 'rolling-back')
                UNION ALL
                SELECT id, created_at, rowid AS r FROM jobs WHERE status = 'waiting' AND wake_at <= ?1
             ) ORDER BY created_at, r",
        )?;
        let rows = st.query_map([now as i64], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn annotate(
        &self,
        job: &str,
        note: &NewAnnotation<'_>,
        body: &mut dyn std::io::Read,
        len: u64,
    ) -> Result<i64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO annotations (job_id, at, author, kind, title, body) VALUES (?1, ?2, ?3, ?4, ?5, zeroblob(?6))",
            params![job, note.at as i64, note.author, note.kind, note.title, len as i64],
        )?;
        let id = tx.last_insert_rowid();
        if len > 0 {
            let mut blob = tx.blob_open(rusqlite::MAIN_DB, "annotations", "body", id, false)?;
            let copied = std::io::copy(&mut std::io::Read::take(&mut *body, len), &mut blob)
                .map_err(|e| StoreError::Body(format!("reading the annotation's body: {e}")))?;
            if copied != len {
                return Err(StoreError::Body(format!(
                    "the annotation's source shrank while it was read ({copied} of {len} bytes)"
                )));
            }
        }
        let mut probe = [0u8; 1];
        if body
            .read(&mut probe)
            .map_err(|e| StoreError::Body(format!("reading the annotation's body: {e}")))?
            > 0
        {
            return Err(StoreError::Body(format!(
                "the annotation's source grew past {len} bytes while it was read"
            )));
        }
        tx.commit()?;
        Ok(id)
    }

    fn annotations(&self, job: &str) -> Result<Vec<AnnotationRow>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT id, at, author, kind, title, length(body) FROM annotations WHERE job_id = ?1 ORDER BY id",
        )?;
        let rows = st.query_map([job], annotation_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn annotation(&self, job: &str, id: i64) -> Result<Option<AnnotationRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, at, author, kind, title, length(body) FROM annotations WHERE job_id = ?1 AND id = ?2",
                params![job, id],
                annotation_row,
            )
            .optional()?)
    }

    fn copy_annotation(&self, id: i64, out: &mut dyn std::io::Write) -> Result<u64, StoreError> {
        let conn = self.conn();
        let mut blob = conn.blob_open(rusqlite::MAIN_DB, "annotations", "body", id, true)?;
        std::io::copy(&mut blob, out)
            .map_err(|e| StoreError::Body(format!("writing the annotation out: {e}")))
    }

    fn add_child(&self, job: &str, c: &ChildRow) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO children (job_id, step, attempt, host, pid, start_ticks, program, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                job,
                c.step,
                c.attempt,
                c.host,
                c.pid,
                c.start_ticks as i64,
                c.program,
                c.at as i64
            ],
        )?;
        Ok(())
    }

    fn children(&self, job: &str, step: &str) -> Result<Vec<ChildRow>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT step, attempt, host, pid, start_ticks, program, at FROM children WHERE job_id = ?1 AND step = ?2 ORDER BY rowid",
        )?;
        let rows = st.query_map(params![job, step], |r| {
            Ok(ChildRow {
                step: r.get(0)?,
                attempt: r.get(1)?,
                host: r.get(2)?,
                pid: r.get(3)?,
                start_ticks: r.get::<_, i64>(4)? as u64,
                program: r.get(5)?,
                at: r.get::<_, i64>(6)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn locks(&self) -> Result<Vec<LockRow>, StoreError> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT a.name, a.job_id, a.exclusive, a.held, l.ticket FROM lock_asks a JOIN lock_line l ON l.job_id = a.job_id
             ORDER BY a.name, a.held DESC, l.ticket",
        )?;
        let rows = st.query_map([], |r| {
            Ok(LockRow {
                name: r.get(0)?,
                job: r.get(1)?,
                exclusive: r.get::<_, i64>(2)? == 1,
                held: r.get::<_, i64>(3)? == 1,
                ticket: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn annotation_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AnnotationRow> {
    Ok(AnnotationRow {
        id: r.get(0)?,
        at: r.get::<_, i64>(1)? as u64,
        author: r.get(2)?,
        kind: r.get(3)?,
        title: r.get(4)?,
        size: r.get::<_, i64>(5)? as u64,
    })
}

fn insert_events(
    tx: &rusqlite::Transaction<'_>,
    job: &str,
    after: u64,
    events: &[(Millis, String)],
) -> Result<u64, StoreError> {
    let mut st =
        tx.prepare_cached("INSERT INTO events (job_id, seq, at, body) VALUES (?1, ?2, ?3, ?4)")?;
    let mut seq = after;
    for (at, body) in events {
        seq += 1;
        st.execute(params![job, seq as i64, *at as i64, body])?;
    }
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal() -> (tempfile::TempDir, SqliteJournal) {
        let dir = tempfile::tempdir().unwrap();
        let j = SqliteJournal::open(&dir.path().join("sluice.db")).unwrap();
        (dir, j)
    }

    fn row(id: &str) -> JobRow {
        JobRow {
            id: id.into(),
            rule: "deploy".into(),
            status: "running".into(),
            message: String::new(),
            started_by: "ann".into(),
            created_at: 1,
            updated_at: 1,
            last_seq: 0,
        }
    }

    fn ask(name: &str, exclusive: bool) -> LockAsk {
        LockAsk {
            name: name.into(),
            exclusive,
        }
    }

    #[test]
    fn job_ids_count_per_rule() {
        let (_d, j) = journal();
        assert_eq!(j.next_job_id("deploy").unwrap(), "deploy-1");
        assert_eq!(j.next_job_id("deploy").unwrap(), "deploy-2");
        assert_eq!(j.next_job_id("cleanup").unwrap(), "cleanup-1");
    }

    #[test]
    fn appends_are_ordered_and_a_stale_writer_is_refused() {
        let (_d, j) = journal();
        let last = j
            .create_job(&row("deploy-1"), &[(1, "a".into()), (2, "b".into())])
            .unwrap();
        assert_eq!(last, 2);
        assert_eq!(
            j.append(
                "deploy-1",
                2,
                &[(3, "c".into())],
                Some(("succeeded", "ok")),
                &Extra::default()
            )
            .unwrap(),
            3
        );
        let err = j
            .append("deploy-1", 2, &[(4, "d".into())], None, &Extra::default())
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Conflict {
                    expected: 2,
                    found: 3,
                    ..
                }
            ),
            "{err}"
        );
        let bodies: Vec<String> = j
            .events("deploy-1", 0)
            .unwrap()
            .into_iter()
            .map(|r| r.body)
            .collect();
        assert_eq!(bodies, ["a", "b", "c"]);
        assert_eq!(j.events("deploy-1", 2).unwrap().len(), 1);
        assert_eq!(j.job("deploy-1").unwrap().unwrap().status, "succeeded");
    }

    #[test]
    fn exclusive_locks_queue_first_come_first_served_and_shared_ones_overlap() {
        let (_d, j) = journal();
        assert_eq!(
            j.acquire("a", &[ask("env", true)], GroupMode::Queue)
                .unwrap()
                .0,
            Acquired::Held
        );
        assert_eq!(
            j.acquire("b", &[ask("env", false)], GroupMode::Queue)
                .unwrap()
                .0,
            Acquired::Queued {
                behind: vec!["a".into()]
            }
        );
        assert_eq!(
            j.acquire("c", &[ask("env", false)], GroupMode::Queue)
                .unwrap()
                .0,
            Acquired::Queued {
                behind: vec!["a".into()]
            }
        );
        assert_eq!(j.release("a").unwrap(), ["b", "c"]);
        assert_eq!(
            j.acquire("b", &[ask("env", false)], GroupMode::Queue)
                .unwrap()
                .0,
            Acquired::Held
        );
        assert_eq!(
            j.acquire("c", &[ask("env", false)], GroupMode::Queue)
                .unwrap()
                .0,
            Acquired::Held,
            "shared with b"
        );
        assert_eq!(
            j.acquire("d", &[ask("env", true)], GroupMode::Queue)
                .unwrap()
                .0,
            Acquired::Queued {
                behind: vec!["b".into(), "c".into()]
            }
        );
        let rows = j.locks().unwrap();
        assert_eq!(rows.iter().filter(|r| r.held).count(), 2);
    }

    #[test]
    fn a_later_job_cannot_jump_the_line() {
        let (_d, j) = journal();
        j.acquire("a", &[ask("x", true)], GroupMode::Queue).unwrap();
        j.acquire("b", &[ask("x", true), ask("y", true)], GroupMode::Queue)
            .unwrap();
        // c wants only y, which is free, but b asked for y first.
        assert_eq!(
            j.acquire("c", &[ask("y", true)], GroupMode::Queue)
                .unwrap()
                .0,
            Acquired::Queued {
                behind: vec!["b".into()]
            }
        );
    }

    #[test]
    fn group_modes_reject_and_cancel_pending() {
        let (_d, j) = journal();
        j.acquire("a", &[ask("group:deploy", true)], GroupMode::Queue)
            .unwrap();
        assert_eq!(
            j.acquire("b", &[ask("group:deploy", true)], GroupMode::Reject)
                .unwrap()
                .0,
            Acquired::Rejected {
                by: vec!["a".into()]
            }
        );
        j.acquire("c", &[ask("group:deploy", true)], GroupMode::Queue)
            .unwrap();
        let (r, cancelled) = j
            .acquire("d", &[ask("group:deploy", true)], GroupMode::CancelPending)
            .unwrap();
        assert_eq!(
            r,
            Acquired::Queued {
                behind: vec!["a".into()]
            }
        );
        assert_eq!(cancelled, ["c"]);
    }

    #[test]
    fn one_lease_at_a_time_until_it_runs_out_or_its_holder_is_found_dead() {
        let (_d, j) = journal();
        j.create_job(&row("deploy-1"), &[(1, "a".into())]).unwrap();
        assert_eq!(
            j.lease("deploy-1", "cli:1", 100, 200, None).unwrap(),
            Ok(())
        );
        assert_eq!(
            j.lease("deploy-1", "worker:2", 150, 250, None).unwrap(),
            Err("cli:1".to_string())
        );
        assert_eq!(
            j.lease_holder("deploy-1", 150).unwrap().as_deref(),
            Some("cli:1")
        );
        assert_eq!(
            j.lease("deploy-1", "worker:2", 201, 300, None).unwrap(),
            Ok(()),
            "expired"
        );
        assert_eq!(
            j.lease("deploy-1", "cli:3", 202, 300, Some("worker:2"))
                .unwrap(),
            Ok(()),
            "stolen from the dead"
        );
        j.unlease("deploy-1", "cli:3", None).unwrap();
        assert_eq!(j.lease_holder("deploy-1", 203).unwrap(), None);
    }

    /// Issue 12, item 1: a holder that decided from an older read must not give the lease
    /// back while a decision it has not seen sits in the journal.
    #[test]
    fn a_lease_is_kept_when_the_job_moved_since_the_holder_last_read() {
        let (_d, j) = journal();
        j.create_job(&row("deploy-1"), &[(1, "a".into())]).unwrap();
        j.lease("deploy-1", "cli:1", 100, 200, None)
            .unwrap()
            .unwrap();
        // Someone else appends (a decision) while cli:1 holds the lease.
        j.append("deploy-1", 1, &[(2, "b".into())], None, &Extra::default())
            .unwrap();
        assert!(
            !j.unlease("deploy-1", "cli:1", Some(1)).unwrap(),
            "moved: kept"
        );
        assert_eq!(
            j.lease_holder("deploy-1", 150).unwrap().as_deref(),
            Some("cli:1")
        );
        assert!(j.unlease("deploy-1", "cli:1", Some(2)).unwrap());
        assert_eq!(j.lease_holder("deploy-1", 150).unwrap(), None);
        // Not the holder: nothing to keep driving.
        assert!(j.unlease("deploy-1", "cli:9", Some(2)).unwrap());
    }

    /// Issue 12, item 11: an event the journal could not read back is never written.
    #[test]
    fn an_event_too_deep_to_read_back_is_refused() {
        let (_d, j) = journal();
        j.create_job(&row("deploy-1"), &[(1, "{}".into())]).unwrap();
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(
            serde_json::from_str::<serde_json::Value>(&nested(130)).is_err(),
            "unreadable"
        );
        assert!(matches!(
            j.append("deploy-1", 1, &[(2, nested(130))], None, &Extra::default()),
            Err(StoreError::TooDeep { depth: 130, .. })
        ));
        assert!(matches!(
            j.append("deploy-1", 1, &[(2, nested(101))], None, &Extra::default()),
            Err(StoreError::TooDeep { depth: 101, .. })
        ));
        assert_eq!(j.events("deploy-1", 0).unwrap().len(), 1);
        assert_eq!(json_nesting(r#"{"a":"[[[[","b":[1,{"c":"\\\"{"}]}"#), 3);
    }

    #[test]
    fn a_read_only_journal_reads_and_a_missing_one_reads_empty() {
        let (d, j) = journal();
        j.create_job(&row("deploy-1"), &[(1, "a".into())]).unwrap();
        drop(j);
        let r = SqliteJournal::open_read_only(&d.path().join("sluice.db")).unwrap();
        assert_eq!(r.jobs(10).unwrap().len(), 1);
        assert!(matches!(
            r.append("deploy-1", 1, &[(2, "b".into())], None, &Extra::default()),
            Err(StoreError::ReadOnly(_))
        ));
        let none = SqliteJournal::open_read_only(&d.path().join("nothing.db")).unwrap();
        assert!(none.jobs(10).unwrap().is_empty());
        assert!(!d.path().join("nothing.db").exists(), "nothing created");
    }

    #[test]
    fn annotations_keep_their_bytes() {
        let (_d, j) = journal();
        let body = vec![0u8, 1, 2, 255];
        let note = NewAnnotation {
            at: 5,
            author: "ann",
            kind: "file",
            title: "dump.bin",
        };
        let id = j.annotate("x-1", &note, &mut &body[..], 4).unwrap();
        let rows = j.annotations("x-1").unwrap();
        assert_eq!((rows[0].title.as_str(), rows[0].size), ("dump.bin", 4));
        let mut out = Vec::new();
        assert_eq!(j.copy_annotation(id, &mut out).unwrap(), 4);
        assert_eq!(out, body);
        assert_eq!(j.annotation("x-1", id).unwrap().unwrap().size, 4);
        assert_eq!(j.annotation("y-1", id).unwrap(), None, "another job's");
        // A source that is not the size it claimed stores nothing.
        assert!(j.annotate("x-1", &note, &mut &body[..], 5).is_err());
        assert!(j.annotate("x-1", &note, &mut &body[..], 3).is_err());
        assert_eq!(j.annotations("x-1").unwrap().len(), 1);
    }

    #[test]
    fn logs_continue_after_an_id() {
        let (_d, j) = journal();
        let line = |m: &str| ("info".to_string(), "op".to_string(), m.to_string());
        j.add_logs("x-1", "build", 1, 5, &[line("one"), line("two")])
            .unwrap();
        let all = j.logs("x-1", 0).unwrap();
        assert_eq!(all.len(), 2);
        j.add_logs("x-1", "build", 2, 6, &[line("three")]).unwrap();
        let more = j.logs("x-1", all[1].id).unwrap();
        assert_eq!(more.len(), 1);
        assert_eq!((more[0].attempt, more[0].message.as_str()), (2, "three"));
    }
}
