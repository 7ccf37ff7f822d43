//! `sluice.lock`: beside a rule, the digests its packages resolved to. `sluice lock RULE`
//! writes it; `sluice run` uses it and refuses content that does not match.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{PackageError, io};

/// The lock file of one rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lock {
    /// The format version: 1.
    pub version: u32,
    /// By reference as the rule writes it.
    pub packages: BTreeMap<String, Locked>,
}

/// One locked package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Locked {
    /// The manifest's digest.
    pub manifest: String,
    /// The component's digest.
    pub component: String,
    /// The trust policy key that signed it; none when unsigned and allowed.
    pub signer: Option<String>,
}

impl Lock {
    /// `sluice.lock` in the directory of `rule`.
    pub fn path_for(rule: &Path) -> PathBuf {
        rule.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join("sluice.lock")
    }

    /// Reads the lock at `path`; `None` when there is none.
    pub fn read(path: &Path) -> Result<Option<Lock>, PackageError> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| io(path, format!("not a sluice.lock: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(path, e)),
        }
    }

    /// Writes it whole (a temporary file, then a rename).
    pub fn write(&self, path: &Path) -> Result<(), PackageError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| io(path, e))?;
        text.push('\n');
        let tmp = path.with_extension(format!("lock.{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io(path, e))
    }
}
