//! Time in rules: deploy windows and freezes (`windows:`, as Spinnaker's execution windows and
//! GitLab's deploy freezes) and schedules (`on: schedule`, cron in a time zone).
//!
//! Pure: every function is handed the time it asks about (milliseconds since the Unix epoch);
//! nothing here reads a clock. Time zones are IANA names (`Europe/Madrid`), from `chrono-tz`'s
//! built-in database; cron patterns are read by `croner` (POSIX five fields, or six with a
//! leading seconds field).

use std::str::FromStr as _;

use chrono::{DateTime, Datelike as _, Days, NaiveDate, NaiveTime, TimeZone as _, Timelike as _};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// The days of the week as rules write them, Monday first.
pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// How far ahead a window's opening is looked for: a window that does not open within this
/// many days is taken as never opening.
pub const HORIZON_DAYS: u64 = 800;

/// `windows:` of a rule or a step: when it may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Windows {
    /// The IANA time zone the days, hours and dates are in (`UTC` when not given).
    #[serde(default = "utc")]
    pub timezone: String,
    /// When it may run: any of these (any time when empty, freezes aside).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<Allow>,
    /// When it may not, whatever `allow` says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<Freeze>,
}

fn utc() -> String {
    "UTC".to_string()
}

/// Days of the week and hours of the day (`hours: "09:00-17:00"`, the end excluded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allow {
    /// `mon` ... `sun`; every day when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
    /// `HH:MM-HH:MM`; the whole day when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<String>,
}

/// A deploy freeze: from one date to another, both included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    /// `YYYY-MM-DD`, the first frozen day.
    pub from: String,
    /// `YYYY-MM-DD`, the last frozen day.
    pub to: String,
    /// Why (shown while a job waits).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// A time zone by its IANA name.
pub fn zone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name).map_err(|_| {
        format!("`{name}` is not a time zone: use an IANA name such as `UTC` or `Europe/Madrid`")
    })
}

/// `HH:MM-HH:MM` as minutes of the day, the end after the start (`24:00` ends the day).
pub fn hours(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{text}` is not a range of hours: write `HH:MM-HH:MM`, as `09:00-17:00`");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let minute = |s: &str| -> Option<u32> {
        let (h, m) = s.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
    };
    let (from, to) = (minute(a).ok_or_else(bad)?, minute(b).ok_or_else(bad)?);
    if from >= to {
        return Err(format!(
            "`{text}` ends before it starts: a window within one day goes from the earlier time to the later (for a night, list two ranges: `22:00-24:00` and `00:00-06:00` of the next day)"
        ));
    }
    Ok((from, to))
}

/// `YYYY-MM-DD`.
pub fn date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("`{text}` is not a date: write `YYYY-MM-DD`"))
}

/// A day of the week by its three letters, 0 for Monday.
pub fn day(text: &str) -> Option<u32> {
    DAYS.iter().position(|d| *d == text).map(|i| i as u32)
}

/// Why a window is closed at some time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// Outside every `allow` range.
    Outside,
    /// In a freeze (its reason, or its dates).
    Frozen(String),
}

impl Windows {
    /// Checks every part; the first problem found, in words.
    pub fn check(&self) -> Result<(), String> {
        zone(&self.timezone)?;
        for a in &self.allow {
            for d in &a.days {
                if day(d).is_none() {
                    return Err(format!("`{d}` is not a day: use {}", DAYS.join(", ")));
                }
            }
            if let Some(h) = &a.hours {
                hours(h)?;
            }
        }
        for f in &self.freeze {
            if date(&f.to)? < date(&f.from)? {
                return Err(format!(
                    "the freeze from {} to {} ends before it starts",
                    f.from, f.to
                ));
            }
        }
        Ok(())
    }

    /// Whether it may run at `t`, and why not.
    pub fn closed_at(&self, t: Millis) -> Result<Option<Closed>, String> {
        let tz = zone(&self.timezone)?;
        let local = at(t).with_timezone(&tz);
        let today = local.date_naive();
        for f in &self.freeze {
            if date(&f.from)? <= today && today <= date(&f.to)? {
                let why = if f.reason.is_empty() {
                    format!("a deploy freeze from {} to {}", f.from, f.to)
                } else {
                    format!("{} (a deploy freeze from {} to {})", f.reason, f.from, f.to)
                };
                return Ok(Some(Closed::Frozen(why)));
            }
        }
        if self.allow.is_empty() {
            return Ok(None);
        }
        let weekday = local.weekday().num_days_from_monday();
        let minute = local.hour() * 60 + local.minute();
        for a in &self.allow {
            let on_day = a.days.is_empty() || a.days.iter().any(|d| day(d) == Some(weekday));
            let (from, to) = match &a.hours {
                Some(h) => hours(h)?,
                None => (0, 24 * 60),
            };
            if on_day && from <= minute && minute < to {
                return Ok(None);
            }
        }
        Ok(Some(Closed::Outside))
    }

    /// When it next may run: `None` when it may now; an error when it does not open within
    /// [`HORIZON_DAYS`] (every day frozen, or no day allowed).
    pub fn next_open(&self, now: Millis) -> Result<Option<Millis>, String> {
        if self.closed_at(now)?.is_none() {
            return Ok(None);
        }
        let tz = zone(&self.timezone)?;
        let today = at(now).with_timezone(&tz).date_naive();
        // It can only open where a range starts or a day starts (a freeze ends at midnight).
        let mut starts: Vec<u32> = vec![0];
        for a in &self.allow {
            if let Some(h) = &a.hours {
                starts.push(hours(h)?.0);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        for offset in 0..=HORIZON_DAYS {
            let Some(d) = today.checked_add_days(Days::new(offset)) else {
                break;
            };
            for m in &starts {
                let Some(t) = local_millis(&tz, d, *m) else {
                    continue;
                };
                if t > now && self.closed_at(t)?.is_none() {
                    return Ok(Some(t));
                }
            }
        }
        Err(format!(
            "the deploy window does not open in the next {HORIZON_DAYS} days: check its `allow` days and `freeze` dates"
        ))
    }

    /// The window in words: `mon-fri 09:00-17:00 Europe/Madrid`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .allow
            .iter()
            .map(|a| {
                let days = if a.days.is_empty() {
                    "every day".to_string()
                } else {
                    a.days.join(",")
                };
                match &a.hours {
                    Some(h) => format!("{days} {h}"),
                    None => days,
                }
            })
            .collect();
        if parts.is_empty() {
            parts.push("any time".to_string());
        }
        let mut s = format!("{} ({})", parts.join("; "), self.timezone);
        if !self.freeze.is_empty() {
            s.push_str(&format!(
                ", frozen {}",
                self.freeze
                    .iter()
                    .map(|f| format!("{}..{}", f.from, f.to))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        s
    }
}

/// `t` as a UTC time.
fn at(t: Millis) -> DateTime<chrono::Utc> {
    DateTime::from_timestamp_millis(t as i64).unwrap_or_default()
}

/// Minute `m` of day `d` in `tz`, as milliseconds (a time skipped by a clock change moves on to
/// the first minute that exists; a repeated one is its first).
fn local_millis(tz: &Tz, d: NaiveDate, m: u32) -> Option<Millis> {
    let mut m = m;
    while m < 24 * 60 {
        let time = NaiveTime::from_hms_opt(m / 60, m % 60, 0)?;
        if let Some(t) = tz.from_local_datetime(&d.and_time(time)).earliest() {
            return u64::try_from(t.timestamp_millis()).ok();
        }
        m += 1;
    }
    None
}

/// `t` in `timezone`, as people read it: `2026-12-04 09:00 Europe/Madrid`.
pub fn local_text(t: Millis, timezone: &str) -> String {
    match zone(timezone) {
        Ok(tz) => format!(
            "{} {timezone}",
            at(t).with_timezone(&tz).format("%Y-%m-%d %H:%M")
        ),
        Err(_) => format!("{} UTC", at(t).format("%Y-%m-%d %H:%M")),
    }
}

/// `t` as an RFC 3339 UTC time to the second (`2026-12-07T02:00:00Z`): sorts as it counts.
pub fn utc_text(t: Millis) -> String {
    at(t).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// An RFC 3339 time, as milliseconds.
pub fn parse_utc(text: &str) -> Option<Millis> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
}

/// `on: [{ schedule: {...} }]`: a job at the times of a cron pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Five fields (minute hour day-of-month month day-of-week), or six with seconds first.
    pub cron: String,
    /// The IANA time zone the pattern is read in (`UTC` when not given).
    #[serde(default = "utc")]
    pub timezone: String,
    /// What a run missed while no server ran becomes.
    #[serde(default)]
    pub missed: Missed,
    /// The new job's params: templates that see `trigger.schedule.time`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub params: std::collections::BTreeMap<String, String>,
}

/// What becomes of runs a schedule missed while no server ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Missed {
    /// The latest missed run runs once, on start (the others are dropped).
    #[default]
    RunOnce,
    /// Missed runs are dropped; the next runs on time.
    Skip,
}

/// A cron pattern, read.
pub fn cron(pattern: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(pattern)
        .map_err(|e| {
            format!("`{pattern}` is not a cron pattern ({e}): write minute hour day-of-month month day-of-week, as `0 3 * * 1-5`")
        })
}

impl Schedule {
    /// The first run strictly after `t`; `None` when there is none (a date that never comes).
    pub fn next_after(&self, t: Millis) -> Result<Option<Millis>, String> {
        let c = cron(&self.cron)?;
        let tz = zone(&self.timezone)?;
        let from = at(t).with_timezone(&tz);
        Ok(c.find_next_occurrence(&from, false)
            .ok()
            .and_then(|n| u64::try_from(n.timestamp_millis()).ok()))
    }

    /// The latest run at or before `t`; `None` when there is none.
    pub fn latest_at_or_before(&self, t: Millis) -> Result<Option<Millis>, String> {
        let c = cron(&self.cron)?;
        let tz = zone(&self.timezone)?;
        let from = at(t).with_timezone(&tz);
        Ok(c.find_previous_occurrence(&from, true)
            .ok()
            .and_then(|n| u64::try_from(n.timestamp_millis()).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ParseOptions, parse};

    /// Every problem of `text`, as `sluice validate` prints them.
    fn problems(text: &str) -> String {
        parse(
            text,
            &ParseOptions {
                file: "r.yaml",
                std_ops: &["log"],
            },
        )
        .map(|_| String::new())
        .unwrap_or_else(|d| d.to_string())
    }

    #[test]
    fn bad_windows_are_refused_where_they_are_written() {
        let p = problems(
            "rule: r\nwindows:\n  timezone: Europe/Madird\n  allow: [{ days: [mon, fry], hours: \"17:00-09:00\" }]\n  freeze: [{ from: 2026-12-24, to: 2026-12-20 }]\nphases:\n  run: [{ op: log }]\n",
        );
        assert!(p.contains("r.yaml:3:13"), "{p}");
        assert!(p.contains("`Europe/Madird` is not a time zone"), "{p}");
        assert!(p.contains("r.yaml:4:25"), "{p}");
        assert!(p.contains("`fry` is not a day of the week"), "{p}");
        assert!(p.contains("did you mean `fri`?"), "{p}");
        assert!(p.contains("`17:00-09:00` ends before it starts"), "{p}");
        assert!(
            p.contains("ends (2026-12-20) before it starts (2026-12-24)"),
            "{p}"
        );
        let post = problems(
            "rule: r\nphases:\n  run: [{ op: log }]\n  post:\n    - { op: log, windows: { allow: [{ days: [mon] }] } }\n",
        );
        assert!(
            post.contains("a step of `post` cannot wait for a deploy window"),
            "{post}"
        );
        let empty = problems("rule: r\nwindows: {}\nphases:\n  run: [{ op: log }]\n");
        assert!(empty.contains("neither when to run"), "{empty}");
    }

    #[test]
    fn bad_schedules_and_webhooks_are_refused_where_they_are_written() {
        let p = problems(
            "rule: r\non:\n  - schedule: { cron: \"0 25 * * *\", timezone: Mars/Olympus, missed: later }\n  - webhook: { name: Push }\n  - webhook: { name: push }\nphases:\n  run: [{ op: log }]\n",
        );
        assert!(p.contains("r.yaml:3:23"), "{p}");
        assert!(p.contains("`0 25 * * *` is not a cron pattern"), "{p}");
        assert!(p.contains("`Mars/Olympus` is not a time zone"), "{p}");
        assert!(p.contains("`missed: later` is not a choice"), "{p}");
        assert!(p.contains("`Push` cannot stand in a URL path"), "{p}");
        assert!(p.contains("needs the name of the `secret`"), "{p}");
    }

    #[test]
    fn windows_read_days_ranges_and_the_time_zone() {
        let r = parse(
            "rule: r\nwindows: { timezone: America/New_York, allow: [{ days: mon-wed, hours: \"08:30-10:00\" }] }\nphases:\n  run: [{ op: log }]\n",
            &ParseOptions {
                file: "r.yaml",
                std_ops: &["log"],
            },
        )
        .unwrap();
        let w = r.windows.unwrap();
        assert_eq!(w.allow[0].days, ["mon", "tue", "wed"]);
        // 2026-12-09 (Wednesday) 13:45 UTC is 08:45 in New York: open.
        let wed = 1_796_601_600_000 + 2 * 86_400_000 + 13 * 3_600_000 + 45 * 60_000;
        assert_eq!(w.closed_at(wed).unwrap(), None);
        // At 10:00 it closes; it opens next Monday 08:30 (13:30 UTC).
        let ten = wed + 75 * 60_000;
        assert_eq!(w.closed_at(ten).unwrap(), Some(Closed::Outside));
        assert_eq!(
            w.next_open(ten).unwrap(),
            Some(1_796_601_600_000 + 7 * 86_400_000 + 13 * 3_600_000 + 30 * 60_000)
        );
        assert!(w.describe().contains("mon,tue,wed 08:30-10:00"));
    }

    #[test]
    fn a_clock_change_does_not_lose_an_opening() {
        // 2027-03-28: Madrid skips 02:00-03:00. A window opening at 02:30 opens at 03:00.
        let w = Windows {
            timezone: "Europe/Madrid".into(),
            allow: vec![Allow {
                days: vec!["sun".into()],
                hours: Some("02:30-04:00".into()),
            }],
            freeze: vec![],
        };
        let saturday_noon = 1_806_148_800_000; // 2027-03-27 12:00 UTC
        let opens = w.next_open(saturday_noon).unwrap().unwrap();
        assert_eq!(
            local_text(opens, "Europe/Madrid"),
            "2027-03-28 03:00 Europe/Madrid"
        );
    }
}
