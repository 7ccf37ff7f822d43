//! `sluice op list|describe|run|test`: ops on their own, outside any rule.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use clap::Subcommand;
use sluice_app::{OpInfo, Outcome};

use crate::job::app_read as app;
use crate::output::{self, print_json};
use crate::{CmdResult, Failed, Global};

#[derive(Debug, Subcommand)]
pub(crate) enum OpCommand {
    /// List the standard ops shipped in this binary.
    List {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Show what an op does, the input it takes and what it needs.
    Describe {
        /// A standard op's name, or the path of a component (`FILE.wasm`).
        op: String,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Write a new op project, ready to build (`--lang rust|python|js`).
    New {
        /// The op's name: lowercase letters, digits and `-`.
        name: String,
        /// The language: rust, python (componentize-py) or js (jco, QuickJS).
        #[arg(long, default_value = "rust")]
        lang: String,
        /// Where to write it (default: ./NAME); must not exist.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run an op once with an input and print its outcome.
    Run {
        /// A standard op's name, or the path of a component (`FILE.wasm`).
        op: String,
        /// The input as JSON, or `@FILE` to read it from a file.
        #[arg(long, short, default_value = "{}")]
        input: String,
        /// Stop the op after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
        /// Grant a capability, as a rule's `grants:` would (repeat for more): exec:PROGRAM,
        /// http:ORIGIN, secret:NAME, env:NAME, workspace:read-only|read-write.
        #[arg(long = "grant", value_name = "CAPABILITY")]
        grants: Vec<String>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Run an op against the cases of its test file (input, grants, fake secrets, exec and
    /// HTTP fixtures, expected outcome); exits 1 when a case fails.
    Test {
        /// The test file.
        #[arg(default_value = "op-test.yaml")]
        file: PathBuf,
        /// Only the cases whose name contains this.
        #[arg(long)]
        case: Option<String>,
        /// Build (the file's `build:` command) and test again whenever a file beside it
        /// changes, until interrupted.
        #[arg(long)]
        watch: bool,
        /// Print JSON for scripts.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
    },
}

pub(crate) async fn run(global: &Global, cmd: OpCommand) -> CmdResult {
    if let OpCommand::New { name, lang, dir } = &cmd {
        return crate::new_op::new_op(name, lang, dir.clone());
    }
    match cmd {
        OpCommand::List { json } => list(global, json).await,
        OpCommand::Describe { op, json } => describe(global, &op, json).await,
        OpCommand::New { .. } => unreachable!("handled above"),
        OpCommand::Run {
            op,
            input,
            timeout,
            grants,
            json,
        } => run_op(global, &op, &input, timeout, &grants, json).await,
        OpCommand::Test {
            file,
            case,
            watch: false,
            json,
        } => crate::op_test::test(global, &file, case.as_deref(), json).await,
        OpCommand::Test {
            file,
            case,
            watch: true,
            ..
        } => crate::op_test::watch(global, &file, case.as_deref()).await,
    }
}

async fn list(global: &Global, json: bool) -> CmdResult {
    let infos = app(global)?.std_ops().await?;
    if json {
        let list: Vec<_> = infos
            .iter()
            .map(|(op, info)| {
                serde_json::json!({
                    "name": info.name,
                    "version": info.version,
                    "description": info.description,
                    "idempotent": info.idempotent,
                    "can_rollback": info.can_rollback,
                    "needs": info.needs,
                    "digest": format!("sha256:{}", op.digest),
                })
            })
            .collect();
        print_json(&list)?;
    } else {
        let width = infos.iter().map(|(_, i)| i.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (_, info) in &infos {
            out.push_str(&format!(
                "{:width$}  {:8}  {}\n",
                info.name, info.version, info.description
            ));
        }
        output::print(&out)?;
    }
    Ok(0)
}

async fn describe(global: &Global, arg: &str, json: bool) -> CmdResult {
    let (op, info) = app(global)?.describe_op(arg).await?;
    if json {
        let mut v = serde_json::to_value(&info).map_err(Failed::internal)?;
        v["digest"] = format!("sha256:{}", op.digest).into();
        v["input_schema"] = parse_or_string(&info.input_schema);
        v["output_schema"] = parse_or_string(&info.output_schema);
        print_json(&v)?;
    } else {
        output::print(&describe_text(&info, &op.digest))?;
    }
    Ok(0)
}

fn parse_or_string(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|_| s.into())
}

fn describe_text(info: &OpInfo, digest: &str) -> String {
    let needs = if info.needs.is_empty() {
        "nothing".to_string()
    } else {
        info.needs
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let schema = serde_json::from_str::<serde_json::Value>(&info.input_schema)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| info.input_schema.clone());
    format!(
        "{} {}\n{}\n\ndigest:       sha256:{digest}\nidempotent:   {}\ncan rollback: {}\nneeds:        {needs}\n\ninput schema:\n{schema}\n",
        info.name,
        info.version,
        info.description,
        yes_no(info.idempotent),
        yes_no(info.can_rollback),
    )
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

async fn run_op(
    global: &Global,
    arg: &str,
    input: &str,
    timeout: Option<f64>,
    grants: &[String],
    json: bool,
) -> CmdResult {
    let input = read_input(input)?;
    let timeout = match timeout {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            return Err(Failed::usage(anyhow!(
                "--timeout {s}: give a number of seconds above 0"
            )));
        }
        None => None,
    };
    let actor = sluice_app::command_line_actor(None)?;
    let run = app(global)?
        .run_op(arg, &input, grants, timeout, &actor)
        .await?;
    let report = &run.report;
    let code = match &report.outcome {
        Outcome::Success { .. } | Outcome::Warning { .. } => 0,
        Outcome::Failure(_) => Failed::OP_FAILED,
        Outcome::Suspend(_) => Failed::WAITING,
    };
    if json {
        let v = serde_json::json!({
            "op": run.op.name,
            "digest": format!("sha256:{}", run.op.digest),
            "loaded_from": output::load_source(run.op.source),
            "outcome": output::outcome_json(&report.outcome),
            "fault": report.fault,
            "logs": report.logs,
            "annotations": report.annotations,
            "progress": report.progress,
        });
        print_json(&v)?;
    } else {
        output::print_report(&run.op.name, report)?;
    }
    Ok(code)
}

/// The `--input` value: JSON text, or `@FILE`; checked to be JSON before any op runs.
fn read_input(arg: &str) -> Result<String, Failed> {
    let (text, from) = match arg.strip_prefix('@') {
        Some(file) => {
            let path = PathBuf::from(file);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read --input file {}", path.display()))
                .map_err(Failed::usage)?;
            (text, format!("file {}", path.display()))
        }
        None => (arg.to_string(), "--input".to_string()),
    };
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
        return Err(Failed::usage(anyhow!(
            "{from} is not JSON ({e}); pass an object such as --input '{{\"message\": \"hi\"}}'"
        )));
    }
    Ok(text)
}
