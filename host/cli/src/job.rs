//! Jobs from the command line: `run`, `jobs`, `show`, `logs`, `cancel`, `locks`.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use clap::Args;
use serde_json::{Value, json};
use sluice_engine::{Event, Job, JobStatus, Millis, StepStatus};
use sluice_rule::{Step, StepKind};
use sluice_runner::{Observer, Runner, Standing};
use sluice_runtime::{Runtime, RuntimeConfig};
use sluice_store::{Journal, SqliteJournal};

use crate::output::{self, print_json};
use crate::rule::{read_rule, split_params};
use crate::{CmdResult, Failed, Global};

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The rule file.
    rule: PathBuf,
    /// A param, as NAME=VALUE; repeat for more.
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Print one JSON object per event and log line, for scripts.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct JobsArgs {
    /// How many jobs to list.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The job id, such as `web-release-42`.
    job: String,
    /// Print JSON for scripts: the job's state and every event.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// The job id.
    job: String,
    /// Only this step's lines.
    #[arg(long)]
    step: Option<String>,
    /// Keep printing new lines until the job ends.
    #[arg(short, long)]
    follow: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// The job id.
    job: String,
    /// Why, recorded in the journal.
    #[arg(long, default_value = "cancelled from the command line")]
    reason: String,
    /// Who cancels (default: SLUICE_USER, then this process's OS account).
    #[arg(long = "as", value_name = "USER")]
    as_user: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct LocksArgs {
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
}

pub(crate) fn journal(global: &Global) -> Result<Arc<SqliteJournal>, Failed> {
    let path = global.home.join("sluice.db");
    SqliteJournal::open(&path)
        .with_context(|| format!("cannot open the journal at {}", path.display()))
        .map(Arc::new)
        .map_err(Failed::internal)
}

/// The journal for commands that only read (`jobs`, `show`, `logs`, `locks`, annotations):
/// opened read-only, so they work in a read-only `$SLUICE_HOME` and change nothing.
pub(crate) fn journal_read(global: &Global) -> Result<Arc<SqliteJournal>, Failed> {
    let path = global.home.join("sluice.db");
    SqliteJournal::open_read_only(&path)
        .with_context(|| format!("cannot read the journal at {}", path.display()))
        .map(Arc::new)
        .map_err(Failed::internal)
}

pub(crate) fn runner(global: &Global, observer: Arc<dyn Observer>) -> Result<Runner, Failed> {
    let runtime = Runtime::new(RuntimeConfig::new(&global.home)).map_err(Failed::internal)?;
    Ok(Runner::new(Arc::new(runtime), journal(global)?, observer))
}

/// Who runs a command: the identity they claim (`--as`, else `SLUICE_USER`, else the OS
/// account) and the OS account of this process, both recorded in what they decide.
pub(crate) struct Identity {
    pub(crate) user: String,
    pub(crate) os_user: String,
}

/// The identity of this command: `--as` when given, else `SLUICE_USER`, else the process's OS
/// account name (getpwuid). An empty name is refused.
pub(crate) fn identity(claimed: Option<&str>) -> Result<Identity, Failed> {
    let os_user = os_account();
    let (user, from) = match claimed {
        Some(u) => (u.to_string(), "--as"),
        None => match std::env::var("SLUICE_USER") {
            Ok(u) => (u, "SLUICE_USER"),
            Err(std::env::VarError::NotPresent) => (os_user.clone(), "the OS account"),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(Failed::usage(anyhow!(
                    "SLUICE_USER is not valid text: set it to a user name, or unset it to act as `{os_user}`"
                )));
            }
        },
    };
    if user.trim().is_empty() {
        return Err(Failed::usage(anyhow!(
            "the identity from {from} is empty: name a user, or unset SLUICE_USER to act as the OS account `{os_user}`"
        )));
    }
    if user.trim() != user || user.chars().any(char::is_control) {
        return Err(Failed::usage(anyhow!(
            "the identity `{}` from {from} has spaces around it or control characters: name a user",
            user.escape_debug()
        )));
    }
    Ok(Identity { user, os_user })
}

/// This process's OS account name, from the password database (`uid N` when it has none).
fn os_account() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) if !u.name.is_empty() => u.name,
        _ => format!("uid {uid}"),
    }
}

/// Prints events and logs as plain lines (or JSON lines) as the runner goes; on a terminal,
/// redraws a live tree of the job's steps instead.
pub(crate) struct Printer {
    json: bool,
    /// Lines of the tree drawn last, when drawing live on a terminal.
    live: Option<Mutex<usize>>,
    out: Mutex<()>,
}

impl Printer {
    pub(crate) fn new(json: bool) -> Self {
        use std::io::IsTerminal;
        let live =
            (!json && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
                .then(|| Mutex::new(0));
        Printer {
            json,
            live,
            out: Mutex::new(()),
        }
    }

    /// Redraws the tree of `job` over the previous drawing.
    fn redraw(&self, job: &Job, lines_drawn: &Mutex<usize>) {
        let text = show_text(job);
        let mut drawn = lines_drawn.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = std::io::stdout().lock();
        if *drawn > 0 {
            // Up to where the last drawing began, and clear from there down.
            let _ = write!(out, "\x1b[{}A\x1b[J", *drawn);
        }
        let _ = write!(out, "{text}");
        let _ = out.flush();
        *drawn = text.lines().count();
    }
}

impl Printer {
    pub(crate) fn line(&self, text: &str) {
        let _guard = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

fn phase_of(job: &Job, step: &str) -> &'static str {
    if step.starts_with("undo:") {
        return "rollback";
    }
    job.rule.step(step).map(|(p, _)| p.as_str()).unwrap_or("")
}

fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

impl Observer for Printer {
    fn event(&self, job: &Job, event: &Event, at: Millis) {
        if let Some(drawn) = &self.live {
            if !matches!(event, Event::Created { .. }) {
                self.redraw(job, drawn);
            }
            return;
        }
        if self.json {
            self.line(&json!({ "job": job.id, "at": at, "event": event }).to_string());
            return;
        }
        let text = match event {
            Event::Created {
                job_id,
                rule,
                started_by,
                ..
            } => {
                format!(
                    "starting job {job_id} of rule {} for {started_by}",
                    rule.name
                )
            }
            Event::Queued { behind } => format!("queued behind {}", behind.join(", ")),
            Event::Started { locks } if locks.is_empty() => return,
            Event::Started { locks } => format!("holding {}", locks.join(", ")),
            Event::StepStarted { step, attempt, .. } => {
                let again = if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                format!("{:>8}  {step}{again} ...", phase_of(job, step))
            }
            Event::StepFinished { step, result, .. } => {
                let s = &job.steps[step];
                let took = match (s.started_at, s.finished_at) {
                    (Some(a), Some(b)) => format!(" in {}", duration(b.saturating_sub(a))),
                    _ => String::new(),
                };
                let status = match s.status {
                    StepStatus::RetryWait => "failed, will retry",
                    StepStatus::Succeeded => "succeeded",
                    StepStatus::Warning => "warning",
                    _ => "failed",
                };
                let why = if result.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", result.message)
                };
                format!("{:>8}  {step} {status}{took}{why}", phase_of(job, step))
            }
            Event::StepSkipped { step, reason } => {
                format!("{:>8}  {step} skipped: {reason}", phase_of(job, step))
            }
            Event::RollbackStarted { step, .. } => format!("rolling back: `{step}` failed"),
            Event::GateOpened { step, gate, .. } => {
                let kind = match gate.kind {
                    sluice_engine::GateKind::Approval => "an approval",
                    sluice_engine::GateKind::Pause => "a pause",
                    sluice_engine::GateKind::Trap => "a trap",
                };
                format!(
                    "{:>8}  {step} waits at {kind}: {}",
                    phase_of(job, step),
                    gate.message
                )
            }
            Event::Decided {
                step,
                kind,
                by,
                comment,
                ..
            } => {
                let why = if comment.is_empty() {
                    String::new()
                } else {
                    format!(": {comment}")
                };
                let kind = serde_json::to_value(kind)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                format!(
                    "{:>8}  {step}: {by} decided {kind}{why}",
                    phase_of(job, step)
                )
            }
            Event::Interrupted {
                step,
                attempt,
                live_children,
            } => {
                let still = if live_children.is_empty() {
                    String::new()
                } else {
                    format!("; still running: {}", live_children.join(", "))
                };
                format!(
                    "{:>8}  {step} attempt {attempt} was interrupted: the host stopped while it ran{still}",
                    phase_of(job, step)
                )
            }
            Event::CancelRequested { by, reason, .. } => {
                format!("cancel requested by {by}: {reason}")
            }
            // `run` says "no job was created" itself.
            Event::Finished {
                status: JobStatus::CheckFailed,
                ..
            } => return,
            Event::Finished { status, message } => {
                format!("job {} {}: {message}", job.id, status.as_str())
            }
        };
        self.line(&text);
    }

    fn logs(&self, job: &str, step: &str, lines: &[sluice_model::LogLine]) {
        if self.live.is_some() {
            return; // the tree stays readable; `sluice logs JOB` has them
        }
        for l in lines {
            if self.json {
                self.line(&json!({ "job": job, "step": step, "log": l }).to_string());
            } else {
                self.line(&format!("{:>8}  | {step}: {}", "", l.message));
            }
        }
    }
}

pub(crate) fn standing_code(standing: &Standing) -> u8 {
    match standing {
        Standing::Finished {
            status: JobStatus::Succeeded,
            ..
        } => 0,
        Standing::Finished { .. } | Standing::CheckFailed { .. } => Failed::OP_FAILED,
        Standing::Queued { .. } | Standing::ElsewhereRunning | Standing::Waiting { .. } => {
            Failed::WAITING
        }
        Standing::Handed => 0,
    }
}

pub(crate) async fn run(global: &Global, args: RunArgs) -> CmdResult {
    let mut rule = read_rule(&args.rule)?;
    crate::plugin::resolve(global, &mut rule, &args.rule).await?;
    let params = split_params(&args.params)?;
    let printer = Arc::new(Printer::new(args.json));
    let runner = runner(global, printer.clone())?;
    let dir = sluice_runner::rule_dir(&args.rule);
    let who = identity(None)?;
    let (id, standing) = runner
        .start(rule, &dir, &params, &who.user, &who.os_user)
        .await
        .map_err(|e| match e {
            sluice_runner::RunError::Params(_) | sluice_runner::RunError::NotGranted(_) => {
                Failed::usage(e)
            }
            sluice_runner::RunError::Op { .. } => Failed::load(e),
            other => Failed::internal(other),
        })?;
    if !args.json {
        report_standing(&printer, &id, &standing);
    }
    Ok(standing_code(&standing))
}

/// Says how a job stands when this process stops driving it, and what continues it.
pub(crate) fn report_standing(printer: &Printer, id: &str, standing: &Standing) {
    match standing {
        Standing::Queued { behind } => printer.line(&format!(
            "job {id} waits in line behind {}; it starts when they end (the process running them carries it on, or `sluice worker`), or `sluice cancel {id}`",
            behind.join(", ")
        )),
        Standing::CheckFailed { message } => printer.line(&format!("no job was created: {message}")),
        Standing::ElsewhereRunning => printer.line(&format!("job {id} runs in another process")),
        Standing::Waiting { gates } => {
            for g in gates {
                let verbs: Vec<String> = g
                    .choices
                    .iter()
                    .map(|k| {
                        let k = serde_json::to_value(k).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
                        format!("`sluice {k} {id} --step {}`", g.step)
                    })
                    .collect();
                printer.line(&format!("job {id} waits at `{}`: {}", g.step, g.message));
                if !g.approvers.is_empty() {
                    printer.line(&format!("  approvers: {} (quorum {})", g.approvers.join(", "), g.quorum));
                }
                if let Some(d) = g.deadline {
                    printer.line(&format!("  times out in {} s", d.saturating_sub(sluice_runner::now()) / 1000));
                }
                let ops: Vec<String> = g.bundle.iter().map(|(n, d, _)| format!("{n}@sha256:{}", &d[..12.min(d.len())])).collect();
                printer.line(&format!("  approves the ops {} (bundle {})", ops.join(", "), &g.bundle_digest[..16]));
                printer.line(&format!("  continue with {}", verbs.join(" or ")));
            }
            printer.line(&format!("job {id} hibernates: nothing of it runs until someone decides"));
        }
        Standing::Finished { .. } | Standing::Handed => {}
    }
}

pub(crate) fn jobs(global: &Global, args: JobsArgs) -> CmdResult {
    let journal = journal_read(global)?;
    let rows = journal.jobs(args.limit).map_err(Failed::internal)?;
    if args.json {
        print_json(&rows)?;
        return Ok(0);
    }
    let mut out = format!(
        "{:<24} {:<16} {:<16} {:<12} {}\n",
        "JOB", "RULE", "STATUS", "STARTED BY", "MESSAGE"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<24} {:<16} {:<16} {:<12} {}\n",
            r.id, r.rule, r.status, r.started_by, r.message
        ));
    }
    output::print(&out)?;
    Ok(0)
}

pub(crate) fn load_job(
    journal: &SqliteJournal,
    id: &str,
) -> Result<(Job, Vec<(Event, Millis)>), Failed> {
    let rows = journal.events(id, 0).map_err(Failed::internal)?;
    if rows.is_empty() {
        return Err(Failed::usage(anyhow!(
            "no job `{id}`: `sluice jobs` lists them"
        )));
    }
    let events: Vec<(Event, Millis)> = rows
        .iter()
        .map(|r| serde_json::from_str(&r.body).map(|e| (e, r.at)))
        .collect::<Result<_, _>>()
        .with_context(|| format!("job {id} has an unreadable event"))
        .map_err(Failed::internal)?;
    let job = Job::replay(events.iter().map(|(e, at)| (e, *at)))
        .ok_or_else(|| Failed::internal(anyhow!("job {id} does not start with `created`")))?;
    Ok((job, events))
}

pub(crate) fn show(global: &Global, args: ShowArgs) -> CmdResult {
    let journal = journal_read(global)?;
    let (job, events) = load_job(&journal, &args.job)?;
    let stranded = sluice_runner::stranded(&*journal, &job.id).map_err(Failed::internal)?;
    if args.json {
        let annotations = journal.annotations(&job.id).map_err(Failed::internal)?;
        let history: Vec<_> = events
            .iter()
            .map(|(e, at)| json!({ "at": at, "event": e }))
            .collect();
        print_json(&json!({
            "id": job.id,
            "rule": job.rule.name,
            "status": sluice_runner::status_of(&job).0,
            "message": sluice_runner::status_of(&job).1,
            "driver_gone": stranded,
            "started_by": job.started_by,
            "params": job.params,
            "locks": job.locks,
            "steps": job.steps,
            "waiting": job.waiting_gates(),
            "annotations": annotations,
            "history": history,
        }))?;
        return Ok(0);
    }
    let mut text = show_text(&job);
    if stranded {
        text.push_str(&format!(
            "note     the process driving this job stopped; any decision, `sluice cancel {}` or `sluice worker` carries it on\n",
            job.id
        ));
    }
    let gates = job.waiting_gates();
    if !gates.is_empty() {
        text.push_str("waiting at\n");
        for g in &gates {
            text.push_str(&format!("  {:<20} {}", g.step, g.message));
            if !g.approved_by.is_empty() {
                text.push_str(&format!(
                    " (approved by {}; {} needed)",
                    g.approved_by.join(", "),
                    g.quorum
                ));
            }
            text.push('\n');
        }
    }
    let decisions: Vec<String> = events
        .iter()
        .filter_map(|(e, at)| match e {
            Event::Decided {
                step,
                kind,
                by,
                comment,
                inputs,
                os_user,
                ..
            } => {
                let kind = serde_json::to_value(kind)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                let mut line = format!(
                    "  {} {by}{} decided {kind} at `{step}`",
                    time(*at),
                    claimed_by(by, os_user)
                );
                if !comment.is_empty() {
                    line.push_str(&format!(": {comment}"));
                }
                if !inputs.is_empty() {
                    line.push_str(&format!(" {}", Value::Object(inputs.clone())));
                }
                Some(line)
            }
            Event::CancelRequested {
                by,
                reason,
                os_user,
            } => Some(format!(
                "  {} {by}{} cancelled: {reason}",
                time(*at),
                claimed_by(by, os_user)
            )),
            _ => None,
        })
        .collect();
    if !decisions.is_empty() {
        text.push_str("decisions\n");
        for d in decisions {
            text.push_str(&d);
            text.push('\n');
        }
    }
    let notes = journal.annotations(&job.id).map_err(Failed::internal)?;
    if !notes.is_empty() {
        text.push_str("annotations\n");
        for n in notes {
            let what = if n.kind == "comment" {
                n.title.clone()
            } else {
                format!("{} {} ({} bytes)", n.kind, n.title, n.size)
            };
            text.push_str(&format!(
                "  #{} {} {}: {what}\n",
                n.id,
                time(n.at),
                n.author
            ));
        }
    }
    output::print(&text)?;
    Ok(0)
}

/// ` (as OS user root)` when the claimed identity is not the OS account that recorded it.
fn claimed_by(by: &str, os_user: &str) -> String {
    if os_user.is_empty() || os_user == by {
        String::new()
    } else {
        format!(" (as OS user {os_user})")
    }
}

/// A time as UTC `YYYY-MM-DD HH:MM:SS`.
pub(crate) fn time(ms: Millis) -> String {
    let [y, mo, d, h, mi, s] = sluice_model::utc_parts(ms / 1000);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

/// The human form of `sluice show`: header, then every step of the rule in order.
pub(crate) fn show_text(job: &Job) -> String {
    let (status, message) = sluice_runner::status_of(job);
    let mut out = format!(
        "job      {}\nrule     {}\nstatus   {status}",
        job.id, job.rule.name
    );
    if !message.is_empty() {
        out.push_str(&format!(" ({message})"));
    }
    out.push_str(&format!("\nstarted  by {}\n", job.started_by));
    if !job.params.is_empty() {
        let params: Vec<String> = job.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!("params   {}\n", params.join(" ")));
    }
    if let Some(locks) = job.locks.as_ref().filter(|l| !l.is_empty()) {
        out.push_str(&format!("locks    {}\n", locks.join(", ")));
    }
    if let Some((by, reason)) = &job.cancel {
        out.push_str(&format!("cancel   by {by}: {reason}\n"));
    }
    let rule = &job.rule;
    for (phase, steps) in [
        ("check", &rule.phases.check),
        ("init", &rule.phases.init),
        ("pre", &rule.phases.pre),
        ("run", &rule.phases.run),
        ("rollback", &rule.rollback),
        ("post", &rule.phases.post),
    ] {
        let undo: Vec<&String> = if phase == "rollback" {
            job.steps
                .keys()
                .filter(|k| k.starts_with("undo:"))
                .collect()
        } else {
            vec![]
        };
        if steps.is_empty() && undo.is_empty() {
            continue;
        }
        out.push_str(&format!("{phase}\n"));
        if phase == "rollback" {
            // Undo in the order it ran: the reverse of completion.
            for id in job.completed.iter().rev() {
                let key = format!("undo:{id}");
                if job.steps.contains_key(&key) {
                    out.push_str(&step_line(job, &key, 1));
                }
            }
        }
        step_lines(job, steps, 1, &mut out);
    }
    out
}

fn step_lines(job: &Job, steps: &[Step], depth: usize, out: &mut String) {
    for s in steps {
        match &s.kind {
            StepKind::Op(_) => out.push_str(&step_line(job, &s.id, depth)),
            StepKind::Parallel(p) => {
                let status = job
                    .steps
                    .get(&s.id)
                    .map(|st| status_word(st.status))
                    .unwrap_or("");
                out.push_str(&format!(
                    "{}{} (parallel{}) {status}\n",
                    "  ".repeat(depth),
                    s.id,
                    if p.fail_fast { ", fail-fast" } else { "" }
                ));
                for (i, b) in p.branches.iter().enumerate() {
                    out.push_str(&format!("{}branch {}\n", "  ".repeat(depth + 1), i + 1));
                    step_lines(job, b, depth + 2, out);
                }
            }
        }
    }
}

fn status_word(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Running => "running",
        StepStatus::RetryWait => "waiting to retry",
        StepStatus::Succeeded => "succeeded",
        StepStatus::Warning => "warning",
        StepStatus::Failed => "failed",
        StepStatus::Skipped => "skipped",
        StepStatus::Waiting => "waiting",
        StepStatus::Cancelled => "cancelled",
    }
}

fn step_line(job: &Job, key: &str, depth: usize) -> String {
    let pad = "  ".repeat(depth);
    let Some(s) = job.steps.get(key) else {
        return format!("{pad}{key:<20} not run\n");
    };
    let mut line = format!("{pad}{key:<20} {}", status_word(s.status));
    if s.attempt > 1 {
        line.push_str(&format!(" after {} attempts", s.attempt));
    }
    if let (Some(a), Some(b)) = (s.started_at, s.finished_at) {
        line.push_str(&format!(" in {}", duration(b.saturating_sub(a))));
    }
    if let Some(r) = &s.result
        && !r.message.is_empty()
    {
        line.push_str(&format!(": {}", r.message));
    }
    if let Some(reason) = &s.skip_reason {
        line.push_str(&format!(": {reason}"));
    }
    line.push('\n');
    line
}

pub(crate) async fn logs(global: &Global, args: LogsArgs) -> CmdResult {
    let journal = journal_read(global)?;
    let mut after = 0;
    if journal.job(&args.job).map_err(Failed::internal)?.is_none() {
        return Err(Failed::usage(anyhow!(
            "no job `{}`: `sluice jobs` lists them",
            args.job
        )));
    }
    loop {
        let rows = journal.logs(&args.job, after).map_err(Failed::internal)?;
        let mut out = String::new();
        for r in &rows {
            after = r.id;
            if args.step.as_ref().is_some_and(|s| s != &r.step) {
                continue;
            }
            out.push_str(&format!(
                "{}#{} [{} {}] {}\n",
                r.step, r.attempt, r.source, r.level, r.message
            ));
        }
        output::print(&out)?;
        if !args.follow {
            return Ok(0);
        }
        let row = journal.job(&args.job).map_err(Failed::internal)?;
        let done = row.as_ref().is_some_and(|r| {
            !matches!(
                r.status.as_str(),
                "running" | "queued" | "cancelling" | "rolling-back"
            )
        });
        if done && rows.is_empty() {
            return Ok(0);
        }
        // A tail: poll the journal for lines other processes append.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) async fn cancel(global: &Global, args: CancelArgs) -> CmdResult {
    let who = identity(args.as_user.as_deref())?;
    crate::gate::allow(&crate::gate::permissions(global)?, &who.user, "cancel")?;
    let printer = Arc::new(Printer::new(false));
    let runner = runner(global, printer.clone())?;
    if runner
        .journal()
        .job(&args.job)
        .map_err(Failed::internal)?
        .is_none()
    {
        return Err(Failed::usage(anyhow!(
            "no job `{}`: `sluice jobs` lists them",
            args.job
        )));
    }
    let standing = runner
        .cancel(&args.job, &who.user, &who.os_user, &args.reason)
        .await
        .map_err(crate::gate::decision_failure)?;
    match &standing {
        Standing::ElsewhereRunning => printer.line(&format!(
            "job {} runs in another process: it stops after its running steps, then runs post",
            args.job
        )),
        // The end itself was printed as it was recorded.
        other => report_standing(&printer, &args.job, other),
    }
    Ok(0)
}

pub(crate) fn locks(global: &Global, args: LocksArgs) -> CmdResult {
    let journal = journal_read(global)?;
    let rows = journal.locks().map_err(Failed::internal)?;
    if args.json {
        print_json(&rows)?;
        return Ok(0);
    }
    let mut out = format!("{:<28} {:<24} {:<10} {}\n", "LOCK", "JOB", "MODE", "STATE");
    for r in rows {
        let mode = if r.exclusive { "exclusive" } else { "shared" };
        let state = if r.held {
            "held".to_string()
        } else {
            format!("waiting (#{})", r.ticket)
        };
        out.push_str(&format!(
            "{:<28} {:<24} {mode:<10} {state}\n",
            r.name, r.job
        ));
    }
    output::print(&out)?;
    Ok(0)
}
