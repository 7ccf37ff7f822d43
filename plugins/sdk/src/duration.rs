//! Durations in op inputs, in sluice's one format (the `sluice-duration` crate, shared with
//! the host's rule parser): a number of seconds (`30`, `1.5`) or text such as `500ms`, `30s`,
//! `5m`, `1h30m`, `1.5h`, `1d`.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

pub use sluice_duration::{DurationError, HINT, SCHEMA_FORMAT};

/// A duration from an op's input: deserializes from a number of seconds (`30`, `1.5`) or a
/// string (`500ms`, `30s`, `5m`, `1h30m`, `1.5h`, `1d`), in whole milliseconds.
///
/// Its JSON Schema is `{"type": ["string", "number"], "format": "sluice-duration"}`, so a host
/// can check a rule's value before the op runs.
///
/// ```ignore
/// #[derive(serde::Deserialize, sluice_op::schemars::JsonSchema)]
/// struct Input {
///     /// How long to wait.
///     #[serde(default)]
///     timeout: Option<sluice_op::Duration>,
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    millis: u64,
}

impl Duration {
    /// `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Duration { millis }
    }

    /// `seconds` seconds (the longest duration when that does not fit).
    pub const fn from_secs(seconds: u64) -> Self {
        Duration {
            millis: seconds.saturating_mul(1000),
        }
    }

    /// Parses sluice's duration format; a bare number is seconds.
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        sluice_duration::parse_millis(text).map(Self::from_millis)
    }

    /// Whole milliseconds.
    pub const fn as_millis(&self) -> u64 {
        self.millis
    }

    /// Whole seconds, a part of a second counting as one (`500ms` is 1, not 0, as a gate's
    /// timeout).
    pub const fn as_secs_ceil(&self) -> u64 {
        self.millis.div_ceil(1000)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        std::time::Duration::from_millis(d.millis)
    }
}

impl std::str::FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// `1500ms`: the format reads it back exactly.
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.millis)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;

        impl Visitor<'_> for V {
            type Value = Duration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a duration: {HINT}")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                v.checked_mul(1000)
                    .map(Duration::from_millis)
                    .ok_or_else(|| E::custom(DurationError::new(&v.to_string())))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(DurationError::new(&v.to_string()))),
                }
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                sluice_duration::millis_from_seconds(v)
                    .map(Duration::from_millis)
                    .map_err(E::custom)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
        }

        d.deserialize_any(V)
    }
}

impl JsonSchema for Duration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn schema_id() -> Cow<'static, str> {
        "sluice_op::Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["string", "number"],
            "format": SCHEMA_FORMAT,
            "description": "A duration: 500ms, 30s, 5m, 1h30m, 1.5h, 1d, or a number of seconds",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from(v: serde_json::Value) -> Result<Duration, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_are_seconds_and_text_is_the_one_format() {
        assert_eq!(from(json!(30)), Ok(Duration::from_secs(30)));
        assert_eq!(from(json!(1.5)), Ok(Duration::from_millis(1500)));
        assert_eq!(from(json!("30m")), Ok(Duration::from_secs(1800)));
        assert_eq!(from(json!("1h30m")), Ok(Duration::from_secs(5400)));
        assert_eq!(from(json!("500ms")).unwrap().as_secs_ceil(), 1);
    }

    #[test]
    fn refusals_say_what_to_write() {
        for (v, quoted) in [
            (json!("30x"), "30x"),
            (json!(-5), "-5"),
            (json!(-0.5), "-0.5"),
            (json!(u64::MAX), "18446744073709551615"),
        ] {
            let e = from(v).unwrap_err();
            assert_eq!(e, format!("`{quoted}` is not a duration: {HINT}"));
        }
        let e = from(json!(true)).unwrap_err();
        assert!(e.contains("expected a duration: write 500ms"), "{e}");
    }

    #[test]
    fn it_serializes_to_text_that_reads_back() {
        let d = Duration::from_millis(5_400_001);
        let text = serde_json::to_value(d).unwrap();
        assert_eq!(text, json!("5400001ms"));
        assert_eq!(from(text), Ok(d));
    }

    #[test]
    fn its_schema_names_the_format() {
        #[derive(JsonSchema)]
        #[allow(dead_code)]
        struct Input {
            timeout: Duration,
            later: Option<Duration>,
        }
        let s = serde_json::to_value(schemars::schema_for!(Input)).unwrap();
        let t = &s["properties"]["timeout"];
        assert_eq!(t["type"], json!(["string", "number"]));
        assert_eq!(t["format"], json!("sluice-duration"));
        assert_eq!(s["properties"]["later"]["format"], json!("sluice-duration"));
    }
}
