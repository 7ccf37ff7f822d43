//! The on-disk compile cache: `$SLUICE_HOME/cache/<sha256>-<engine>.cwasm`.
//!
//! The key joins the component's sha256 with a hash of the engine's compatibility fingerprint
//! (`Engine::precompile_compatibility_hash`), so an upgraded or differently configured host never
//! loads native code compiled for another. A file that fails to load is recompiled and replaced.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::{LoadSource, RuntimeError, error_chain};

pub(crate) struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompileCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> Result<Self, RuntimeError> {
        // A cache that cannot be made (a read-only or full `$SLUICE_HOME`) only costs time:
        // every load compiles in memory, and `load` says so once per op.
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(path = %dir.display(), "compile cache unavailable, compiling in memory: {e}");
        }
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("{:016x}", hasher.finish());
        Ok(CompileCache { dir, engine_key })
    }

    pub(crate) fn path_for(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The component for `bytes` (whose sha256 is `digest`): from the cache when present and
    /// loadable, otherwise compiled and stored.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> Result<(Component, LoadSource), RuntimeError> {
        let path = self.path_for(digest);
        if path.is_file() {
            match deserialize(engine, &path) {
                Ok(component) => return Ok((component, LoadSource::DiskCache)),
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    "compile cache entry unusable, recompiling: {}",
                    error_chain(&e)
                ),
            }
        }
        let component = Component::new(engine, bytes).map_err(|e| RuntimeError::Compile {
            message: error_chain(&e),
        })?;
        let serialized = component.serialize().map_err(|e| RuntimeError::Compile {
            message: error_chain(&e),
        })?;
        // Not being able to keep the compiled code (a full disk, a read-only home) is no reason
        // to fail the op: it runs from memory, and the next process compiles it again.
        if let Err(e) = write_atomically(&path, &serialized) {
            tracing::warn!(
                path = %path.display(),
                "compiled code not cached (the op runs anyway; the next process compiles it again): {e}"
            );
        }
        Ok((component, LoadSource::Compiled))
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file is native code that this host wrote itself (`write_atomically` below)
    // into `$SLUICE_HOME/cache`; wasmtime checks its header against the engine before use. Who
    // can write that directory can run code as the host: docs/security.md says so.
    unsafe { Component::deserialize_file(engine, path) }
}

/// Writes via a temporary file and a rename, so a crash never leaves half a cache entry.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
