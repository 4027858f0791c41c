//! Kubernetes-style duration strings such as `5s`, `10m` and `1h30m`, for
//! command-line flags and custom resource fields alike.
//!
//! The accepted language is a subset of Go's `time.ParseDuration`, which is
//! what the apiserver's CEL `duration()` uses: the CEL rules in the schema and
//! this parser must agree on every string the schema `pattern` lets through.

use std::time::Duration;

/// The schema pattern for duration fields; [`parse_duration`] accepts exactly
/// the strings it matches (up to overflow).
pub const DURATION_PATTERN: &str = r"^(0|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$";

/// The longest duration string the schema admits. It keeps the apiserver's CEL
/// cost estimate for the `duration()` rules small.
pub const DURATION_MAX_LENGTH: u32 = 32;

/// A string that is not a duration, or one too long to represent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {problem}; write a number and a unit (h, m, s or ms), for example 5s, 10m or 1h30m"
)]
pub struct ParseDurationError {
    input: String,
    problem: &'static str,
}

impl ParseDurationError {
    fn new(input: &str, problem: &'static str) -> Self {
        ParseDurationError {
            input: input.to_owned(),
            problem,
        }
    }
}

const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SECOND: u128 = 1_000_000_000;
const NANOS_PER_MINUTE: u128 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: u128 = 60 * NANOS_PER_MINUTE;

/// Parses a duration such as `5s`, `250ms`, `10m`, `1h30m` or `1.5h`; `0` on
/// its own means zero.
///
/// Components are summed, as Go does, so `1h30m` is 90 minutes. Fractions
/// finer than a nanosecond are dropped.
pub fn parse_duration(input: &str) -> Result<Duration, ParseDurationError> {
    if input.is_empty() {
        return Err(ParseDurationError::new(input, "it is empty"));
    }
    if input == "0" {
        return Ok(Duration::ZERO);
    }

    let mut rest = input;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (whole, after_whole) = split_digits(rest);
        if whole.is_empty() {
            return Err(ParseDurationError::new(input, "expected a number"));
        }
        let (fraction, after_number) = match after_whole.strip_prefix('.') {
            Some(after_dot) => {
                let (fraction, after_fraction) = split_digits(after_dot);
                if fraction.is_empty() {
                    return Err(ParseDurationError::new(
                        input,
                        "expected digits after the decimal point",
                    ));
                }
                (fraction, after_fraction)
            }
            None => ("", after_whole),
        };
        let (unit, after_unit) = split_unit(after_number)
            .ok_or_else(|| ParseDurationError::new(input, "expected a unit: h, m, s or ms"))?;

        let nanos = component_nanos(whole, fraction, unit)
            .ok_or_else(|| ParseDurationError::new(input, "it is too long"))?;
        total = total
            .checked_add(nanos)
            .ok_or_else(|| ParseDurationError::new(input, "it is too long"))?;
        rest = after_unit;
    }

    let seconds = u64::try_from(total / NANOS_PER_SECOND)
        .map_err(|_| ParseDurationError::new(input, "it is too long"))?;
    // The remainder of a division by 10^9 always fits in a u32.
    let nanos = (total % NANOS_PER_SECOND) as u32;
    Ok(Duration::new(seconds, nanos))
}

/// Renders a duration the way [`parse_duration`] reads it, to the
/// millisecond: `0s`, `250ms`, `4.2s`, `1m30s`, `2h`.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    if millis < 1000 {
        return format!("{millis}ms");
    }

    let hours = millis / 3_600_000;
    let minutes = millis / 60_000 % 60;
    let seconds = millis / 1000 % 60;
    let fraction = millis % 1000;

    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 || fraction > 0 {
        out.push_str(&seconds.to_string());
        if fraction > 0 {
            let digits = format!("{fraction:03}");
            out.push('.');
            out.push_str(digits.trim_end_matches('0'));
        }
        out.push('s');
    }
    out
}

fn split_digits(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

/// Splits off the unit, trying `ms` before `m` so that `5ms` is not read as
/// five minutes followed by garbage.
fn split_unit(s: &str) -> Option<(u128, &str)> {
    [
        ("ms", NANOS_PER_MILLI),
        ("h", NANOS_PER_HOUR),
        ("m", NANOS_PER_MINUTE),
        ("s", NANOS_PER_SECOND),
    ]
    .into_iter()
    .find_map(|(unit, nanos)| s.strip_prefix(unit).map(|rest| (nanos, rest)))
}

/// `whole.fraction` units in nanoseconds, or `None` on overflow.
fn component_nanos(whole: &str, fraction: &str, unit_nanos: u128) -> Option<u128> {
    let whole: u128 = whole.parse().ok()?;
    let mut nanos = whole.checked_mul(unit_nanos)?;
    // Digits past the 18th are below a nanosecond for every unit we accept,
    // and ignoring them keeps 10^digits within u128.
    let fraction = &fraction[..fraction.len().min(18)];
    if !fraction.is_empty() {
        let numerator: u128 = fraction.parse().ok()?;
        let denominator = 10u128.pow(fraction.len() as u32);
        nanos = nanos.checked_add(numerator * unit_nanos / denominator)?;
    }
    Some(nanos)
}

/// For settings where `0` means "no limit".
pub fn none_if_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn parses_kubernetes_style_durations() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("5s"), Ok(secs(5)));
        assert_eq!(parse_duration("10m"), Ok(secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(secs(5400)));
        assert_eq!(parse_duration("1h30m15s"), Ok(secs(5415)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5h"), Ok(secs(5400)));
        assert_eq!(parse_duration("0.25s"), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse_duration("2m500ms"),
            Ok(Duration::from_millis(120_500))
        );
        // Go sums components in any order; so do we.
        assert_eq!(parse_duration("30m1h"), Ok(secs(5400)));
    }

    #[test]
    fn rejects_malformed_durations() {
        for bad in [
            "", "5", "s", "-5s", "5 s", "5sec", "1.h", ".5h", "5d", "1h 30m", "00", "5s ", "+5s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn rejects_durations_that_overflow() {
        let err = parse_duration("99999999999999999999999999999999999999h").unwrap_err();
        assert!(err.to_string().contains("too long"), "{err}");
        assert!(parse_duration("18446744073709551616s").is_err());
    }

    #[test]
    fn error_message_names_the_input_and_the_fix() {
        let err = parse_duration("5 minutes").unwrap_err().to_string();
        assert!(err.contains("\"5 minutes\""), "{err}");
        assert!(err.contains("1h30m"), "{err}");
    }

    #[test]
    fn pattern_and_parser_agree() {
        let pattern = regex::Regex::new(DURATION_PATTERN).unwrap();
        for sample in [
            "0",
            "0s",
            "5s",
            "10m",
            "1h30m",
            "250ms",
            "1.5h",
            "5",
            "-5s",
            "5sec",
            "1.h",
            "",
            "5d",
            "1h 30m",
            "0.001s",
            "3h2m1s0ms",
        ] {
            assert_eq!(
                pattern.is_match(sample),
                parse_duration(sample).is_ok(),
                "pattern and parser disagree on {sample:?}"
            );
        }
    }

    #[test]
    fn formats_what_it_parses() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(4200), "4.2s"),
            (Duration::from_millis(4250), "4.25s"),
            (secs(90), "1m30s"),
            (secs(7200), "2h"),
            (secs(3661), "1h1m1s"),
            (Duration::from_millis(60_001), "1m0.001s"),
        ];
        for (duration, text) in cases {
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Ok(duration), "{text}");
        }
        // Below a millisecond is not worth showing.
        assert_eq!(format_duration(Duration::from_micros(1500)), "1ms");
    }
}
