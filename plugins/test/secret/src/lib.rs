//! Test op `secret`: reads the secret named by the input's `name`
use sluice_op::serde_json::Value;
use sluice_op::{Context, Error, Op, Outcome, export_op};

struct T;

impl Op for T {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = "secret";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "reads the secret named by the input's `name`";

    fn run(_ctx: &Context, input: Value) -> Result<Outcome<Value>, Error> {
        let name = input["name"].as_str().unwrap_or("token");
        let value = sluice_op::secret(name)?;
        Ok(Outcome::Success(Value::from(value.len())))
    }
}

export_op!(T);
