//! Test op `warn`: succeeds with a warning, returning its input
use sluice_op::serde_json::Value;
use sluice_op::{Context, Error, Op, Outcome, export_op};

struct T;

impl Op for T {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = "warn";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "succeeds with a warning, returning its input";

    fn run(_ctx: &Context, input: Value) -> Result<Outcome<Value>, Error> {
        sluice_op::log::warn("this op always warns");
        Ok(Outcome::Warning(input))
    }
}

export_op!(T);
