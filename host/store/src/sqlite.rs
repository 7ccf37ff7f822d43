//! [`SqliteJournal`]: the embedded journal, one SQLite file. Calls run on tokio's blocking
//! pool; one connection per journal, behind a mutex (SQLite serialises writers anyway).
//!
//! The schema is versioned (`PRAGMA user_version`): opening migrates an older file in one
//! transaction and refuses a newer one.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::locks::{self, Plan};
use crate::*;

/// The schema this code reads and writes.
const SCHEMA_VERSION: u32 = 9;

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
    lease_until INTEGER,
    lease_epoch INTEGER NOT NULL DEFAULT 0
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
    version INTEGER NOT NULL DEFAULT 1,
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
CREATE TABLE IF NOT EXISTS workers (
    holder TEXT PRIMARY KEY,
    seen INTEGER NOT NULL,
    every_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    user TEXT NOT NULL,
    groups TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at);
CREATE INDEX IF NOT EXISTS jobs_by_rule ON jobs (rule, created_at);
CREATE TABLE IF NOT EXISTS passwords (
    user TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    set_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    sink TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    claimed_by TEXT,
    claimed_until INTEGER,
    delivered_at INTEGER,
    last_error TEXT,
    gave_up INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_at) WHERE delivered_at IS NULL AND gave_up = 0;
CREATE INDEX IF NOT EXISTS outbox_by_job ON outbox (job_id, id);
CREATE TABLE IF NOT EXISTS triggers (
    key TEXT PRIMARY KEY,
    from_job TEXT NOT NULL,
    job_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS triggers_from ON triggers (from_job);
CREATE TABLE IF NOT EXISTS chat_follows (
    backend TEXT NOT NULL,
    room TEXT NOT NULL,
    job_id TEXT NOT NULL,
    posted_seq INTEGER NOT NULL,
    PRIMARY KEY (backend, room, job_id)
);
CREATE TABLE IF NOT EXISTS chat_seen (
    key TEXT PRIMARY KEY,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_line ON outbox (sink, job_id, id) WHERE delivered_at IS NULL AND gave_up = 0;
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

/// What can fail inside a call: SQLite, or a store-level refusal.
enum Fail {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

fn store_error(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(DiskFull) => StoreError::NoSpace,
        Some(ReadOnly) => StoreError::ReadOnly(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

impl From<Fail> for StoreError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Sql(e) => store_error(e),
            Fail::Store(e) => e,
        }
    }
}

type Res<T> = Result<T, Fail>;

/// The embedded journal: one SQLite file.
pub struct SqliteJournal {
    conn: Arc<Mutex<Connection>>,
    /// Connections that only read (a journal opened to write; WAL lets them read while the
    /// writer writes), so queries do not wait in line behind appends and each other.
    readers: Option<Arc<Readers>>,
    /// Where events are read from: `events`, or a view giving an older file's events their
    /// format version when it is read without migrating.
    events_from: &'static str,
}

impl SqliteJournal {
    /// Opens (creating or migrating if needed) the journal at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
                path: dir.display().to_string(),
                message: e.to_string(),
            })?;
        }
        let open = || -> Res<Connection> {
            let mut conn = Connection::open(path)?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            migrate(&mut conn)?;
            Ok(conn)
        };
        Ok(SqliteJournal {
            conn: Arc::new(Mutex::new(open()?)),
            readers: Some(Arc::new(Readers {
                path: path.to_path_buf(),
                idle: Mutex::new(Vec::new()),
            })),
            events_from: "events",
        })
    }

    /// Opens the journal at `path` for reading only: nothing is created or changed, so `jobs`,
    /// `show` and `logs` work in a read-only `$SLUICE_HOME`. A journal that does not exist
    /// reads as empty.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        use rusqlite::OpenFlags;
        let empty = || -> Res<(Connection, &'static str)> {
            let mut conn = Connection::open_in_memory()?;
            migrate(&mut conn)?;
            Ok((conn, "events"))
        };
        let open = || -> Res<(Connection, &'static str)> {
            if !path.exists() {
                return empty();
            }
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI;
            let conn = Connection::open_with_flags(path, flags)?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            let conn = match schema_version(&conn) {
                Ok(_) => conn,
                // A WAL journal needs its `-shm` file, which cannot be made in a read-only
                // directory: read the file as it is, without locks (nobody can write there
                // either).
                Err(_) => {
                    Connection::open_with_flags(format!("{}?immutable=1", file_uri(path)), flags)?
                }
            };
            // A journal another process is creating right now has no tables yet: it reads as
            // empty, as one that does not exist.
            let has_jobs = conn
                .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'")?
                .exists([])?;
            if !has_jobs {
                return empty();
            }
            let found = schema_version(&conn)?;
            if found > SCHEMA_VERSION {
                return Err(StoreError::NewerSchema {
                    found,
                    supported: SCHEMA_VERSION,
                }
                .into());
            }
            // Read an older file as it is: only a writer migrates. Tables it does not have yet
            // read as empty (temporary ones, in memory).
            for statement in SCHEMA.split(';') {
                let statement = statement.trim();
                let Some(rest) = statement.strip_prefix("CREATE TABLE IF NOT EXISTS ") else {
                    continue;
                };
                let name = rest.split_whitespace().next().unwrap_or_default();
                let present = conn
                    .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
                    .exists([name])?;
                if !present {
                    conn.execute_batch(&format!("CREATE TEMP TABLE {rest};"))?;
                }
            }
            let has_version: bool = conn
                .prepare("SELECT 1 FROM pragma_table_info('events') WHERE name = 'version'")?
                .exists([])?;
            if has_version {
                return Ok((conn, "events"));
            }
            conn.execute_batch(
                "CREATE TEMP VIEW events_v AS SELECT job_id, seq, at, body, 1 AS version FROM main.events;",
            )?;
            Ok((conn, "temp.events_v"))
        };
        let (conn, events_from) = open()?;
        Ok(SqliteJournal {
            conn: Arc::new(Mutex::new(conn)),
            readers: None,
            events_from,
        })
    }

    /// Runs `f` on the connection on the blocking pool.
    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Res<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c).map_err(StoreError::from)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("journal call did not finish: {e}")))?
    }
}

/// Read-only connections to a journal, opened as needed; at most [`IDLE_READERS`] kept.
struct Readers {
    path: std::path::PathBuf,
    idle: Mutex<Vec<Connection>>,
}

const IDLE_READERS: usize = 4;

fn open_reader(path: &Path) -> Res<Connection> {
    let c = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(c)
}

impl SqliteJournal {
    /// Runs `f`, which only reads, on a reader connection on the blocking pool (on the one
    /// connection when the journal was opened read-only).
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Res<T> + Send + 'static,
    {
        let Some(readers) = self.readers.clone() else {
            return self.with(f).await;
        };
        tokio::task::spawn_blocking(move || {
            let idle = readers.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut conn = match idle {
                Some(c) => c,
                None => open_reader(&readers.path)?,
            };
            let r = f(&mut conn).map_err(StoreError::from);
            let mut idle = readers.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
            r
        })
        .await
        .map_err(|e| StoreError::Backend(format!("journal call did not finish: {e}")))?
    }
}

fn schema_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction; refuses a newer one.
fn migrate(conn: &mut Connection) -> Res<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = schema_version(&tx)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        }
        .into());
    }
    if found < SCHEMA_VERSION {
        tx.execute_batch(SCHEMA)?;
        // Every table is created if missing (2 added `children`, 3 `workers`, 4 `tokens`, 5
        // `passwords` and `outbox`, 6 the outbox's per-line index, 7 `triggers`). Version 1 (no
        // user_version yet) had events without a format version: they are format 1.
        let has_version = tx
            .prepare("SELECT 1 FROM pragma_table_info('events') WHERE name = 'version'")?
            .exists([])?;
        if !has_version {
            tx.execute_batch("ALTER TABLE events ADD COLUMN version INTEGER NOT NULL DEFAULT 1;")?;
        }
        // 9: the lease's epoch (the fencing token of a driver's appends).
        let has_epoch = tx
            .prepare("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'lease_epoch'")?
            .exists([])?;
        if !has_epoch {
            tx.execute_batch(
                "ALTER TABLE jobs ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;",
            )?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(())
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

const JOB_COLUMNS: &str = "id, rule, status, message, started_by, created_at, updated_at, last_seq";

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    let status: String = r.get(2)?;
    Ok(JobRow {
        id: r.get(0)?,
        rule: r.get(1)?,
        status: status.parse().map_err(|e: String| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
        })?,
        message: r.get(3)?,
        started_by: r.get(4)?,
        created_at: r.get::<_, i64>(5)? as u64,
        updated_at: r.get::<_, i64>(6)? as u64,
        last_seq: r.get::<_, i64>(7)? as u64,
    })
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
    events: &[NewEvent],
) -> rusqlite::Result<u64> {
    let mut st = tx.prepare_cached(
        "INSERT INTO events (job_id, seq, at, body, version) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut seq = after;
    for e in events {
        seq += 1;
        st.execute(params![job, seq as i64, e.at as i64, e.body, e.version])?;
    }
    Ok(seq)
}

fn insert_logs(
    tx: &rusqlite::Transaction<'_>,
    job: &str,
    at: Millis,
    logs: &StepLogs,
) -> rusqlite::Result<()> {
    let mut st = tx.prepare_cached(
        "INSERT INTO logs (job_id, step, attempt, at, level, source, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for l in &logs.lines {
        st.execute(params![
            job,
            logs.step,
            logs.attempt,
            at as i64,
            l.level.as_str(),
            l.source.as_str(),
            l.message
        ])?;
    }
    Ok(())
}

fn insert_messages(
    tx: &rusqlite::Transaction<'_>,
    job: &str,
    at: Millis,
    messages: &[NewMessage],
) -> rusqlite::Result<()> {
    let mut st = tx.prepare_cached(
        "INSERT INTO outbox (job_id, sink, body, created_at, next_at) VALUES (?1, ?2, ?3, ?4, ?4)",
    )?;
    for m in messages {
        st.execute(params![job, m.sink, m.body, at as i64])?;
    }
    Ok(())
}

fn lock_table(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<Vec<LockRow>> {
    let mut st = tx.prepare_cached(
        "SELECT a.name, a.job_id, a.exclusive, a.held, l.ticket FROM lock_asks a JOIN lock_line l ON l.job_id = a.job_id",
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
    rows.collect()
}

fn forget_locks(tx: &rusqlite::Transaction<'_>, job: &str) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM lock_asks WHERE job_id = ?1", [job])?;
    tx.execute("DELETE FROM lock_line WHERE job_id = ?1", [job])?;
    Ok(())
}

#[async_trait::async_trait]
impl Journal for SqliteJournal {
    async fn next_job_id(&self, rule: &str) -> Result<String, StoreError> {
        let rule = rule.to_string();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n: i64 = tx
                .query_row("SELECT next FROM counters WHERE rule = ?1", [&rule], |r| {
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
        })
        .await
    }

    async fn create_job(&self, job: NewJob, events: Vec<NewEvent>) -> Result<u64, StoreError> {
        check_nesting(&job.id, &events)?;
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let exists = tx
                .prepare_cached("SELECT 1 FROM jobs WHERE id = ?1")?
                .exists([&job.id])?;
            if exists {
                return Err(StoreError::Exists(job.id.clone()).into());
            }
            tx.execute(
                "INSERT INTO jobs (id, rule, status, message, started_by, created_at, updated_at, last_seq, lease_holder, lease_until, wake_at, lease_epoch) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 0, ?7, ?8, ?9, ?10)",
                params![
                    job.id,
                    job.rule,
                    job.status.as_str(),
                    job.message,
                    job.started_by,
                    job.created_at as i64,
                    job.lease.as_ref().map(|(h, _)| h.clone()),
                    job.lease.as_ref().map(|(_, u)| *u as i64),
                    job.wake_at.map(|t| t as i64),
                    if job.lease.is_some() { FIRST_EPOCH as i64 } else { 0 }
                ],
            )?;
            if let Some((key, from)) = &job.trigger {
                let earlier: Option<String> = tx
                    .query_row("SELECT job_id FROM triggers WHERE key = ?1", [key], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if let Some(earlier) = earlier {
                    return Err(StoreError::Triggered {
                        key: key.clone(),
                        job: earlier,
                    }
                    .into());
                }
                tx.execute(
                    "INSERT INTO triggers (key, from_job, job_id) VALUES (?1, ?2, ?3)",
                    params![key, from, job.id],
                )?;
            }
            let last = insert_events(&tx, &job.id, 0, &events)?;
            insert_messages(&tx, &job.id, job.created_at, &job.outbox)?;
            tx.execute(
                "UPDATE jobs SET last_seq = ?2 WHERE id = ?1",
                params![job.id, last as i64],
            )?;
            tx.commit()?;
            Ok(last)
        })
        .await
    }

    async fn append(&self, job: &str, expected: u64, append: Append) -> Result<u64, StoreError> {
        check_nesting(job, &append.events)?;
        let job = job.to_string();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (found, holder, epoch): (i64, Option<String>, i64) = tx
                .query_row(
                    "SELECT last_seq, lease_holder, lease_epoch FROM jobs WHERE id = ?1",
                    [&job],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?
                .ok_or_else(|| StoreError::NoJob(job.clone()))?;
            if let Some(fence) = &append.fence
                && (holder.as_deref() != Some(fence.holder.as_str()) || epoch as u64 != fence.epoch)
            {
                return Err(StoreError::Fenced {
                    job: job.clone(),
                    holder: fence.holder.clone(),
                    epoch: fence.epoch,
                }
                .into());
            }
            if found as u64 != expected {
                return Err(StoreError::Conflict {
                    job: job.clone(),
                    expected,
                    found: found as u64,
                }
                .into());
            }
            let last = insert_events(&tx, &job, expected, &append.events)?;
            let now = append.events.last().map(|e| e.at as i64).unwrap_or(0);
            match &append.status {
                Some((state, message)) => tx.execute(
                    "UPDATE jobs SET last_seq = ?2, status = ?3, message = ?4, updated_at = ?5 WHERE id = ?1",
                    params![job, last as i64, state.as_str(), message, now],
                )?,
                None => tx.execute(
                    "UPDATE jobs SET last_seq = ?2, updated_at = ?3 WHERE id = ?1",
                    params![job, last as i64, now],
                )?,
            };
            if let Some(wake) = append.wake_at {
                tx.execute(
                    "UPDATE jobs SET wake_at = ?2 WHERE id = ?1",
                    params![job, wake.map(|w| w as i64)],
                )?;
            }
            if let Some(logs) = &append.logs {
                insert_logs(&tx, &job, now as u64, logs)?;
            }
            insert_messages(&tx, &job, now as u64, &append.outbox)?;
            tx.commit()?;
            Ok(last)
        })
        .await
    }

    async fn events(&self, job: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let job = job.to_string();
        let table = self.events_from;
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT seq, at, body, version FROM {table} WHERE job_id = ?1 AND seq > ?2 ORDER BY seq"
            ))?;
            let rows = st.query_map(params![job, after as i64], |r| {
                Ok(StoredEvent {
                    seq: r.get::<_, i64>(0)? as u64,
                    at: r.get::<_, i64>(1)? as u64,
                    body: r.get(2)?,
                    version: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn job(&self, job: &str) -> Result<Option<JobRow>, StoreError> {
        let job = job.to_string();
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                    [job],
                    job_row,
                )
                .optional()?)
        })
        .await
    }

    async fn jobs(&self, query: &JobQuery) -> Result<Vec<JobRow>, StoreError> {
        let q = query.clone();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR rule = ?2) ORDER BY created_at DESC, rowid DESC LIMIT ?3 OFFSET ?4"
            ))?;
            let rows = st.query_map(
                params![
                    q.status.map(|s| s.as_str()),
                    q.rule,
                    q.limit.min(i64::MAX as usize) as i64,
                    q.offset.min(i64::MAX as usize) as i64
                ],
                job_row,
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn job_counts(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        self.read(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT status, COUNT(*) FROM jobs GROUP BY status ORDER BY status",
            )?;
            let rows = st.query_map([], |r| {
                let status: String = r.get(0)?;
                let n: i64 = r.get(1)?;
                Ok((status, n as u64))
            })?;
            let mut out = vec![];
            for row in rows {
                let (status, n) = row?;
                let status = status.parse().map_err(|e: String| {
                    Fail::Sql(rusqlite::Error::FromSqlConversionFailure(
                        0,
                        rusqlite::types::Type::Text,
                        e.into(),
                    ))
                })?;
                out.push((status, n));
            }
            Ok(out)
        })
        .await
    }

    async fn add_logs(&self, job: &str, at: Millis, logs: StepLogs) -> Result<(), StoreError> {
        let job = job.to_string();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            insert_logs(&tx, &job, at, &logs)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn logs(&self, job: &str, after: i64) -> Result<Vec<LogRow>, StoreError> {
        let job = job.to_string();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT id, step, attempt, at, level, source, message FROM logs WHERE job_id = ?1 AND id > ?2 ORDER BY id",
            )?;
            let rows = st.query_map(params![job, after], |r| {
                Ok(LogRow {
                    id: r.get(0)?,
                    step: r.get(1)?,
                    attempt: r.get(2)?,
                    at: r.get::<_, i64>(3)? as u64,
                    line: LogLine {
                        level: parse_level(&r.get::<_, String>(4)?),
                        source: parse_source(&r.get::<_, String>(5)?),
                        message: r.get(6)?,
                    },
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn acquire(
        &self,
        job: &str,
        asks: Vec<LockAsk>,
        mode: GroupMode,
    ) -> Result<Acquisition, StoreError> {
        if asks.is_empty() {
            return Ok(Acquisition {
                acquired: Acquired::Held,
                pushed_out: vec![],
            });
        }
        let job = job.to_string();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("INSERT OR IGNORE INTO lock_line (job_id) VALUES (?1)", [&job])?;
            let ticket: i64 = tx.query_row(
                "SELECT ticket FROM lock_line WHERE job_id = ?1",
                [&job],
                |r| r.get(0),
            )?;
            let table = lock_table(&tx)?;
            let (acquired, pushed_out) = match locks::plan_acquire(&table, &job, ticket, &asks, mode)
            {
                // Nothing to change: the transaction (and its line entry) is dropped.
                Plan::AlreadyHeld => return Ok(Acquisition { acquired: Acquired::Held, pushed_out: vec![] }),
                Plan::Rejected { by } => {
                    return Ok(Acquisition {
                        acquired: Acquired::Rejected { by },
                        pushed_out: vec![],
                    });
                }
                Plan::Ask { pushed_out, behind } => {
                    for other in &pushed_out {
                        forget_locks(&tx, other)?;
                    }
                    for ask in &asks {
                        tx.execute(
                            "INSERT OR IGNORE INTO lock_asks (job_id, name, exclusive, held) VALUES (?1, ?2, ?3, 0)",
                            params![job, ask.name, ask.exclusive as i64],
                        )?;
                    }
                    if behind.is_empty() {
                        tx.execute("UPDATE lock_asks SET held = 1 WHERE job_id = ?1", [&job])?;
                        (Acquired::Held, pushed_out)
                    } else {
                        (Acquired::Queued { behind }, pushed_out)
                    }
                }
            };
            tx.commit()?;
            Ok(Acquisition {
                acquired,
                pushed_out,
            })
        })
        .await
    }

    async fn release(&self, job: &str) -> Result<Vec<String>, StoreError> {
        let job = job.to_string();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let table = lock_table(&tx)?;
            forget_locks(&tx, &job)?;
            let waiting = locks::waiting_after_release(&table, &job);
            {
                let mut wake = tx.prepare_cached(
                    "UPDATE jobs SET status = 'ready' WHERE id = ?1 AND status = 'queued'",
                )?;
                for w in &waiting {
                    wake.execute([w])?;
                }
            }
            tx.commit()?;
            Ok(waiting)
        })
        .await
    }

    async fn locks(&self) -> Result<Vec<LockRow>, StoreError> {
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let mut rows = lock_table(&tx)?;
            rows.sort_by(|a, b| (&a.name, !a.held, a.ticket).cmp(&(&b.name, !b.held, b.ticket)));
            Ok(rows)
        })
        .await
    }

    async fn lease(&self, job: &str, req: LeaseRequest) -> Result<Lease, StoreError> {
        let job = job.to_string();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: Option<(Option<String>, Option<i64>, i64)> = tx
                .query_row(
                    "SELECT lease_holder, lease_until, lease_epoch FROM jobs WHERE id = ?1",
                    [&job],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((current, until, epoch)) = current else {
                return Err(StoreError::NoJob(job.clone()).into());
            };
            let epoch = epoch as u64;
            let next = match locks::lease_decision(&current, until.map(|u| u as u64), epoch, &req) {
                Err(lease) => return Ok(lease),
                Ok(next) => next,
            };
            tx.execute(
                "UPDATE jobs SET lease_holder = ?2, lease_until = ?3, lease_epoch = ?4 WHERE id = ?1",
                params![job, req.holder, req.until as i64, next as i64],
            )?;
            tx.commit()?;
            Ok(Lease::Taken { epoch: next })
        })
        .await
    }

    async fn unlease(
        &self,
        job: &str,
        holder: &str,
        if_last_seq: Option<u64>,
    ) -> Result<bool, StoreError> {
        let (job, holder) = (job.to_string(), holder.to_string());
        self.with(move |conn| {
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
        })
        .await
    }

    async fn lease_holder(&self, job: &str, now: Millis) -> Result<Option<String>, StoreError> {
        let job = job.to_string();
        self.with(move |conn| {
            let row: Option<(Option<String>, Option<i64>)> = conn
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
        })
        .await
    }

    async fn due(&self, now: Millis) -> Result<Vec<String>, StoreError> {
        self.with(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT id FROM (
                    SELECT id, created_at, rowid AS r FROM jobs WHERE status IN ('ready', 'running', 'cancelling', 'rolling-back')
                    UNION ALL
                    SELECT id, created_at, rowid AS r FROM jobs WHERE status = 'waiting' AND wake_at <= ?1
                 ) ORDER BY created_at, r",
            )?;
            let rows = st.query_map([now as i64], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn claim(
        &self,
        now: Millis,
        holder: &str,
        until: Millis,
        skip: &[String],
    ) -> Result<Option<(String, u64)>, StoreError> {
        let (holder, skip) = (holder.to_string(), skip.to_vec());
        self.with(move |conn| {
            // One writer at a time in SQLite: the transaction alone keeps two claimers apart.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let found: Option<(String, i64)> = {
                let mut st = tx.prepare_cached(
                    "SELECT id, lease_epoch FROM jobs
                     WHERE (status IN ('ready', 'running', 'cancelling', 'rolling-back')
                            OR (status = 'waiting' AND wake_at <= ?1))
                       AND (lease_holder IS NULL OR lease_until IS NULL OR lease_until < ?1)
                       AND id NOT IN (SELECT value FROM json_each(?2))
                     ORDER BY created_at, rowid LIMIT 1",
                )?;
                let skip = serde_json::to_string(&skip).unwrap_or_else(|_| "[]".into());
                st.query_row(params![now as i64, skip], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?
            };
            let Some((id, epoch)) = found else {
                return Ok(None);
            };
            let epoch = epoch as u64 + 1;
            tx.execute(
                "UPDATE jobs SET lease_holder = ?2, lease_until = ?3, lease_epoch = ?4 WHERE id = ?1",
                params![id, holder, until as i64, epoch as i64],
            )?;
            tx.commit()?;
            Ok(Some((id, epoch)))
        })
        .await
    }

    async fn annotate(
        &self,
        job: &str,
        note: NewAnnotation,
        mut body: Box<dyn Read + Send>,
        len: u64,
    ) -> Result<i64, StoreError> {
        let job = job.to_string();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO annotations (job_id, at, author, kind, title, body) VALUES (?1, ?2, ?3, ?4, ?5, zeroblob(?6))",
                params![job, note.at as i64, note.author, note.kind, note.title, len as i64],
            )?;
            let id = tx.last_insert_rowid();
            let read_err = |e: std::io::Error| {
                Fail::Store(StoreError::Body(format!(
                    "reading the annotation's body: {e}"
                )))
            };
            if len > 0 {
                let mut blob = tx.blob_open(rusqlite::MAIN_DB, "annotations", "body", id, false)?;
                let copied = std::io::copy(&mut (&mut body).take(len), &mut blob).map_err(read_err)?;
                if copied != len {
                    return Err(StoreError::Body(format!(
                        "the annotation's source shrank while it was read ({copied} of {len} bytes)"
                    ))
                    .into());
                }
            }
            let mut probe = [0u8; 1];
            if body.read(&mut probe).map_err(read_err)? > 0 {
                return Err(StoreError::Body(format!(
                    "the annotation's source grew past {len} bytes while it was read"
                ))
                .into());
            }
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    async fn annotations(&self, job: &str) -> Result<Vec<AnnotationRow>, StoreError> {
        let job = job.to_string();
        self.with(move |conn| {
            let mut st = conn.prepare(
                "SELECT id, at, author, kind, title, length(body) FROM annotations WHERE job_id = ?1 ORDER BY id",
            )?;
            let rows = st.query_map([job], annotation_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn annotation(&self, job: &str, id: i64) -> Result<Option<AnnotationRow>, StoreError> {
        let job = job.to_string();
        self.with(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT id, at, author, kind, title, length(body) FROM annotations WHERE job_id = ?1 AND id = ?2",
                    params![job, id],
                    annotation_row,
                )
                .optional()?)
        })
        .await
    }

    async fn copy_annotation(
        &self,
        id: i64,
        mut out: Box<dyn Write + Send>,
    ) -> Result<u64, StoreError> {
        self.with(move |conn| {
            let mut blob = conn.blob_open(rusqlite::MAIN_DB, "annotations", "body", id, true)?;
            let n = std::io::copy(&mut blob, &mut out)
                .map_err(|e| StoreError::Body(format!("writing the annotation out: {e}")))?;
            out.flush()
                .map_err(|e| StoreError::Body(format!("writing the annotation out: {e}")))?;
            Ok(n)
        })
        .await
    }

    async fn add_child(&self, job: &str, c: ChildRow) -> Result<(), StoreError> {
        let job = job.to_string();
        self.with(move |conn| {
            conn.execute(
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
        })
        .await
    }

    async fn children(&self, job: &str, step: &str) -> Result<Vec<ChildRow>, StoreError> {
        let (job, step) = (job.to_string(), step.to_string());
        self.with(move |conn| {
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
        })
        .await
    }

    async fn worker_seen(
        &self,
        holder: &str,
        now: Millis,
        every_ms: u64,
    ) -> Result<(), StoreError> {
        let holder = holder.to_string();
        self.with(move |conn| {
            if every_ms == 0 {
                conn.execute("DELETE FROM workers WHERE holder = ?1", [&holder])?;
            } else {
                conn.execute(
                    "INSERT INTO workers (holder, seen, every_ms) VALUES (?1, ?2, ?3) ON CONFLICT(holder) DO UPDATE SET seen = ?2, every_ms = ?3",
                    params![holder, now as i64, every_ms as i64],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn workers(&self, now: Millis) -> Result<Vec<String>, StoreError> {
        self.with(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT holder FROM workers WHERE seen + 3 * every_ms + 1000 >= ?1 ORDER BY holder",
            )?;
            let rows = st.query_map([now as i64], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn add_token(&self, hash: &str, token: TokenRow) -> Result<(), StoreError> {
        let hash = hash.to_string();
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO tokens (id, hash, user, groups, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    token.id,
                    hash,
                    token.user,
                    token.groups.join(","),
                    token.created_at as i64,
                    token.created_by
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let hash = hash.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1 AND revoked_at IS NULL"
                ))?
                .query_row([hash], token_row)
                .optional()?)
        })
        .await
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.with(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, rowid"
            ))?;
            let rows = st.query_map([], token_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn revoke_token(&self, id: &str, at: Millis) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with(move |conn| {
            Ok(conn.execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, at as i64],
            )? == 1)
        })
        .await
    }

    async fn set_password(&self, user: &str, phc: &str, at: Millis) -> Result<(), StoreError> {
        let (user, phc) = (user.to_string(), phc.to_string());
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO passwords (user, hash, set_at) VALUES (?1, ?2, ?3) ON CONFLICT(user) DO UPDATE SET hash = ?2, set_at = ?3",
                params![user, phc, at as i64],
            )?;
            Ok(())
        })
        .await
    }

    async fn password(&self, user: &str) -> Result<Option<String>, StoreError> {
        let user = user.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT hash FROM passwords WHERE user = ?1")?
                .query_row([user], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn remove_password(&self, user: &str) -> Result<bool, StoreError> {
        let user = user.to_string();
        self.with(move |conn| {
            Ok(conn.execute("DELETE FROM passwords WHERE user = ?1", [user])? == 1)
        })
        .await
    }

    async fn claim_messages(
        &self,
        now: Millis,
        holder: &str,
        until: Millis,
        limit: usize,
        internal: bool,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let holder = holder.to_string();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let rows = {
                let mut st = tx.prepare_cached(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM outbox m WHERE delivered_at IS NULL AND gave_up = 0 AND next_at <= ?1 AND (claimed_until IS NULL OR claimed_until <= ?1) AND (substr(sink, 1, 7) = 'sluice:') = ?3 AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.sink = m.sink AND e.job_id = m.job_id AND e.id < m.id AND e.delivered_at IS NULL AND e.gave_up = 0) ORDER BY id LIMIT ?2"
                ))?;
                let rows = st.query_map(params![now as i64, limit as i64, internal], message_row)?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            {
                let mut claim = tx.prepare_cached(
                    "UPDATE outbox SET claimed_by = ?2, claimed_until = ?3 WHERE id = ?1",
                )?;
                for r in &rows {
                    claim.execute(params![r.id, holder, until as i64])?;
                }
            }
            tx.commit()?;
            Ok(rows)
        })
        .await
    }

    async fn message_delivered(&self, id: i64, at: Millis) -> Result<(), StoreError> {
        self.with(move |conn| {
            conn.execute(
                "UPDATE outbox SET delivered_at = ?2, attempts = attempts + 1, claimed_until = NULL, last_error = NULL WHERE id = ?1",
                params![id, at as i64],
            )?;
            Ok(())
        })
        .await
    }

    async fn message_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<Millis>,
    ) -> Result<(), StoreError> {
        let error = error.to_string();
        self.with(move |conn| {
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, claimed_until = NULL, last_error = ?2, next_at = COALESCE(?3, next_at), gave_up = ?4 WHERE id = ?1 AND delivered_at IS NULL",
                params![id, error, retry_at.map(|t| t as i64), retry_at.is_none() as i64],
            )?;
            Ok(())
        })
        .await
    }

    async fn messages(&self, job: &str) -> Result<Vec<MessageRow>, StoreError> {
        let job = job.to_string();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM outbox WHERE job_id = ?1 ORDER BY id"
            ))?;
            let rows = st.query_map([job], message_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn triggered(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT job_id FROM triggers WHERE key = ?1")?
                .query_row([key], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn started_by_job(&self, job: &str) -> Result<Vec<String>, StoreError> {
        let job = job.to_string();
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached("SELECT job_id FROM triggers WHERE from_job = ?1 ORDER BY rowid")?;
            let rows = st.query_map([job], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn chat_follow(
        &self,
        backend: &str,
        room: &str,
        job: &str,
        posted: u64,
    ) -> Result<(), StoreError> {
        let (backend, room, job) = (backend.to_string(), room.to_string(), job.to_string());
        self.with(move |conn| {
            conn.prepare_cached(
                "INSERT INTO chat_follows (backend, room, job_id, posted_seq) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (backend, room, job_id) DO UPDATE SET posted_seq = max(posted_seq, excluded.posted_seq)",
            )?
            .execute(params![backend, room, job, posted as i64])?;
            Ok(())
        })
        .await
    }

    async fn chat_unfollow(
        &self,
        backend: &str,
        room: &str,
        job: &str,
    ) -> Result<bool, StoreError> {
        let (backend, room, job) = (backend.to_string(), room.to_string(), job.to_string());
        self.with(move |conn| {
            Ok(conn
                .prepare_cached(
                    "DELETE FROM chat_follows WHERE backend = ?1 AND room = ?2 AND job_id = ?3",
                )?
                .execute(params![backend, room, job])?
                > 0)
        })
        .await
    }

    async fn chat_following(
        &self,
        backend: &str,
        room: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let (backend, room) = (backend.to_string(), room.to_string());
        self.read(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT job_id, posted_seq FROM chat_follows WHERE backend = ?1 AND room = ?2 ORDER BY rowid",
            )?;
            let rows = st.query_map(params![backend, room], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn chat_follows(&self, backend: &str) -> Result<Vec<(String, String, u64)>, StoreError> {
        let backend = backend.to_string();
        self.read(move |conn| {
            let mut st = conn.prepare_cached(
                "SELECT room, job_id, posted_seq FROM chat_follows WHERE backend = ?1 ORDER BY rowid",
            )?;
            let rows = st.query_map([backend], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn chat_seen(&self, key: &str, at: Millis) -> Result<bool, StoreError> {
        let key = key.to_string();
        self.with(move |conn| {
            Ok(conn
                .prepare_cached(
                    "INSERT INTO chat_seen (key, at) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                )?
                .execute(params![key, at as i64])?
                == 1)
        })
        .await
    }

    async fn chat_unsee(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_string();
        self.with(move |conn| {
            conn.prepare_cached("DELETE FROM chat_seen WHERE key = ?1")?
                .execute([key])?;
            Ok(())
        })
        .await
    }

    async fn last_trigger(&self, prefix: &str) -> Result<Option<String>, StoreError> {
        // A range over the key's index: every key with the prefix sorts between the prefix and
        // the prefix followed by the greatest character.
        let (low, high) = (prefix.to_string(), format!("{prefix}{}", char::MAX));
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT key FROM triggers WHERE key >= ?1 AND key < ?2 ORDER BY key DESC LIMIT 1",
                )?
                .query_row([low, high], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        self.read(move |conn| {
            Ok(conn.query_row(
                "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND gave_up = 0",
                [],
                |r| r.get::<_, i64>(0),
            )? as u64)
        })
        .await
    }
}

const MESSAGE_COLUMNS: &str =
    "id, job_id, sink, body, attempts, created_at, delivered_at, last_error, gave_up";

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: r.get(0)?,
        job: r.get(1)?,
        sink: r.get(2)?,
        body: r.get(3)?,
        attempts: r.get(4)?,
        created_at: r.get::<_, i64>(5)? as u64,
        delivered_at: r.get::<_, Option<i64>>(6)?.map(|t| t as u64),
        last_error: r.get(7)?,
        gave_up: r.get::<_, i64>(8)? != 0,
    })
}

const TOKEN_COLUMNS: &str = "id, user, groups, created_at, created_by, revoked_at";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    let groups: String = r.get(2)?;
    Ok(TokenRow {
        id: r.get(0)?,
        user: r.get(1)?,
        groups: groups
            .split(',')
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect(),
        created_at: r.get::<_, i64>(3)? as u64,
        created_by: r.get(4)?,
        revoked_at: r.get::<_, Option<i64>>(5)?.map(|t| t as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::conformance_tests!(async |dir: &Path| {
        Arc::new(SqliteJournal::open(&dir.join("sluice.db")).unwrap()) as Arc<dyn Journal>
    });

    #[tokio::test]
    async fn a_read_only_journal_reads_and_a_missing_one_reads_empty() {
        let d = tempfile::tempdir().unwrap();
        let j = SqliteJournal::open(&d.path().join("sluice.db")).unwrap();
        j.create_job(conformance::new_job("deploy-1"), conformance::events(1))
            .await
            .unwrap();
        drop(j);
        let r = SqliteJournal::open_read_only(&d.path().join("sluice.db")).unwrap();
        assert_eq!(r.jobs(&JobQuery::newest(10)).await.unwrap().len(), 1);
        assert!(matches!(
            r.append("deploy-1", 1, Append::default()).await,
            Err(StoreError::ReadOnly(_))
        ));
        let none = SqliteJournal::open_read_only(&d.path().join("nothing.db")).unwrap();
        assert!(none.jobs(&JobQuery::newest(10)).await.unwrap().is_empty());
        assert!(!d.path().join("nothing.db").exists(), "nothing created");
        // One another process is creating right now (the file, not yet its tables).
        std::fs::write(d.path().join("new.db"), b"").unwrap();
        let new = SqliteJournal::open_read_only(&d.path().join("new.db")).unwrap();
        assert!(new.locks().await.unwrap().is_empty());
    }

    /// A journal written before schema versions (user_version 0, events without a format
    /// version) is migrated on open: its events read as format 1.
    #[tokio::test]
    async fn an_unversioned_journal_is_migrated_and_a_newer_one_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sluice.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE jobs (id TEXT PRIMARY KEY, rule TEXT NOT NULL, status TEXT NOT NULL, message TEXT NOT NULL DEFAULT '', started_by TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, last_seq INTEGER NOT NULL, wake_at INTEGER, lease_holder TEXT, lease_until INTEGER);
                 CREATE TABLE events (job_id TEXT NOT NULL REFERENCES jobs(id), seq INTEGER NOT NULL, at INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (job_id, seq));
                 INSERT INTO jobs VALUES ('d-1', 'd', 'waiting', '', 'ann', 1, 1, 1, NULL, NULL, NULL);
                 INSERT INTO events VALUES ('d-1', 1, 1, '{}');",
            )
            .unwrap();
        }
        let ro = SqliteJournal::open_read_only(&path).unwrap();
        assert_eq!(ro.events("d-1", 0).await.unwrap()[0].version, 1);
        drop(ro);
        let j = SqliteJournal::open(&path).unwrap();
        let e = j.events("d-1", 0).await.unwrap();
        assert_eq!((e[0].version, e[0].body.as_str()), (1, "{}"));
        assert_eq!(
            j.job("d-1").await.unwrap().unwrap().status,
            JobState::Waiting
        );
        drop(j);
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        assert!(matches!(
            SqliteJournal::open(&path),
            Err(StoreError::NewerSchema { .. })
        ));
    }
}
