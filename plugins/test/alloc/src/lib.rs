//! Test op `alloc`: allocates memory without bound
use sluice_op::serde_json::Value;
use sluice_op::{Context, Error, Op, Outcome, export_op};

struct T;

impl Op for T {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = "alloc";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "allocates memory without bound";

    fn run(_ctx: &Context, _input: Value) -> Result<Outcome<Value>, Error> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = vec![0u8; 16 << 20];
            chunk[0] = hoard.len() as u8; // touch it
            hoard.push(std::hint::black_box(chunk));
        }
    }
}

export_op!(T);
