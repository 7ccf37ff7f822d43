//! Jobs from the command line: `run`, `jobs`, `show`, `logs`, `cancel`, `locks`.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};
use sluice_app::{
    App, Event, Job, JobStatus, Millis, Observer, Standing, Step, StepKind, StepStatus,
};

use crate::output::{self, print_json};
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

/// `$SLUICE_HOME` opened to read and write.
pub(crate) fn app(global: &Global) -> Result<App, Failed> {
    Ok(App::open_with(&global.home, global.database.as_deref())?)
}

/// `$SLUICE_HOME` opened for queries only (works on a read-only home).
pub(crate) fn app_read(global: &Global) -> Result<App, Failed> {
    Ok(App::open_read_only_with(
        &global.home,
        global.database.as_deref(),
    )?)
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
                    "starting job {job_id} of rule {} for {}",
                    rule.name, started_by.name
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
                format!(
                    "{:>8}  {step} waits at {}: {}",
                    phase_of(job, step),
                    gate.kind.described(),
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
                format!(
                    "{:>8}  {step}: {} decided {kind}{why}",
                    phase_of(job, step),
                    by.name
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
            Event::CancelRequested { by, reason } => {
                format!("cancel requested by {}: {reason}", by.name)
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

    fn note(&self, text: &str) {
        if self.json {
            self.line(&json!({ "note": text }).to_string());
        } else {
            self.line(text);
        }
    }

    fn logs(&self, job: &str, step: &str, lines: &[sluice_app::LogLine]) {
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
    if let Some(server) = crate::remote::configured()? {
        return crate::remote::run(&server, &args.rule, &args.params, args.json).await;
    }
    let app = app(global)?;
    let actor = sluice_app::command_line_actor(None)?;
    let printer = Arc::new(Printer::new(args.json));
    let (id, standing) = app
        .start(&args.rule, &args.params, actor, printer.clone())
        .await?;
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
                    .map(|k| format!("`sluice {k} {id} --step {}`", g.step))
                    .collect();
                printer.line(&format!("job {id} waits at `{}`: {}", g.step, g.message));
                if !g.approvers.is_empty() {
                    printer.line(&format!("  approvers: {} (quorum {})", g.approvers.join(", "), g.quorum));
                }
                if let Some(d) = g.deadline {
                    printer.line(&format!("  times out in {} s", d.saturating_sub(sluice_app::now()) / 1000));
                }
                if let Some(d) = g.opens_at {
                    printer.line(&format!("  starts by itself in {} s, when the window opens (a server or `sluice worker` starts it then)", d.saturating_sub(sluice_app::now()).div_ceil(1000)));
                    printer.line(&format!("  or now with `sluice skip-window {id} --step {} --comment WHY`", g.step));
                    continue;
                }
                let ops: Vec<String> = g.bundle.iter().map(|(n, d, _)| format!("{n}@sha256:{}", &d[..12.min(d.len())])).collect();
                printer.line(&format!("  approves the ops {} (bundle {})", ops.join(", "), &g.bundle_digest[..16]));
                printer.line(&format!("  continue with {}", verbs.join(" or ")));
            }
            printer.line(&format!("job {id} hibernates: nothing of it runs until someone decides{}", if gates.iter().any(|g| g.opens_at.is_some()) { " or its window opens" } else { "" }));
        }
        Standing::Finished { .. } | Standing::Handed => {}
    }
}

pub(crate) async fn jobs(global: &Global, args: JobsArgs) -> CmdResult {
    if let Some(server) = crate::remote::configured()? {
        return crate::remote::jobs(&server, args.limit, args.json).await;
    }
    let rows = app_read(global)?.jobs(args.limit).await?;
    if args.json {
        print_json(&rows)?;
        return Ok(0);
    }
    output::print(&jobs_table(&rows))?;
    Ok(0)
}

/// The job list as `sluice jobs` prints it.
pub(crate) fn jobs_table(rows: &[sluice_app::JobRow]) -> String {
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
    out
}

/// A log line as `sluice logs` prints it.
pub(crate) fn log_line(r: &sluice_app::LogRow) -> String {
    format!(
        "{}#{} [{} {}] {}\n",
        r.step,
        r.attempt,
        r.line.source.as_str(),
        r.line.level.as_str(),
        r.line.message
    )
}

pub(crate) async fn show(global: &Global, args: ShowArgs) -> CmdResult {
    if let Some(server) = crate::remote::configured()? {
        return crate::remote::show(&server, &args.job, args.json).await;
    }
    let view = app_read(global)?.job(&args.job).await?;
    let job = &view.job;
    if args.json {
        print_json(&view.to_json())?;
        return Ok(0);
    }
    let mut text = show_text(job);
    if let Some(c) = &job.cause {
        text.push_str(&format!(
            "follows  {} ({}, chain depth {})\n",
            c.from, c.kind, c.depth
        ));
    }
    if !view.started.is_empty() {
        text.push_str(&format!("led to   {}\n", view.started.join(", ")));
    }
    if view.driver_gone {
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
    let decisions: Vec<String> = view
        .history
        .iter()
        .filter_map(|(e, at)| match e {
            Event::Decided {
                step,
                kind,
                by,
                comment,
                inputs,
                ..
            } => {
                let mut line = format!(
                    "  {} {} decided {kind} at `{step}`",
                    time(*at),
                    by.described()
                );
                if !comment.is_empty() {
                    line.push_str(&format!(": {comment}"));
                }
                if !inputs.is_empty() {
                    line.push_str(&format!(" {}", Value::Object(inputs.clone())));
                }
                Some(line)
            }
            Event::CancelRequested { by, reason } => Some(format!(
                "  {} {} cancelled: {reason}",
                time(*at),
                by.described()
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
    if !view.annotations.is_empty() {
        text.push_str("annotations\n");
        for n in &view.annotations {
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

/// A time as UTC `YYYY-MM-DD HH:MM:SS`.
pub(crate) fn time(ms: Millis) -> String {
    sluice_app::format_time(ms)
}

/// The human form of `sluice show`: header, then every step of the rule in order.
pub(crate) fn show_text(job: &Job) -> String {
    let (status, message) = sluice_app::status_of(job);
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
                    .map(|st| st.status.described())
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

fn step_line(job: &Job, key: &str, depth: usize) -> String {
    let pad = "  ".repeat(depth);
    let Some(s) = job.steps.get(key) else {
        return format!("{pad}{key:<20} not run\n");
    };
    let mut line = format!("{pad}{key:<20} {}", s.status.described());
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
    if let Some(server) = crate::remote::configured()? {
        return crate::remote::logs(&server, &args.job, args.step.as_deref(), args.follow).await;
    }
    let app = app_read(global)?;
    let mut after = 0;
    app.row(&args.job).await?;
    loop {
        let rows = app.logs(&args.job, after).await?;
        let mut out = String::new();
        for r in &rows {
            after = r.id;
            if args.step.as_ref().is_some_and(|s| s != &r.step) {
                continue;
            }
            out.push_str(&log_line(r));
        }
        output::print(&out)?;
        if !args.follow {
            return Ok(0);
        }
        let state = app.row(&args.job).await?.status;
        let done = !(state.is_active() || state == sluice_app::JobState::Queued);
        if done && rows.is_empty() {
            return Ok(0);
        }
        // A tail: poll the journal for lines other processes append.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) async fn cancel(global: &Global, args: CancelArgs) -> CmdResult {
    if let Some(server) = crate::remote::configured()? {
        crate::remote::refuse_as(args.as_user.as_deref(), &server)?;
        server.cancel(&args.job, &args.reason).await?;
        eprintln!("job {} is being cancelled on {}", args.job, server.base());
        return Ok(0);
    }
    let actor = sluice_app::command_line_actor(args.as_user.as_deref())?;
    let app = app(global)?;
    let printer = Arc::new(Printer::new(false));
    let standing = app
        .cancel(&args.job, &args.reason, actor, printer.clone())
        .await?;
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

pub(crate) async fn locks(global: &Global, args: LocksArgs) -> CmdResult {
    if let Some(server) = crate::remote::configured()? {
        return Err(crate::remote::not_remote("locks", &server));
    }
    let rows = app_read(global)?.locks().await?;
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

pub(crate) async fn workers(global: &Global, args: LocksArgs) -> CmdResult {
    if let Some(server) = crate::remote::configured()? {
        return Err(crate::remote::not_remote("workers", &server));
    }
    let workers = app_read(global)?.workers().await?;
    if args.json {
        print_json(&workers)?;
    } else if workers.is_empty() {
        output::print("no worker runs: `sluice worker` starts one\n")?;
    } else {
        output::print(&format!("{}\n", workers.join("\n")))?;
    }
    Ok(0)
}
