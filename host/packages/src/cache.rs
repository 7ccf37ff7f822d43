//! `$SLUICE_HOME/packages`: component bytes by sha256 (`blobs/sha256/<hex>`) and an index of
//! what was pulled (`index.json`), so a locked rule runs offline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::registry::{Metadata, Pulled};
use crate::sign::Signature;
use crate::{PackageError, digest, io};

/// One pulled package, as the index keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedPackage {
    /// The reference it was pulled by.
    pub reference: String,
    /// The manifest's digest.
    pub manifest: String,
    /// The component's digest (its layer).
    pub component: String,
    /// What the op says about itself, from the manifest's annotations.
    pub metadata: Metadata,
    /// Its signature, when it has one.
    pub signature: Option<Signature>,
}

/// The package cache under a sluice home.
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache of `home` (`$SLUICE_HOME`).
    pub fn new(home: &Path) -> Cache {
        Cache {
            root: home.join("packages"),
        }
    }

    /// Where the blob with `digest` lives (whether or not it is there).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.root.join("blobs/sha256").join(hex)
    }

    /// Stores `bytes`, written whole or not at all; returns their digest.
    pub fn put(&self, bytes: &[u8]) -> Result<String, PackageError> {
        let d = digest(bytes);
        let path = self.blob_path(&d);
        if path.is_file() {
            return Ok(d);
        }
        let dir = path.parent().expect("blobs/sha256");
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let tmp = dir.join(format!(".{}.{}", &d[7..], std::process::id()));
        std::fs::write(&tmp, bytes).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        Ok(d)
    }

    /// The path of the blob with `digest`, checked to still hash to it; `None` when absent.
    pub fn get(&self, digest: &str) -> Result<Option<PathBuf>, PackageError> {
        let path = self.blob_path(digest);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, e)),
        };
        let actual = crate::digest(&bytes);
        if actual != digest {
            return Err(PackageError::DigestMismatch {
                what: format!("cached blob {}", path.display()),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(Some(path))
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// Every package pulled, by reference.
    pub fn list(&self) -> Result<BTreeMap<String, CachedPackage>, PackageError> {
        let path = self.index_path();
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| io(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(io(&path, e)),
        }
    }

    /// The cached package pulled by `reference`, or with manifest `digest`.
    pub fn find(
        &self,
        reference: &str,
        manifest: Option<&str>,
    ) -> Result<Option<CachedPackage>, PackageError> {
        let all = self.list()?;
        Ok(all
            .get(reference)
            .cloned()
            .or_else(|| manifest.and_then(|m| all.values().find(|p| p.manifest == m).cloned())))
    }

    /// Stores a pulled package's component and records it as pulled by `reference`.
    pub fn store(&self, reference: &str, pulled: Pulled) -> Result<CachedPackage, PackageError> {
        let component = self.put(&pulled.component)?;
        let cached = CachedPackage {
            reference: reference.to_string(),
            manifest: pulled.manifest,
            component,
            metadata: pulled.metadata,
            signature: pulled.signature,
        };
        self.record(cached.clone())?;
        Ok(cached)
    }

    /// Records `pkg` (its blob must be stored already).
    pub fn record(&self, pkg: CachedPackage) -> Result<(), PackageError> {
        let mut all = self.list()?;
        all.insert(pkg.reference.clone(), pkg);
        std::fs::create_dir_all(&self.root).map_err(|e| io(&self.root, e))?;
        let path = self.index_path();
        let tmp = self.root.join(format!(".index.{}", std::process::id()));
        let text = serde_json::to_vec_pretty(&all).map_err(|e| io(&path, e))?;
        std::fs::write(&tmp, text).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
    }
}
