//! One throwaway PostgreSQL cluster per test process, on 127.0.0.1, in a temporary directory,
//! and a fresh database per test.
//!
//! The cluster is Debian's `postgresql` (`initdb` and `postgres` from
//! `/usr/lib/postgresql/N/bin`, or from `PATH`), started on first use. It stops when the test
//! process ends, however it ends: `postgres` runs under a shell that waits on a pipe only this
//! process holds, and stops the server (fast shutdown) and removes its directory when the pipe
//! closes. As root (where `initdb` refuses to run) the cluster runs as the `postgres` account
//! Debian's package makes.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A running cluster.
pub struct Cluster {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its data directory.
    pub dir: PathBuf,
    bin: PathBuf,
    account: Option<(u32, u32)>,
    /// The shell's stdin: closing it (this process ending) stops the cluster.
    _keep: Mutex<(Child, ChildStdin)>,
}

/// The cluster of this process (fsync off: these tests check behaviour, not durability across
/// a power cut), started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start(false).unwrap_or_else(|e| panic!("{e}")))
}

/// Where the PostgreSQL server programs are: the newest `/usr/lib/postgresql/N/bin`, or the
/// directory of `initdb` on `PATH`.
pub fn bin_dir() -> Result<PathBuf, String> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| d.join("initdb").exists() && d.join("postgres").exists())
        .ok_or_else(|| {
            "PostgreSQL's server programs (initdb, postgres) are not installed: `apt-get install postgresql` (or run .ci/run, which does)".to_string()
        })
}

/// The `postgres` account's uid and gid when this process runs as root.
fn account() -> Result<Option<(u32, u32)>, String> {
    let me = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = me
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string));
    if uid.as_deref() != Some("0") {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres") && f.len() > 3)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
        .map(Some)
        .ok_or_else(|| {
            "initdb refuses to run as root and there is no `postgres` account: `apt-get install postgresql` makes one".to_string()
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(55432)
}

impl Cluster {
    /// Starts a cluster in a new temporary directory; `durable` keeps fsync on (benchmarks).
    pub fn start(durable: bool) -> Result<Cluster, String> {
        let bin = bin_dir()?;
        let account = account()?;
        let dir = std::env::temp_dir().join(format!(
            "sluice-pg-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if let Some((uid, gid)) = account {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        }
        let data = dir.join("data");
        let out = as_account(Command::new(bin.join("initdb")), account)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "-D",
            ])
            .arg(&data)
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let port = free_port();
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=64MB",
            dir.display()
        );
        if !durable {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        // The server stops (fast shutdown, whichever process runs it after a restart) and its
        // directory goes when this process's end of the pipe closes.
        let script = format!(
            "'{bin}/postgres' -D '{data}' {options} >'{log}' 2>&1 & read _ignored; '{bin}/pg_ctl' -D '{data}' stop -m fast -w >/dev/null 2>&1; rm -rf '{dir}'",
            bin = bin.display(),
            data = data.display(),
            log = dir.join("server.log").display(),
            dir = dir.display()
        );
        let mut child = as_account(Command::new("sh"), account)
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))?;
        let stdin = child.stdin.take().expect("piped");
        let cluster = Cluster {
            port,
            dir,
            bin,
            account,
            _keep: Mutex::new((child, stdin)),
        };
        let started = Instant::now();
        loop {
            let ready = Command::new(cluster.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(cluster);
            }
            if started.elapsed() > Duration::from_secs(60) {
                let log =
                    std::fs::read_to_string(cluster.dir.join("server.log")).unwrap_or_default();
                return Err(format!("postgres did not start within 60 s: {log}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A new empty database named after `hint`; returns its URL.
    pub fn database(&self, hint: &str) -> String {
        let mut name: String = hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        name = format!("t{}_{name}", COUNTER.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("{e}"));
        self.url(&name)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` in database `db` with psql; returns what it printed (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "psql `{sql}`: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// A plain-text dump of database `db` (every row of every table).
    pub fn dump(&self, db: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("pg_dump"))
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-p",
                &self.port.to_string(),
                db,
            ])
            .output()
            .map_err(|e| format!("pg_dump: {e}"))?;
        if !out.status.success() {
            return Err(format!("pg_dump: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Restarts the server (fast shutdown, start again on the same port and data): every
    /// connection is cut.
    pub fn restart(&self) -> Result<(), String> {
        let data = self.dir.join("data");
        let ctl = |args: &[&str]| {
            as_account(Command::new(self.bin.join("pg_ctl")), self.account)
                .args(args)
                .arg("-D")
                .arg(&data)
                .stdout(Stdio::null())
                .status()
                .map_err(|e| format!("pg_ctl: {e}"))
        };
        // `restart` keeps the options the server was started with (postmaster.opts).
        let s = ctl(&[
            "restart",
            "-m",
            "fast",
            "-w",
            "-l",
            &self.dir.join("server.log").display().to_string(),
        ])?;
        if !s.success() {
            return Err("pg_ctl restart failed".into());
        }
        Ok(())
    }

    /// The data directory's path.
    pub fn data(&self) -> &Path {
        &self.dir
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn as_account(mut c: Command, account: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = account {
        c.gid(gid).uid(uid);
    }
    c
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Ok(mut k) = self._keep.lock() {
            let _ = k.1.write_all(b"stop\n");
            let _ = k.0.wait();
        }
    }
}
