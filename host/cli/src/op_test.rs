//! `sluice op test [FILE] [--case NAME] [--watch] [--json]`: prints what `App::test_op` gave,
//! like `cargo test` does; `--watch` builds and tests again on every change beside the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sluice_app::{AppError, OpTestRun, Outcome};

use crate::job::app_read as app;
use crate::output::{self, print_json};
use crate::{CmdResult, Failed, Global};

/// Runs the cases once: exit 0 when all pass, 1 when one fails.
pub(crate) async fn test(
    global: &Global,
    file: &Path,
    case: Option<&str>,
    json: bool,
) -> CmdResult {
    let run = app(global)?.test_op(file, case).await?;
    if json {
        print_json(&serde_json::json!({
            "op": run.path,
            "digest": format!("sha256:{}", run.op.digest),
            "passed": run.cases.iter().filter(|c| c.passed).count(),
            "failed": run.cases.iter().filter(|c| !c.passed).count(),
            "filtered_out": run.filtered_out,
            "cases": run.cases,
        }))?;
    } else {
        output::print(&report(file, &run))?;
    }
    Ok(if run.cases.iter().all(|c| c.passed) {
        0
    } else {
        Failed::OP_FAILED
    })
}

/// The run as text: a line per case, what a failed one missed, and the count.
fn report(file: &Path, run: &OpTestRun) -> String {
    let mut out = format!(
        "testing {} (sha256:{}) against {}: {} case{}\n",
        run.path.display(),
        &run.op.digest[..12.min(run.op.digest.len())],
        file.display(),
        run.cases.len(),
        if run.cases.len() == 1 { "" } else { "s" }
    );
    for c in &run.cases {
        if c.passed {
            out.push_str(&format!("case {} ... ok ({} ms)\n", c.name, c.millis));
            continue;
        }
        out.push_str(&format!(
            "case {} ... FAILED ({}:{})\n",
            c.name,
            file.display(),
            c.line
        ));
        for call in &c.calls {
            for p in &call.problems {
                out.push_str(&format!("    {}: {p}\n", call.call));
            }
            if !call.problems.is_empty() {
                if let Outcome::Failure(f) = &call.outcome
                    && !f.details.is_empty()
                {
                    out.push_str(&format!("      details: {}\n", f.details));
                }
                for l in call.logs.iter().rev().take(10).rev() {
                    out.push_str(&format!("      log {}: {}\n", l.level.as_str(), l.message));
                }
            }
        }
    }
    let failed = run.cases.iter().filter(|c| !c.passed).count();
    out.push_str(&format!(
        "op test: {} passed, {failed} failed{}\n",
        run.cases.len() - failed,
        if run.filtered_out > 0 {
            format!(", {} filtered out", run.filtered_out)
        } else {
            String::new()
        }
    ));
    out
}

/// Builds and tests, then again on every change beside `file`, until interrupted.
pub(crate) async fn watch(global: &Global, file: &Path, case: Option<&str>) -> CmdResult {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let app = app(global)?;
    loop {
        let before = match app.read_op_test(file) {
            Err(e) => {
                print_error(&e);
                snapshot(&dir)
            }
            Ok(t) => {
                if let Some(cmd) = &t.build {
                    output::print(&format!("building: {cmd}\n"))?;
                    build(&dir, cmd).await;
                }
                // Changes from here on (the build's own outputs are behind us) start a new round.
                let before = snapshot(&dir);
                match app.test_op(file, case).await {
                    Ok(run) => output::print(&report(file, &run))?,
                    Err(e) => print_error(&e),
                }
                before
            }
        };
        output::print(&format!(
            "watching {} for changes (Ctrl-C to stop)\n",
            dir.display()
        ))?;
        while snapshot(&dir) == before {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn print_error(e: &AppError) {
    match e {
        AppError::Invalid(d) => eprintln!("{d}"),
        e => eprintln!("error: {e}"),
    }
}

/// Runs the file's `build:` with `sh -c` in its directory; its output goes to ours.
async fn build(dir: &Path, cmd: &str) {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .status()
        .await;
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("error: the build `{cmd}` failed ({s}); testing what was built before"),
        Err(e) => eprintln!("error: cannot run the build `{cmd}` with sh: {e}"),
    }
}

/// Directories and files a build writes or a package manager fills: not the author's edits.
fn ignored(name: &str) -> bool {
    name.starts_with('.')
        || matches!(
            name,
            "node_modules" | "target" | "dist" | "build" | "__pycache__" | "bindings"
        )
        || name.ends_with(".wasm")
}

/// The modification time and size of every file under `dir` but [`ignored`] ones (at most
/// 10,000 files).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (SystemTime, u64)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if out.len() >= 10_000 || ignored(&e.file_name().to_string_lossy()) {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                todo.push(e.path());
            } else {
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                out.insert(e.path(), (modified, meta.len()));
            }
        }
    }
    out
}
