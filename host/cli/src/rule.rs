//! `sluice validate` and `sluice simulate`: rules checked and walked without running ops.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use clap::Args;
use sluice_engine::{OpMeta, Script};
use sluice_rule::{ParseOptions, Rule};
use sluice_runtime::{Runtime, RuntimeConfig};

use crate::output::{self, print_json};
use crate::{CmdResult, Failed, Global};

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// The rule file.
    rule: PathBuf,
    /// Print JSON for scripts: `{"valid": bool, "errors": [...]}`.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// The rule file.
    rule: PathBuf,
    /// A param, as NAME=VALUE; repeat for more.
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// A scripted outcome: STEP=success|warning|failure, or a list per attempt
    /// (STEP=failure,success); `undo:STEP` scripts the undo of a step. Unscripted steps succeed.
    #[arg(long = "outcome", value_name = "STEP=OUTCOME")]
    outcomes: Vec<String>,
    /// A scripted output: STEP=JSON, for later steps that read it.
    #[arg(long = "output", value_name = "STEP=JSON")]
    outputs: Vec<String>,
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
}

pub(crate) fn std_op_names() -> Vec<&'static str> {
    sluice_ops::STD_OPS.iter().map(|o| o.name).collect()
}

/// Reads and checks a rule; problems become a usage failure printed as diagnostics.
pub(crate) fn read_rule(path: &Path) -> Result<Rule, Failed> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read rule file {}", path.display()))
        .map_err(Failed::usage)?;
    let file = path.display().to_string();
    let names = std_op_names();
    sluice_rule::decode_utf8(bytes, &file)
        .and_then(|text| {
            sluice_rule::parse(
                &text,
                &ParseOptions {
                    file: &file,
                    std_ops: &names,
                },
            )
        })
        .map_err(|d| Failed::rendered(Failed::USAGE, d.to_string()))
}

/// `-p NAME=VALUE` pairs.
pub(crate) fn split_params(params: &[String]) -> Result<Vec<(String, String)>, Failed> {
    params
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(Failed::usage(anyhow!("-p {p}: write NAME=VALUE"))),
        })
        .collect()
}

/// Loads every op `rule` calls (files resolved against the rule's directory) and calls its
/// `describe`: the op's own account of itself, and its sha256. No op runs.
async fn describe_ops(
    global: &Global,
    rule: &Rule,
    dir: &Path,
) -> Result<BTreeMap<String, (sluice_model::OpInfo, String)>, Failed> {
    let runtime = Runtime::new(RuntimeConfig::new(&global.home)).map_err(Failed::internal)?;
    let mut out = BTreeMap::new();
    for name in rule.op_names() {
        let bytes = match rule.ops.get(&name) {
            Some(sluice_rule::OpSource::Path(p)) => std::fs::read(dir.join(p))
                .with_context(|| format!("op `{name}`: cannot read {}", dir.join(p).display()))
                .map_err(Failed::load)?,
            Some(sluice_rule::OpSource::Package(r)) => {
                return Err(Failed::internal(anyhow!(
                    "op `{name}`: package {r} was not resolved"
                )));
            }
            None => sluice_ops::std_op(&name)
                .map(|o| o.wasm.to_vec())
                .unwrap_or_default(),
        };
        let (op, _) = runtime
            .load(&bytes)
            .with_context(|| format!("op `{name}`"))
            .map_err(Failed::load)?;
        let info = runtime
            .describe(&op)
            .await
            .with_context(|| format!("op `{name}`"))
            .map_err(Failed::load)?;
        out.insert(name, (info, op.digest().to_string()));
    }
    Ok(out)
}

pub(crate) async fn validate(global: &Global, args: ValidateArgs) -> CmdResult {
    let bytes = std::fs::read(&args.rule)
        .with_context(|| format!("cannot read rule file {}", args.rule.display()))
        .map_err(Failed::usage)?;
    let names = std_op_names();
    let file = args.rule.display().to_string();
    let (text, mut result) = match sluice_rule::decode_utf8(bytes, &file) {
        Ok(text) => {
            let result = sluice_rule::parse(
                &text,
                &ParseOptions {
                    file: &file,
                    std_ops: &names,
                },
            );
            (text, result)
        }
        Err(d) => (d.text.clone(), Err(d)),
    };
    // The rule reads well: now check it grants what its ops declare they need.
    if let Ok(rule) = &result {
        let mut resolved = rule.clone();
        crate::plugin::resolve(global, &mut resolved, &args.rule).await?;
        let described =
            describe_ops(global, &resolved, &sluice_runner::rule_dir(&args.rule)).await?;
        let needs = described
            .into_iter()
            .map(|(name, (info, _))| (name, info.needs))
            .collect();
        let missing = rule.missing_grants(&needs);
        if !missing.is_empty() {
            let mut d = sluice_rule::Diagnostics {
                file: file.clone(),
                text: text.clone(),
                items: vec![],
            };
            for m in missing {
                let op = m.split('`').nth(1).unwrap_or_default().to_string();
                let loc = rule
                    .all_steps()
                    .into_iter()
                    .find(|(_, s)| matches!(&s.kind, sluice_rule::StepKind::Op(c) if c.op == op))
                    .map(|(_, s)| s.loc)
                    .unwrap_or_default();
                let (message, hint) = m
                    .split_once("does not grant: ")
                    .map(|(a, b)| (format!("{a}does not grant"), Some(b.to_string())))
                    .unwrap_or((m.clone(), None));
                d.items.push(sluice_rule::Diagnostic { message, loc, hint });
            }
            result = Err(d);
        }
    }
    match (result, args.json) {
        (Ok(rule), false) => {
            let steps = rule.all_steps().len();
            output::print(&format!(
                "{file}: rule `{}` is valid: {steps} step{}, ops {}\n",
                rule.name,
                if steps == 1 { "" } else { "s" },
                rule.op_names().join(", ")
            ))?;
            Ok(0)
        }
        (Ok(_), true) => {
            print_json(&serde_json::json!({ "valid": true, "errors": [] }))?;
            Ok(0)
        }
        (Err(d), false) => Err(Failed::rendered(1, d.to_string())),
        (Err(d), true) => {
            let errors: Vec<_> = d
                .items
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "file": d.file, "line": i.loc.line, "column": i.loc.column,
                        "message": i.message, "hint": i.hint,
                    })
                })
                .collect();
            print_json(&serde_json::json!({ "valid": false, "errors": errors }))?;
            Ok(1)
        }
    }
}

pub(crate) async fn simulate(global: &Global, args: SimulateArgs) -> CmdResult {
    let rule = read_rule(&args.rule)?;
    let params = rule
        .bind_params(&split_params(&args.params)?)
        .map_err(|errors| Failed::usage(anyhow!("{}", errors.join("\n"))))?;
    let script =
        Script::parse(&args.outcomes, &args.outputs).map_err(|e| Failed::usage(anyhow!(e)))?;
    for step in script.steps() {
        let id = step.strip_prefix("undo:").unwrap_or(step);
        if rule.step(id).is_none() {
            return Err(Failed::usage(anyhow!(
                "--outcome/--output name step `{id}`, which the rule does not have"
            )));
        }
    }

    // Only `describe` is called, to learn which ops can undo; no op runs.
    let mut rule = rule;
    crate::plugin::resolve(global, &mut rule, &args.rule).await?;
    let described = describe_ops(global, &rule, &sluice_runner::rule_dir(&args.rule)).await?;
    let ops = described
        .into_iter()
        .map(|(name, (info, digest))| {
            let meta = OpMeta {
                digest,
                can_rollback: info.can_rollback,
                idempotent: info.idempotent,
                needs: info.needs.iter().map(ToString::to_string).collect(),
            };
            (name, meta)
        })
        .collect();

    let (lines, status) = sluice_engine::simulate(&rule, params, ops, &script)
        .map_err(|e| Failed::internal(anyhow!(e)))?;
    if args.json {
        print_json(&serde_json::json!({ "path": lines, "status": status }))?;
    } else {
        let width = lines.iter().map(|l| l.step.len()).max().unwrap_or(0);
        let mut out = String::new();
        for l in &lines {
            if l.phase == "job" {
                out.push_str(&format!("{:>8}  {}\n", "", l.what));
            } else {
                out.push_str(&format!("{:>8}  {:width$}  {}\n", l.phase, l.step, l.what));
            }
        }
        output::print(&out)?;
    }
    Ok(if status == sluice_engine::JobStatus::Succeeded {
        0
    } else {
        1
    })
}
