//! `sluice`: the command line. Thin: parse arguments, call the service layer (`sluice-app`),
//! print.
//!
//! Exit codes (docs/cli.md): 0 success, 1 the job or op did not succeed (or a rule has
//! errors), 2 usage error (bad arguments, unknown op, bad params, input that is not JSON, a
//! rule that does not validate), 3 waiting (at a gate, or queued for locks), 4 a component could
//! not be loaded, 5 a decision refused (not allowed, nothing waits there, already decided, the
//! job already ended), 6 `$SLUICE_HOME` cannot be written (no space left, or read-only),
//! 70 an internal error of the host.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod gate;
mod job;
mod new_op;
mod op;
mod op_test;
mod output;
mod package;
mod remote;
mod rule;
mod server;

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
    /// The shared journal, for several hosts: postgres://USER:PASSWORD@HOST:PORT/DATABASE.
    /// Without it the journal is $SLUICE_HOME/sluice.db (SQLite).
    #[arg(
        long,
        global = true,
        env = "SLUICE_DATABASE_URL",
        hide_env_values = true
    )]
    database: Option<String>,
    /// More host logging on stderr (-v info, -vv debug); SLUICE_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a job of a rule and drive it until it ends or waits.
    Run(job::RunArgs),
    /// Check a rule and report every problem at once.
    Validate(rule::ValidateArgs),
    /// Print the JSON Schema of rule files, for editors.
    Schema,
    /// Walk a rule with scripted step outcomes, calling no op, and print the path.
    Simulate(rule::SimulateArgs),
    /// List jobs, newest first.
    Jobs(job::JobsArgs),
    /// Show a job: status, params, steps, history.
    Show(job::ShowArgs),
    /// Print a job's step logs.
    Logs(job::LogsArgs),
    /// Stop a job: nothing new starts, running steps finish, post runs.
    Cancel(job::CancelArgs),
    /// Approve a job waiting at an approval gate.
    Approve(gate::DecideArgs),
    /// Reject a job waiting at an approval gate: it ends as rejected, no rollback; post runs.
    Reject(gate::DecideArgs),
    /// Resume a paused job.
    Resume(gate::DecideArgs),
    /// At a trap: run the failed step again (with --input NAME=VALUE to edit its input).
    Retry(gate::DecideArgs),
    /// At a trap: go on as if the failed step had succeeded.
    Skip(gate::DecideArgs),
    /// At a trap: roll the job back, then run post.
    Rollback(gate::DecideArgs),
    /// At any gate: end the job as failed, with no rollback; post runs.
    Abort(gate::DecideArgs),
    /// Outside a deploy window or in a freeze: start now (a comment saying why is required).
    SkipWindow(gate::DecideArgs),
    /// Attach a comment, a file or a log to a job, at any time.
    Annotate(gate::AnnotateArgs),
    /// List a job's annotations.
    Annotations(gate::AnnotationsArgs),
    /// Read an annotation back: `sluice annotation get JOB ID [-o FILE]`.
    #[command(subcommand)]
    Annotation(gate::AnnotationCommand),
    /// ChatOps: `sluice chat follow JOB --room slack:C0123` (docs/chatops.md).
    #[command(subcommand)]
    Chat(gate::ChatCommand),
    /// Drive queued jobs, due gate timeouts and decided jobs until SIGINT or SIGTERM.
    Worker(gate::WorkerArgs),
    /// List the workers running now.
    Workers(job::LocksArgs),
    /// List locks and concurrency groups: who holds them, who waits.
    Locks(job::LocksArgs),
    /// List, describe and run ops on their own.
    #[command(subcommand)]
    Op(op::OpCommand),
    /// Share ops as OCI packages: push, pull, inspect, list, sign, keygen.
    #[command(subcommand, alias = "plugin")]
    Package(package::PackageCommand),
    /// Resolve a rule's packages and write `sluice.lock` beside it.
    Lock(package::LockArgs),
    /// Serve the HTTP API (docs/server.md) and drive jobs as a worker, until SIGINT or SIGTERM.
    Server(server::ServerArgs),
    /// Make, list and revoke the API's tokens.
    #[command(subcommand)]
    Token(server::TokenCommand),
    /// Set or remove the password a user signs in to the job monitor with.
    #[command(subcommand)]
    Password(server::PasswordCommand),
    /// Use a sluice server from now on: checks a token (read from stdin) and saves it;
    /// `run`, `jobs`, `show`, `logs`, `cancel`, decisions and `annotate` then go through it.
    Login(LoginArgs),
    /// Forget the server `sluice login` saved: commands use the local home again.
    Logout,
    /// Move $SLUICE_HOME's journal (sluice.db) into an empty PostgreSQL database, to run
    /// several hosts on it (docs/scale-out.md).
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
struct MigrateArgs {
    /// The database: postgres://USER:PASSWORD@HOST:PORT/DATABASE.
    #[arg(long, value_name = "URL")]
    to: String,
}

#[derive(Debug, Args)]
struct LoginArgs {
    /// The server's address, such as `https://sluice.example.com`.
    url: String,
}

/// A failure with the exit code it maps to.
pub(crate) struct Failed {
    pub(crate) code: u8,
    pub(crate) error: anyhow::Error,
    /// Printed as is (already formatted diagnostics), not as `error: ...`.
    pub(crate) raw: bool,
}

impl Failed {
    pub(crate) const OP_FAILED: u8 = 1;
    pub(crate) const USAGE: u8 = 2;
    pub(crate) const WAITING: u8 = 3;
    pub(crate) const INTERNAL: u8 = 70;

    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Self {
        Failed {
            code: Self::USAGE,
            error: error.into(),
            raw: false,
        }
    }
    pub(crate) fn internal(error: impl Into<anyhow::Error>) -> Self {
        Failed {
            code: Self::INTERNAL,
            error: error.into(),
            raw: false,
        }
    }
    /// Already formatted text (such as rule diagnostics), printed as is with `code`.
    pub(crate) fn rendered(code: u8, text: String) -> Self {
        Failed {
            code,
            error: anyhow::anyhow!(text),
            raw: true,
        }
    }
}

impl From<sluice_app::AppError> for Failed {
    fn from(e: sluice_app::AppError) -> Self {
        let code = e.exit_code();
        match e {
            // Diagnostics are already rendered with places and carets.
            sluice_app::AppError::Invalid(d) => Failed::rendered(code, d.to_string()),
            e => Failed {
                code,
                error: e.into(),
                raw: false,
            },
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
        Err(Failed { code, error, raw }) => {
            if raw {
                eprintln!("{error}");
            } else if !output::is_broken_pipe(&error) {
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
            Command::Run(args) => job::run(&cli.global, args).await,
            Command::Validate(args) => rule::validate(&cli.global, args).await,
            Command::Schema => output::print(sluice_app::RULE_SCHEMA).map(|()| 0),
            Command::Simulate(args) => rule::simulate(&cli.global, args).await,
            Command::Jobs(args) => job::jobs(&cli.global, args).await,
            Command::Show(args) => job::show(&cli.global, args).await,
            Command::Logs(args) => job::logs(&cli.global, args).await,
            Command::Cancel(args) => job::cancel(&cli.global, args).await,
            Command::Locks(args) => job::locks(&cli.global, args).await,
            Command::Approve(a) => {
                gate::decide(&cli.global, sluice_app::DecisionKind::Approve, a).await
            }
            Command::Reject(a) => {
                gate::decide(&cli.global, sluice_app::DecisionKind::Reject, a).await
            }
            Command::Resume(a) => {
                gate::decide(&cli.global, sluice_app::DecisionKind::Resume, a).await
            }
            Command::Retry(a) => {
                gate::decide(&cli.global, sluice_app::DecisionKind::Retry, a).await
            }
            Command::Skip(a) => gate::decide(&cli.global, sluice_app::DecisionKind::Skip, a).await,
            Command::SkipWindow(a) => {
                gate::decide(&cli.global, sluice_app::DecisionKind::SkipWindow, a).await
            }
            Command::Rollback(a) => {
                gate::decide(&cli.global, sluice_app::DecisionKind::Rollback, a).await
            }
            Command::Abort(a) => {
                gate::decide(&cli.global, sluice_app::DecisionKind::Abort, a).await
            }
            Command::Annotate(a) => gate::annotate(&cli.global, a).await,
            Command::Annotations(a) => gate::annotations(&cli.global, a).await,
            Command::Annotation(a) => gate::annotation(&cli.global, a).await,
            Command::Chat(c) => gate::chat(&cli.global, c).await,
            Command::Worker(a) => gate::worker(&cli.global, a).await,
            Command::Workers(a) => job::workers(&cli.global, a).await,
            Command::Op(cmd) => op::run(&cli.global, cmd).await,
            Command::Package(cmd) => package::run(&cli.global, cmd).await,
            Command::Lock(args) => package::lock(&cli.global, args).await,
            Command::Server(args) => server::server(&cli.global, args).await,
            Command::Token(cmd) => server::token(&cli.global, cmd).await,
            Command::Password(cmd) => server::password(&cli.global, cmd).await,
            Command::Login(a) => remote::login(&a.url).await,
            Command::Logout => remote::logout(),
            Command::Migrate(a) => migrate(&cli.global, a).await,
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

/// `sluice migrate --to postgres://...`.
async fn migrate(global: &Global, args: MigrateArgs) -> CmdResult {
    if global.database.is_some() {
        return Err(Failed::usage(anyhow::anyhow!(
            "`sluice migrate` moves $SLUICE_HOME/sluice.db into PostgreSQL: run it without --database or SLUICE_DATABASE_URL, and name the database with --to"
        )));
    }
    let imported = sluice_app::App::migrate(&global.home, &args.to).await?;
    let mut text = String::new();
    for (table, rows) in &imported.tables {
        text.push_str(&format!("{table:>12}  {rows}\n"));
    }
    text.push_str(&format!(
        "moved {} into {}; start every sluice with --database (or SLUICE_DATABASE_URL) set to it. {} is left as it was.\n",
        global.home.join("sluice.db").display(),
        sluice_app::redact_url(&args.to),
        global.home.join("sluice.db").display(),
    ));
    output::print(&text)?;
    Ok(0)
}
