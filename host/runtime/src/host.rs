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
    fn run(&mut self, cmd: exec::Command) -> Result<exec::ExitStatus, types::HostError> {
        if cmd.program.trim().is_empty() {
            return Err(types::HostError::Invalid(
                "exec needs a program name".into(),
            ));
        }
        // No program can be granted yet: the sandbox work adds exec grants with deadlines,
        // output bounds and a cleared environment. Until then every program is refused.
        Err(types::HostError::NotGranted(format!(
            "program `{}` is not granted to op `{}`: grant `exec:{}` to this op",
            cmd.program, self.op_name, cmd.program
        )))
    }
}
