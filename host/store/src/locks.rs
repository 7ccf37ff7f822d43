//! Who gets a lock next: the lock and concurrency-group policy as plain code over the lock
//! table. A journal loads the table, asks here, and writes what it is told in one transaction.
//!
//! A job asks for all its locks at once; it gets them when no other job holds a conflicting
//! one and no job that asked earlier (a lower ticket) waits for a conflicting one: first come,
//! first served. Exclusive conflicts with everything; shared with exclusive only. A
//! concurrency group is the exclusive lock `group:NAME`; its mode says what a new job does
//! when the group is busy.

use serde::Serialize;

/// A lock a job asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockAsk {
    /// The name (`group:NAME` for a concurrency group).
    pub name: String,
    /// Exclusive or shared.
    pub exclusive: bool,
}

/// What a busy concurrency group does to a new job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupMode {
    /// Wait in line.
    Queue,
    /// Do not run.
    Reject,
    /// Cancel jobs waiting in the group, then wait.
    CancelPending,
}

/// The answer to an acquire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// Held now.
    Held,
    /// Waiting behind these jobs.
    Queued {
        /// Holders or earlier waiters of conflicting locks.
        behind: Vec<String>,
    },
    /// The concurrency group is busy and the rule says reject.
    Rejected {
        /// The jobs in the group.
        by: Vec<String>,
    },
}

/// An acquire's answer and the jobs it pushed out of a group's line (`cancel-pending`): their
/// asks are gone, and the caller cancels them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquisition {
    /// Held, queued or rejected.
    pub acquired: Acquired,
    /// Jobs taken out of the line.
    pub pushed_out: Vec<String>,
}

/// One row of the lock table (also a row of `sluice locks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockRow {
    /// Lock name.
    pub name: String,
    /// The job.
    pub job: String,
    /// Exclusive or shared.
    pub exclusive: bool,
    /// Held, or waiting.
    pub held: bool,
    /// Place in line (lower is earlier).
    pub ticket: i64,
}

/// What to do for `job` (whose ticket is `ticket`) asking for `asks` under `mode`, given the
/// lock table of every other job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// It holds its locks already (a second call after a crash): change nothing.
    AlreadyHeld,
    /// The group is busy and the rule rejects: change nothing.
    Rejected {
        /// The jobs in the group.
        by: Vec<String>,
    },
    /// Remove the asks of `pushed_out`, record `job`'s asks, and hold them all when `behind`
    /// is empty.
    Ask {
        /// Jobs taken out of the group's line.
        pushed_out: Vec<String>,
        /// Jobs it waits behind.
        behind: Vec<String>,
    },
}

/// Decides an acquire from the table (rows of every job, `job`'s own included).
pub fn plan_acquire(
    table: &[LockRow],
    job: &str,
    ticket: i64,
    asks: &[LockAsk],
    mode: GroupMode,
) -> Plan {
    if table.iter().any(|r| r.job == job && r.held) {
        return Plan::AlreadyHeld;
    }
    let mut pushed_out: Vec<String> = Vec::new();
    for ask in asks.iter().filter(|a| a.name.starts_with("group:")) {
        let mut others: Vec<&LockRow> = table
            .iter()
            .filter(|r| r.name == ask.name && r.job != job)
            .collect();
        others.sort_by_key(|r| r.ticket);
        match mode {
            GroupMode::Reject if !others.is_empty() => {
                return Plan::Rejected {
                    by: others.iter().map(|r| r.job.clone()).collect(),
                };
            }
            GroupMode::CancelPending => {
                for r in others.iter().filter(|r| !r.held) {
                    if !pushed_out.contains(&r.job) {
                        pushed_out.push(r.job.clone());
                    }
                }
            }
            _ => {}
        }
    }
    let mut conflicting: Vec<&LockRow> = table
        .iter()
        .filter(|r| r.job != job && !pushed_out.contains(&r.job))
        .filter(|r| {
            asks.iter().any(|a| {
                a.name == r.name && (a.exclusive || r.exclusive) && (r.held || r.ticket < ticket)
            })
        })
        .collect();
    conflicting.sort_by_key(|r| r.ticket);
    let mut behind: Vec<String> = Vec::new();
    for r in conflicting {
        if !behind.contains(&r.job) {
            behind.push(r.job.clone());
        }
    }
    Plan::Ask { pushed_out, behind }
}

/// The jobs still waiting once `job` gave its locks back, in line order: the ones to try next.
pub fn waiting_after_release(table: &[LockRow], job: &str) -> Vec<String> {
    let mut waiting: Vec<&LockRow> = table.iter().filter(|r| r.job != job && !r.held).collect();
    waiting.sort_by_key(|r| r.ticket);
    let mut seen = std::collections::HashSet::new();
    waiting
        .into_iter()
        .filter(|r| seen.insert(r.job.as_str()))
        .map(|r| r.job.clone())
        .collect()
}

/// Whether `req` gets a job's lease held by `holder` until `until` under `epoch`: `Ok(epoch)`
/// it takes it under (the same when the asker holds it already, one more when it takes it from
/// nobody or another), or `Err` with the answer. Shared by every journal, so each one's lease
/// rule is this one.
pub fn lease_decision(
    holder: &Option<String>,
    until: Option<crate::Millis>,
    epoch: u64,
    req: &crate::LeaseRequest,
) -> Result<u64, crate::Lease> {
    let mine = holder.as_deref() == Some(req.holder.as_str());
    if let Some(held) = req.renew {
        return if mine && held == epoch {
            Ok(epoch)
        } else {
            Err(crate::Lease::HeldBy(holder.clone().unwrap_or_default()))
        };
    }
    let free = match (holder, until) {
        (None, _) => true,
        (Some(_), _) if mine => return Ok(epoch),
        (Some(h), _) if Some(h) == req.steal.as_ref() => true,
        (Some(_), Some(u)) => u < req.now,
        (Some(_), None) => true,
    };
    if free {
        Ok(epoch + 1)
    } else {
        Err(crate::Lease::HeldBy(holder.clone().unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(job: &str, name: &str, exclusive: bool, held: bool, ticket: i64) -> LockRow {
        LockRow {
            name: name.into(),
            job: job.into(),
            exclusive,
            held,
            ticket,
        }
    }

    fn ask(name: &str, exclusive: bool) -> LockAsk {
        LockAsk {
            name: name.into(),
            exclusive,
        }
    }

    fn behind(p: Plan) -> Vec<String> {
        match p {
            Plan::Ask { behind, .. } => behind,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exclusive_waits_for_any_holder_and_shared_only_for_exclusive() {
        let table = [row("a", "env", false, true, 1)];
        assert_eq!(
            behind(plan_acquire(
                &table,
                "b",
                2,
                &[ask("env", false)],
                GroupMode::Queue
            )),
            Vec::<String>::new(),
            "shared with shared"
        );
        assert_eq!(
            behind(plan_acquire(
                &table,
                "c",
                3,
                &[ask("env", true)],
                GroupMode::Queue
            )),
            ["a"]
        );
    }

    #[test]
    fn an_earlier_waiter_is_not_overtaken() {
        let table = [
            row("a", "x", true, true, 1),
            row("b", "x", true, false, 2),
            row("b", "y", true, false, 2),
        ];
        // c wants only y, which is free, but b asked for y first.
        assert_eq!(
            behind(plan_acquire(
                &table,
                "c",
                3,
                &[ask("y", true)],
                GroupMode::Queue
            )),
            ["b"]
        );
        // A later waiter does not hold up an earlier one.
        assert_eq!(
            behind(plan_acquire(
                &table,
                "b",
                2,
                &[ask("x", true), ask("y", true)],
                GroupMode::Queue
            )),
            ["a"]
        );
    }

    #[test]
    fn group_modes() {
        let table = [
            row("a", "group:deploy", true, true, 1),
            row("c", "group:deploy", true, false, 3),
        ];
        assert_eq!(
            plan_acquire(
                &table,
                "b",
                4,
                &[ask("group:deploy", true)],
                GroupMode::Reject
            ),
            Plan::Rejected {
                by: vec!["a".into(), "c".into()]
            }
        );
        assert_eq!(
            plan_acquire(
                &table,
                "d",
                4,
                &[ask("group:deploy", true)],
                GroupMode::CancelPending
            ),
            Plan::Ask {
                pushed_out: vec!["c".into()],
                behind: vec!["a".into()]
            }
        );
        assert_eq!(
            plan_acquire(
                &[row("d", "group:deploy", true, true, 4)],
                "d",
                4,
                &[ask("group:deploy", true)],
                GroupMode::Queue
            ),
            Plan::AlreadyHeld
        );
    }

    #[test]
    fn release_offers_the_line_in_order() {
        let table = [
            row("a", "env", true, true, 1),
            row("c", "env", false, false, 3),
            row("b", "env", false, false, 2),
            row("b", "db", false, false, 2),
        ];
        assert_eq!(waiting_after_release(&table, "a"), ["b", "c"]);
    }
}
