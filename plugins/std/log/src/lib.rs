//! `log`: writes a message to the job's log, at a chosen level.
use serde::{Deserialize, Serialize};
use sluice_op::schemars::{self, JsonSchema};
use sluice_op::{Context, Error, Op, Outcome, export_op};

/// How loud the message is.
#[derive(Deserialize, Serialize, JsonSchema, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Level {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

/// The input of `log`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// The text to write.
    message: String,
    /// debug, info (default), warn or error.
    #[serde(default)]
    level: Level,
}

/// The output of `log`: the message as written.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Output {
    message: String,
}

struct Log;

impl Op for Log {
    type Input = Input;
    type Output = Output;
    const NAME: &'static str = "log";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Writes a message to the job's log at a chosen level";
    const IDEMPOTENT: bool = true;

    fn run(_ctx: &Context, input: Input) -> Result<Outcome<Output>, Error> {
        match input.level {
            Level::Debug => sluice_op::log::debug(&input.message),
            Level::Info => sluice_op::log::info(&input.message),
            Level::Warn => sluice_op::log::warn(&input.message),
            Level::Error => sluice_op::log::error(&input.message),
        }
        Ok(Outcome::Success(Output {
            message: input.message,
        }))
    }
}

export_op!(Log);
