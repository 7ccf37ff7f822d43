//! `deploy`: switches a service to a revision through a granted program (kubectl, helm, ln, a
//! script) or an HTTP call, recording the revision it replaced; rollback restores that one.
//!
//! `{revision}` and `{previous}` in arguments, stdin, URLs and bodies are replaced by the
//! revision being deployed and the one that was live before.
use serde::{Deserialize, Serialize};
use sluice_op::action::{CommandSpec, HttpSpec};
use sluice_op::schemars::{self, JsonSchema};
use sluice_op::serde_json::{self, Value};
use sluice_op::{Context, Error, Op, Outcome, export_op};

/// The input of `deploy`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// What to deploy: a version, an image, a path.
    revision: String,
    /// Makes `{revision}` live.
    apply: Action,
    /// Prints (or answers with) the revision live now; recorded as `previous` for rollback.
    #[serde(default)]
    current: Option<Action>,
    /// Undoes the deploy; by default `apply` run again with `{revision}` set to the previous one.
    #[serde(default)]
    rollback: Option<Action>,
}

/// Exactly one of `command` or `http`; `pointer` picks a value out of a JSON answer.
#[derive(Deserialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields)]
struct Action {
    #[serde(default)]
    command: Option<CommandSpec>,
    #[serde(default)]
    http: Option<HttpSpec>,
    /// For `current`: a JSON pointer into the answer, such as `/spec/image`.
    #[serde(default)]
    pointer: Option<String>,
}

impl Action {
    /// Runs it with `vars`; returns its answer (stdout or response body), trimmed.
    fn perform(&self, vars: &[(&str, &str)]) -> Result<String, Error> {
        let answer = match (&self.command, &self.http) {
            (Some(c), None) => c.with_vars(vars).output()?,
            (None, Some(h)) => h.with_vars(vars).send_ok()?.text().trim().to_string(),
            _ => {
                return Err(Error::new(
                    "an action has exactly one of `command` or `http`",
                ));
            }
        };
        match &self.pointer {
            None => Ok(answer),
            Some(p) => {
                let doc: Value = serde_json::from_str(&answer).map_err(|e| {
                    Error::new(format!(
                        "the answer is not JSON ({e}), so `pointer` {p} cannot apply"
                    ))
                })?;
                match doc.pointer(p) {
                    Some(Value::String(s)) => Ok(s.clone()),
                    Some(v) => Ok(v.to_string()),
                    None => Err(Error::new(format!("{p} is not in the answer"))),
                }
            }
        }
    }
}

/// The output of `deploy`.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Output {
    /// The revision now live.
    revision: String,
    /// The revision live before, when `current` could tell.
    previous: Option<String>,
    /// Whether anything was applied (false when the revision was already live).
    changed: bool,
}

struct Deploy;

impl Op for Deploy {
    type Input = Input;
    type Output = Output;
    const NAME: &'static str = "deploy";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Deploys a revision through a granted program or an HTTP call; rollback restores the previous one";
    // Running it again after an interruption would record the new revision as the previous one:
    // the host traps instead, so a person decides.
    const IDEMPOTENT: bool = false;
    const CAN_ROLLBACK: bool = true;

    fn run(_ctx: &Context, input: Input) -> Result<Outcome<Output>, Error> {
        if input.revision.trim().is_empty() {
            return Err(Error::new("`revision` is empty: say what to deploy"));
        }
        let previous = match &input.current {
            Some(c) => match c.perform(&[]) {
                Ok(p) if !p.is_empty() => Some(p),
                Ok(_) => None,
                // Nothing live yet (a first deploy) reads as a failing `current`.
                Err(e) => {
                    sluice_op::log::info(&format!("no current revision: {}", e.message));
                    None
                }
            },
            None => None,
        };
        if previous.as_deref() == Some(input.revision.as_str()) {
            sluice_op::log::info(&format!(
                "{} is already live; nothing to do",
                input.revision
            ));
            return Ok(Outcome::Success(Output {
                revision: input.revision,
                previous,
                changed: false,
            }));
        }
        let prev = previous.clone().unwrap_or_default();
        input
            .apply
            .perform(&[("revision", &input.revision), ("previous", &prev)])?;
        let note = match &previous {
            Some(p) => format!("deployed {} (was {p})", input.revision),
            None => format!("deployed {} (nothing recorded before it)", input.revision),
        };
        sluice_op::log::info(&note);
        Ok(Outcome::Success(Output {
            revision: input.revision,
            previous,
            changed: true,
        }))
    }

    fn rollback(_ctx: &Context, input: Input, output: Output) -> Result<(), Error> {
        if !output.changed {
            sluice_op::log::info("the deploy changed nothing; nothing to roll back");
            return Ok(());
        }
        let prev = output.previous.clone().unwrap_or_default();
        let vars = [
            ("revision", output.revision.as_str()),
            ("previous", prev.as_str()),
        ];
        match (&input.rollback, &output.previous) {
            (Some(r), _) => {
                r.perform(&vars)?;
            }
            (None, Some(p)) => {
                input
                    .apply
                    .perform(&[("revision", p), ("previous", &output.revision)])?;
            }
            (None, None) => {
                return Err(Error::new(format!(
                    "cannot roll back {}: no previous revision was recorded; give `deploy` a `current` action, or a `rollback` action",
                    output.revision
                )));
            }
        }
        sluice_op::log::info(&match &output.previous {
            Some(p) => format!("restored {p} (rolled back {})", output.revision),
            None => format!("rolled back {}", output.revision),
        });
        Ok(())
    }
}

export_op!(Deploy);
