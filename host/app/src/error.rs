//! What can go wrong in an operation, classed the way every front end answers it: the CLI's
//! exit code, the server's HTTP status.

use std::path::Path;

/// Why an operation did not happen. Nothing was changed unless the variant says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request itself is wrong: bad arguments, an unknown op, bad params, input that is not
    /// JSON, an unreadable file, a job that does not exist.
    #[error("{0}")]
    Usage(String),
    /// What the request names does not exist: a job, an annotation, a rule, a token.
    #[error("{0}")]
    NotFound(String),
    /// A rule does not validate: every problem, rendered with file:line:column.
    #[error("{0}")]
    Invalid(sluice_rule::Diagnostics),
    /// No credentials, or ones that authenticate nobody (an unknown or revoked token).
    #[error("{0}")]
    Unauthenticated(String),
    /// The actor may not do this: the permissions file, a gate's approvers, four eyes.
    #[error("{0}")]
    Forbidden(String),
    /// A decision asked wrongly (an input the gate does not take, which gate): asking
    /// differently can succeed.
    #[error("{0}")]
    BadDecision(String),
    /// Refused: not allowed, nothing waits there, already decided, the job ended, a package
    /// not trusted.
    #[error("{0}")]
    Refused(String),
    /// A component could not be loaded, or a registry could not be reached.
    #[error("{0}")]
    Load(String),
    /// `$SLUICE_HOME` cannot be written: no space left, or read-only.
    #[error("{0}")]
    Storage(String),
    /// A failure of sluice itself.
    #[error("{0}")]
    Internal(String),
}

impl AppError {
    /// The exit code a command line answers with (docs/cli.md).
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Usage(_) | AppError::NotFound(_) => 2,
            AppError::Invalid(_) => 2,
            AppError::Unauthenticated(_) | AppError::Forbidden(_) | AppError::BadDecision(_) => 5,
            AppError::Load(_) => 4,
            AppError::Refused(_) => 5,
            AppError::Storage(_) => 6,
            AppError::Internal(_) => 70,
        }
    }

    /// The HTTP status an API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            AppError::Usage(_) | AppError::Invalid(_) | AppError::BadDecision(_) => 400,
            AppError::NotFound(_) => 404,
            AppError::Unauthenticated(_) => 401,
            AppError::Forbidden(_) => 403,
            AppError::Refused(_) => 409,
            AppError::Load(_) => 502,
            AppError::Storage(_) => 507,
            AppError::Internal(_) => 500,
        }
    }

    /// Prefixes the message with what was being done.
    pub fn context(self, what: impl std::fmt::Display) -> Self {
        match self {
            AppError::Usage(m) => AppError::Usage(format!("{what}: {m}")),
            AppError::NotFound(m) => AppError::NotFound(format!("{what}: {m}")),
            AppError::Unauthenticated(m) => AppError::Unauthenticated(format!("{what}: {m}")),
            AppError::Forbidden(m) => AppError::Forbidden(format!("{what}: {m}")),
            AppError::BadDecision(m) => AppError::BadDecision(format!("{what}: {m}")),
            AppError::Refused(m) => AppError::Refused(format!("{what}: {m}")),
            AppError::Load(m) => AppError::Load(format!("{what}: {m}")),
            AppError::Storage(m) => AppError::Storage(format!("{what}: {m}")),
            AppError::Internal(m) => AppError::Internal(format!("{what}: {m}")),
            e @ AppError::Invalid(_) => e,
        }
    }
}

/// A store failure as the user sees it: a full or read-only `$SLUICE_HOME` is said as such,
/// with its path; a missing job is a usage error; anything else is internal.
pub(crate) fn store(home: &Path, e: sluice_store::StoreError) -> AppError {
    use sluice_store::StoreError as S;
    let text = e.to_string();
    match e {
        S::NoJob(_) => AppError::NotFound(text),
        S::Body(m) => AppError::Usage(format!("{m}: nothing was attached")),
        S::NewerSchema { .. } | S::Triggered { .. } => AppError::Refused(text),
        S::NoSpace => no_space(home, &text),
        S::ReadOnly(_) => read_only(home, &text),
        _ => storage_or_internal(home, text),
    }
}

/// Classes a failure met while using `$SLUICE_HOME`: when the home is full or cannot be
/// written, that is what the user must hear, whatever broke inside.
pub(crate) fn storage_or_internal(home: &Path, text: String) -> AppError {
    let shown = shown(home);
    if text.contains("No space left")
        || text.contains("database or disk is full")
        || free_bytes(&shown).is_some_and(|b| b < 1 << 20)
    {
        return no_space(home, &text);
    }
    if text.contains("readonly database")
        || text.contains("Read-only file system")
        || !writable(&shown)
    {
        return read_only(home, &text);
    }
    AppError::Internal(text)
}

fn shown(home: &Path) -> std::path::PathBuf {
    std::path::absolute(home).unwrap_or_else(|_| home.to_path_buf())
}

fn no_space(home: &Path, text: &str) -> AppError {
    AppError::Storage(format!(
        "no space left in $SLUICE_HOME ({}): free some space there, then run the command again ({text})",
        shown(home).display()
    ))
}

fn read_only(home: &Path, text: &str) -> AppError {
    AppError::Storage(format!(
        "$SLUICE_HOME ({}) cannot be written: make it writable or point SLUICE_HOME elsewhere; `jobs`, `show` and `logs` work read-only ({text})",
        shown(home).display()
    ))
}

/// Bytes free to unprivileged writers on the filesystem holding `path` (or its nearest
/// existing ancestor).
fn free_bytes(path: &Path) -> Option<u64> {
    let dir = path.ancestors().find(|p| p.exists())?;
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Whether this process may create files in `path` (or its nearest existing ancestor).
fn writable(path: &Path) -> bool {
    path.ancestors()
        .find(|p| p.exists())
        .is_none_or(|dir| rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).is_ok())
}
