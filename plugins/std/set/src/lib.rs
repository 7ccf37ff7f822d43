//! `set`: publishes named values as its output, for later steps to read as
//! `steps.<id>.output.<name>` (Spinnaker's "Evaluate Variables" stage).
use serde::{Deserialize, Serialize};
use sluice_op::schemars::{self, JsonSchema};
use sluice_op::serde_json::{Map, Value};
use sluice_op::{Context, Error, Op, Outcome, export_op};

/// The input of `set`: the values to publish, as an object.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Name-value pairs; each becomes a field of the output.
    values: Map<String, Value>,
}

/// The output of `set`: the values, unchanged.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
struct Output(Map<String, Value>);

struct Set;

impl Op for Set {
    type Input = Input;
    type Output = Output;
    const NAME: &'static str = "set";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Publishes named values as its output for later steps to read";
    const IDEMPOTENT: bool = true;

    fn run(_ctx: &Context, input: Input) -> Result<Outcome<Output>, Error> {
        if input.values.is_empty() {
            return Err(Error::new(
                "`values` is empty: give at least one name and value to set",
            ));
        }
        for (k, v) in &input.values {
            sluice_op::log::debug(&format!("{k} = {v}"));
        }
        Ok(Outcome::Success(Output(input.values)))
    }
}

export_op!(Set);
