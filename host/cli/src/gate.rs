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

use crate::job::{Printer, journal, load_job, report_standing, runner, standing_code, user};
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
    /// Who decides (default: SLUICE_USER, then USER).
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
    /// A file to attach (kept whole in the store).
    #[arg(long, group = "what")]
    file: Option<PathBuf>,
    /// A log file to attach.
    #[arg(long, group = "what")]
    log: Option<PathBuf>,
    /// Who annotates (default: SLUICE_USER, then USER).
    #[arg(long = "as", value_name = "USER")]
    as_user: Option<String>,
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

/// The permissions file: `--permissions`, `SLUICE_PERMISSIONS`, or `$SLUICE_HOME/permissions.yaml`.
pub(crate) fn permissions(global: &Global) -> Result<Option<Permissions>, Failed> {
    let path = std::env::var_os("SLUICE_PERMISSIONS")
        .map(PathBuf::from)
        .unwrap_or_else(|| global.home.join("permissions.yaml"));
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path)
        .with_context(|| format!("cannot read permissions file {}", path.display()))
        .map_err(Failed::usage)?;
    sluice_rule::decode_utf8(bytes, &path.display().to_string())
        .and_then(|text| permissions::parse(&text, &path.display().to_string()))
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
    let who = args.as_user.clone().unwrap_or_else(user);
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
    let groups = allow(&perms, &who, action)?;
    let req = DecisionRequest {
        step: args.step.as_deref(),
        kind,
        user: &who,
        groups: &groups,
        comment: &args.comment,
        inputs: parse_inputs(&args.inputs)?,
    };
    let printer = Arc::new(Printer::new(false));
    let runner = runner(global, printer.clone())?;
    let standing = runner
        .decide(&args.job, &req, args.detach)
        .await
        .map_err(|e| match e {
            sluice_runner::RunError::Refused(m) => Failed {
                code: Failed::REFUSED,
                error: anyhow!(m),
                raw: false,
            },
            other => Failed::internal(other),
        })?;
    if let Standing::Handed = standing {
        printer.line(&format!(
            "decision recorded; `sluice worker` carries job {} on",
            args.job
        ));
    }
    report_standing(&printer, &args.job, &standing);
    Ok(standing_code(&standing))
}

pub(crate) fn annotate(global: &Global, args: AnnotateArgs) -> CmdResult {
    let who = args.as_user.clone().unwrap_or_else(user);
    allow(&permissions(global)?, &who, "annotate")?;
    let journal = journal(global)?;
    if journal.job(&args.job).map_err(Failed::internal)?.is_none() {
        return Err(Failed::usage(anyhow!(
            "no job `{}`: `sluice jobs` lists them",
            args.job
        )));
    }
    let read = |p: &Path| {
        std::fs::read(p)
            .with_context(|| format!("cannot read {}", p.display()))
            .map_err(Failed::usage)
    };
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let (kind, title, body) = match (&args.comment, &args.file, &args.log) {
        (Some(c), _, _) => ("comment", c.clone(), Vec::new()),
        (_, Some(f), _) => ("file", name(f), read(f)?),
        (_, _, Some(l)) => ("log", name(l), read(l)?),
        _ => {
            return Err(Failed::usage(anyhow!(
                "give --comment TEXT, --file PATH or --log PATH"
            )));
        }
    };
    let id = journal
        .annotate(&args.job, sluice_runner::now(), &who, kind, &title, &body)
        .map_err(Failed::internal)?;
    crate::output::print(&format!("annotation {id} added to {} by {who}\n", args.job))?;
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
