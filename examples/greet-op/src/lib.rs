//! `greet`: the smallest useful op, written with the `sluice-op` SDK.
use serde::{Deserialize, Serialize};
use sluice_op::schemars::{self, JsonSchema};
use sluice_op::{Context, Error, Op, Outcome, export_op};

/// Who to greet.
#[derive(Deserialize, JsonSchema)]
struct Input {
    /// A name; must not be empty.
    name: String,
}

/// The greeting.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Output {
    greeting: String,
}

struct Greet;

impl Op for Greet {
    type Input = Input;
    type Output = Output;
    const NAME: &'static str = "greet";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Greets someone by name";

    fn run(ctx: &Context, input: Input) -> Result<Outcome<Output>, Error> {
        if input.name.trim().is_empty() {
            return Err(Error::new("`name` is empty: give the name of someone to greet"));
        }
        sluice_op::log::info(&format!("greeting {} for {}", input.name, ctx.started_by));
        Ok(Outcome::Success(Output { greeting: format!("hello, {}", input.name) }))
    }
}

export_op!(Greet);
