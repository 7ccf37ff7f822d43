//! The command line as a client of a `sluice server` (`SLUICE_SERVER` and `SLUICE_TOKEN`, or
//! `sluice login`): `run`, `jobs`, `show`, `logs`, `cancel`, the decisions and `annotate` go
//! through its API with the token's identity; everything else stays local.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use sluice_app::{DecisionKind, JobState, Remote};

use crate::output::{self, print_json};
use crate::{CmdResult, Failed};

/// The server to talk to, when one is configured.
pub(crate) fn configured() -> Result<Option<Remote>, Failed> {
    Ok(Remote::configured()?)
}

/// `--as` claims a name; a server believes only the token.
pub(crate) fn refuse_as(as_user: Option<&str>, server: &Remote) -> Result<(), Failed> {
    match as_user {
        None => Ok(()),
        Some(_) => Err(Failed::usage(anyhow::anyhow!(
            "--as is not accepted when talking to {}: the token says who you are (unset SLUICE_SERVER to act on the local home)",
            server.base()
        ))),
    }
}

/// A command that has no server form yet refuses instead of reading the local home.
pub(crate) fn not_remote(command: &str, server: &Remote) -> Failed {
    Failed::usage(anyhow::anyhow!(
        "`sluice {command}` does not work through a server yet ({}): unset SLUICE_SERVER (and `sluice logout`) to use the local home",
        server.base()
    ))
}

/// `sluice login URL`: checks a token (read from stdin) with the server and saves both.
pub(crate) async fn login(url: &str) -> CmdResult {
    let mut token = String::new();
    std::io::stdin()
        .read_line(&mut token)
        .map_err(|e| Failed::usage(anyhow::anyhow!("cannot read the token from stdin: {e}")))?;
    let file = sluice_app::login_file().ok_or_else(|| {
        Failed::usage(anyhow::anyhow!(
            "no HOME or XDG_CONFIG_HOME to save the login in: set SLUICE_SERVER and SLUICE_TOKEN instead"
        ))
    })?;
    let server = Remote::new(url, token.trim())?;
    let me = server.login(&file).await?;
    eprintln!(
        "signed in to {} as {}; saved in {}",
        server.base(),
        me.name,
        file.display()
    );
    Ok(0)
}

/// `sluice logout`: forgets the saved login.
pub(crate) fn logout() -> CmdResult {
    if let Some(file) = sluice_app::login_file() {
        match std::fs::remove_file(&file) {
            Ok(()) => eprintln!("removed {}", file.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => eprintln!("not signed in"),
            Err(e) => {
                return Err(Failed::usage(anyhow::anyhow!(
                    "cannot remove {}: {e}",
                    file.display()
                )));
            }
        }
    }
    Ok(0)
}

/// The rule a server knows, from what was typed: a name, or a file named after it.
fn rule_name(rule: &Path) -> String {
    match rule.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => rule
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        _ => rule.to_string_lossy().into_owned(),
    }
}

/// The exit code for a job that stopped moving, as for a local run.
fn code(state: JobState) -> u8 {
    match state {
        JobState::Ended(sluice_app::JobStatus::Succeeded) => 0,
        JobState::Ended(_) => Failed::OP_FAILED,
        _ => Failed::WAITING,
    }
}

/// Prints how a job stands once it stopped moving, and what continues it.
fn report(v: &Value) {
    let id = v["id"].as_str().unwrap_or("");
    let status = v["status"].as_str().unwrap_or("");
    let message = v["message"].as_str().unwrap_or("");
    let mut out = String::new();
    if let Some(gates) = v["waiting"].as_array().filter(|g| !g.is_empty()) {
        for g in gates {
            let step = g["step"].as_str().unwrap_or("");
            out.push_str(&format!(
                "job {id} waits at `{step}`: {}\n",
                g["message"].as_str().unwrap_or("")
            ));
            if let Some(a) = g["approvers"].as_array().filter(|a| !a.is_empty()) {
                let names: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                out.push_str(&format!(
                    "  approvers: {} (quorum {})\n",
                    names.join(", "),
                    g["quorum"]
                ));
            }
            let verbs: Vec<String> = g["choices"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|k| format!("`sluice {k} {id} --step {step}`"))
                .collect();
            out.push_str(&format!("  continue with {}\n", verbs.join(" or ")));
        }
        out.push_str(&format!(
            "job {id} hibernates on the server: nothing of it runs until someone decides\n"
        ));
    } else if message.is_empty() {
        out.push_str(&format!("job {id} {status}\n"));
    } else {
        out.push_str(&format!("job {id} {status}: {message}\n"));
    }
    let _ = output::print(&out);
}

/// `sluice run RULE` through a server: starts it, follows it until it waits or ends.
pub(crate) async fn run(server: &Remote, rule: &Path, params: &[String], json: bool) -> CmdResult {
    let id = server.start(&rule_name(rule), params).await?;
    if !json {
        eprintln!("job {id} started on {}", server.base());
    }
    let (state, v) = server.settled(&id).await?;
    if json {
        print_json(&v)?;
    } else {
        report(&v);
    }
    Ok(code(state))
}

/// `sluice jobs` through a server.
pub(crate) async fn jobs(server: &Remote, limit: usize, json: bool) -> CmdResult {
    let rows = server.jobs(limit).await?;
    if json {
        print_json(&rows)?;
        return Ok(0);
    }
    output::print(&crate::job::jobs_table(&rows))?;
    Ok(0)
}

/// `sluice show JOB` through a server: the same facts as the local form.
pub(crate) async fn show(server: &Remote, job: &str, json: bool) -> CmdResult {
    let v = server.job(job).await?;
    if json {
        print_json(&v)?;
        return Ok(0);
    }
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut out = format!(
        "job      {}\nrule     {}\nstatus   {}",
        s(&v["id"]),
        s(&v["rule"]),
        s(&v["status"])
    );
    if !s(&v["message"]).is_empty() {
        out.push_str(&format!(" ({})", s(&v["message"])));
    }
    out.push_str(&format!(
        "\nstarted  by {}\nserver   {}\n",
        s(&v["started_by"]),
        server.base()
    ));
    if let Some(steps) = v["steps"].as_object() {
        out.push_str("steps\n");
        for (key, st) in steps {
            out.push_str(&format!(
                "  {key:<20} {:<12} attempt {}\n",
                s(&st["status"]),
                st["attempt"]
            ));
        }
    }
    if let Some(gates) = v["waiting"].as_array().filter(|g| !g.is_empty()) {
        out.push_str("waiting at\n");
        for g in gates {
            out.push_str(&format!("  {:<20} {}\n", s(&g["step"]), s(&g["message"])));
        }
    }
    let decisions: Vec<String> = v["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["event"]["type"] == "decided")
        .map(|h| {
            let e = &h["event"];
            let mut line = format!(
                "  {} {} decided {} at `{}`",
                crate::job::time(h["at"].as_u64().unwrap_or(0)),
                s(&e["by"]["name"]),
                s(&e["kind"]),
                s(&e["step"])
            );
            if !s(&e["comment"]).is_empty() {
                line.push_str(&format!(": {}", s(&e["comment"])));
            }
            line
        })
        .collect();
    if !decisions.is_empty() {
        out.push_str("decisions\n");
        for d in decisions {
            out.push_str(&d);
            out.push('\n');
        }
    }
    output::print(&out)?;
    Ok(0)
}

/// `sluice logs JOB [--follow]` through a server.
pub(crate) async fn logs(
    server: &Remote,
    job: &str,
    step: Option<&str>,
    follow: bool,
) -> CmdResult {
    let mut after = 0;
    loop {
        let rows = server.logs(job, after).await?;
        let mut out = String::new();
        for r in &rows {
            after = r.id;
            if step.is_some_and(|s| s != r.step) {
                continue;
            }
            out.push_str(&crate::job::log_line(r));
        }
        output::print(&out)?;
        if !follow {
            return Ok(0);
        }
        let state: Option<JobState> = server.job(job).await?["status"]
            .as_str()
            .and_then(|s| s.parse().ok());
        let done = state.is_some_and(|s| !(s.is_active() || s == JobState::Queued));
        if done && rows.is_empty() {
            return Ok(0);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A decision through a server; then follows the job until it waits or ends.
pub(crate) async fn decide(
    server: &Remote,
    job: &str,
    kind: DecisionKind,
    step: Option<&str>,
    comment: &str,
    inputs: &[String],
    detach: bool,
) -> CmdResult {
    server
        .decide(job, kind, step, comment, sluice_app::parse_inputs(inputs)?)
        .await?;
    eprintln!("decision recorded on {}", server.base());
    if detach {
        return Ok(0);
    }
    let (state, v) = server.settled(job).await?;
    report(&v);
    Ok(code(state))
}
