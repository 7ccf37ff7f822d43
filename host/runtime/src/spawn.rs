//! Programs an op starts through `exec`: each leads its own process group, dies with the host
//! (Linux's parent-death signal), and nothing of it outlives the `exec` call.
//!
//! A program is reported to the call's [`ExecWatch`](crate::ExecWatch) as soon as it is
//! started (its pid and start time), so a later process can tell whether it still runs. If the
//! host dies in the moment before that, the parent-death signal already set in the child kills
//! it.

use std::io;

use rustix::process::{Pid, Signal};

/// Makes `c` start its program as the leader of a new process group that gets SIGKILL when
/// the host thread that started it dies.
pub(crate) fn prepare(c: &mut tokio::process::Command) {
    c.process_group(0);
    let host = rustix::process::getpid();
    let in_child = move || -> io::Result<()> {
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
        // The host may have died between fork and the line above: then no signal will come.
        if rustix::process::getppid() != Some(host) {
            return Err(io::Error::from(rustix::io::Errno::SRCH));
        }
        Ok(())
    };
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec. It makes two raw system calls
    // (prctl, getppid), touches no lock and allocates nothing (an `Errno` converts to an
    // `io::Error` without allocating), so it is async-signal-safe.
    unsafe {
        c.pre_exec(in_child);
    }
}

/// When process `pid` started, in clock ticks since boot (field 22 of `/proc/PID/stat`);
/// `None` when no such process exists. With the pid it names one process for good.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// The process group of a started program: killed whole when dropped, so neither a timeout, a
/// cancelled call nor a program that left something running in the background leaves a
/// process behind.
pub(crate) struct Group(Option<Pid>);

impl Group {
    pub(crate) fn new(pid: Option<u32>) -> Self {
        Group(pid.and_then(|p| Pid::from_raw(p as i32)))
    }

    /// Kills every process left in the group.
    pub(crate) fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}
