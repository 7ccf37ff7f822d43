//! Events as the journal keeps them: written in the current format, read from any earlier one.
//!
//! Every stored event carries the version of the format it was written in; [`decode`] upgrades
//! an older one before turning it into an [`Event`], so a job written by one release of sluice
//! is read, and carried on, by the next. A version newer than this code knows is refused with
//! what to do, never guessed at. The rule snapshot in `created` has a version of its own
//! ([`RULE_VERSION`]), upgraded the same way.
//!
//! Formats:
//! - 1: before versions. `created.started_by`, `decided.by` and `cancel-requested.by` are
//!   names, with the OS account beside them in `os_user` when recorded.
//! - 2: those three are an [`Actor`](sluice_model::Actor) (name, groups, how sluice knows the
//!   name, OS account).

use serde_json::{Map, Value};

use crate::{Event, Job, Millis};

/// The event format written now.
pub const EVENT_VERSION: u32 = 2;

/// The format of the rule snapshot in `created` written now.
pub const RULE_VERSION: u32 = 1;

/// Why a stored event could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Written by a newer sluice.
    #[error(
        "event {seq} is in format {version}, newer than the {EVENT_VERSION} this sluice reads: carry the job on with the sluice that wrote it, or a newer one"
    )]
    Newer {
        /// The event.
        seq: u64,
        /// Its format.
        version: u32,
    },
    /// The rule snapshot was written by a newer sluice.
    #[error(
        "the job's rule snapshot is in format {version}, newer than the {RULE_VERSION} this sluice reads: use the sluice that wrote it, or a newer one"
    )]
    NewerRule {
        /// Its format.
        version: u32,
    },
    /// Not an event of that format.
    #[error("event {seq} is unreadable: {message}")]
    Unreadable {
        /// The event.
        seq: u64,
        /// What the parser said.
        message: String,
    },
    /// The history does not start with `created`.
    #[error("the job's first event is not `created`")]
    NoStart,
}

/// An event as stored: its JSON in the current format.
pub fn encode(e: &Event) -> String {
    serde_json::to_string(e).expect("events serialize")
}

/// Reads event `seq`, stored in format `version`, upgrading it to the current one.
pub fn decode(seq: u64, version: u32, body: &str) -> Result<Event, DecodeError> {
    if version > EVENT_VERSION {
        return Err(DecodeError::Newer { seq, version });
    }
    let unreadable = |e: serde_json::Error| DecodeError::Unreadable {
        seq,
        message: e.to_string(),
    };
    let event = if version == EVENT_VERSION {
        serde_json::from_str(body).map_err(unreadable)?
    } else {
        let mut v: Value = serde_json::from_str(body).map_err(unreadable)?;
        if version < 2 {
            v1_to_v2(&mut v);
        }
        serde_json::from_value(v).map_err(unreadable)?
    };
    if let Event::Created { rule_version, .. } = &event
        && *rule_version > RULE_VERSION
    {
        return Err(DecodeError::NewerRule {
            version: *rule_version,
        });
    }
    Ok(event)
}

/// Format 1 named people as text: make them actors. Who claimed what is kept as far as it
/// was recorded: a name with a different OS account beside it was claimed; sluice's own
/// names (`timeout`, `concurrency`) are the system's.
fn v1_to_v2(v: &mut Value) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    let field = match obj.get("type").and_then(Value::as_str) {
        Some("created") => "started_by",
        Some("decided" | "cancel-requested") => "by",
        _ => return,
    };
    let name = obj
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let os_user = match obj.remove("os_user") {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let via = match (name.as_str(), os_user.as_str()) {
        ("timeout" | "concurrency" | "simulation", _) => "system",
        (n, os) if !os.is_empty() && n == os => "os-user",
        _ => "claimed",
    };
    let mut actor = Map::new();
    actor.insert("name".into(), Value::String(name));
    actor.insert("via".into(), Value::String(via.into()));
    if !os_user.is_empty() {
        actor.insert("os_user".into(), Value::String(os_user));
    }
    obj.insert(field.into(), Value::Object(actor));
}

/// A job's whole history read back: the state and every event with its time. The one path
/// from stored events to a [`Job`]; the runner and the front ends both use it.
pub fn replay<'a>(
    rows: impl IntoIterator<Item = (u64, Millis, u32, &'a str)>,
) -> Result<(Job, Vec<(Event, Millis)>), DecodeError> {
    let events = rows
        .into_iter()
        .map(|(seq, at, version, body)| decode(seq, version, body).map(|e| (e, at)))
        .collect::<Result<Vec<_>, _>>()?;
    let job = Job::replay(events.iter().map(|(e, at)| (e, *at))).ok_or(DecodeError::NoStart)?;
    Ok((job, events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_1_people_become_actors() {
        let d = decode(
            5,
            1,
            r#"{"type":"decided","step":"go","kind":"approve","by":"bob","os_user":"root","comment":"","inputs":{},"bundle":""}"#,
        )
        .unwrap();
        let Event::Decided { by, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(
            (by.name.as_str(), by.via, by.os_user.as_str()),
            ("bob", sluice_model::AuthMethod::Claimed, "root")
        );
        let t = decode(
            6,
            1,
            r#"{"type":"decided","step":"go","kind":"reject","by":"timeout","comment":"","inputs":{},"bundle":""}"#,
        )
        .unwrap();
        let Event::Decided { by, .. } = t else {
            panic!()
        };
        assert_eq!(by.via, sluice_model::AuthMethod::System);
    }

    #[test]
    fn newer_formats_are_refused_with_what_to_do() {
        let e = decode(3, EVENT_VERSION + 1, "{}").unwrap_err();
        assert!(e.to_string().contains("newer than"), "{e}");
        assert!(matches!(
            decode(1, EVENT_VERSION, "{\"type\":\"nope\"}"),
            Err(DecodeError::Unreadable { seq: 1, .. })
        ));
    }
}
