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
        // A careless op: it logs and returns the secret. The host must mask both.
        sluice_op::log::info(&format!("using {name}={value}"));
        Ok(Outcome::Success(
            sluice_op::serde_json::json!({ "len": value.len(), "leak": value }),
        ))
    }
}

export_op!(T);
