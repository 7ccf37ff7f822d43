//! The one duration format of sluice, shared by the rule parser (host) and the op SDK (guest).
//!
//! A bare non-negative number is seconds (`30`, `1.5`); otherwise one or more `<number><unit>`
//! groups, units `ms`, `s`, `m`, `h` and `d` (`500ms`, `30s`, `5m`, `1h30m`, `1.5h`, `1d`).
//! Whitespace around the whole is allowed, none inside. Everything is computed in whole
//! milliseconds with integer arithmetic (parts of a millisecond are dropped), so `0.1s` is
//! exactly 100 ms. Empty text, signs, exponents, `inf`/`NaN`, unknown units and durations that
//! do not fit in a `u64` of milliseconds are refused, all with the same message.
//!
//! No dependencies, so the `wasm32-wasip2` plugins workspace builds it as is.

#![deny(missing_docs)]

use std::fmt;

/// What to write instead, for messages: the end of every [`DurationError`].
pub const HINT: &str = "write 500ms, 30s, 5m, 2h, 1d or a number of seconds";

/// The JSON Schema `format` of a duration field (`{"type": ["string", "number"], "format":
/// "sluice-duration"}`), so a host can check an op's input before running it.
pub const SCHEMA_FORMAT: &str = "sluice-duration";

/// The text was not a duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    input: String,
}

impl DurationError {
    /// A refusal of `input` (for a value that came in another shape, such as a JSON number).
    pub fn new(input: &str) -> Self {
        // A huge input would make a huge message: quote the start of it.
        let mut cut: String = input.chars().take(40).collect();
        if cut.len() < input.len() {
            cut.push_str("...");
        }
        DurationError { input: cut }
    }

    /// The refused text, as quoted in the message (cut after 40 characters).
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a duration: {HINT}", self.input)
    }
}

impl std::error::Error for DurationError {}

/// Milliseconds in one of each unit.
fn unit_millis(unit: &str) -> Option<u128> {
    Some(match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    })
}

/// Digits after the point that can still matter: a digit past the ninth is below a
/// millisecond even in days (86,400,000 ms).
const FRACTION_DIGITS: usize = 9;

/// `int.frac` times `unit` milliseconds, exactly, or `None` on overflow.
fn scaled(int: &str, frac: &str, unit: u128) -> Option<u128> {
    let mut whole: u128 = 0;
    for d in int.bytes() {
        whole = whole.checked_mul(10)?.checked_add(u128::from(d - b'0'))?;
    }
    let frac = &frac[..frac.len().min(FRACTION_DIGITS)];
    let mut part: u128 = 0;
    for d in frac.bytes() {
        part = part * 10 + u128::from(d - b'0');
    }
    let scale = 10u128.pow(frac.len() as u32);
    whole.checked_mul(unit)?.checked_add(part * unit / scale)
}

/// Splits a leading `digits[.digits]` off `s`: (integer digits, fraction digits, rest).
fn number(s: &str) -> Option<(&str, &str, &str)> {
    let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
    if int_len == 0 {
        return None;
    }
    let (int, rest) = s.split_at(int_len);
    match rest.strip_prefix('.') {
        Some(after) => {
            let frac_len = after.bytes().take_while(u8::is_ascii_digit).count();
            if frac_len == 0 {
                return None;
            }
            Some((int, &after[..frac_len], &after[frac_len..]))
        }
        None => Some((int, "", rest)),
    }
}

/// Milliseconds in `text`: `30` (seconds), `1.5`, `500ms`, `30s`, `5m`, `1h30m`, `1.5h`, `1d`.
pub fn parse_millis(text: &str) -> Result<u64, DurationError> {
    let bad = || DurationError::new(text);
    let s = text.trim();
    let (int, frac, rest) = number(s).ok_or_else(bad)?;
    if rest.is_empty() {
        // A bare number: seconds.
        return scaled(int, frac, 1_000)
            .and_then(|ms| u64::try_from(ms).ok())
            .ok_or_else(bad);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let (int, frac, after) = number(rest).ok_or_else(bad)?;
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = unit_millis(&after[..unit_len]).ok_or_else(bad)?;
        total = total
            .checked_add(scaled(int, frac, unit).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        rest = &after[unit_len..];
    }
    u64::try_from(total).map_err(|_| bad())
}

/// Milliseconds in a number of seconds given as a float (a JSON number such as `1.5`): refused
/// when negative, not finite or too large.
pub fn millis_from_seconds(seconds: f64) -> Result<u64, DurationError> {
    let ms = seconds * 1000.0;
    // `u64::MAX as f64` rounds up to 2^64, which does not fit: compare strictly below it.
    if !(ms.is_finite() && ms >= 0.0 && ms < u64::MAX as f64) {
        return Err(DurationError::new(&seconds.to_string()));
    }
    Ok(ms as u64)
}

/// Whole seconds in `millis`, a part of a second counting as a whole one (a gate's timeout is
/// in seconds, and `500ms` must not become 0, which would time out at once).
pub fn seconds_ceil(millis: u64) -> u64 {
    millis.div_ceil(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_seconds() {
        assert_eq!(parse_millis("30"), Ok(30_000));
        assert_eq!(parse_millis("0"), Ok(0));
        assert_eq!(parse_millis("1.5"), Ok(1_500));
        assert_eq!(parse_millis(" 2 "), Ok(2_000));
        assert_eq!(parse_millis("0.0005"), Ok(0));
    }

    #[test]
    fn every_unit() {
        assert_eq!(parse_millis("500ms"), Ok(500));
        assert_eq!(parse_millis("30s"), Ok(30_000));
        assert_eq!(parse_millis("5m"), Ok(300_000));
        assert_eq!(parse_millis("2h"), Ok(7_200_000));
        assert_eq!(parse_millis("1d"), Ok(86_400_000));
    }

    #[test]
    fn groups_and_fractions_add_up_exactly() {
        assert_eq!(parse_millis("1h30m"), Ok(5_400_000));
        assert_eq!(parse_millis("1.5h"), Ok(5_400_000));
        assert_eq!(parse_millis("1d2h3m4s5ms"), Ok(93_784_005));
        assert_eq!(parse_millis("0.1s"), Ok(100));
        assert_eq!(parse_millis("2.25m"), Ok(135_000));
        // Digits past a millisecond are dropped, not rounded into an error.
        assert_eq!(parse_millis("1.0000000000000000000001s"), Ok(1_000));
        assert_eq!(parse_millis("\t30m\n"), Ok(1_800_000));
    }

    #[test]
    fn everything_else_is_refused_with_one_message() {
        for bad in [
            "",
            " ",
            "-5",
            "-5s",
            "+5s",
            "30x",
            "5 m",
            "1h 30m",
            "1h30",
            "m",
            "5.m",
            ".5s",
            "1e3",
            "inf",
            "NaN",
            "infs",
            "5M",
            "5mss",
            "5s5",
            "1,5s",
            "٣s",
            "5µs",
            // 2^64 ms and more
            "18446744073709551616ms",
            "213503982334601d",
            "999999999999999999999999999999999999999d",
        ] {
            let e = parse_millis(bad).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("`{bad}` is not a duration: {HINT}"),
                "{bad:?}"
            );
        }
        assert_eq!(parse_millis("18446744073709551615ms"), Ok(u64::MAX));
    }

    #[test]
    fn a_long_input_is_quoted_cut() {
        let long = "x".repeat(10_000);
        let e = parse_millis(&long).unwrap_err();
        assert_eq!(e.input().chars().count(), 43);
        assert!(e.to_string().len() < 200);
    }

    #[test]
    fn float_seconds() {
        assert_eq!(millis_from_seconds(1.5), Ok(1_500));
        assert_eq!(millis_from_seconds(0.0), Ok(0));
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e300] {
            assert!(millis_from_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(seconds_ceil(0), 0);
        assert_eq!(seconds_ceil(1), 1);
        assert_eq!(seconds_ceil(1_000), 1);
        assert_eq!(seconds_ceil(1_001), 2);
    }
}
