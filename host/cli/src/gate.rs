//! Decisions at gates (`approve`, `reject`, `resume`, `retry`, `skip`, `rollback`, `abort`),
//! `annotate`, and `worker`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use clap::Args;
use serde_json::{Map, Value};
use sluice_engine::{DecisionKind, DecisionRequest, GateKind};
use sluice_rule::permissions::{self, Permissions};
use sluice_runner::Standing;
use sluice_store::Journal;

use crate::job::{
    Printer, identity, journal, journal_read, load_job, report_standing, runner, standing_code,
};
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

/// The most a file or log annotation may hold; larger ones are refused before anything is read.
pub(crate) const MAX_ANNOTATION_BYTES: u64 = 64 << 20;

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// Drive what is due once and exit.
    #[arg(long)]
    once: bool,
    /// How often to look for work, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
}

/// The permissions file: `--permissions`, `SLUICE_PERMISSIONS`, or `$SLUICE_HOME/permissions.yaml`.
pub(crate) fn permissions(global: &Global) -> Result<Option<Permissions>, Failed> {
    let path = std::env::var_os("SLUICE_PERMISSIONS")
        .map(PathBuf::from)
        .unwrap_or_else(|| global.home.join("permissions.yaml"));
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read permissions file {}", path.display()))
        .map_err(Failed::usage)?;
    permissions::parse(&text, &path.display().to_string())
        .map(Some)
        .map_err(|d| Failed::rendered(Failed::USAGE, d.to_string()))
}

/// Checks `user` may do `action` (everyone may when there is no permissions file).
pub(crate) fn allow(
    perms: &Option<Permissions>,
    user: &str,
    action: &str,
) -> Result<Vec<String>, Failed> {
    match perms {
        None => Ok(vec![]),
        Some(p) => {
            p.check(user, action).map_err(|e| Failed {
                code: Failed::REFUSED,
                error: anyhow!(e),
                raw: false,
            })?;
            Ok(p.groups_of(user))
        }
    }
}

fn parse_inputs(inputs: &[String]) -> Result<Map<String, Value>, Failed> {
    let mut out = Map::new();
    for i in inputs {
        let Some((k, v)) = i.split_once('=') else {
            return Err(Failed::usage(anyhow!("--input {i}: write NAME=VALUE")));
        };
        // A value that reads as JSON (a number, true, an object) keeps its type.
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        out.insert(k.to_string(), value);
    }
    Ok(out)
}

pub(crate) async fn decide(global: &Global, kind: DecisionKind, args: DecideArgs) -> CmdResult {
    let who = identity(args.as_user.as_deref())?;
    let perms = permissions(global)?;
    // Which permission: what is decided, and for an abort the kind of gate it ends.
    let action = match kind {
        DecisionKind::Approve | DecisionKind::Reject => "approve",
        DecisionKind::Resume => "resume",
        DecisionKind::Retry | DecisionKind::Skip | DecisionKind::Rollback => "trap",
        DecisionKind::Abort => {
            let (job, _) = load_job(&*journal(global)?, &args.job)?;
            let step = args
                .step
                .clone()
                .or_else(|| job.waiting_steps().first().map(|s| s.to_string()));
            match step.and_then(|s| job.steps.get(&s)?.gate.as_ref().map(|g| g.gate.kind)) {
                Some(GateKind::Trap) => "trap",
                Some(GateKind::Pause) => "resume",
                _ => "approve",
            }
        }
    };
    if journal(global)?
        .job(&args.job)
        .map_err(Failed::internal)?
        .is_none()
    {
        return Err(Failed::usage(anyhow!(
            "no job `{}`: `sluice jobs` lists them",
            args.job
        )));
    }
    let groups = allow(&perms, &who.user, action)?;
    let req = DecisionRequest {
        step: args.step.as_deref(),
        kind,
        user: &who.user,
        os_user: &who.os_user,
        groups: &groups,
        comment: &args.comment,
        inputs: parse_inputs(&args.inputs)?,
    };
    let printer = Arc::new(Printer::new(false));
    let runner = runner(global, printer.clone())?;
    let standing = runner
        .decide(&args.job, &req, args.detach)
        .await
        .map_err(decision_failure)?;
    if let Standing::Handed = standing {
        printer.line(&format!(
            "decision recorded; `sluice worker` carries job {} on",
            args.job
        ));
    }
    report_standing(&printer, &args.job, &standing);
    Ok(standing_code(&standing))
}

/// A runner error of a decision or a cancel as the CLI reports it: refused (exit 5) when
/// nothing was changed because the request does not fit the job.
pub(crate) fn decision_failure(e: sluice_runner::RunError) -> Failed {
    match e {
        e @ (sluice_runner::RunError::Refused(_) | sluice_runner::RunError::Ended { .. }) => {
            Failed {
                code: Failed::REFUSED,
                error: anyhow!(e),
                raw: false,
            }
        }
        other => Failed::internal(other),
    }
}

pub(crate) fn annotate(global: &Global, args: AnnotateArgs) -> CmdResult {
    let who = identity(args.as_user.as_deref())?;
    allow(&permissions(global)?, &who.user, "annotate")?;
    let journal = journal(global)?;
    if journal.job(&args.job).map_err(Failed::internal)?.is_none() {
        return Err(Failed::usage(anyhow!(
            "no job `{}`: `sluice jobs` lists them",
            args.job
        )));
    }
    let at = sluice_runner::now();
    let note = |kind, title| sluice_store::NewAnnotation {
        at,
        author: &who.user,
        kind,
        title,
    };
    let id = match (&args.comment, &args.file, &args.log) {
        (Some(c), _, _) => {
            journal.annotate(&args.job, &note("comment", c), &mut std::io::empty(), 0)
        }
        (_, Some(p), _) | (_, _, Some(p)) => {
            let kind = if args.file.is_some() { "file" } else { "log" };
            let (mut file, len) = open_attachment(p)?;
            let title = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            journal.annotate(&args.job, &note(kind, &title), &mut file, len)
        }
        _ => {
            return Err(Failed::usage(anyhow!(
                "give --comment TEXT, --file PATH or --log PATH"
            )));
        }
    }
    .map_err(|e| match e {
        sluice_store::StoreError::Body(m) => Failed::usage(anyhow!("{m}: nothing was attached")),
        other => Failed::internal(other),
    })?;
    crate::output::print(&format!(
        "annotation {id} added to {} by {}\n",
        args.job, who.user
    ))?;
    Ok(0)
}

/// Opens a file to attach: a regular file (not a FIFO, a device or a directory, which could
/// block or never end) of at most [`MAX_ANNOTATION_BYTES`]. Opened without blocking, then
/// checked, so a path swapped for a FIFO cannot hang the command.
fn open_attachment(path: &Path) -> Result<(std::fs::File, u64), Failed> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(Failed::usage)?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(Failed::usage)?;
    if !meta.is_file() {
        return Err(Failed::usage(anyhow!(
            "{} is not a regular file: attach a file (save a stream's output to one first)",
            path.display()
        )));
    }
    if meta.len() > MAX_ANNOTATION_BYTES {
        return Err(Failed::usage(anyhow!(
            "{} is {} bytes; an annotation holds at most {} MiB: attach an excerpt, or keep the file elsewhere and annotate its location",
            path.display(),
            meta.len(),
            MAX_ANNOTATION_BYTES >> 20
        )));
    }
    Ok((file, meta.len()))
}

/// `sluice annotations JOB`: what is attached to a job.
pub(crate) fn annotations(global: &Global, args: AnnotationsArgs) -> CmdResult {
    let journal = journal_read(global)?;
    if journal.job(&args.job).map_err(Failed::internal)?.is_none() {
        return Err(Failed::usage(anyhow!(
            "no job `{}`: `sluice jobs` lists them",
            args.job
        )));
    }
    let rows = journal.annotations(&args.job).map_err(Failed::internal)?;
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
pub(crate) fn annotation(global: &Global, cmd: AnnotationCommand) -> CmdResult {
    let AnnotationCommand::Get(args) = cmd;
    let journal = journal_read(global)?;
    let Some(row) = journal
        .annotation(&args.job, args.id)
        .map_err(Failed::internal)?
    else {
        return Err(Failed::usage(anyhow!(
            "job {} has no annotation {}: `sluice annotations {}` lists them",
            args.job,
            args.id,
            args.job
        )));
    };
    let write = |out: &mut dyn std::io::Write| -> Result<(), Failed> {
        if row.kind == "comment" {
            out.write_all(format!("{}\n", row.title).as_bytes())
                .map_err(Failed::internal)?;
        } else {
            journal
                .copy_annotation(row.id, out)
                .map_err(Failed::internal)?;
        }
        out.flush().map_err(Failed::internal)
    };
    match &args.output {
        Some(path) => {
            let mut file = std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))
                .map_err(Failed::usage)?;
            write(&mut file)?;
        }
        None => write(&mut std::io::stdout().lock())?,
    }
    Ok(0)
}

pub(crate) async fn worker(global: &Global, args: WorkerArgs) -> CmdResult {
    use tokio::signal::unix::{SignalKind, signal};
    // Listen before anything else, so a signal never finds the default handler.
    let mut term = signal(SignalKind::terminate()).map_err(Failed::internal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Failed::internal)?;
    let printer = Arc::new(Printer::new(false));
    let runner = runner(global, printer.clone())?;
    loop {
        let done = runner.work_once().await.map_err(Failed::internal)?;
        for (job, standing) in &done {
            tracing::info!(job, ?standing, "drove");
        }
        if args.once {
            return Ok(0);
        }
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(args.interval_ms)) => {}
        }
    }
    printer.line("worker stopping");
    Ok(0)
}
