//! Test op `fail`: always fails, with the input's `message` and `retryable`
use sluice_op::serde_json::Value;
use sluice_op::{Context, Error, Op, Outcome, export_op};

struct T;

impl Op for T {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = "fail";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "always fails, with the input's `message` and `retryable`";

    fn run(_ctx: &Context, input: Value) -> Result<Outcome<Value>, Error> {
        let message = input["message"]
            .as_str()
            .unwrap_or("failed on purpose")
            .to_string();
        let e = if input["retryable"].as_bool() == Some(true) {
            Error::retryable(message)
        } else {
            Error::new(message)
        };
        Err(e.with_details(input))
    }
}

export_op!(T);
