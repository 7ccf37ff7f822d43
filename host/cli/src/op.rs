//! `sluice op list|describe|run`: ops on their own, outside any rule.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use clap::Subcommand;
use sluice_model::{JobContext, OpInfo, Outcome};
use sluice_runtime::{Call, LoadSource, LoadedOp, Runtime, RuntimeConfig};

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
}

pub(crate) async fn run(global: &Global, cmd: OpCommand) -> CmdResult {
    if let OpCommand::New { name, lang, dir } = &cmd {
        return crate::new_op::new_op(name, lang, dir.clone());
    }
    let runtime = Runtime::new(RuntimeConfig::new(&global.home)).map_err(Failed::internal)?;
    match cmd {
        OpCommand::List { json } => list(&runtime, json).await,
        OpCommand::Describe { op, json } => describe(&runtime, &op, json).await,
        OpCommand::New { .. } => unreachable!("handled above"),
        OpCommand::Run {
            op,
            input,
            timeout,
            grants,
            json,
        } => run_op(&runtime, &op, &input, timeout, &grants, json).await,
    }
}

/// An op named on the command line, loaded.
struct Resolved {
    name: String,
    op: Arc<LoadedOp>,
    source: LoadSource,
}

/// A standard op by name, or a component file by path.
fn resolve(runtime: &Runtime, arg: &str) -> Result<Resolved, Failed> {
    let path = Path::new(arg);
    let looks_like_file = arg.ends_with(".wasm") || arg.contains(std::path::MAIN_SEPARATOR);
    let (name, bytes): (String, std::borrow::Cow<'static, [u8]>) = if looks_like_file
        || path.is_file()
    {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read op file {}", path.display()))
            .map_err(Failed::usage)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        (name, bytes.into())
    } else {
        match sluice_ops::std_op(arg) {
            Some(op) => (op.name.to_string(), op.wasm.into()),
            None => {
                let known: Vec<&str> = sluice_ops::STD_OPS.iter().map(|o| o.name).collect();
                return Err(Failed::usage(anyhow!(
                    "unknown op `{arg}`: the standard ops are {}; to run your own, give the path of its .wasm file",
                    known.join(", ")
                )));
            }
        }
    };
    let (op, source) = runtime
        .load(&bytes)
        .with_context(|| format!("cannot load op `{arg}`"))
        .map_err(Failed::load)?;
    tracing::info!(op = %name, digest = op.digest(), ?source, "loaded op");
    Ok(Resolved { name, op, source })
}

async fn list(runtime: &Runtime, json: bool) -> CmdResult {
    let mut infos = Vec::new();
    for std_op in sluice_ops::STD_OPS {
        let r = resolve(runtime, std_op.name)?;
        let info = runtime
            .describe(&r.op)
            .await
            .with_context(|| format!("standard op `{}` is broken", std_op.name))
            .map_err(Failed::internal)?;
        infos.push((info, r.op.digest().to_string()));
    }
    if json {
        let list: Vec<_> = infos
            .iter()
            .map(|(info, digest)| {
                serde_json::json!({
                    "name": info.name,
                    "version": info.version,
                    "description": info.description,
                    "idempotent": info.idempotent,
                    "can_rollback": info.can_rollback,
                    "needs": info.needs,
                    "digest": format!("sha256:{digest}"),
                })
            })
            .collect();
        print_json(&list)?;
    } else {
        let width = infos.iter().map(|(i, _)| i.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (info, _) in &infos {
            out.push_str(&format!(
                "{:width$}  {:8}  {}\n",
                info.name, info.version, info.description
            ));
        }
        output::print(&out)?;
    }
    Ok(0)
}

async fn describe(runtime: &Runtime, arg: &str, json: bool) -> CmdResult {
    let r = resolve(runtime, arg)?;
    let info = runtime
        .describe(&r.op)
        .await
        .with_context(|| format!("cannot describe op `{arg}`"))
        .map_err(Failed::load)?;
    if json {
        let mut v = serde_json::to_value(&info).map_err(Failed::internal)?;
        v["digest"] = format!("sha256:{}", r.op.digest()).into();
        v["input_schema"] = parse_or_string(&info.input_schema);
        v["output_schema"] = parse_or_string(&info.output_schema);
        print_json(&v)?;
    } else {
        output::print(&describe_text(&info, r.op.digest()))?;
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
    runtime: &Runtime,
    arg: &str,
    input: &str,
    timeout: Option<f64>,
    grant_args: &[String],
    json: bool,
) -> CmdResult {
    let input = read_input(input)?;
    let mut caps = Vec::new();
    for g in grant_args {
        match g.parse::<sluice_model::Capability>() {
            Ok(sluice_model::Capability::Http(o)) if o == "*" => {
                return Err(Failed::usage(anyhow!(
                    "--grant http:*: grant each origin the op calls, e.g. --grant http:https://api.example.com"
                )));
            }
            Ok(c) => caps.push(c),
            Err(e) => return Err(Failed::usage(anyhow!("--grant {g}: {e}"))),
        }
    }
    // An ad hoc run's workspace is shared by every `op run` under this home.
    let grants =
        sluice_runner::host_grants(&caps, &runtime.config().home.join("workspaces/op-run"));
    let timeout = match timeout {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            return Err(Failed::usage(anyhow!(
                "--timeout {s}: give a number of seconds above 0"
            )));
        }
        None => None,
    };
    let r = resolve(runtime, arg)?;
    let user = std::env::var("SLUICE_USER").unwrap_or_else(|_| whoami());
    let call = Call::Run {
        ctx: JobContext::adhoc(&r.name, &user),
        input,
    };
    let secrets = sluice_runner::secret_values(&grants);
    let mut report = runtime
        .call(&r.op, &r.name, call, Arc::new(grants), timeout)
        .await;
    sluice_runner::mask_report(&mut report, &secrets);

    let code = match &report.outcome {
        Outcome::Success { .. } | Outcome::Warning { .. } => 0,
        Outcome::Failure(_) => Failed::OP_FAILED,
        Outcome::Suspend(_) => Failed::WAITING,
    };
    if json {
        let v = serde_json::json!({
            "op": r.name,
            "digest": format!("sha256:{}", r.op.digest()),
            "loaded_from": output::load_source(r.source),
            "outcome": output::outcome_json(&report.outcome),
            "fault": report.fault,
            "logs": report.logs,
            "annotations": report.annotations,
            "progress": report.progress,
        });
        print_json(&v)?;
    } else {
        output::print_report(&r.name, &report)?;
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

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "unknown".to_string())
}
