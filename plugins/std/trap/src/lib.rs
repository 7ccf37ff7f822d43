//! `trap`: asserts a condition and, when it is false, stops the job at a trap where a person
//! picks retry, skip, rollback or abort (Clarive's trap, used as an assertion).
use serde::{Deserialize, Serialize};
use sluice_op::schemars::{self, JsonSchema};
use sluice_op::serde_json::Value;
use sluice_op::{Context, DecisionKind, Duration, Error, Gate, GateKind, Op, Outcome, export_op};

/// The input of `trap`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Input {
    /// The condition, usually a `${{ }}` expression.
    that: Value,
    /// What the trap says when the condition is false.
    #[serde(default)]
    message: Option<String>,
    /// How long the trap waits (`30m`, `4h`, `1d` or seconds); none waits forever.
    #[serde(default)]
    timeout: Option<Duration>,
    /// What a timeout does: abort (the default), skip, retry or rollback.
    #[serde(default)]
    on_timeout: Option<String>,
}

/// The output of `trap`: the condition held.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Output {
    held: bool,
}

struct Trap;

impl Op for Trap {
    type Input = Input;
    type Output = Output;
    const NAME: &'static str = "trap";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Stops the job at a trap for a person when a condition is false";
    const IDEMPOTENT: bool = true;

    fn run(_ctx: &Context, input: Input) -> Result<Outcome<Output>, Error> {
        if sluice_op::truthy(&input.that) {
            return Ok(Outcome::Success(Output { held: true }));
        }
        let message = input
            .message
            .unwrap_or_else(|| format!("assertion failed: `that` is {}", input.that));
        let mut gate = Gate::new(GateKind::Trap, message);
        gate.allow_self_approval = true;
        gate.timeout_seconds = input.timeout.map(|d| d.as_secs_ceil());
        gate.timeout_action = Some(match input.on_timeout.as_deref() {
            None | Some("abort") => DecisionKind::Abort,
            Some("skip") => DecisionKind::Skip,
            Some("retry") => DecisionKind::Retry,
            Some("rollback") => DecisionKind::Rollback,
            Some(other) => {
                return Err(Error::new(format!(
                    "on-timeout `{other}` is not a choice: use abort, skip, retry or rollback"
                )));
            }
        });
        Ok(Outcome::Suspend(gate))
    }
}

export_op!(Trap);
