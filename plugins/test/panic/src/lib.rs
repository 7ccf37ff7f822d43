//! Test op `panic`: panics with the input's `message`
use sluice_op::serde_json::Value;
use sluice_op::{Context, Error, Op, Outcome, export_op};

struct T;

impl Op for T {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = "panic";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "panics with the input's `message`";

    fn run(_ctx: &Context, input: Value) -> Result<Outcome<Value>, Error> {
        let message = input["message"].as_str().unwrap_or("boom");
        panic!("{message}");
    }
}

export_op!(T);
