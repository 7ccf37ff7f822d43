//! `sluice validate` and `sluice simulate`: rules checked and walked without running ops.

use std::path::PathBuf;

use clap::Args;
use sluice_app::{AppError, JobStatus};

use crate::job::app;
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

pub(crate) async fn validate(global: &Global, args: ValidateArgs) -> CmdResult {
    let file = args.rule.display().to_string();
    match (app(global)?.validate(&args.rule).await, args.json) {
        (Ok(v), false) => {
            let steps = v.rule.all_steps().len();
            output::print(&format!(
                "{file}: rule `{}` is valid: {steps} step{}, ops {}\n",
                v.rule.name,
                if steps == 1 { "" } else { "s" },
                v.rule.op_names().join(", ")
            ))?;
            Ok(0)
        }
        (Ok(_), true) => {
            print_json(&serde_json::json!({ "valid": true, "errors": [] }))?;
            Ok(0)
        }
        (Err(AppError::Invalid(d)), false) => Err(Failed::rendered(1, d.to_string())),
        (Err(AppError::Invalid(d)), true) => {
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
        (Err(e), _) => Err(e.into()),
    }
}

pub(crate) async fn simulate(global: &Global, args: SimulateArgs) -> CmdResult {
    let (lines, status) = app(global)?
        .simulate(&args.rule, &args.params, &args.outcomes, &args.outputs)
        .await?;
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
    Ok(if status == JobStatus::Succeeded { 0 } else { 1 })
}
