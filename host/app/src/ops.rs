//! Ops on their own: the standard ops, what an op says of itself, and one ad hoc call.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sluice_model::{Actor, Capability, JobContext, OpInfo};
use sluice_runtime::{Call, LoadSource, OpReport};

use crate::{App, AppError};

/// An op named by a front end, loaded: its name, sha256 and where it was loaded from.
#[derive(Debug, Clone)]
pub struct LoadedOp {
    /// Its name (a standard op's, or the file's stem).
    pub name: String,
    /// Its sha256.
    pub digest: String,
    /// Compiled now, from the disk cache, or already in memory.
    pub source: LoadSource,
}

/// What one ad hoc call did.
#[derive(Debug, Clone)]
pub struct OpRun {
    /// The op.
    pub op: LoadedOp,
    /// The report (secrets masked).
    pub report: OpReport,
}

impl App {
    /// Loads `arg`: a standard op by name, or a component file by path (an argument ending in
    /// `.wasm` or holding a `/`).
    pub(crate) fn load_op(
        &self,
        arg: &str,
    ) -> Result<(LoadedOp, Arc<sluice_runtime::LoadedOp>), AppError> {
        let path = Path::new(arg);
        let looks_like_file = arg.ends_with(".wasm") || arg.contains(std::path::MAIN_SEPARATOR);
        let (name, bytes): (String, std::borrow::Cow<'static, [u8]>) = if looks_like_file
            || path.is_file()
        {
            let bytes = std::fs::read(path).map_err(|e| {
                AppError::Usage(format!("cannot read op file {}: {e}", path.display()))
            })?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, bytes.into())
        } else {
            match sluice_std_ops::std_op(arg) {
                Some(op) => (op.name.to_string(), op.wasm.into()),
                None => {
                    return Err(AppError::Usage(format!(
                        "unknown op `{arg}`: the standard ops are {}; to run your own, give the path of its .wasm file",
                        crate::rules::std_op_names().join(", ")
                    )));
                }
            }
        };
        let (op, source) = self
            .runtime()?
            .load(&bytes)
            .map_err(|e| AppError::Load(format!("cannot load op `{arg}`: {e}")))?;
        tracing::info!(op = %name, digest = op.digest(), ?source, "loaded op");
        Ok((
            LoadedOp {
                name,
                digest: op.digest().to_string(),
                source,
            },
            op,
        ))
    }

    /// What op `arg` says of itself.
    pub async fn describe_op(&self, arg: &str) -> Result<(LoadedOp, OpInfo), AppError> {
        let (loaded, op) = self.load_op(arg)?;
        let info = self
            .runtime()?
            .describe(&op)
            .await
            .map_err(|e| AppError::Load(format!("cannot describe op `{arg}`: {e}")))?;
        Ok((loaded, info))
    }

    /// Every standard op, described.
    pub async fn std_ops(&self) -> Result<Vec<(LoadedOp, OpInfo)>, AppError> {
        let mut out = Vec::new();
        for name in crate::rules::std_op_names() {
            let got = self
                .describe_op(name)
                .await
                .map_err(|e| AppError::Internal(format!("standard op `{name}` is broken: {e}")))?;
            out.push(got);
        }
        Ok(out)
    }

    /// Runs op `arg` once with `input` (JSON text), the capabilities `grants` (as a rule's
    /// `grants:` would give them; the workspace is `$SLUICE_HOME/workspaces/op-run`) and an
    /// optional deadline, for `actor`.
    pub async fn run_op(
        &self,
        arg: &str,
        input: &str,
        grants: &[String],
        timeout: Option<Duration>,
        actor: &Actor,
    ) -> Result<OpRun, AppError> {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(input) {
            return Err(AppError::Usage(format!(
                "the input is not JSON ({e}); pass an object such as --input '{{\"message\": \"hi\"}}'"
            )));
        }
        let mut caps = Vec::new();
        for g in grants {
            match g.parse::<Capability>() {
                Ok(Capability::Http(o)) if o == "*" => {
                    return Err(AppError::Usage(
                        "--grant http:*: grant each origin the op calls, e.g. --grant http:https://api.example.com".into(),
                    ));
                }
                Ok(c) => caps.push(c),
                Err(e) => return Err(AppError::Usage(format!("--grant {g}: {e}"))),
            }
        }
        let grants = sluice_runner::host_grants(&caps, &self.home.join("workspaces/op-run"));
        let (loaded, op) = self.load_op(arg)?;
        let call = Call::Run {
            ctx: JobContext::adhoc(&loaded.name, &actor.name),
            input: input.to_string(),
        };
        let secrets = sluice_runner::secret_values(&grants);
        let mut report = self
            .runtime()?
            .call(&op, &loaded.name, call, Arc::new(grants), timeout)
            .await;
        sluice_runner::mask_report(&mut report, &secrets);
        Ok(OpRun { op: loaded, report })
    }
}
