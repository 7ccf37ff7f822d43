//! Test op `stdout`: prints the input's `lines` (default 1) lines to stdout and one to stderr
use sluice_op::serde_json::Value;
use sluice_op::{Context, Error, Op, Outcome, export_op};

struct T;

impl Op for T {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = "stdout";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "prints the input's `lines` (default 1) lines to stdout and one to stderr";

    fn run(_ctx: &Context, input: Value) -> Result<Outcome<Value>, Error> {
        let lines = input["lines"].as_u64().unwrap_or(1);
        for i in 0..lines {
            println!("hello from stdout {i}");
        }
        eprintln!("hello from stderr");
        Ok(Outcome::Success(Value::from(lines)))
    }
}

export_op!(T);
