//! Test op `exec`: runs the input's `program` with `args`
use sluice_op::serde_json::Value;
use sluice_op::{Context, Error, Op, Outcome, export_op};

struct T;

impl Op for T {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = "exec";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "runs the input's `program` with `args`";

    fn run(_ctx: &Context, input: Value) -> Result<Outcome<Value>, Error> {
        let program = input["program"].as_str().unwrap_or("/bin/true");
        let args: Vec<&str> = input["args"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let status = sluice_op::exec::run(program, &args)?;
        Ok(Outcome::Success(sluice_op::serde_json::json!({
            "code": status.code,
            "stdout": String::from_utf8_lossy(&status.stdout),
            "stderr": String::from_utf8_lossy(&status.stderr),
            "timed_out": status.timed_out,
            "truncated": status.truncated,
        })))
    }
}

export_op!(T);
