// Helpers every integration test binary shares (included by main.rs and postgres.rs).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the journals of this test binary live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `$SLUICE_HOME/sluice.db`.
    Sqlite,
    /// A database per `$SLUICE_HOME` in this process's PostgreSQL cluster.
    Postgres,
}

/// Whether this binary's journals are in PostgreSQL.
pub fn on_postgres() -> bool {
    BACKEND == Backend::Postgres
}

/// A fresh `$SLUICE_HOME` for one test.
pub fn home() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sluice-test-")
        .tempdir()
        .expect("temp dir")
}

/// The journal database URL of `home` on PostgreSQL (a new database the first time).
pub fn database_of(home: &Path) -> Option<String> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static DATABASES: Mutex<Option<HashMap<PathBuf, String>>> = Mutex::new(None);
    if !on_postgres() {
        return None;
    }
    let mut dbs = DATABASES.lock().unwrap_or_else(|p| p.into_inner());
    let dbs = dbs.get_or_insert_with(HashMap::new);
    let key = home.to_path_buf();
    if let Some(url) = dbs.get(&key) {
        return Some(url.clone());
    }
    let hint = home.file_name().and_then(|n| n.to_str()).unwrap_or("home");
    let url = sluice_pgtest::cluster().database(hint);
    dbs.insert(key, url.clone());
    Some(url)
}

/// The environment that points a `sluice` process at `home` (and, on PostgreSQL, at its
/// database): `Command::envs(home_env(..))`.
pub fn home_env(home: &Path) -> Vec<(&'static str, OsString)> {
    let mut env = vec![("SLUICE_HOME", home.as_os_str().to_owned())];
    if let Some(url) = database_of(home) {
        env.push(("SLUICE_DATABASE_URL", url.into()));
    }
    env
}

/// `home`'s journal, opened by the test itself.
pub fn journal(home: &Path) -> Arc<dyn sluice_store::Journal> {
    match database_of(home) {
        Some(url) => Arc::new(sluice_store::PgJournal::open(&url).unwrap()),
        None => Arc::new(sluice_store::SqliteJournal::open(&home.join("sluice.db")).unwrap()),
    }
}

/// Everything `home`'s journal holds, as bytes (the SQLite file, or a dump of the database).
pub fn journal_bytes(home: &Path) -> Vec<u8> {
    match database_of(home) {
        Some(url) => {
            let db = url.rsplit('/').next().unwrap().to_string();
            sluice_pgtest::cluster().dump(&db).unwrap().into_bytes()
        }
        None => std::fs::read(home.join("sluice.db")).unwrap(),
    }
}
