//! `cleanup`: best-effort clean-up, usually in `post`. Runs every action even when one fails
//! (programs, workspace paths to remove, HTTP DELETEs) and reports each; failures make a
//! warning, or a failure with `strict: true`.
use serde::{Deserialize, Serialize};
use sluice_op::action::{CommandSpec, HttpSpec};
use sluice_op::schemars::{self, JsonSchema};
use sluice_op::serde_json::{self, Value};
use sluice_op::{Context, Error, Op, Outcome, export_op};

/// The input of `cleanup`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// The actions, run in order; every one runs.
    actions: Vec<Action>,
    /// Fail the step when an action fails (a warning otherwise).
    #[serde(default)]
    strict: bool,
}

/// Exactly one of `command`, `remove` or `http`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Action {
    /// A name for the report.
    #[serde(default)]
    name: Option<String>,
    /// Run a granted program; a non-zero exit fails the action.
    #[serde(default)]
    command: Option<CommandSpec>,
    /// A file or directory in the job's workspace to delete (already gone counts as done).
    #[serde(default)]
    remove: Option<String>,
    /// Send a request (`method: DELETE` usually); 404 counts as done.
    #[serde(default)]
    http: Option<HttpSpec>,
}

/// The output of `cleanup`.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Output {
    done: u32,
    failed: u32,
    actions: Vec<Done>,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Done {
    name: String,
    /// `done` or `failed`.
    result: String,
    message: String,
}

struct Cleanup;

impl Op for Cleanup {
    type Input = Input;
    type Output = Output;
    const NAME: &'static str = "cleanup";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Best-effort clean-up: runs every action (programs, workspace paths, HTTP DELETE) and reports each";
    const IDEMPOTENT: bool = true;

    fn run(_ctx: &Context, input: Input) -> Result<Outcome<Output>, Error> {
        let mut out = Output {
            done: 0,
            failed: 0,
            actions: Vec::new(),
        };
        for (i, a) in input.actions.iter().enumerate() {
            let (name, r) = perform(i, a);
            let d = match r {
                Ok(message) => {
                    out.done += 1;
                    sluice_op::log::info(&format!("{name}: {message}"));
                    Done {
                        name,
                        result: "done".into(),
                        message,
                    }
                }
                Err(message) => {
                    out.failed += 1;
                    sluice_op::log::warn(&format!("{name}: {message}"));
                    Done {
                        name,
                        result: "failed".into(),
                        message,
                    }
                }
            };
            out.actions.push(d);
        }
        if out.failed == 0 {
            return Ok(Outcome::Success(out));
        }
        if input.strict {
            let details = serde_json::to_value(&out).unwrap_or(Value::Null);
            return Err(Error::new(format!(
                "{} of {} clean-up actions failed",
                out.failed,
                out.actions.len()
            ))
            .with_details(details));
        }
        Ok(Outcome::Warning(out))
    }
}

fn perform(i: usize, a: &Action) -> (String, Result<String, String>) {
    match (&a.command, &a.remove, &a.http) {
        (Some(c), None, None) => (
            a.name.clone().unwrap_or_else(|| c.display()),
            c.output().map(|_| "ran".into()).map_err(|e| e.message),
        ),
        (None, Some(p), None) => (
            a.name.clone().unwrap_or_else(|| format!("remove {p}")),
            remove(p),
        ),
        (None, None, Some(h)) => (
            a.name
                .clone()
                .unwrap_or_else(|| format!("{} {}", h.method, h.url)),
            match h.send() {
                Ok(r) if (200..300).contains(&r.status) => Ok(format!("answered {}", r.status)),
                Ok(r) if r.status == 404 || r.status == 410 => {
                    Ok(format!("answered {}: already gone", r.status))
                }
                Ok(r) => Err(format!("answered {}", r.status)),
                Err(e) => Err(e.message),
            },
        ),
        _ => (
            a.name
                .clone()
                .unwrap_or_else(|| format!("action {}", i + 1)),
            Err("an action has exactly one of `command`, `remove` or `http`".into()),
        ),
    }
}

/// Removes `path` inside `/workspace`.
fn remove(path: &str) -> Result<String, String> {
    let rel = path
        .trim_start_matches("/workspace/")
        .trim_start_matches('/');
    if rel.is_empty() || rel.split('/').any(|p| p == "..") {
        return Err(format!("`{path}` is not a path inside the workspace"));
    }
    if std::fs::metadata("/workspace").is_err() {
        return Err(
            "the workspace is not granted: grant `workspace:read-write` to op `cleanup`".into(),
        );
    }
    let full = format!("/workspace/{rel}");
    match std::fs::symlink_metadata(&full) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok("already gone".into()),
        Err(e) => Err(format!("{full}: {e}")),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&full)
            .map(|_| "removed".into())
            .map_err(|e| format!("{full}: {e}")),
        Ok(_) => std::fs::remove_file(&full)
            .map(|_| "removed".into())
            .map_err(|e| format!("{full}: {e}")),
    }
}

export_op!(Cleanup);
