//! Decisions at gates (`approve`, `reject`, `resume`, `retry`, `skip`, `rollback`, `abort`),
//! `annotate`, and `worker`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use sluice_app::{DecisionKind, Note, Standing};

use crate::job::{Printer, app, app_read, report_standing, standing_code};
use crate::{CmdResult, Failed, Global};

#[derive(Debug, Args)]
pub(crate) struct DecideArgs {
    /// The job id, such as `web-release-42`.
    job: String,
    /// The step whose gate this decides, when the job waits at more than one.
    #[arg(long)]
    step: Option<String>,
    /// A comment recorded with the decision.
    #[arg(long, short = 'm', default_value = "")]
    comment: String,
    /// An answer to the gate's inputs (or, for retry, an edited input of the step): NAME=VALUE.
    #[arg(long = "input", value_name = "NAME=VALUE")]
    inputs: Vec<String>,
    /// Who decides (default: SLUICE_USER, then this process's OS account).
    #[arg(long = "as", value_name = "USER")]
    as_user: Option<String>,
    /// Record the decision and leave the job to `sluice worker` instead of driving it here.
    #[arg(long)]
    detach: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AnnotateArgs {
    /// The job id.
    job: String,
    /// A comment.
    #[arg(long, group = "what")]
    comment: Option<String>,
    /// A regular file to attach (at most 64 MiB; streamed into the store).
    #[arg(long, group = "what")]
    file: Option<PathBuf>,
    /// A log file to attach (a regular file, at most 64 MiB).
    #[arg(long, group = "what")]
    log: Option<PathBuf>,
    /// Who annotates (default: SLUICE_USER, then this process's OS account).
    #[arg(long = "as", value_name = "USER")]
    as_user: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct AnnotationsArgs {
    /// The job id.
    job: String,
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AnnotationCommand {
    /// Write a stored file or log (or a comment's text) to stdout or a file.
    Get(AnnotationGetArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AnnotationGetArgs {
    /// The job id.
    job: String,
    /// The annotation's number, as `sluice annotations JOB` lists it.
    id: i64,
    /// Write it to this file instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// Drive what is due once and exit.
    #[arg(long)]
    once: bool,
    /// How often to look for work, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
}

pub(crate) async fn decide(global: &Global, kind: DecisionKind, args: DecideArgs) -> CmdResult {
    if let Some(server) = crate::remote::configured()? {
        crate::remote::refuse_as(args.as_user.as_deref(), &server)?;
        return crate::remote::decide(
            &server,
            &args.job,
            kind,
            args.step.as_deref(),
            &args.comment,
            &args.inputs,
            args.detach,
        )
        .await;
    }
    let actor = sluice_app::command_line_actor(args.as_user.as_deref())?;
    let decision = sluice_app::Decision {
        kind,
        step: args.step.clone(),
        comment: args.comment.clone(),
        inputs: sluice_app::parse_inputs(&args.inputs)?,
        detach: args.detach,
    };
    let printer = Arc::new(Printer::new(false));
    let standing = app(global)?
        .decide(&args.job, decision, actor, printer.clone())
        .await?;
    if let Standing::Handed = standing {
        printer.line(&format!(
            "decision recorded; `sluice worker` carries job {} on",
            args.job
        ));
    }
    report_standing(&printer, &args.job, &standing);
    Ok(standing_code(&standing))
}

pub(crate) async fn annotate(global: &Global, args: AnnotateArgs) -> CmdResult {
    let server = crate::remote::configured()?;
    if let Some(server) = &server {
        crate::remote::refuse_as(args.as_user.as_deref(), server)?;
    }
    let note = match (args.comment, args.file, args.log) {
        (Some(c), _, _) => Note::Comment(c),
        (_, Some(f), _) => Note::File(f),
        (_, _, Some(l)) => Note::Log(l),
        _ => {
            return Err(Failed::usage(anyhow::anyhow!(
                "give --comment TEXT, --file PATH or --log PATH"
            )));
        }
    };
    if let Some(server) = server {
        let id = server.annotate(&args.job, note).await?;
        crate::output::print(&format!(
            "annotation {id} added to {} on {}\n",
            args.job,
            server.base()
        ))?;
        return Ok(0);
    }
    let actor = sluice_app::command_line_actor(args.as_user.as_deref())?;
    let who = actor.name.clone();
    let id = app(global)?.annotate(&args.job, note, actor).await?;
    crate::output::print(&format!("annotation {id} added to {} by {who}\n", args.job))?;
    Ok(0)
}

/// `sluice annotations JOB`: what is attached to a job.
pub(crate) async fn annotations(global: &Global, args: AnnotationsArgs) -> CmdResult {
    if let Some(server) = crate::remote::configured()? {
        return Err(crate::remote::not_remote("annotations", &server));
    }
    let app = app_read(global)?;
    app.row(&args.job).await?;
    let rows = app.annotations(&args.job).await?;
    if args.json {
        crate::output::print_json(&rows)?;
        return Ok(0);
    }
    let mut out = format!(
        "{:<5} {:<20} {:<12} {:<8} {:>10} {}\n",
        "ID", "AT", "BY", "KIND", "BYTES", "TITLE"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<5} {:<20} {:<12} {:<8} {:>10} {}\n",
            r.id,
            crate::job::time(r.at),
            r.author,
            r.kind,
            r.size,
            r.title
        ));
    }
    crate::output::print(&out)?;
    Ok(0)
}

/// `sluice annotation get JOB ID`: a stored body, streamed out.
pub(crate) async fn annotation(global: &Global, cmd: AnnotationCommand) -> CmdResult {
    if let Some(server) = crate::remote::configured()? {
        return Err(crate::remote::not_remote("annotation get", &server));
    }
    let AnnotationCommand::Get(args) = cmd;
    let app = app_read(global)?;
    let row = app.annotation(&args.job, args.id).await?;
    let out: Box<dyn std::io::Write + Send> =
        match &args.output {
            Some(path) => Box::new(std::fs::File::create(path).map_err(|e| {
                Failed::usage(anyhow::anyhow!("cannot write {}: {e}", path.display()))
            })?),
            None => Box::new(std::io::stdout()),
        };
    app.copy_annotation(&row, out).await?;
    Ok(0)
}

pub(crate) async fn worker(global: &Global, args: WorkerArgs) -> CmdResult {
    use tokio::signal::unix::{SignalKind, signal};
    // Listen before anything else, so a signal never finds the default handler.
    let mut term = signal(SignalKind::terminate()).map_err(Failed::internal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Failed::internal)?;
    let printer = Arc::new(Printer::new(false));
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    app(global)?
        .work(
            printer.clone(),
            Duration::from_millis(args.interval_ms.max(1)),
            args.once,
            stop,
        )
        .await?;
    if !args.once {
        printer.line("worker stopping");
    }
    Ok(0)
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ChatCommand {
    /// Post a job's transitions to a chat room, and record what is said there in the job.
    Follow(ChatFollowArgs),
    /// Stop that.
    Unfollow(ChatFollowArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ChatFollowArgs {
    /// The job id.
    job: String,
    /// The room: `slack:CHANNEL_ID` (or `matrix:!room:server`).
    #[arg(long)]
    room: String,
}

pub(crate) async fn chat(global: &Global, cmd: ChatCommand) -> CmdResult {
    if let Some(server) = crate::remote::configured()? {
        return Err(crate::remote::not_remote("chat", &server));
    }
    let (follow, args) = match cmd {
        ChatCommand::Follow(a) => (true, a),
        ChatCommand::Unfollow(a) => (false, a),
    };
    app(global)?
        .chat_follow_room(&args.room, &args.job, follow)
        .await?;
    if follow {
        println!("{} follows {}", args.room, args.job);
    } else {
        println!("{} no longer follows {}", args.room, args.job);
    }
    Ok(0)
}
