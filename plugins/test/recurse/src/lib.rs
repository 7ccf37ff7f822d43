//! Test op `recurse`: recurses without end
use sluice_op::serde_json::Value;
use sluice_op::{Context, Error, Op, Outcome, export_op};

struct T;

impl Op for T {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = "recurse";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "recurses without end";

    fn run(_ctx: &Context, _input: Value) -> Result<Outcome<Value>, Error> {
        #[allow(unconditional_recursion)] // the point of this op
        fn deeper(n: u64, pad: [u64; 32]) -> u64 {
            std::hint::black_box(pad);
            deeper(n + 1, [n; 32]) + 1
        }
        Ok(Outcome::Success(Value::from(deeper(0, [0; 32]))))
    }
}

export_op!(T);
