//! The service layer: every operation a front end offers (the command line, the server and
//! chat), typed, with the permission checks inside.
//!
//! [`App`] opens `$SLUICE_HOME` (its journal read-write, or read-only for queries) and offers:
//! jobs (`start`, `decide` including cancel, `annotate`, queries, the worker), rules
//! (`validate`, `simulate`, package resolution through the lock and the trust policy), ops
//! (`describe`, `run`) and packages (push, pull, inspect, sign, lock). Errors are [`AppError`]s,
//! each with the exit code and HTTP status it maps to.
//!
//! Architecture Invariant: front ends call only this crate. They parse their input, build an
//! [`Actor`], call an operation and print or serve what comes back; they do not open the
//! journal, load an op or read a permissions file themselves. The types they print come from
//! here (re-exported below).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_runtime::{Runtime, RuntimeConfig};
use sluice_store::{Journal, PgJournal, SqliteJournal};

mod chat;
mod error;
mod identity;
mod jobs;
pub mod matrix;
mod notify;
mod ops;
mod optest;
mod packages;
mod remote;
mod rules;
pub mod slack;
mod tokens;
mod triggers;

pub use chat::{ChatOrigin, ChatPost, ChatReply, MAX_CHAT_TEXT};
pub use error::AppError;
pub use identity::{Permission, command_line_actor};
pub use jobs::{Decision, JobView, Note, parse_inputs};
pub use notify::{DELIVERY_ATTEMPTS, Delivered};
pub use ops::{LoadedOp, OpRun};
pub use optest::{OpTestRun, TestCall, TestCase};
pub use packages::{Inspected, Pushed};
pub use remote::{Remote, login_file};
pub use rules::{RuleFile, Validated, std_op_names};
pub use slack::SlackApp;
pub use tokens::{MIN_PASSWORD_CHARS, NewToken, random_hex};
pub use triggers::{HookDelivery, MAX_CHAIN, ScheduleRound, TriggeredStart};

pub use sluice_engine::{
    DecisionKind, Event, GateKind, GateView, Job, JobStatus, Millis, SimLine, StepState, StepStatus,
};
pub use sluice_model::{
    Actor, AuthMethod, InputKind, JobState, LogLevel, LogLine, LogSource, OpInfo, Outcome,
    utc_parts,
};
/// The JSON Schema of rule files, for editors (`sluice schema`).
pub const RULE_SCHEMA: &str = sluice_rule::JSON_SCHEMA;
pub use sluice_packages::CachedPackage;
pub use sluice_rule::{Diagnostic, Diagnostics, Rule, Step, StepKind};
pub use sluice_runner::{Observer, Quiet, Standing, now, status_of};
pub use sluice_runtime::{Fault, LoadSource, OpReport};
pub use sluice_store::{
    AnnotationRow, JobQuery, JobRow, LockRow, LogRow, MessageRow, TokenRow, redact_url,
};

/// A time as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn format_time(ms: Millis) -> String {
    let [y, mo, d, h, mi, s] = utc_parts(ms / 1000);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// The most a file or log annotation may hold; larger ones are refused before anything is read.
pub const MAX_ANNOTATION_BYTES: u64 = 64 << 20;

/// One `$SLUICE_HOME`: its journal, permissions file and (built on first use) op runtime.
pub struct App {
    home: PathBuf,
    journal: Arc<dyn Journal>,
    permissions: PathBuf,
    notifications: PathBuf,
    runtime: std::sync::OnceLock<Arc<Runtime>>,
    /// The shared journal's URL (password hidden), when it is PostgreSQL.
    database: Option<String>,
}

impl App {
    /// Opens `home` to read and write: its journal is created (or migrated) when needed.
    pub fn open(home: &Path) -> Result<App, AppError> {
        let path = home.join("sluice.db");
        let journal = SqliteJournal::open(&path).map_err(|e| {
            error::store(home, e).context(format!("cannot open the journal at {}", path.display()))
        })?;
        Ok(App::with(home, Arc::new(journal)))
    }

    /// Opens `home` with its journal read-only: nothing of it is created or changed, so `jobs`,
    /// `show` and `logs` work in a read-only `$SLUICE_HOME`, and ops and packages work when the
    /// journal cannot be written (a full disk).
    pub fn open_read_only(home: &Path) -> Result<App, AppError> {
        let path = home.join("sluice.db");
        let journal = SqliteJournal::open_read_only(&path).map_err(|e| {
            error::store(home, e).context(format!("cannot read the journal at {}", path.display()))
        })?;
        Ok(App::with(home, Arc::new(journal)))
    }

    /// Opens `home` with its journal in the PostgreSQL database at `database`
    /// (`postgres://...`) when one is given, in `home` (SQLite) otherwise. The database is
    /// reached, and its schema checked and migrated, on first use.
    pub fn open_with(home: &Path, database: Option<&str>) -> Result<App, AppError> {
        let Some(url) = database.filter(|u| !u.is_empty()) else {
            return App::open(home);
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(AppError::Usage(format!(
                "--database {}: only PostgreSQL is supported as a shared journal: write postgres://USER:PASSWORD@HOST:PORT/DATABASE (without --database the journal is $SLUICE_HOME/sluice.db)",
                redact_url(url)
            )));
        }
        let journal = PgJournal::open(url).map_err(|e| AppError::Usage(e.to_string()))?;
        let mut app = App::with(home, Arc::new(journal));
        app.database = Some(redact_url(url));
        Ok(app)
    }

    /// [`App::open_read_only`], or the PostgreSQL journal at `database` when one is given.
    pub fn open_read_only_with(home: &Path, database: Option<&str>) -> Result<App, AppError> {
        match database.filter(|u| !u.is_empty()) {
            Some(_) => App::open_with(home, database),
            None => App::open_read_only(home),
        }
    }

    /// Moves `home`'s SQLite journal into the empty PostgreSQL database at `to`, in one
    /// transaction (all of it or nothing); the SQLite file is left as it was. Refused while a
    /// process still drives a job of it.
    pub async fn migrate(home: &Path, to: &str) -> Result<sluice_store::Imported, AppError> {
        let shown = redact_url(to);
        if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
            return Err(AppError::Usage(format!(
                "--to {shown}: name the PostgreSQL database to move the journal into: postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            )));
        }
        let path = home.join("sluice.db");
        let pg = PgJournal::open(to).map_err(|e| AppError::Usage(e.to_string()))?;
        pg.import_sqlite(&path, now()).await.map_err(|e| match e {
            sluice_store::StoreError::Io { .. } => AppError::NotFound(e.to_string()),
            sluice_store::StoreError::NewerSchema { .. } => AppError::Refused(e.to_string()),
            e => AppError::Refused(format!("moving {} into {shown}: {e}", path.display())),
        })
    }

    /// Where the journal is, for people: the PostgreSQL URL (password hidden) or the SQLite
    /// file.
    pub fn journal_location(&self) -> String {
        match &self.database {
            Some(url) => url.clone(),
            None => self.home.join("sluice.db").display().to_string(),
        }
    }

    fn with(home: &Path, journal: Arc<dyn Journal>) -> App {
        let permissions = std::env::var_os("SLUICE_PERMISSIONS")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("permissions.yaml"));
        let notifications = std::env::var_os("SLUICE_NOTIFICATIONS")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("notifications.yaml"));
        App {
            home: home.to_path_buf(),
            journal,
            permissions,
            notifications,
            runtime: std::sync::OnceLock::new(),
            database: None,
        }
    }

    /// `$SLUICE_HOME`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The op runtime, built on first use (it reserves its instance pool).
    fn runtime(&self) -> Result<Arc<Runtime>, AppError> {
        if let Some(r) = self.runtime.get() {
            return Ok(r.clone());
        }
        let r = Arc::new(
            Runtime::new(RuntimeConfig::new(&self.home))
                .map_err(|e| AppError::Internal(e.to_string()))?,
        );
        Ok(self.runtime.get_or_init(|| r).clone())
    }

    fn runner(&self, observer: Arc<dyn Observer>) -> Result<sluice_runner::Runner, AppError> {
        let runner = sluice_runner::Runner::new(self.runtime()?, self.journal.clone(), observer);
        Ok(match self.notifications()? {
            Some(n) if !n.webhooks.is_empty() => runner.with_outbox(Arc::new(notify::Notifier(n))),
            _ => runner,
        })
    }

    fn store_error(&self, e: sluice_store::StoreError) -> AppError {
        match (&self.database, e) {
            (Some(url), sluice_store::StoreError::Backend(m)) => AppError::Storage(format!(
                "the journal in PostgreSQL ({url}) failed: {m}; check that the database runs and this host reaches it"
            )),
            (_, e) => error::store(&self.home, e),
        }
    }

    fn run_error(&self, e: sluice_runner::RunError) -> AppError {
        use sluice_runner::RunError as R;
        match e {
            R::Params(_) | R::NotGranted(_) => AppError::Usage(e.to_string()),
            R::Op { .. } => AppError::Load(e.to_string()),
            R::Refused(_) | R::Ended { .. } => AppError::Refused(e.to_string()),
            R::Decision(r) => match r.class() {
                sluice_engine::RefusalClass::Denied => AppError::Forbidden(r.to_string()),
                sluice_engine::RefusalClass::Invalid => AppError::BadDecision(r.to_string()),
                sluice_engine::RefusalClass::Conflict => AppError::Refused(r.to_string()),
            },
            R::Store(s) => self.store_error(s),
            R::Corrupt { .. } | R::Stuck { .. } => {
                error::storage_or_internal(&self.home, e.to_string())
            }
        }
    }
}
