//! [`PgJournal`]: the shared journal on PostgreSQL (15 or newer), for several hosts.
//!
//! Every call takes a connection from a pool (deadpool over tokio-postgres) and runs one short
//! transaction. What SQLite gets from its single writer is spelled out here:
//!
//! - an append locks its job's row (`FOR UPDATE`) and checks the last sequence and, for a
//!   driver, its lease's epoch (fencing): a host whose lease was taken over writes nothing;
//! - claiming work takes the oldest due job with a free lease with `FOR UPDATE SKIP LOCKED`,
//!   so hosts claiming at once get different jobs without waiting for each other; jobs that
//!   only wait (at a gate, for a timer) are outside the two partial indexes claims read;
//! - who gets a lock next is planned by [`locks`] from the whole lock table, read and written
//!   under one transaction-scoped advisory lock;
//! - a job becoming ready or locks given back `NOTIFY sluice_work`; [`PgJournal::wait_for_work`]
//!   listens on a connection of its own, reconnecting when it drops (a lost hint costs one
//!   worker interval: callers look anyway).
//!
//! Annotation bodies are `bytea` (at most [`MAX_BLOB`]): they live and go with their rows and
//! their transaction, are copied by `pg_dump` and replication like any row, and need no
//! `lo_unlink` bookkeeping as large objects would; sluice keeps them to 64 MiB anyway.
//!
//! The schema is versioned in `sluice_schema`; opening applies the missing migrations in one
//! transaction (hosts starting together take turns on an advisory lock) and refuses a newer
//! schema.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::locks::{self, Plan};
use crate::*;

/// The schema this code reads and writes: the number of [`MIGRATIONS`].
const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The largest annotation body stored (`bytea` holds up to 1 GiB; sluice keeps them smaller).
pub const MAX_BLOB: u64 = 256 << 20;

/// The advisory locks: migrations, and the lock table.
const MIGRATE_LOCK: i64 = 0x51_1CE0_0001;
const LOCKS_LOCK: i64 = 0x51_1CE0_0002;

/// The channel hints of new work go out on.
const CHANNEL: &str = "sluice_work";

/// Statuses a worker drives (as [`Journal::due`]); a queued job is not among them: giving
/// locks back marks the jobs that waited for them `ready`.
const RUNNABLE: &str = "('ready', 'running', 'cancelling', 'rolling-back')";

/// Each schema version's statements, in order.
const MIGRATIONS: &[&str] = &["
CREATE TABLE counters (rule TEXT PRIMARY KEY, next BIGINT NOT NULL);
CREATE TABLE jobs (
    n BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    started_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    wake_at BIGINT,
    lease_holder TEXT,
    lease_until BIGINT,
    lease_epoch BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX jobs_runnable ON jobs (created_at, n)
    WHERE status IN ('ready', 'running', 'cancelling', 'rolling-back');
CREATE INDEX jobs_timers ON jobs (wake_at) WHERE status = 'waiting';
CREATE INDEX jobs_by_status ON jobs (status, created_at);
CREATE INDEX jobs_by_created ON jobs (created_at, n);
CREATE INDEX jobs_by_rule ON jobs (rule, created_at);
CREATE TABLE events (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE logs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id TEXT NOT NULL,
    step TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    level TEXT NOT NULL,
    source TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX logs_by_job ON logs (job_id, id);
CREATE TABLE annotations (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    author TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    size BIGINT NOT NULL,
    body BYTEA NOT NULL
);
CREATE INDEX annotations_by_job ON annotations (job_id, id);
CREATE TABLE children (
    n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id TEXT NOT NULL,
    step TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    start_ticks BIGINT NOT NULL,
    program TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX children_by_step ON children (job_id, step, n);
CREATE TABLE workers (holder TEXT PRIMARY KEY, seen BIGINT NOT NULL, every_ms BIGINT NOT NULL);
CREATE TABLE tokens (
    n BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    user_name TEXT NOT NULL,
    group_list TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE passwords (user_name TEXT PRIMARY KEY, hash TEXT NOT NULL, set_at BIGINT NOT NULL);
CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id TEXT NOT NULL,
    sink TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    claimed_by TEXT,
    claimed_until BIGINT,
    delivered_at BIGINT,
    last_error TEXT,
    gave_up BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX outbox_due ON outbox (next_at) WHERE delivered_at IS NULL AND NOT gave_up;
CREATE INDEX outbox_by_job ON outbox (job_id, id);
CREATE INDEX outbox_line ON outbox (sink, job_id, id) WHERE delivered_at IS NULL AND NOT gave_up;
CREATE TABLE triggers (
    n BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    key TEXT PRIMARY KEY,
    from_job TEXT NOT NULL,
    job_id TEXT NOT NULL
);
CREATE INDEX triggers_from ON triggers (from_job, n);
CREATE INDEX triggers_by_key ON triggers ((key COLLATE \"C\"));
CREATE TABLE chat_follows (
    n BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    backend TEXT NOT NULL,
    room TEXT NOT NULL,
    job_id TEXT NOT NULL,
    posted_seq BIGINT NOT NULL,
    PRIMARY KEY (backend, room, job_id)
);
CREATE TABLE chat_seen (key TEXT PRIMARY KEY, at BIGINT NOT NULL);
CREATE TABLE lock_line (
    ticket BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id TEXT NOT NULL UNIQUE
);
CREATE TABLE lock_asks (
    job_id TEXT NOT NULL,
    name TEXT NOT NULL,
    exclusive BOOLEAN NOT NULL,
    held BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (job_id, name)
);
"];

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.code() {
            Some(c) if *c == SqlState::DISK_FULL => StoreError::NoSpace,
            Some(c) if *c == SqlState::READ_ONLY_SQL_TRANSACTION => {
                StoreError::ReadOnly(e.to_string())
            }
            _ => StoreError::Backend(match e.as_db_error() {
                Some(db) => format!("{}: {}", db.severity(), db.message()),
                None => e.to_string(),
            }),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            e => StoreError::Backend(format!("no connection to PostgreSQL: {e}")),
        }
    }
}

type R<T> = Result<T, StoreError>;

/// The shared journal on PostgreSQL.
pub struct PgJournal {
    pool: Pool,
    config: tokio_postgres::Config,
    /// Hints of new work from `LISTEN sluice_work` (a permit is kept when nobody waits).
    work: Arc<tokio::sync::Notify>,
    listener: Mutex<Option<tokio::task::AbortHandle>>,
    /// Set once the schema was checked (and migrated) on first use.
    ready: tokio::sync::OnceCell<()>,
}

impl Drop for PgJournal {
    fn drop(&mut self) {
        if let Some(l) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            l.abort();
        }
    }
}

/// `url` with its password hidden, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl PgJournal {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`), applying
    /// missing migrations; refuses a schema newer than this sluice's.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let journal = Self::open(url)?;
        drop(journal.client().await?);
        Ok(journal)
    }

    /// [`PgJournal::connect`] without connecting yet: the first call connects, checks the
    /// schema (migrating it) and says what failed.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Backend(format!(
                "`{}` is not a PostgreSQL URL ({e}): write postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                redact(url)
            ))
        })?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(StoreError::Backend(
                "TLS to PostgreSQL is not supported yet: reach the database over a private network or a Unix socket, with sslmode=disable or prefer".into(),
            ));
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Backend(format!("PostgreSQL pool: {e}")))?;
        Ok(PgJournal {
            pool,
            config,
            work: Arc::new(tokio::sync::Notify::new()),
            listener: Mutex::new(None),
            ready: tokio::sync::OnceCell::new(),
        })
    }

    async fn migrate(&self) -> R<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
            .await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS sluice_schema (version INTEGER NOT NULL)")
            .await?;
        let found: Option<i32> = tx
            .query_opt("SELECT version FROM sluice_schema", &[])
            .await?
            .map(|r| r.get(0));
        let found = found.unwrap_or(0) as u32;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        for m in &MIGRATIONS[found as usize..] {
            tx.batch_execute(m).await?;
        }
        tx.execute("DELETE FROM sluice_schema", &[]).await?;
        tx.execute(
            "INSERT INTO sluice_schema (version) VALUES ($1)",
            &[&(SCHEMA_VERSION as i32)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn client(&self) -> R<deadpool_postgres::Object> {
        self.ready.get_or_try_init(|| self.migrate()).await?;
        Ok(self.pool.get().await?)
    }

    /// Listens for hints of work on a connection of its own, for as long as the journal lives.
    fn listen(&self) {
        let mut slot = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return;
        }
        let (config, work) = (self.config.clone(), self.work.clone());
        let task = tokio::spawn(async move {
            loop {
                // Not reachable now: try again in a second (callers poll meanwhile).
                if let Ok((client, mut conn)) = config.connect(NoTls).await {
                    let forward = {
                        let work = work.clone();
                        tokio::spawn(async move {
                            while let Some(m) =
                                std::future::poll_fn(|cx| conn.poll_message(cx)).await
                            {
                                match m {
                                    Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                                        work.notify_one()
                                    }
                                    Ok(_) => {}
                                    Err(_) => break,
                                }
                            }
                        })
                    };
                    if client
                        .batch_execute(&format!("LISTEN {CHANNEL}"))
                        .await
                        .is_ok()
                    {
                        // Hints sent while not listening are lost: look once now.
                        work.notify_one();
                    }
                    let _ = forward.await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        *slot = Some(task.abort_handle());
    }
}

fn job_row(r: &tokio_postgres::Row) -> R<JobRow> {
    let status: String = r.get(2);
    Ok(JobRow {
        id: r.get(0),
        rule: r.get(1),
        status: status
            .parse()
            .map_err(|e: String| StoreError::Backend(format!("a job's status: {e}")))?,
        message: r.get(3),
        started_by: r.get(4),
        created_at: r.get::<_, i64>(5) as u64,
        updated_at: r.get::<_, i64>(6) as u64,
        last_seq: r.get::<_, i64>(7) as u64,
    })
}

const JOB_COLUMNS: &str = "id, rule, status, message, started_by, created_at, updated_at, last_seq";

fn annotation_row(r: &tokio_postgres::Row) -> AnnotationRow {
    AnnotationRow {
        id: r.get(0),
        at: r.get::<_, i64>(1) as u64,
        author: r.get(2),
        kind: r.get(3),
        title: r.get(4),
        size: r.get::<_, i64>(5) as u64,
    }
}

const MESSAGE_COLUMNS: &str =
    "id, job_id, sink, body, attempts, created_at, delivered_at, last_error, gave_up";

fn message_row(r: &tokio_postgres::Row) -> MessageRow {
    MessageRow {
        id: r.get(0),
        job: r.get(1),
        sink: r.get(2),
        body: r.get(3),
        attempts: r.get::<_, i64>(4) as u32,
        created_at: r.get::<_, i64>(5) as u64,
        delivered_at: r.get::<_, Option<i64>>(6).map(|t| t as u64),
        last_error: r.get(7),
        gave_up: r.get(8),
    }
}

const TOKEN_COLUMNS: &str = "id, user_name, group_list, created_at, created_by, revoked_at";

fn token_row(r: &tokio_postgres::Row) -> TokenRow {
    let groups: String = r.get(2);
    TokenRow {
        id: r.get(0),
        user: r.get(1),
        groups: groups
            .split(',')
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect(),
        created_at: r.get::<_, i64>(3) as u64,
        created_by: r.get(4),
        revoked_at: r.get::<_, Option<i64>>(5).map(|t| t as u64),
    }
}

type Tx<'a> = deadpool_postgres::Transaction<'a>;

async fn insert_events(tx: &Tx<'_>, job: &str, after: u64, events: &[NewEvent]) -> R<u64> {
    let st = tx
        .prepare_cached(
            "INSERT INTO events (job_id, seq, at, body, version) VALUES ($1, $2, $3, $4, $5)",
        )
        .await?;
    let mut seq = after;
    for e in events {
        seq += 1;
        tx.execute(
            &st,
            &[
                &job,
                &(seq as i64),
                &(e.at as i64),
                &e.body,
                &(e.version as i32),
            ],
        )
        .await?;
    }
    Ok(seq)
}

async fn insert_logs(tx: &Tx<'_>, job: &str, at: Millis, logs: &StepLogs) -> R<()> {
    let st = tx
        .prepare_cached(
            "INSERT INTO logs (job_id, step, attempt, at, level, source, message) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    for l in &logs.lines {
        tx.execute(
            &st,
            &[
                &job,
                &logs.step,
                &(logs.attempt as i64),
                &(at as i64),
                &l.level.as_str(),
                &l.source.as_str(),
                &l.message,
            ],
        )
        .await?;
    }
    Ok(())
}

async fn insert_messages(tx: &Tx<'_>, job: &str, at: Millis, messages: &[NewMessage]) -> R<()> {
    let st = tx
        .prepare_cached(
            "INSERT INTO outbox (job_id, sink, body, created_at, next_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .await?;
    for m in messages {
        tx.execute(&st, &[&job, &m.sink, &m.body, &(at as i64)])
            .await?;
    }
    Ok(())
}

async fn hint(tx: &Tx<'_>, job: &str) -> R<()> {
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &job])
        .await?;
    Ok(())
}

async fn lock_table(tx: &Tx<'_>) -> R<Vec<LockRow>> {
    let rows = tx
        .query(
            "SELECT a.name, a.job_id, a.exclusive, a.held, l.ticket FROM lock_asks a JOIN lock_line l ON l.job_id = a.job_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| LockRow {
            name: r.get(0),
            job: r.get(1),
            exclusive: r.get(2),
            held: r.get(3),
            ticket: r.get(4),
        })
        .collect())
}

async fn forget_locks(tx: &Tx<'_>, job: &str) -> R<()> {
    tx.execute("DELETE FROM lock_asks WHERE job_id = $1", &[&job])
        .await?;
    tx.execute("DELETE FROM lock_line WHERE job_id = $1", &[&job])
        .await?;
    Ok(())
}

fn runnable(state: JobState) -> bool {
    matches!(state, JobState::Queued | JobState::Ready)
}

#[async_trait::async_trait]
impl Journal for PgJournal {
    async fn next_job_id(&self, rule: &str) -> Result<String, StoreError> {
        let c = self.client().await?;
        let n: i64 = c
            .query_one(
                "INSERT INTO counters (rule, next) VALUES ($1, 2) ON CONFLICT (rule) DO UPDATE SET next = counters.next + 1 RETURNING next - 1",
                &[&rule],
            )
            .await?
            .get(0);
        Ok(format!("{rule}-{n}"))
    }

    async fn create_job(&self, job: NewJob, events: Vec<NewEvent>) -> Result<u64, StoreError> {
        check_nesting(&job.id, &events)?;
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let inserted = tx
            .execute(
                "INSERT INTO jobs (id, rule, status, message, started_by, created_at, updated_at, last_seq, lease_holder, lease_until, wake_at, lease_epoch)
                 VALUES ($1, $2, $3, $4, $5, $6, $6, 0, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
                &[
                    &job.id,
                    &job.rule,
                    &job.status.as_str(),
                    &job.message,
                    &job.started_by,
                    &(job.created_at as i64),
                    &job.lease.as_ref().map(|(h, _)| h.clone()),
                    &job.lease.as_ref().map(|(_, u)| *u as i64),
                    &job.wake_at.map(|t| t as i64),
                    &(if job.lease.is_some() { FIRST_EPOCH as i64 } else { 0 }),
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Exists(job.id.clone()));
        }
        if let Some((key, from)) = &job.trigger {
            let n = tx
                .execute(
                    "INSERT INTO triggers (key, from_job, job_id) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
                    &[key, from, &job.id],
                )
                .await?;
            if n == 0 {
                let earlier: String = tx
                    .query_one("SELECT job_id FROM triggers WHERE key = $1", &[key])
                    .await?
                    .get(0);
                return Err(StoreError::Triggered {
                    key: key.clone(),
                    job: earlier,
                });
            }
        }
        let last = insert_events(&tx, &job.id, 0, &events).await?;
        insert_messages(&tx, &job.id, job.created_at, &job.outbox).await?;
        tx.execute(
            "UPDATE jobs SET last_seq = $2 WHERE id = $1",
            &[&job.id, &(last as i64)],
        )
        .await?;
        if runnable(job.status) {
            hint(&tx, &job.id).await?;
        }
        tx.commit().await?;
        Ok(last)
    }

    async fn append(&self, job: &str, expected: u64, append: Append) -> Result<u64, StoreError> {
        check_nesting(job, &append.events)?;
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT last_seq, lease_holder, lease_epoch FROM jobs WHERE id = $1 FOR UPDATE",
                &[&job],
            )
            .await?
            .ok_or_else(|| StoreError::NoJob(job.to_string()))?;
        let (found, holder, epoch): (i64, Option<String>, i64) =
            (row.get(0), row.get(1), row.get(2));
        if let Some(fence) = &append.fence
            && (holder.as_deref() != Some(fence.holder.as_str()) || epoch as u64 != fence.epoch)
        {
            return Err(StoreError::Fenced {
                job: job.to_string(),
                holder: fence.holder.clone(),
                epoch: fence.epoch,
            });
        }
        if found as u64 != expected {
            return Err(StoreError::Conflict {
                job: job.to_string(),
                expected,
                found: found as u64,
            });
        }
        let last = insert_events(&tx, job, expected, &append.events).await?;
        let now = append.events.last().map(|e| e.at as i64).unwrap_or(0);
        let (status, message) = match &append.status {
            Some((s, m)) => (Some(s.as_str()), Some(m.as_str())),
            None => (None, None),
        };
        let (set_wake, wake) = match append.wake_at {
            Some(w) => (true, w.map(|w| w as i64)),
            None => (false, None),
        };
        tx.execute(
            "UPDATE jobs SET last_seq = $2, updated_at = $3, status = COALESCE($4, status), message = COALESCE($5, message),
                 wake_at = CASE WHEN $6 THEN $7 ELSE wake_at END WHERE id = $1",
            &[&job, &(last as i64), &now, &status, &message, &set_wake, &wake],
        )
        .await?;
        if let Some(logs) = &append.logs {
            insert_logs(&tx, job, now as u64, logs).await?;
        }
        insert_messages(&tx, job, now as u64, &append.outbox).await?;
        if append.status.as_ref().is_some_and(|(s, _)| runnable(*s)) {
            hint(&tx, job).await?;
        }
        tx.commit().await?;
        Ok(last)
    }

    async fn events(&self, job: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT seq, at, body, version FROM events WHERE job_id = $1 AND seq > $2 ORDER BY seq",
            )
            .await?;
        Ok(c.query(&st, &[&job, &(after as i64)])
            .await?
            .iter()
            .map(|r| StoredEvent {
                seq: r.get::<_, i64>(0) as u64,
                at: r.get::<_, i64>(1) as u64,
                body: r.get(2),
                version: r.get::<_, i32>(3) as u32,
            })
            .collect())
    }

    async fn job(&self, job: &str) -> Result<Option<JobRow>, StoreError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .await?;
        c.query_opt(&st, &[&job])
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }

    async fn jobs(&self, query: &JobQuery) -> Result<Vec<JobRow>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1::TEXT IS NULL OR status = $1) AND ($2::TEXT IS NULL OR rule = $2) ORDER BY created_at DESC, n DESC LIMIT $3 OFFSET $4"
                ),
                &[
                    &query.status.map(|s| s.as_str()),
                    &query.rule,
                    &(query.limit.min(i64::MAX as usize) as i64),
                    &(query.offset.min(i64::MAX as usize) as i64),
                ],
            )
            .await?;
        rows.iter().map(job_row).collect()
    }

    async fn job_counts(&self) -> Result<Vec<(JobState, u64)>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT status, COUNT(*) FROM jobs GROUP BY status ORDER BY status COLLATE \"C\"",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let status: String = r.get(0);
                let status = status
                    .parse()
                    .map_err(|e: String| StoreError::Backend(format!("a job's status: {e}")))?;
                Ok((status, r.get::<_, i64>(1) as u64))
            })
            .collect()
    }

    async fn add_logs(&self, job: &str, at: Millis, logs: StepLogs) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        insert_logs(&tx, job, at, &logs).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn logs(&self, job: &str, after: i64) -> Result<Vec<LogRow>, StoreError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "SELECT id, step, attempt, at, level, source, message FROM logs WHERE job_id = $1 AND id > $2 ORDER BY id",
            )
            .await?;
        Ok(c.query(&st, &[&job, &after])
            .await?
            .iter()
            .map(|r| LogRow {
                id: r.get(0),
                step: r.get(1),
                attempt: r.get::<_, i64>(2) as u32,
                at: r.get::<_, i64>(3) as u64,
                line: LogLine {
                    level: parse_level(r.get(4)),
                    source: parse_source(r.get(5)),
                    message: r.get(6),
                },
            })
            .collect())
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
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCKS_LOCK])
            .await?;
        tx.execute(
            "INSERT INTO lock_line (job_id) VALUES ($1) ON CONFLICT (job_id) DO NOTHING",
            &[&job],
        )
        .await?;
        let ticket: i64 = tx
            .query_one("SELECT ticket FROM lock_line WHERE job_id = $1", &[&job])
            .await?
            .get(0);
        let table = lock_table(&tx).await?;
        let (acquired, pushed_out) = match locks::plan_acquire(&table, job, ticket, &asks, mode) {
            // Nothing to change: the transaction (and its line entry) is rolled back.
            Plan::AlreadyHeld => {
                return Ok(Acquisition {
                    acquired: Acquired::Held,
                    pushed_out: vec![],
                });
            }
            Plan::Rejected { by } => {
                return Ok(Acquisition {
                    acquired: Acquired::Rejected { by },
                    pushed_out: vec![],
                });
            }
            Plan::Ask { pushed_out, behind } => {
                for other in &pushed_out {
                    forget_locks(&tx, other).await?;
                }
                for ask in &asks {
                    tx.execute(
                        "INSERT INTO lock_asks (job_id, name, exclusive, held) VALUES ($1, $2, $3, FALSE) ON CONFLICT DO NOTHING",
                        &[&job, &ask.name, &ask.exclusive],
                    )
                    .await?;
                }
                if behind.is_empty() {
                    tx.execute(
                        "UPDATE lock_asks SET held = TRUE WHERE job_id = $1",
                        &[&job],
                    )
                    .await?;
                    (Acquired::Held, pushed_out)
                } else {
                    (Acquired::Queued { behind }, pushed_out)
                }
            }
        };
        tx.commit().await?;
        Ok(Acquisition {
            acquired,
            pushed_out,
        })
    }

    async fn release(&self, job: &str) -> Result<Vec<String>, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCKS_LOCK])
            .await?;
        let table = lock_table(&tx).await?;
        forget_locks(&tx, job).await?;
        let waiting = locks::waiting_after_release(&table, job);
        if !waiting.is_empty() {
            // Found through the status index: once woken, thousands in line cost nothing more.
            tx.execute(
                "UPDATE jobs SET status = 'ready' WHERE status = 'queued' AND id = ANY($1)",
                &[&waiting],
            )
            .await?;
        }
        if let Some(first) = waiting.first() {
            hint(&tx, first).await?;
        }
        tx.commit().await?;
        Ok(waiting)
    }

    async fn locks(&self) -> Result<Vec<LockRow>, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let mut rows = lock_table(&tx).await?;
        rows.sort_by(|a, b| (&a.name, !a.held, a.ticket).cmp(&(&b.name, !b.held, b.ticket)));
        Ok(rows)
    }

    async fn lease(&self, job: &str, req: LeaseRequest) -> Result<Lease, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT lease_holder, lease_until, lease_epoch FROM jobs WHERE id = $1 FOR UPDATE",
                &[&job],
            )
            .await?
            .ok_or_else(|| StoreError::NoJob(job.to_string()))?;
        let (holder, until, epoch): (Option<String>, Option<i64>, i64) =
            (row.get(0), row.get(1), row.get(2));
        let next = match locks::lease_decision(&holder, until.map(|u| u as u64), epoch as u64, &req)
        {
            Err(answer) => return Ok(answer),
            Ok(next) => next,
        };
        tx.execute(
            "UPDATE jobs SET lease_holder = $2, lease_until = $3, lease_epoch = $4 WHERE id = $1",
            &[&job, &req.holder, &(req.until as i64), &(next as i64)],
        )
        .await?;
        tx.commit().await?;
        Ok(Lease::Taken { epoch: next })
    }

    async fn unlease(
        &self,
        job: &str,
        holder: &str,
        if_last_seq: Option<u64>,
    ) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE jobs SET lease_holder = NULL, lease_until = NULL WHERE id = $1 AND lease_holder = $2 AND ($3::BIGINT IS NULL OR last_seq = $3)",
                &[&job, &holder, &if_last_seq.map(|s| s as i64)],
            )
            .await?;
        if n == 1 || if_last_seq.is_none() {
            return Ok(true);
        }
        // Not released: either the job moved on (keep driving), or the lease was not ours.
        let ours = c
            .query_opt(
                "SELECT lease_holder = $2 FROM jobs WHERE id = $1",
                &[&job, &holder],
            )
            .await?
            .and_then(|r| r.get::<_, Option<bool>>(0))
            .unwrap_or(false);
        Ok(!ours)
    }

    async fn lease_holder(&self, job: &str, now: Millis) -> Result<Option<String>, StoreError> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT lease_holder FROM jobs WHERE id = $1 AND lease_until >= $2",
            &[&job, &(now as i64)],
        )
        .await?
        .and_then(|r| r.get(0)))
    }

    async fn due(&self, now: Millis) -> Result<Vec<String>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT id FROM jobs WHERE status IN {RUNNABLE} OR (status = 'waiting' AND wake_at <= $1) ORDER BY created_at, n"
                ),
                &[&(now as i64)],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn claim(
        &self,
        now: Millis,
        holder: &str,
        until: Millis,
        skip: &[String],
    ) -> Result<Option<(String, u64)>, StoreError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(&format!(
                "WITH c AS (
                    SELECT id FROM jobs
                    WHERE (status IN {RUNNABLE} OR (status = 'waiting' AND wake_at <= $1))
                      AND (lease_holder IS NULL OR lease_until IS NULL OR lease_until < $1)
                      AND NOT (id = ANY($4))
                    ORDER BY created_at, n LIMIT 1
                    FOR UPDATE SKIP LOCKED)
                 UPDATE jobs j SET lease_holder = $2, lease_until = $3, lease_epoch = j.lease_epoch + 1
                 FROM c WHERE j.id = c.id RETURNING j.id, j.lease_epoch"
            ))
            .await?;
        let skip: Vec<&str> = skip.iter().map(String::as_str).collect();
        Ok(
            c.query_opt(&st, &[&(now as i64), &holder, &(until as i64), &skip])
                .await?
                .map(|r| (r.get(0), r.get::<_, i64>(1) as u64)),
        )
    }

    async fn wait_for_work(&self, max: Duration) {
        self.listen();
        let _ = tokio::time::timeout(max, self.work.notified()).await;
    }

    async fn annotate(
        &self,
        job: &str,
        note: NewAnnotation,
        body: Box<dyn Read + Send>,
        len: u64,
    ) -> Result<i64, StoreError> {
        if len > MAX_BLOB {
            return Err(StoreError::Body(format!(
                "an annotation of {len} bytes is larger than the {MAX_BLOB} the PostgreSQL journal stores"
            )));
        }
        // The source may block (a file, a request body): read it off the async threads.
        let bytes = tokio::task::spawn_blocking(move || -> R<Vec<u8>> {
            let mut body = body;
            let read_err =
                |e: std::io::Error| StoreError::Body(format!("reading the annotation's body: {e}"));
            let mut buf = Vec::with_capacity(len as usize);
            (&mut body)
                .take(len)
                .read_to_end(&mut buf)
                .map_err(read_err)?;
            if (buf.len() as u64) != len {
                return Err(StoreError::Body(format!(
                    "the annotation's source shrank while it was read ({} of {len} bytes)",
                    buf.len()
                )));
            }
            let mut probe = [0u8; 1];
            if body.read(&mut probe).map_err(read_err)? > 0 {
                return Err(StoreError::Body(format!(
                    "the annotation's source grew past {len} bytes while it was read"
                )));
            }
            Ok(buf)
        })
        .await
        .map_err(|e| {
            StoreError::Backend(format!("reading the annotation did not finish: {e}"))
        })??;
        let c = self.client().await?;
        Ok(c.query_one(
            "INSERT INTO annotations (job_id, at, author, kind, title, size, body) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            &[
                &job,
                &(note.at as i64),
                &note.author,
                &note.kind,
                &note.title,
                &(len as i64),
                &bytes,
            ],
        )
        .await?
        .get(0))
    }

    async fn annotations(&self, job: &str) -> Result<Vec<AnnotationRow>, StoreError> {
        let c = self.client().await?;
        Ok(c.query(
            "SELECT id, at, author, kind, title, size FROM annotations WHERE job_id = $1 ORDER BY id",
            &[&job],
        )
        .await?
        .iter()
        .map(annotation_row)
        .collect())
    }

    async fn annotation(&self, job: &str, id: i64) -> Result<Option<AnnotationRow>, StoreError> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT id, at, author, kind, title, size FROM annotations WHERE job_id = $1 AND id = $2",
            &[&job, &id],
        )
        .await?
        .as_ref()
        .map(annotation_row))
    }

    async fn copy_annotation(
        &self,
        id: i64,
        out: Box<dyn Write + Send>,
    ) -> Result<u64, StoreError> {
        let c = self.client().await?;
        let bytes: Vec<u8> = c
            .query_opt("SELECT body FROM annotations WHERE id = $1", &[&id])
            .await?
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::Body(format!("no annotation {id}")))?;
        drop(c);
        tokio::task::spawn_blocking(move || {
            let mut out = out;
            let err =
                |e: std::io::Error| StoreError::Body(format!("writing the annotation out: {e}"));
            out.write_all(&bytes).map_err(err)?;
            out.flush().map_err(err)?;
            Ok(bytes.len() as u64)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("writing the annotation did not finish: {e}")))?
    }

    async fn add_child(&self, job: &str, ch: ChildRow) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO children (job_id, step, attempt, host, pid, start_ticks, program, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &job,
                &ch.step,
                &(ch.attempt as i64),
                &ch.host,
                &(ch.pid as i64),
                &(ch.start_ticks as i64),
                &ch.program,
                &(ch.at as i64),
            ],
        )
        .await?;
        Ok(())
    }

    async fn children(&self, job: &str, step: &str) -> Result<Vec<ChildRow>, StoreError> {
        let c = self.client().await?;
        Ok(c.query(
            "SELECT step, attempt, host, pid, start_ticks, program, at FROM children WHERE job_id = $1 AND step = $2 ORDER BY n",
            &[&job, &step],
        )
        .await?
        .iter()
        .map(|r| ChildRow {
            step: r.get(0),
            attempt: r.get::<_, i64>(1) as u32,
            host: r.get(2),
            pid: r.get::<_, i64>(3) as u32,
            start_ticks: r.get::<_, i64>(4) as u64,
            program: r.get(5),
            at: r.get::<_, i64>(6) as u64,
        })
        .collect())
    }

    async fn worker_seen(
        &self,
        holder: &str,
        now: Millis,
        every_ms: u64,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        if every_ms == 0 {
            c.execute("DELETE FROM workers WHERE holder = $1", &[&holder])
                .await?;
        } else {
            c.execute(
                "INSERT INTO workers (holder, seen, every_ms) VALUES ($1, $2, $3) ON CONFLICT (holder) DO UPDATE SET seen = $2, every_ms = $3",
                &[&holder, &(now as i64), &(every_ms as i64)],
            )
            .await?;
        }
        Ok(())
    }

    async fn workers(&self, now: Millis) -> Result<Vec<String>, StoreError> {
        let c = self.client().await?;
        Ok(c.query(
            "SELECT holder FROM workers WHERE seen + 3 * every_ms + 1000 >= $1 ORDER BY holder COLLATE \"C\"",
            &[&(now as i64)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
    }

    async fn add_token(&self, hash: &str, token: TokenRow) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO tokens (id, hash, user_name, group_list, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &token.id,
                &hash,
                &token.user,
                &token.groups.join(","),
                &(token.created_at as i64),
                &token.created_by,
            ],
        )
        .await?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let c = self.client().await?;
        Ok(c.query_opt(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1 AND revoked_at IS NULL"),
            &[&hash],
        )
        .await?
        .as_ref()
        .map(token_row))
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let c = self.client().await?;
        Ok(c.query(
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, n"),
            &[],
        )
        .await?
        .iter()
        .map(token_row)
        .collect())
    }

    async fn revoke_token(&self, id: &str, at: Millis) -> Result<bool, StoreError> {
        let c = self.client().await?;
        Ok(c.execute(
            "UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&id, &(at as i64)],
        )
        .await?
            == 1)
    }

    async fn set_password(&self, user: &str, phc: &str, at: Millis) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO passwords (user_name, hash, set_at) VALUES ($1, $2, $3) ON CONFLICT (user_name) DO UPDATE SET hash = $2, set_at = $3",
            &[&user, &phc, &(at as i64)],
        )
        .await?;
        Ok(())
    }

    async fn password(&self, user: &str) -> Result<Option<String>, StoreError> {
        let c = self.client().await?;
        Ok(
            c.query_opt("SELECT hash FROM passwords WHERE user_name = $1", &[&user])
                .await?
                .map(|r| r.get(0)),
        )
    }

    async fn remove_password(&self, user: &str) -> Result<bool, StoreError> {
        let c = self.client().await?;
        Ok(
            c.execute("DELETE FROM passwords WHERE user_name = $1", &[&user])
                .await?
                == 1,
        )
    }

    async fn claim_messages(
        &self,
        now: Millis,
        holder: &str,
        until: Millis,
        limit: usize,
        internal: bool,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let rows = tx
            .query(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM outbox m WHERE delivered_at IS NULL AND NOT gave_up AND next_at <= $1
                       AND (claimed_until IS NULL OR claimed_until <= $1) AND (left(sink, 7) = 'sluice:') = $3
                       AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.sink = m.sink AND e.job_id = m.job_id AND e.id < m.id AND e.delivered_at IS NULL AND NOT e.gave_up)
                     ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"
                ),
                &[&(now as i64), &(limit.min(i64::MAX as usize) as i64), &internal],
            )
            .await?;
        let rows: Vec<MessageRow> = rows.iter().map(message_row).collect();
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        tx.execute(
            "UPDATE outbox SET claimed_by = $2, claimed_until = $3 WHERE id = ANY($1)",
            &[&ids, &holder, &(until as i64)],
        )
        .await?;
        tx.commit().await?;
        Ok(rows)
    }

    async fn message_delivered(&self, id: i64, at: Millis) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "UPDATE outbox SET delivered_at = $2, attempts = attempts + 1, claimed_until = NULL, last_error = NULL WHERE id = $1",
            &[&id, &(at as i64)],
        )
        .await?;
        Ok(())
    }

    async fn message_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<Millis>,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "UPDATE outbox SET attempts = attempts + 1, claimed_until = NULL, last_error = $2, next_at = COALESCE($3, next_at), gave_up = $4 WHERE id = $1 AND delivered_at IS NULL",
            &[&id, &error, &retry_at.map(|t| t as i64), &retry_at.is_none()],
        )
        .await?;
        Ok(())
    }

    async fn messages(&self, job: &str) -> Result<Vec<MessageRow>, StoreError> {
        let c = self.client().await?;
        Ok(c.query(
            &format!("SELECT {MESSAGE_COLUMNS} FROM outbox WHERE job_id = $1 ORDER BY id"),
            &[&job],
        )
        .await?
        .iter()
        .map(message_row)
        .collect())
    }

    async fn outbox_backlog(&self) -> Result<u64, StoreError> {
        let c = self.client().await?;
        Ok(c.query_one(
            "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND NOT gave_up",
            &[],
        )
        .await?
        .get::<_, i64>(0) as u64)
    }

    async fn triggered(&self, key: &str) -> Result<Option<String>, StoreError> {
        let c = self.client().await?;
        Ok(
            c.query_opt("SELECT job_id FROM triggers WHERE key = $1", &[&key])
                .await?
                .map(|r| r.get(0)),
        )
    }

    async fn started_by_job(&self, job: &str) -> Result<Vec<String>, StoreError> {
        let c = self.client().await?;
        Ok(c.query(
            "SELECT job_id FROM triggers WHERE from_job = $1 ORDER BY n",
            &[&job],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
    }

    async fn chat_follow(
        &self,
        backend: &str,
        room: &str,
        job: &str,
        posted: u64,
    ) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO chat_follows (backend, room, job_id, posted_seq) VALUES ($1, $2, $3, $4)
             ON CONFLICT (backend, room, job_id) DO UPDATE SET posted_seq = GREATEST(chat_follows.posted_seq, excluded.posted_seq)",
            &[&backend, &room, &job, &(posted as i64)],
        )
        .await?;
        Ok(())
    }

    async fn chat_unfollow(
        &self,
        backend: &str,
        room: &str,
        job: &str,
    ) -> Result<bool, StoreError> {
        let c = self.client().await?;
        Ok(c.execute(
            "DELETE FROM chat_follows WHERE backend = $1 AND room = $2 AND job_id = $3",
            &[&backend, &room, &job],
        )
        .await?
            > 0)
    }

    async fn chat_following(
        &self,
        backend: &str,
        room: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let c = self.client().await?;
        Ok(c.query(
            "SELECT job_id, posted_seq FROM chat_follows WHERE backend = $1 AND room = $2 ORDER BY n",
            &[&backend, &room],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
        .collect())
    }

    async fn chat_follows(&self, backend: &str) -> Result<Vec<(String, String, u64)>, StoreError> {
        let c = self.client().await?;
        Ok(c.query(
            "SELECT room, job_id, posted_seq FROM chat_follows WHERE backend = $1 ORDER BY n",
            &[&backend],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2) as u64))
        .collect())
    }

    async fn chat_seen(&self, key: &str, at: Millis) -> Result<bool, StoreError> {
        let c = self.client().await?;
        Ok(c.execute(
            "INSERT INTO chat_seen (key, at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[&key, &(at as i64)],
        )
        .await?
            == 1)
    }

    async fn chat_unsee(&self, key: &str) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute("DELETE FROM chat_seen WHERE key = $1", &[&key])
            .await?;
        Ok(())
    }

    async fn last_trigger(&self, prefix: &str) -> Result<Option<String>, StoreError> {
        // A range over the key's byte-order index: every key with the prefix sorts between the
        // prefix and the prefix followed by the greatest character.
        let high = format!("{prefix}{}", char::MAX);
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT key FROM triggers WHERE key COLLATE \"C\" >= $1 AND key COLLATE \"C\" < $2 ORDER BY key COLLATE \"C\" DESC LIMIT 1",
            &[&prefix, &high],
        )
        .await?
        .map(|r| r.get(0)))
    }
}

/// What [`PgJournal::import_sqlite`] copied: rows per table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Imported {
    /// Table name and rows copied, in the order copied.
    pub tables: Vec<(String, u64)>,
}

/// How a column is read from SQLite and written to PostgreSQL.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    /// An `INTEGER` (32-bit) column.
    Int32,
    Text,
    Blob,
    /// An SQLite integer 0/1 read as a PostgreSQL boolean.
    Bool,
}

/// One table's copy: the SQLite query (columns in order) and the PostgreSQL insert.
struct TableCopy {
    table: &'static str,
    select: &'static str,
    insert: &'static str,
    kinds: &'static [Kind],
    /// An identity column whose values are kept (ids people and URLs refer to): its sequence
    /// is moved past them afterwards.
    kept_id: Option<&'static str>,
}

use Kind::{Blob, Bool, Int, Int32, Text};

/// Every table but `workers` (who runs now is not history) and leases (no process drives a
/// job of a journal being moved), in an order that satisfies the foreign keys.
const COPIES: &[TableCopy] = &[
    TableCopy {
        table: "counters",
        select: "SELECT rule, next FROM counters",
        insert: "INSERT INTO counters (rule, next) VALUES ($1, $2)",
        kinds: &[Text, Int],
        kept_id: None,
    },
    TableCopy {
        table: "jobs",
        select: "SELECT id, rule, status, message, started_by, created_at, updated_at, last_seq, wake_at, lease_epoch FROM jobs ORDER BY rowid",
        insert: "INSERT INTO jobs (id, rule, status, message, started_by, created_at, updated_at, last_seq, wake_at, lease_epoch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        kinds: &[Text, Text, Text, Text, Text, Int, Int, Int, Int, Int],
        kept_id: None,
    },
    TableCopy {
        table: "events",
        select: "SELECT job_id, seq, at, body, version FROM events ORDER BY job_id, seq",
        insert: "INSERT INTO events (job_id, seq, at, body, version) VALUES ($1, $2, $3, $4, $5)",
        kinds: &[Text, Int, Int, Text, Int32],
        kept_id: None,
    },
    TableCopy {
        table: "logs",
        select: "SELECT id, job_id, step, attempt, at, level, source, message FROM logs ORDER BY id",
        insert: "INSERT INTO logs (id, job_id, step, attempt, at, level, source, message) OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        kinds: &[Int, Text, Text, Int, Int, Text, Text, Text],
        kept_id: Some("id"),
    },
    TableCopy {
        table: "annotations",
        select: "SELECT id, job_id, at, author, kind, title, length(body), body FROM annotations ORDER BY id",
        insert: "INSERT INTO annotations (id, job_id, at, author, kind, title, size, body) OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        kinds: &[Int, Text, Int, Text, Text, Text, Int, Blob],
        kept_id: Some("id"),
    },
    TableCopy {
        table: "children",
        select: "SELECT job_id, step, attempt, host, pid, start_ticks, program, at FROM children ORDER BY rowid",
        insert: "INSERT INTO children (job_id, step, attempt, host, pid, start_ticks, program, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        kinds: &[Text, Text, Int, Text, Int, Int, Text, Int],
        kept_id: None,
    },
    TableCopy {
        table: "tokens",
        select: "SELECT id, hash, user, groups, created_at, created_by, revoked_at FROM tokens ORDER BY rowid",
        insert: "INSERT INTO tokens (id, hash, user_name, group_list, created_at, created_by, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        kinds: &[Text, Text, Text, Text, Int, Text, Int],
        kept_id: None,
    },
    TableCopy {
        table: "passwords",
        select: "SELECT user, hash, set_at FROM passwords",
        insert: "INSERT INTO passwords (user_name, hash, set_at) VALUES ($1, $2, $3)",
        kinds: &[Text, Text, Int],
        kept_id: None,
    },
    TableCopy {
        table: "outbox",
        select: "SELECT id, job_id, sink, body, created_at, attempts, next_at, delivered_at, last_error, gave_up FROM outbox ORDER BY id",
        insert: "INSERT INTO outbox (id, job_id, sink, body, created_at, attempts, next_at, delivered_at, last_error, gave_up) OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        kinds: &[Int, Text, Text, Text, Int, Int, Int, Int, Text, Bool],
        kept_id: Some("id"),
    },
    TableCopy {
        table: "triggers",
        select: "SELECT key, from_job, job_id FROM triggers ORDER BY rowid",
        insert: "INSERT INTO triggers (key, from_job, job_id) VALUES ($1, $2, $3)",
        kinds: &[Text, Text, Text],
        kept_id: None,
    },
    TableCopy {
        table: "chat_follows",
        select: "SELECT backend, room, job_id, posted_seq FROM chat_follows ORDER BY rowid",
        insert: "INSERT INTO chat_follows (backend, room, job_id, posted_seq) VALUES ($1, $2, $3, $4)",
        kinds: &[Text, Text, Text, Int],
        kept_id: None,
    },
    TableCopy {
        table: "chat_seen",
        select: "SELECT key, at FROM chat_seen",
        insert: "INSERT INTO chat_seen (key, at) VALUES ($1, $2)",
        kinds: &[Text, Int],
        kept_id: None,
    },
    TableCopy {
        table: "lock_line",
        select: "SELECT ticket, job_id FROM lock_line ORDER BY ticket",
        insert: "INSERT INTO lock_line (ticket, job_id) OVERRIDING SYSTEM VALUE VALUES ($1, $2)",
        kinds: &[Int, Text],
        kept_id: Some("ticket"),
    },
    TableCopy {
        table: "lock_asks",
        select: "SELECT job_id, name, exclusive, held FROM lock_asks",
        insert: "INSERT INTO lock_asks (job_id, name, exclusive, held) VALUES ($1, $2, $3, $4)",
        kinds: &[Text, Text, Bool, Bool],
        kept_id: None,
    },
];

type Cell = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;

/// Reads one table of the SQLite journal as PostgreSQL parameters.
fn read_table(conn: &rusqlite::Connection, copy: &TableCopy) -> rusqlite::Result<Vec<Vec<Cell>>> {
    let mut st = conn.prepare(copy.select)?;
    let rows = st.query_map([], |r| {
        let mut row: Vec<Cell> = Vec::with_capacity(copy.kinds.len());
        for (i, kind) in copy.kinds.iter().enumerate() {
            row.push(match kind {
                Int => Box::new(r.get::<_, Option<i64>>(i)?),
                Int32 => Box::new(r.get::<_, Option<i32>>(i)?),
                Text => Box::new(r.get::<_, Option<String>>(i)?),
                Blob => Box::new(r.get::<_, Option<Vec<u8>>>(i)?),
                Bool => Box::new(r.get::<_, Option<i64>>(i)?.map(|v| v != 0)),
            });
        }
        Ok(row)
    })?;
    rows.collect()
}

impl PgJournal {
    /// Copies the SQLite journal at `path` (every job with its events, logs, annotations,
    /// outbox, locks, triggers, tokens and passwords) into this database in one transaction:
    /// all of it or nothing. Refused when this database holds jobs already, or when a job's
    /// lease still runs in the SQLite journal at `now` (stop every sluice using it first).
    /// Ids people refer to (annotations, log lines, outbox messages) are kept.
    pub async fn import_sqlite(
        &self,
        path: &std::path::Path,
        now: Millis,
    ) -> Result<Imported, StoreError> {
        if !path.exists() {
            return Err(StoreError::Io {
                path: path.display().to_string(),
                message: "no journal there: name the $SLUICE_HOME that holds sluice.db".into(),
            });
        }
        // Opening it brings an older file to the current schema first.
        drop(SqliteJournal::open(path)?);
        let path = path.to_path_buf();
        let tables = tokio::task::spawn_blocking(move || -> R<Vec<(usize, Vec<Vec<Cell>>)>> {
            let conn = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .map_err(|e| StoreError::Backend(e.to_string()))?;
            let driven: Option<(String, String)> = conn
                .query_row(
                    "SELECT id, lease_holder FROM jobs WHERE lease_holder IS NOT NULL AND lease_until >= ?1 LIMIT 1",
                    [now as i64],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .ok();
            if let Some((job, holder)) = driven {
                return Err(StoreError::Backend(format!(
                    "job {job} is being driven by {holder}: stop every sluice process using this journal (servers, workers, runs) before moving it"
                )));
            }
            // One read transaction: a consistent picture of every table.
            conn.execute_batch("BEGIN").map_err(|e| StoreError::Backend(e.to_string()))?;
            let mut out = Vec::new();
            for (i, copy) in COPIES.iter().enumerate() {
                let rows = read_table(&conn, copy)
                    .map_err(|e| StoreError::Backend(format!("reading {}: {e}", copy.table)))?;
                out.push((i, rows));
            }
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("reading the SQLite journal did not finish: {e}")))??;

        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let jobs: i64 = tx.query_one("SELECT COUNT(*) FROM jobs", &[]).await?.get(0);
        if jobs > 0 {
            return Err(StoreError::Backend(format!(
                "the database holds {jobs} jobs already: move a journal into an empty database (nothing was copied)"
            )));
        }
        let mut imported = Imported::default();
        for (i, rows) in tables {
            let copy = &COPIES[i];
            let st = tx.prepare(copy.insert).await?;
            for row in &rows {
                let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    row.iter().map(|c| c.as_ref() as _).collect();
                tx.execute(&st, &params)
                    .await
                    .map_err(|e| match StoreError::from(e) {
                        StoreError::Backend(m) => {
                            StoreError::Backend(format!("copying {}: {m}", copy.table))
                        }
                        other => other,
                    })?;
            }
            if let Some(id) = copy.kept_id {
                tx.execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{t}', '{id}'), COALESCE((SELECT MAX({id}) FROM {t}), 0) + 1, false)",
                        t = copy.table
                    ),
                    &[],
                )
                .await?;
            }
            imported
                .tables
                .push((copy.table.to_string(), rows.len() as u64));
        }
        tx.commit().await?;
        Ok(imported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::conformance_tests!(async |dir: &std::path::Path| {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("t")
            .to_string();
        let url = sluice_pgtest::cluster().database(&name);
        Arc::new(PgJournal::connect(&url).await.unwrap()) as Arc<dyn Journal>
    });

    #[tokio::test]
    async fn a_newer_schema_is_refused_and_migrating_twice_is_harmless() {
        let cluster = sluice_pgtest::cluster();
        let url = cluster.database("schema");
        let j = PgJournal::connect(&url).await.unwrap();
        j.create_job(conformance::new_job("deploy-1"), conformance::events(1))
            .await
            .unwrap();
        drop(j);
        let again = PgJournal::connect(&url).await.unwrap();
        assert!(again.job("deploy-1").await.unwrap().is_some());
        drop(again);
        let db = url.rsplit('/').next().unwrap();
        cluster
            .psql(
                db,
                &format!("UPDATE sluice_schema SET version = {}", SCHEMA_VERSION + 1),
            )
            .unwrap();
        assert!(matches!(
            PgJournal::connect(&url).await,
            Err(StoreError::NewerSchema { .. })
        ));
    }

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redact("postgres://sluice:s3cret@db:5432/sluice"),
            "postgres://sluice:***@db:5432/sluice"
        );
        assert_eq!(redact("postgres://db/sluice"), "postgres://db/sluice");
    }
}
