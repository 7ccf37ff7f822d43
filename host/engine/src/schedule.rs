//! When a schedule (`on: schedule`) runs. Pure: the last run and the time are handed in, so a
//! test moves a fake clock and a server asks with the real one.
//!
//! A schedule runs at each time of its cron pattern after its last run. A server that was down
//! finds runs it missed: the latest of them runs once when it comes back (`missed: run-once`,
//! the default), or none does (`missed: skip`); older ones are dropped either way, as cron's
//! successors (systemd's `Persistent=`, Kubernetes' `startingDeadlineSeconds`) do. A schedule
//! that never ran counts from when the server started, so a new rule does not run for the past.

use sluice_rule::calendar::{Missed, Schedule};

use crate::Millis;

/// How late a run may start and still be on time: a server's loop wakes a little after the
/// time, and a run this late is not a missed one.
pub const ON_TIME_MS: Millis = 60_000;

/// What a schedule asks for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Run now, as the run of this time (the key that makes it one job on every server).
    pub run: Option<Millis>,
    /// When to look again: the next time after now (`None` when it never comes).
    pub next: Option<Millis>,
}

/// What `schedule` asks for at `now`, given its last run (`None` when it never ran) and when
/// the asking server started.
pub fn due(
    schedule: &Schedule,
    last: Option<Millis>,
    since: Millis,
    now: Millis,
) -> Result<Due, String> {
    let after = last.unwrap_or(since);
    let latest = schedule.latest_at_or_before(now)?;
    let run = latest.filter(|t| {
        *t > after && (schedule.missed == Missed::RunOnce || now.saturating_sub(*t) <= ON_TIME_MS)
    });
    Ok(Due {
        run,
        next: schedule.next_after(now)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07 (a Monday) 00:00 UTC.
    const MONDAY: Millis = 1_796_601_600_000;
    const HOUR: Millis = 3_600_000;
    const DAY: Millis = 24 * HOUR;

    fn weekdays_at_3(tz: &str, missed: Missed) -> Schedule {
        Schedule {
            cron: "0 3 * * 1-5".into(),
            timezone: tz.into(),
            missed,
            params: Default::default(),
        }
    }

    #[test]
    fn the_clock_reaching_a_time_runs_it_once() {
        let s = weekdays_at_3("UTC", Missed::RunOnce);
        let since = MONDAY;
        let before = due(&s, None, since, MONDAY + 2 * HOUR).unwrap();
        assert_eq!(before.run, None);
        assert_eq!(before.next, Some(MONDAY + 3 * HOUR));
        let at = due(&s, None, since, MONDAY + 3 * HOUR + 5_000).unwrap();
        assert_eq!(at.run, Some(MONDAY + 3 * HOUR));
        assert_eq!(at.next, Some(MONDAY + DAY + 3 * HOUR));
        // Once it ran, the same time is not due again.
        let after = due(
            &s,
            Some(MONDAY + 3 * HOUR),
            since,
            MONDAY + 3 * HOUR + 9_000,
        )
        .unwrap();
        assert_eq!(after.run, None);
    }

    #[test]
    fn the_pattern_is_read_in_its_time_zone() {
        // 03:00 in Madrid is 02:00 UTC in December (CET, UTC+1).
        let s = weekdays_at_3("Europe/Madrid", Missed::RunOnce);
        let d = due(&s, None, MONDAY, MONDAY).unwrap();
        assert_eq!(d.next, Some(MONDAY + 2 * HOUR));
    }

    #[test]
    fn weekends_are_not_weekdays() {
        let s = weekdays_at_3("UTC", Missed::RunOnce);
        let friday_night = MONDAY + 4 * DAY + 4 * HOUR;
        let d = due(&s, Some(MONDAY + 4 * DAY + 3 * HOUR), MONDAY, friday_night).unwrap();
        assert_eq!(d.run, None);
        assert_eq!(d.next, Some(MONDAY + 7 * DAY + 3 * HOUR), "next Monday");
    }

    #[test]
    fn a_server_down_over_runs_runs_the_latest_once_or_none() {
        let last = MONDAY + 3 * HOUR;
        let back = MONDAY + 3 * DAY + 10 * HOUR; // Thursday 10:00: Tue, Wed, Thu were missed
        let once = due(&weekdays_at_3("UTC", Missed::RunOnce), Some(last), 0, back).unwrap();
        assert_eq!(
            once.run,
            Some(MONDAY + 3 * DAY + 3 * HOUR),
            "Thursday's, once"
        );
        let again = due(
            &weekdays_at_3("UTC", Missed::RunOnce),
            once.run,
            0,
            back + 1_000,
        )
        .unwrap();
        assert_eq!(again.run, None, "the others are dropped");
        let skip = due(&weekdays_at_3("UTC", Missed::Skip), Some(last), 0, back).unwrap();
        assert_eq!(skip.run, None);
        assert_eq!(skip.next, Some(MONDAY + 4 * DAY + 3 * HOUR));
        // Late by less than ON_TIME_MS is on time, even with skip.
        let late = due(
            &weekdays_at_3("UTC", Missed::Skip),
            Some(last),
            0,
            MONDAY + DAY + 3 * HOUR + 30_000,
        )
        .unwrap();
        assert_eq!(late.run, Some(MONDAY + DAY + 3 * HOUR));
    }

    #[test]
    fn a_schedule_never_run_does_not_run_for_the_past() {
        let s = weekdays_at_3("UTC", Missed::RunOnce);
        let started = MONDAY + 5 * HOUR;
        let d = due(&s, None, started, started + 1_000).unwrap();
        assert_eq!(d.run, None, "Monday 03:00 was before this server started");
    }

    #[test]
    fn seconds_are_a_sixth_field() {
        let s = Schedule {
            cron: "*/10 * * * * *".into(),
            timezone: "UTC".into(),
            missed: Missed::Skip,
            params: Default::default(),
        };
        let d = due(&s, None, MONDAY, MONDAY + 12_000).unwrap();
        assert_eq!(d.run, Some(MONDAY + 10_000));
        assert_eq!(d.next, Some(MONDAY + 20_000));
    }
}
