//! Who drives a job: this process's lease identity, whether a holder still lives, and the
//! programs ops started (recorded as they start, found alive or not on recovery).

use std::sync::Arc;

use sluice_runtime::process_start_ticks as start_ticks;
use sluice_store::{ChildRow, Journal, StoreError};

use crate::now;

/// How long a lease lasts without renewal (60 s, or `SLUICE_LEASE_MS`); a driver renews it
/// every third of that. Another host takes over a job whose driver stopped renewing once it
/// runs out; a driver of this host found dead is taken over at once.
pub(crate) fn lease_ms() -> u64 {
    static MS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MS.get_or_init(|| {
        std::env::var("SLUICE_LEASE_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ms| *ms >= 300)
            .unwrap_or(60_000)
    })
}

/// The name this process's leases and the programs its ops start are recorded under: the
/// host name, or `SLUICE_NODE` (several servers in one host that should behave as separate
/// machines, or a container whose host name changes).
pub(crate) fn hostname() -> String {
    if let Some(node) = std::env::var("SLUICE_NODE").ok().filter(|n| !n.is_empty()) {
        return node.replace([':', '#'], "_");
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// A new lease holder of this process: `host:pid:start-ticks#n`, one per driver. Two drivers
/// of one process (a server's worker loop and the task driving a job a request started) are
/// different holders: the one that does not hold a job's lease leaves the job alone, instead
/// of taking the lease as its own and finding the other's running step "interrupted".
pub(crate) fn this_holder() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static DRIVERS: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    format!(
        "{}:{pid}:{}#{}",
        hostname(),
        start_ticks(pid).unwrap_or(0),
        DRIVERS.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether a lease holder is a process of this host that no longer runs.
pub(crate) fn holder_dead(holder: &str) -> bool {
    // The driver's number (`#n`) does not matter here: a process lives or not.
    let process = holder.split_once('#').map_or(holder, |(p, _)| p);
    let mut parts = process.rsplitn(3, ':');
    let (Some(ticks), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != hostname() {
        return false; // another host: only the lease's expiry tells
    }
    match (pid.parse::<u32>(), ticks.parse::<u64>()) {
        (Ok(pid), Ok(ticks)) => start_ticks(pid) != Some(ticks),
        _ => false,
    }
}

/// Whether `job_id` is under way (running, cancelling, rolling back) with no live process
/// driving it: its driver was killed. Any decision, a cancel or the worker carries it on;
/// `show` says so.
pub async fn stranded(journal: &dyn Journal, job_id: &str) -> Result<bool, StoreError> {
    let Some(row) = journal.job(job_id).await? else {
        return Ok(false);
    };
    if !row.status.is_active() || row.status == sluice_model::JobState::Ready {
        return Ok(false);
    }
    Ok(match journal.lease_holder(job_id, now()).await? {
        Some(holder) => holder_dead(&holder),
        None => true,
    })
}

/// Whether a program an op started (`c`) still runs: its process, or any process of its
/// process group (what it started in turn). Only this host's children can be told. A zombie
/// (dead, not yet reaped) does not run.
pub(crate) fn child_alive(c: &ChildRow) -> bool {
    if c.host != hostname() {
        return false;
    }
    match proc_stat(c.pid) {
        Some((_, ticks, state)) if ticks == c.start_ticks && state != 'Z' => return true,
        // The leader is dead (a zombie nobody reaped): members of its group may live on.
        Some((_, ticks, _)) if ticks == c.start_ticks => {}
        // The pid was reused: the group it led is gone (a pid is never reused while a process
        // group of that id exists).
        Some(_) => return false,
        None => {}
    }
    // The leader is gone; do members of its group live on?
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .and_then(proc_stat)
            .is_some_and(|(pgrp, _, state)| pgrp == c.pid && state != 'Z')
    })
}

/// Process group, start time (clock ticks since boot) and state letter of process `pid`.
fn proc_stat(pid: u32) -> Option<(u32, u64, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    Some((
        fields.get(2)?.parse().ok()?,
        fields.get(19)?.parse().ok()?,
        state,
    ))
}

/// Records every program an op starts in the journal as it starts (so a later process can
/// tell whether it still runs).
pub(crate) struct ChildLog {
    pub(crate) journal: Arc<dyn Journal>,
    pub(crate) job: String,
    pub(crate) step: String,
    pub(crate) attempt: u32,
    pub(crate) host: String,
}

#[async_trait::async_trait]
impl sluice_runtime::ExecWatch for ChildLog {
    async fn started(&self, program: &str, pid: u32, start_ticks: u64) -> Result<(), String> {
        self.journal
            .add_child(
                &self.job,
                ChildRow {
                    step: self.step.clone(),
                    attempt: self.attempt,
                    host: self.host.clone(),
                    pid,
                    start_ticks,
                    program: program.to_string(),
                    at: now(),
                },
            )
            .await
            .map_err(|e| format!("could not record it in the journal: {e}"))
    }
}
