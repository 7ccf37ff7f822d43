//! Test op `undo`: succeeds with output `{"undo": input}`; rollback logs what it undoes
use sluice_op::serde_json::Value;
use sluice_op::{Context, Error, Op, Outcome, export_op};

struct T;

impl Op for T {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = "undo";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "succeeds with output {undo: input}; rollback logs what it undoes";
    const CAN_ROLLBACK: bool = true;

    fn run(_ctx: &Context, input: Value) -> Result<Outcome<Value>, Error> {
        Ok(Outcome::Success(
            sluice_op::serde_json::json!({ "undo": input }),
        ))
    }

    fn rollback(_ctx: &Context, input: Value, output: Value) -> Result<(), Error> {
        if output["undo"] != input {
            return Err(Error::new("rollback got an output that run did not return"));
        }
        sluice_op::log::info(&format!("undid {input}"));
        Ok(())
    }
}

export_op!(T);
