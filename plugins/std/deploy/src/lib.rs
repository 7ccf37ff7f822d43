//! `deploy`: switches a service to a revision through a granted program (kubectl, helm, ln, a
//! script) or an HTTP call, recording the revision it replaced; rollback restores that one.
//!
//! Every string of an action is a brace template: `{revision}` and `{previous}` are replaced by
//! the revision being deployed and the one that was live before, `{{` and `}}` are literal
//! braces. The input schema names the template fields (`x-sluice-templates`), so the host
//! doubles the braces of whatever a rule's expressions put there: a param arrives verbatim,
//! never substituted.
use serde::{Deserialize, Serialize};
use sluice_op::action::{CommandSpec, HttpSpec, substitute};
use sluice_op::schemars::{self, JsonSchema};
use sluice_op::serde_json::{self, Value};
use sluice_op::{Context, Error, Op, Outcome, export_op};

/// The input of `deploy`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("x-sluice-templates" = ["/apply", "/current", "/rollback", "/undeploy"]))]
struct Input {
    /// What to deploy: a version, an image, a path.
    revision: String,
    /// Makes `{revision}` live: one action or a list, run in order.
    apply: Actions,
    /// Prints (or answers with) the revision live now; recorded as `previous` for rollback.
    #[serde(default)]
    current: Option<Action>,
    /// Puts `{previous}` back; by default `apply` run again with `{revision}` set to it.
    #[serde(default)]
    rollback: Option<Actions>,
    /// What rollback does when nothing was live before (a first deploy), such as removing a
    /// link; without it, rolling back a first deploy fails.
    #[serde(default)]
    undeploy: Option<Actions>,
}

/// One action, or a list run in order (the first failure stops the list).
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum Actions {
    One(Action),
    List(Vec<Action>),
}

impl Actions {
    fn perform(&self, vars: &[(&str, &str)]) -> Result<(), Error> {
        match self {
            Actions::One(a) => a.perform(vars).map(drop),
            Actions::List(list) => list.iter().try_for_each(|a| a.perform(vars).map(drop)),
        }
    }
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
        match self.pointer.as_deref().map(|p| substitute(p, vars)) {
            None => Ok(answer),
            Some(p) => {
                let doc: Value = serde_json::from_str(&answer).map_err(|e| {
                    Error::new(format!(
                        "the answer is not JSON ({e}), so `pointer` {p} cannot apply"
                    ))
                })?;
                match doc.pointer(&p) {
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
        match (&output.previous, &input.rollback, &input.undeploy) {
            (Some(_), Some(r), _) => r.perform(&vars)?,
            (Some(p), None, _) => input
                .apply
                .perform(&[("revision", p), ("previous", &output.revision)])?,
            (None, _, Some(u)) => u.perform(&vars)?,
            (None, _, None) => {
                return Err(Error::new(format!(
                    "cannot roll back {}: nothing was live before it; give `deploy` an `undeploy` action for first deploys",
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
