//! Ops as a job runs them: pinned by sha256 when the job starts, loaded through the runtime's
//! one cache of loaded ops afterwards.
//!
//! Ops from files and packages run exactly the pinned bytes: a file that changed since the job
//! started is refused. The standard ops are part of sluice itself: a job carried on by a newer
//! sluice runs that sluice's standard ops, and the step's log says so when they changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sluice_engine::OpMeta;
use sluice_model::{LogLevel, LogLine, LogSource};
use sluice_rule::{OpSource, Rule};
use sluice_runtime::{LoadedOp, Runtime};

use crate::RunError;

/// An op ready to call, and a note for the step's log when it is not the pinned build.
pub(crate) struct Ready {
    pub(crate) op: Arc<LoadedOp>,
    pub(crate) note: Option<LogLine>,
}

/// Loads op `name` of `rule`; with `pinned`, the op must be that sha256 (see the module docs
/// for standard ops).
pub(crate) fn load(
    runtime: &Runtime,
    rule: &Rule,
    name: &str,
    pinned: Option<&str>,
) -> Result<Ready, RunError> {
    let err = |message: String| RunError::Op {
        op: name.to_string(),
        message,
    };
    if let Some(op) = pinned.and_then(|d| runtime.loaded(d)) {
        return Ok(Ready { op, note: None });
    }
    let (bytes, standard): (Vec<u8>, bool) = match rule.ops.get(name) {
        Some(OpSource::Path(p)) => (
            std::fs::read(p).map_err(|e| err(format!("cannot read {p}: {e}")))?,
            false,
        ),
        Some(OpSource::Package(r)) => {
            return Err(err(format!("package {r} is not resolved to a file")));
        }
        None => match sluice_std_ops::std_op(name) {
            Some(op) => (op.wasm.to_vec(), true),
            None => {
                return Err(err(
                    "no such standard op, and the rule's `ops:` does not declare it".into(),
                ));
            }
        },
    };
    let (op, _) = runtime.load(&bytes).map_err(|e| err(e.to_string()))?;
    let note = match pinned {
        Some(digest) if op.digest() != digest && !standard => {
            return Err(err(format!(
                "the component changed since the job started (sha256 {} now, {digest} then); start a new job to use it",
                op.digest()
            )));
        }
        Some(digest) if op.digest() != digest => Some(LogLine {
            level: LogLevel::Warn,
            source: LogSource::Host,
            message: format!(
                "standard op `{name}` is this sluice's build (sha256 {}), not the one the job started with ({digest}): the job was carried on by a newer sluice",
                op.digest()
            ),
        }),
        _ => None,
    };
    Ok(Ready { op, note })
}

/// What the engine keeps of an op when a job starts: its sha256 and what its `describe` says.
pub(crate) async fn meta(runtime: &Runtime, rule: &Rule, name: &str) -> Result<OpMeta, RunError> {
    let ready = load(runtime, rule, name, None)?;
    let info = runtime
        .describe(&ready.op)
        .await
        .map_err(|e| RunError::Op {
            op: name.to_string(),
            message: e.to_string(),
        })?;
    Ok(OpMeta {
        digest: ready.op.digest().to_string(),
        can_rollback: info.can_rollback,
        idempotent: info.idempotent,
        needs: info.needs.iter().map(ToString::to_string).collect(),
        templates: sluice_rule::expr::template_prefixes(&info.input_schema),
    })
}

/// Input schemas of loaded ops, by sha256, compiled once per process.
pub(crate) type Schemas = Mutex<HashMap<String, Option<Arc<sluice_rule::inputs::InputSchema>>>>;

/// The input schema of `op` (named `name` in the rule), compiled once per process; `None`
/// when it declares none this host can use.
pub(crate) async fn schema(
    runtime: &Runtime,
    schemas: &Schemas,
    name: &str,
    op: &LoadedOp,
) -> Option<Arc<sluice_rule::inputs::InputSchema>> {
    if let Some(s) = schemas
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(op.digest())
    {
        return s.clone();
    }
    let compiled = runtime.describe(op).await.ok().and_then(|info| {
        sluice_rule::inputs::InputSchema::compile(&info.input_schema)
            .ok()
            .map(|s| Arc::new(s.for_op(name)))
    });
    schemas
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(op.digest().to_string(), compiled.clone());
    compiled
}
