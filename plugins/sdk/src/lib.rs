//! Write sluice ops in Rust.
//!
//! An op is a WebAssembly component that implements the `sluice:op` world (see `wit/op.wit`).
//! This crate hides the bindings: implement [`Op`] with serde-typed input and output, call
//! [`export_op!`], and build the crate as a `cdylib` for `wasm32-wasip2`.
//!
//! ```ignore
//! use sluice_op::{Context, Error, Op, Outcome, export_op};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize, sluice_op::schemars::JsonSchema)]
//! struct Input { name: String }
//!
//! #[derive(Serialize, sluice_op::schemars::JsonSchema)]
//! struct Output { greeting: String }
//!
//! struct Greet;
//!
//! impl Op for Greet {
//!     type Input = Input;
//!     type Output = Output;
//!     const NAME: &'static str = "greet";
//!     const VERSION: &'static str = env!("CARGO_PKG_VERSION");
//!     const DESCRIPTION: &'static str = "Greets someone by name";
//!
//!     fn run(_ctx: &Context, input: Input) -> Result<Outcome<Output>, Error> {
//!         if input.name.is_empty() {
//!             return Err(Error::new("`name` is empty: give the name of someone to greet"));
//!         }
//!         sluice_op::log::info(&format!("greeting {}", input.name));
//!         Ok(Outcome::Success(Output { greeting: format!("hello, {}", input.name) }))
//!     }
//! }
//!
//! export_op!(Greet);
//! ```
//!
//! Gates: return [`Outcome::Suspend`] with a [`Gate`]; the host hibernates the job and calls
//! [`Op::resume`] with the gate's `state` and the [`Decision`]. Undo: set [`Op::CAN_ROLLBACK`]
//! and implement [`Op::rollback`].

#![deny(missing_docs)]

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

// Lets the generated bindings name this crate as `::sluice_op` from inside it too.
extern crate self as sluice_op;

pub use schemars;
pub use serde_json;

#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // generated lowering code
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "op",
        pub_export_macro: true,
        export_macro_name: "__sluice_export_world",
        default_bindings_module: "::sluice_op::bindings",
        runtime_path: "::sluice_op::__private::wit_bindgen::rt",
    });
}

use bindings::sluice::op::types as wit;

pub use wit::{
    Access, Actor, Capability, DecisionKind, GateInput, GateKind, HostError, InputKind, Phase,
};

/// Where and why the op is being called.
#[derive(Debug, Clone)]
pub struct Context {
    /// The job's id; empty for a bare `sluice op run`.
    pub job_id: String,
    /// The rule's name; empty for a bare `sluice op run`.
    pub rule: String,
    /// The phase the step belongs to.
    pub phase: Phase,
    /// The step's id.
    pub step_id: String,
    /// 1 on the first attempt, 2 on the first retry...
    pub attempt: u32,
    /// Who started the job.
    pub started_by: String,
    /// How the step before this one ended (`success`, `warning`, `failure`, `skipped`).
    pub previous: Option<String>,
}

impl From<wit::JobContext> for Context {
    fn from(c: wit::JobContext) -> Self {
        Context {
            job_id: c.job_id,
            rule: c.rule,
            phase: c.phase,
            step_id: c.step_id,
            attempt: c.attempt,
            started_by: c.started_by,
            previous: c.previous,
        }
    }
}

/// What a successful call ended with (a failure is an `Err(Error)`).
#[derive(Debug)]
pub enum Outcome<O> {
    /// Done; later steps may read the output.
    Success(O),
    /// Done, with something a person should look at.
    Warning(O),
    /// Wait for a person at this gate.
    Suspend(Gate),
}

/// A gate for the host to open; see `gate` in `wit/op.wit`.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Approval, pause or trap.
    pub kind: GateKind,
    /// What the person is asked.
    pub message: String,
    /// Users or `group:NAME`s who may decide; empty means anyone permitted.
    pub approvers: Vec<String>,
    /// Distinct approvals needed.
    pub quorum: u32,
    /// Whether the job's starter may decide.
    pub allow_self_approval: bool,
    /// Inputs asked of the person who decides.
    pub inputs: Vec<GateInput>,
    /// Seconds until the gate times out; `None` waits forever.
    pub timeout_seconds: Option<u64>,
    /// What happens on timeout; `None` means abort.
    pub timeout_action: Option<DecisionKind>,
    /// Bytes handed back to [`Op::resume`].
    pub state: Vec<u8>,
}

impl Gate {
    /// A gate of `kind` with `message`, no approvers list, quorum 1, no timeout, empty state.
    pub fn new(kind: GateKind, message: impl Into<String>) -> Self {
        Gate {
            kind,
            message: message.into(),
            approvers: Vec::new(),
            quorum: 1,
            allow_self_approval: false,
            inputs: Vec::new(),
            timeout_seconds: None,
            timeout_action: None,
            state: Vec::new(),
        }
    }
}

/// What a person (or a timeout) decided at a gate.
pub type Decision = wit::Decision;

/// Why an op failed.
#[derive(Debug, Clone)]
pub struct Error {
    /// One line: what went wrong and what to do.
    pub message: String,
    /// Whether trying again could help.
    pub retryable: bool,
    /// More detail, such as a per-check breakdown.
    pub details: Option<serde_json::Value>,
}

impl Error {
    /// A failure that retrying will not fix.
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            retryable: false,
            details: None,
        }
    }

    /// A failure that a retry may fix (a timeout, a refused connection).
    pub fn retryable(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            retryable: true,
            details: None,
        }
    }

    /// Attaches JSON details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<HostError> for Error {
    fn from(e: HostError) -> Self {
        Error::new(host_error_message(&e))
    }
}

fn host_error_message(e: &HostError) -> String {
    match e {
        HostError::NotGranted(m) => format!("not granted: {m}"),
        HostError::Invalid(m) => format!("invalid: {m}"),
        HostError::Failed(m) => format!("failed: {m}"),
    }
}

/// An op: implement it, then call [`export_op!`] once in the crate.
pub trait Op {
    /// The input, parsed from the step's `with:` JSON.
    type Input: DeserializeOwned + schemars::JsonSchema;
    /// The output later steps read.
    type Output: Serialize + DeserializeOwned + schemars::JsonSchema;

    /// The op's name, such as `deploy`.
    const NAME: &'static str;
    /// The op's version; usually `env!("CARGO_PKG_VERSION")`.
    const VERSION: &'static str;
    /// One sentence saying what the op does.
    const DESCRIPTION: &'static str;
    /// Whether running twice does no more than running once (the host re-runs an interrupted
    /// idempotent op; it traps on a non-idempotent one).
    const IDEMPOTENT: bool = false;
    /// Whether [`Op::rollback`] undoes what [`Op::run`] did.
    const CAN_ROLLBACK: bool = false;

    /// The capabilities the op needs; the rule must grant each.
    fn needs() -> Vec<Capability> {
        Vec::new()
    }

    /// Does the work.
    fn run(ctx: &Context, input: Self::Input) -> Result<Outcome<Self::Output>, Error>;

    /// Goes on after a gate this op opened.
    fn resume(
        ctx: &Context,
        input: Self::Input,
        state: Vec<u8>,
        decision: Decision,
    ) -> Result<Outcome<Self::Output>, Error> {
        let _ = (ctx, input, state, decision);
        Err(Error::new(format!(
            "op `{}` opens no gates, so it cannot resume",
            Self::NAME
        )))
    }

    /// Undoes what a successful [`Op::run`] with `input` did; `output` is what it returned.
    fn rollback(ctx: &Context, input: Self::Input, output: Self::Output) -> Result<(), Error> {
        let _ = (ctx, input, output);
        Err(Error::new(format!("op `{}` cannot roll back", Self::NAME)))
    }
}

/// Whether a JSON value holds as a condition: true, a non-zero number, a non-empty string other
/// than `false`, a non-empty list or object.
pub fn truthy(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty() && s != "false",
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Whole seconds from a number of seconds or a duration such as `500ms`, `30s`, `5m`,
/// `1h30m`, `1d` (parts of a second round up). Prefer a [`Duration`] field in the input.
pub fn seconds(v: &serde_json::Value) -> Result<u64, Error> {
    Ok(millis(v)?.div_ceil(1000))
}

/// Milliseconds from a number of seconds or a duration such as `250ms`, `30s`, `5m`, `1h30m`,
/// `1.5h`, `1d`. Prefer a [`Duration`] field in the input.
pub fn millis(v: &serde_json::Value) -> Result<u64, Error> {
    Duration::deserialize(v)
        .map(|d| d.as_millis())
        .map_err(|e| Error::new(e.to_string()))
}

/// Writing to the step's log.
pub mod log {
    use crate::bindings::sluice::op::host;
    use crate::bindings::sluice::op::types::LogLevel;

    /// Logs at debug level.
    pub fn debug(message: &str) {
        host::log(LogLevel::Debug, message)
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        host::log(LogLevel::Info, message)
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        host::log(LogLevel::Warn, message)
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        host::log(LogLevel::Error, message)
    }
}

/// Attaches a titled note to the job.
pub fn annotate(title: &str, body: &str) -> Result<(), HostError> {
    bindings::sluice::op::host::annotate(title, body)
}

/// Reports progress (0 to 100, or `None` when unknown).
pub fn progress(percent: Option<u8>, message: &str) {
    bindings::sluice::op::host::progress(percent, message)
}

/// Reads a granted secret.
pub fn secret(name: &str) -> Result<String, HostError> {
    bindings::sluice::op::host::secret(name)
}

pub mod action;
pub mod duration;
pub use duration::Duration;
#[cfg(feature = "http")]
pub mod http;

/// Running granted host programs.
pub mod exec {
    use crate::HostError;
    pub use crate::bindings::sluice::op::exec::{Command, ExitStatus};

    /// Runs `program` with `args`, no stdin, an empty environment and the op's own deadline.
    pub fn run(program: &str, args: &[&str]) -> Result<ExitStatus, HostError> {
        run_command(&Command {
            program: program.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            stdin: Vec::new(),
            timeout_ms: None,
        })
    }

    /// Runs a fully described command.
    pub fn run_command(cmd: &Command) -> Result<ExitStatus, HostError> {
        crate::bindings::sluice::op::exec::run(cmd)
    }
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    use super::*;

    fn schema<T: schemars::JsonSchema>() -> String {
        serde_json::to_string(&schemars::schema_for!(T)).unwrap_or_default()
    }

    pub fn describe<T: Op>() -> wit::OpInfo {
        wit::OpInfo {
            name: T::NAME.to_string(),
            version: T::VERSION.to_string(),
            description: T::DESCRIPTION.to_string(),
            input_schema: schema::<T::Input>(),
            output_schema: schema::<T::Output>(),
            idempotent: T::IDEMPOTENT,
            can_rollback: T::CAN_ROLLBACK,
            needs: T::needs(),
        }
    }

    fn parse<V: DeserializeOwned>(what: &str, op: &str, json: &str) -> Result<V, Error> {
        let json = if json.trim().is_empty() { "null" } else { json };
        serde_json::from_str(json)
            .map_err(|e| Error::new(format!("op `{op}` got an invalid {what}: {e}")))
    }

    fn failure(e: Error) -> wit::Outcome {
        wit::Outcome::Failure(wit::Failure {
            message: e.message,
            retryable: e.retryable,
            details: e.details.map(|d| d.to_string()).unwrap_or_default(),
        })
    }

    fn outcome<T: Op>(r: Result<Outcome<T::Output>, Error>) -> wit::Outcome {
        let json = |o: &T::Output| serde_json::to_string(o);
        match r {
            Ok(Outcome::Success(o)) => match json(&o) {
                Ok(s) => wit::Outcome::Success(s),
                Err(e) => failure(Error::new(format!("op output is not JSON: {e}"))),
            },
            Ok(Outcome::Warning(o)) => match json(&o) {
                Ok(s) => wit::Outcome::Warning(s),
                Err(e) => failure(Error::new(format!("op output is not JSON: {e}"))),
            },
            Ok(Outcome::Suspend(g)) => wit::Outcome::Suspend(wit::Gate {
                kind: g.kind,
                message: g.message,
                approvers: g.approvers,
                quorum: g.quorum,
                allow_self_approval: g.allow_self_approval,
                inputs: g.inputs,
                timeout_seconds: g.timeout_seconds,
                timeout_action: g.timeout_action,
                state: g.state,
            }),
            Err(e) => failure(e),
        }
    }

    pub fn run<T: Op>(ctx: wit::JobContext, input: String) -> wit::Outcome {
        let ctx = Context::from(ctx);
        outcome::<T>(parse("input", T::NAME, &input).and_then(|i| T::run(&ctx, i)))
    }

    pub fn resume<T: Op>(
        ctx: wit::JobContext,
        input: String,
        state: Vec<u8>,
        decision: wit::Decision,
    ) -> wit::Outcome {
        let ctx = Context::from(ctx);
        outcome::<T>(
            parse("input", T::NAME, &input).and_then(|i| T::resume(&ctx, i, state, decision)),
        )
    }

    pub fn rollback<T: Op>(ctx: wit::JobContext, input: String, output: String) -> wit::Outcome {
        let ctx = Context::from(ctx);
        let r = parse("input", T::NAME, &input).and_then(|i| {
            let o = parse("output", T::NAME, &output)?;
            T::rollback(&ctx, i, o)
        });
        match r {
            Ok(()) => wit::Outcome::Success("null".to_string()),
            Err(e) => failure(e),
        }
    }
}

/// Exports `$op` (a type implementing [`Op`]) as this component's `sluice:op` world.
#[macro_export]
macro_rules! export_op {
    ($op:ty) => {
        struct __SluiceOpExport;

        impl $crate::bindings::Guest for __SluiceOpExport {
            fn describe() -> $crate::bindings::sluice::op::types::OpInfo {
                $crate::__private::describe::<$op>()
            }
            fn run(
                ctx: $crate::bindings::sluice::op::types::JobContext,
                input: ::std::string::String,
            ) -> $crate::bindings::sluice::op::types::Outcome {
                $crate::__private::run::<$op>(ctx, input)
            }
            fn resume(
                ctx: $crate::bindings::sluice::op::types::JobContext,
                input: ::std::string::String,
                state: ::std::vec::Vec<u8>,
                decision: $crate::bindings::sluice::op::types::Decision,
            ) -> $crate::bindings::sluice::op::types::Outcome {
                $crate::__private::resume::<$op>(ctx, input, state, decision)
            }
            fn rollback(
                ctx: $crate::bindings::sluice::op::types::JobContext,
                input: ::std::string::String,
                output: ::std::string::String,
            ) -> $crate::bindings::sluice::op::types::Outcome {
                $crate::__private::rollback::<$op>(ctx, input, output)
            }
        }

        $crate::bindings::__sluice_export_world!(__SluiceOpExport with_types_in $crate::bindings);
    };
}
