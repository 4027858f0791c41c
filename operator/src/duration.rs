//! Durations as people write them in flags and manifests: `500ms`, `5s`,
//! `10m`, `1h30m`, or `0` for none. The same grammar as Kubernetes' own
//! durations, minus the units nobody uses for timeouts.

use std::time::Duration;

/// Parses `1h30m`, `5s`, `250ms` or `0`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "{text:?} is not a duration: use a number with a unit, such as 500ms, 5s, 10m or 1h30m"
        )
    };
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(invalid)?;
        if digits == 0 {
            return Err(invalid());
        }
        let amount: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(invalid()),
        };
        total += unit
            .checked_mul(u32::try_from(amount).map_err(|_| invalid())?)
            .ok_or_else(invalid)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// For settings where `0` means "no limit".
pub fn none_if_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(none_if_zero(Duration::ZERO), None);
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        for bad in ["", "5", "s", "5x", "-5s", "1.5s", "5s3", "99999999999s"] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
