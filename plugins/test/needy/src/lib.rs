//! Test op `needy`: declares capabilities, so rules must grant them.
use sluice_op::serde_json::Value;
use sluice_op::{Access, Capability, Context, Error, Op, Outcome, export_op};

struct T;

impl Op for T {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = "needy";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "declares exec:echo, secret:token and a read-write workspace";

    fn needs() -> Vec<Capability> {
        vec![
            Capability::Exec("echo".into()),
            Capability::Secret("token".into()),
            Capability::Workspace(Access::ReadWrite),
        ]
    }

    fn run(_ctx: &Context, input: Value) -> Result<Outcome<Value>, Error> {
        Ok(Outcome::Success(input))
    }
}

export_op!(T);
