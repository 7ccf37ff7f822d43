//! Printing: human text by default, JSON with `--json`; a closed pipe is not an error.

use std::io::Write;

use serde_json::{Value, json};
use sluice_app::{LoadSource, LogLevel, LogSource, OpReport, Outcome};

use crate::Failed;

/// Writes `text` to stdout.
pub(crate) fn print(text: &str) -> Result<(), Failed> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Failed::internal)
}

/// Writes `value` as pretty JSON and a newline to stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), Failed> {
    let text = serde_json::to_string_pretty(value).map_err(Failed::internal)?;
    print(&format!("{text}\n"))
}

/// Whether the error is only the reader of our output going away (`sluice ... | head`).
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

pub(crate) fn load_source(s: LoadSource) -> &'static str {
    match s {
        LoadSource::Compiled => "compiled",
        LoadSource::DiskCache => "disk-cache",
        LoadSource::Memory => "memory",
    }
}

fn json_or_string(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

/// The outcome as JSON, with the op's JSON output embedded as a value, not a string.
pub(crate) fn outcome_json(o: &Outcome) -> Value {
    match o {
        Outcome::Success { output } => {
            json!({ "status": "success", "output": json_or_string(output) })
        }
        Outcome::Warning { output } => {
            json!({ "status": "warning", "output": json_or_string(output) })
        }
        Outcome::Failure(f) => json!({
            "status": "failure",
            "message": f.message,
            "retryable": f.retryable,
            "details": if f.details.is_empty() { Value::Null } else { json_or_string(&f.details) },
        }),
        Outcome::Suspend(g) => json!({
            "status": "suspend",
            "gate": {
                "kind": g.kind,
                "message": g.message,
                "approvers": g.approvers,
                "quorum": g.quorum,
                "allow_self_approval": g.allow_self_approval,
                "inputs": g.inputs,
                "timeout_seconds": g.timeout_seconds,
                "timeout_action": g.timeout_action,
                "state_bytes": g.state.len(),
            },
        }),
    }
}

/// The human form of `op run`: log lines on stderr, the outcome on stdout.
pub(crate) fn print_report(name: &str, report: &OpReport) -> Result<(), Failed> {
    let mut err = std::io::stderr().lock();
    for line in &report.logs {
        let source = match line.source {
            LogSource::Op => "op",
            LogSource::Stdout => "stdout",
            LogSource::Stderr => "stderr",
            LogSource::Host => "host",
        };
        let level = match line.level {
            LogLevel::Trace | LogLevel::Debug | LogLevel::Info => line.level.as_str(),
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        };
        // Ignore a closed stderr: the outcome on stdout still matters.
        let _ = writeln!(err, "{level:>5} [{name} {source}] {}", line.message);
    }
    for a in &report.annotations {
        let _ = writeln!(err, "annotation: {}\n{}", a.title, a.body);
    }
    drop(err);

    let text = match &report.outcome {
        Outcome::Success { output } => format!("success\n{}\n", pretty(output)),
        Outcome::Warning { output } => format!("warning\n{}\n", pretty(output)),
        Outcome::Failure(f) => {
            let mut s = format!("failure: {}\n", f.message);
            if f.retryable {
                s.push_str("(retryable)\n");
            }
            if !f.details.is_empty() {
                s.push_str(&format!("details:\n{}\n", pretty(&f.details)));
            }
            s
        }
        Outcome::Suspend(g) => {
            let kind = match g.kind {
                sluice_app::GateKind::Approval => "approval",
                sluice_app::GateKind::Pause => "pause",
                sluice_app::GateKind::Trap => "trap",
                sluice_app::GateKind::Window => "window",
            };
            let mut s = format!("suspended at {kind} gate: {}\n", g.message);
            if !g.approvers.is_empty() {
                s.push_str(&format!(
                    "approvers: {} (quorum {})\n",
                    g.approvers.join(", "),
                    g.quorum.max(1)
                ));
            }
            if let Some(t) = g.timeout_seconds {
                s.push_str(&format!("times out after {t} s\n"));
            }
            s.push_str(
                "`sluice op run` does not keep gates; run the op inside a rule to decide on it\n",
            );
            s
        }
    };
    print(&text)
}

fn pretty(json: &str) -> String {
    serde_json::from_str::<Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_string())
}
