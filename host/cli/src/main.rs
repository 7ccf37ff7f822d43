//! `sluice`: the command line. Thin: parse arguments, call the libraries, print.
//!
//! Exit codes (docs/cli.md): 0 success or warning, 1 the op failed, 2 usage error (bad
//! arguments, unknown op, input that is not JSON), 3 the op stopped at a gate, 4 the component
//! could not be loaded (not a component, or it does not fit the `sluice:op` world), 70 an
//! internal error of the host.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod op;
mod output;

/// sluice: a deployment rule engine whose ops are sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
struct Global {
    /// Where sluice keeps its state and compile cache.
    #[arg(long, global = true, env = "SLUICE_HOME", default_value = ".sluice")]
    home: PathBuf,
    /// More host logging on stderr (-v info, -vv debug); SLUICE_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List, describe and run ops on their own.
    #[command(subcommand)]
    Op(op::OpCommand),
}

/// A failure with the exit code it maps to.
pub(crate) struct Failed {
    code: u8,
    error: anyhow::Error,
}

impl Failed {
    pub(crate) const OP_FAILED: u8 = 1;
    pub(crate) const USAGE: u8 = 2;
    pub(crate) const WAITING: u8 = 3;
    pub(crate) const LOAD: u8 = 4;
    pub(crate) const INTERNAL: u8 = 70;

    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Self {
        Failed {
            code: Self::USAGE,
            error: error.into(),
        }
    }
    pub(crate) fn load(error: impl Into<anyhow::Error>) -> Self {
        Failed {
            code: Self::LOAD,
            error: error.into(),
        }
    }
    pub(crate) fn internal(error: impl Into<anyhow::Error>) -> Self {
        Failed {
            code: Self::INTERNAL,
            error: error.into(),
        }
    }
}

/// What a command ends with: an exit code, having printed its result.
pub(crate) type CmdResult = Result<u8, Failed>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.verbose);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(Failed { code, error }) => {
            if !output::is_broken_pipe(&error) {
                eprintln!("error: {error:#}");
            }
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> CmdResult {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Failed::internal)?;
    rt.block_on(async {
        match cli.command {
            Command::Op(cmd) => op::run(&cli.global, cmd).await,
        }
    })
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
