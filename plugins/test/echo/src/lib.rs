//! Test op `echo`: returns its input as output and logs it
use sluice_op::serde_json::Value;
use sluice_op::{Context, Error, Op, Outcome, export_op};

struct T;

impl Op for T {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = "echo";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "returns its input as output and logs it";
    const IDEMPOTENT: bool = true;

    fn run(ctx: &Context, input: Value) -> Result<Outcome<Value>, Error> {
        sluice_op::log::info(&format!(
            "echo step={} attempt={}: {input}",
            ctx.step_id, ctx.attempt
        ));
        Ok(Outcome::Success(input))
    }
}

export_op!(T);
