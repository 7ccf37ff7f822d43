//! `assert`: fails the step unless a condition holds, such as a quality gate over an earlier
//! step's output: `that: "${{ steps.canary.output.error_rate < 0.01 }}"`.
use serde::{Deserialize, Serialize};
use sluice_op::schemars::{self, JsonSchema};
use sluice_op::serde_json::Value;
use sluice_op::{Context, Error, Op, Outcome, export_op};

/// The input of `assert`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// The condition, usually a `${{ }}` expression: true, or a non-empty, non-zero value.
    that: Value,
    /// What the step fails with when the condition does not hold.
    #[serde(default)]
    message: Option<String>,
    /// Succeed with a warning instead of failing.
    #[serde(default)]
    warn_only: bool,
}

/// The output of `assert`: whether the condition held.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Output {
    held: bool,
}

struct Assert;

impl Op for Assert {
    type Input = Input;
    type Output = Output;
    const NAME: &'static str = "assert";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Fails the step unless a condition holds (a quality gate)";
    const IDEMPOTENT: bool = true;

    fn run(_ctx: &Context, input: Input) -> Result<Outcome<Output>, Error> {
        if sluice_op::truthy(&input.that) {
            return Ok(Outcome::Success(Output { held: true }));
        }
        let message = input
            .message
            .unwrap_or_else(|| format!("assertion failed: `that` is {}", input.that));
        if input.warn_only {
            sluice_op::log::warn(&message);
            return Ok(Outcome::Warning(Output { held: false }));
        }
        Err(Error::new(message))
    }
}

export_op!(Assert);
