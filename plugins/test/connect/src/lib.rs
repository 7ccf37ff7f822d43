//! Test op `connect`: tries to open a TCP connection to the input's `addr`
use sluice_op::serde_json::{Value, json};
use sluice_op::{Context, Error, Op, Outcome, export_op};

struct T;

impl Op for T {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = "connect";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "tries to open a TCP connection to the input's `addr`";

    fn run(_ctx: &Context, input: Value) -> Result<Outcome<Value>, Error> {
        let addr = input["addr"].as_str().unwrap_or("127.0.0.1:9");
        match std::net::TcpStream::connect(addr) {
            Ok(_) => Ok(Outcome::Success(json!({ "connected": addr }))),
            Err(e) => Err(Error::new(format!("cannot connect to {addr}: {e}"))),
        }
    }
}

export_op!(T);
