//! The host side of the `sluice:op` imports: log, annotate, progress, secret, exec.
//!
//! Every import checks the op's [`Grants`](crate::Grants) first; what is not granted is
//! refused with `host-error::not-granted` and a message naming the grant to add.

use sluice_model::{Annotation, LogSource, Progress};

use crate::OpState;
use crate::bindings::sluice::op::{exec, host, types};
use crate::convert;

/// At most this many annotations per call, and this many bytes in each.
const MAX_ANNOTATIONS: usize = 64;
const MAX_ANNOTATION_BYTES: usize = 1 << 20;

impl types::Host for OpState {}

impl host::Host for OpState {
    fn log(&mut self, level: types::LogLevel, message: String) {
        self.log
            .push(convert::log_level(level), LogSource::Op, message);
    }

    fn annotate(&mut self, title: String, body: String) -> Result<(), types::HostError> {
        if title.trim().is_empty() {
            return Err(types::HostError::Invalid(
                "an annotation needs a title".into(),
            ));
        }
        if body.len() > MAX_ANNOTATION_BYTES {
            return Err(types::HostError::Invalid(format!(
                "annotation `{title}` is {} bytes; the limit is {MAX_ANNOTATION_BYTES}",
                body.len()
            )));
        }
        if self.annotations.len() >= MAX_ANNOTATIONS {
            return Err(types::HostError::Invalid(format!(
                "an op call may attach at most {MAX_ANNOTATIONS} annotations"
            )));
        }
        self.annotations.push(Annotation { title, body });
        Ok(())
    }

    fn progress(&mut self, percent: Option<u8>, message: String) {
        self.progress = Some(Progress {
            percent: percent.map(|p| p.min(100)),
            message,
        });
    }

    fn secret(&mut self, name: String) -> Result<String, types::HostError> {
        if let Some(var) = self.grants.unset_secrets.get(&name) {
            return Err(types::HostError::Failed(format!(
                "secret `{name}` is granted to op `{}` but has no value here: {var}",
                self.op_name
            )));
        }
        match self.grants.secrets.get(&name) {
            Some(value) => Ok(value.clone()),
            None => Err(types::HostError::NotGranted(format!(
                "secret `{name}` is not granted to op `{}`: grant `secret:{name}` to this op",
                self.op_name
            ))),
        }
    }
}

impl exec::Host for OpState {
    async fn run(&mut self, cmd: exec::Command) -> Result<exec::ExitStatus, types::HostError> {
        if cmd.program.trim().is_empty() {
            return Err(types::HostError::Invalid(
                "exec needs a program name".into(),
            ));
        }
        let Some(path) = self.grants.programs.get(&cmd.program).cloned() else {
            return Err(types::HostError::NotGranted(format!(
                "program `{}` is not granted to op `{}`: grant `exec:{}` to this op",
                cmd.program, self.op_name, cmd.program
            )));
        };
        if let Some(fixtures) = &self.grants.fixtures {
            return answer_exec(fixtures, &cmd);
        }
        let now = std::time::Instant::now();
        let left = self.deadline.saturating_duration_since(now);
        let limit = match cmd.timeout_ms {
            Some(ms) => left.min(std::time::Duration::from_millis(ms)),
            None => left,
        };
        let mut c = tokio::process::Command::new(&path);
        crate::spawn::prepare(&mut c);
        c.args(&cmd.args)
            .env_clear()
            .envs(&self.grants.env)
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .current_dir(
                self.grants
                    .workspace
                    .as_ref()
                    .map(|(d, _)| d.clone())
                    .unwrap_or_else(|| "/".into()),
            );
        let mut child = c.spawn().map_err(|e| {
            types::HostError::Failed(format!("could not start {}: {e}", path.display()))
        })?;
        // Whatever happens from here (a timeout, the call dropped, a normal end), nothing of
        // the program's process group outlives this call.
        let mut group = crate::spawn::Group::new(child.id());
        if let (Some(watch), Some(pid)) = (&self.grants.exec_watch, child.id()) {
            let ticks = crate::spawn::process_start_ticks(pid).unwrap_or(0);
            if let Err(e) = watch.0.started(&cmd.program, pid, ticks).await {
                group.kill();
                let _ = child.wait().await;
                return Err(types::HostError::Failed(format!(
                    "stopped {} before it ran: {e}",
                    path.display()
                )));
            }
        }
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let input = cmd.stdin;
        let feed = async move {
            if let Some(mut w) = stdin {
                use tokio::io::AsyncWriteExt;
                let _ = w.write_all(&input).await;
            }
        };
        let run = async {
            let (_, out, err) = tokio::join!(feed, bounded(stdout), bounded(stderr));
            let status = child.wait().await;
            (status, out, err)
        };
        let finished = tokio::time::timeout(limit, run).await;
        group.kill();
        match finished {
            Ok((status, (stdout, cut_out), (stderr, cut_err))) => {
                let status = status.map_err(|e| {
                    types::HostError::Failed(format!("waiting for {}: {e}", path.display()))
                })?;
                Ok(exec::ExitStatus {
                    code: status.code(),
                    stdout,
                    stderr,
                    timed_out: false,
                    truncated: cut_out || cut_err,
                })
            }
            // Dropping the future dropped the child (kill_on_drop), and its group is killed.
            Err(_) => Ok(exec::ExitStatus {
                code: None,
                stdout: vec![],
                stderr: vec![],
                timed_out: true,
                truncated: false,
            }),
        }
    }
}

/// The fixture's answer to `cmd` (under `sluice op test`), or a failure naming the fixture to add.
fn answer_exec(
    fixtures: &sluice_model::fixtures::Fixtures,
    cmd: &exec::Command,
) -> Result<exec::ExitStatus, types::HostError> {
    match fixtures
        .exec
        .iter()
        .find(|f| f.answers(&cmd.program, &cmd.args))
    {
        Some(f) => Ok(exec::ExitStatus {
            code: f.code,
            stdout: f.stdout.clone(),
            stderr: f.stderr.clone(),
            timed_out: false,
            truncated: false,
        }),
        None => Err(types::HostError::Failed(format!(
            "no exec fixture answers `{}`: add one to the case's `exec:` (program: {}, args: {:?})",
            sluice_model::fixtures::command_line(&cmd.program, &cmd.args),
            cmd.program,
            cmd.args
        ))),
    }
}

/// Reads a child's output, keeping at most [`crate::MAX_EXEC_OUTPUT`] bytes (the rest is read
/// and dropped, so the child never blocks on a full pipe). Says whether it cut.
async fn bounded<R: tokio::io::AsyncRead + Unpin>(r: Option<R>) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let Some(mut r) = r else {
        return (vec![], false);
    };
    let mut kept = Vec::new();
    let mut cut = false;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return (kept, cut),
            Ok(n) => {
                let room = crate::MAX_EXEC_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                cut |= n > room;
            }
        }
    }
}
