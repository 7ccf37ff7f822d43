//! Test op `escape`: tries every way out of its workspace and reports what it could do
use sluice_op::serde_json::{Value, json};
use sluice_op::{Context, Error, Op, Outcome, export_op};

struct T;

impl Op for T {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = "escape";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "tries every way out of its workspace and reports what it could do";

    fn run(_ctx: &Context, _input: Value) -> Result<Outcome<Value>, Error> {
        let attempt = |p: &str| match std::fs::read_to_string(p) {
            Ok(s) => format!("read {} bytes", s.len()),
            Err(e) => format!("refused: {e}"),
        };
        let wrote = match std::fs::write("/workspace/hello.txt", "hi") {
            Ok(()) => attempt("/workspace/hello.txt"),
            Err(e) => format!("refused: {e}"),
        };
        Ok(Outcome::Success(json!({
            "etc_passwd": attempt("/etc/passwd"),
            "dotdot": attempt("/workspace/../../../../etc/passwd"),
            "relative": attempt("../etc/passwd"),
            "symlink": attempt("/workspace/link-to-passwd"),
            "write_workspace": wrote,
            "env": std::env::vars().count(),
            "args": std::env::args().count(),
        })))
    }
}

export_op!(T);
