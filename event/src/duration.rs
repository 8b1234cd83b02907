//! Durations as dora's settings write them: one whole number and one unit, `500ms`,
//! `30s`, `15m`, `1h` or `2d`. One grammar for every process, so a value that works in
//! one setting works in all of them.

use std::time::Duration;

/// The longest duration a setting may hold; anything longer is a typo.
const LONGEST: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Parses a duration setting. `0s` is a duration; settings where zero makes no sense
/// refuse it themselves, with their own reason.
pub fn parse(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{value}` has no unit; write e.g. 500ms, 30s, 15m, 1h or 2d"))?;
    let (number, unit) = value.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "`{value}` must start with a whole number, e.g. 500ms, 30s, 15m, 1h"
        ));
    }
    // All digits: a number that does not fit in 64 bits is far beyond `LONGEST`.
    let n: u64 = number.parse().unwrap_or(u64::MAX);
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "`{value}`: unknown unit `{unit}`; the units are ms, s, m, h and d"
            ))
        }
    };
    n.checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .filter(|d| *d <= LONGEST)
        .ok_or_else(|| format!("`{value}` is longer than 10 years"))
}

/// A duration the way a person reads it in a message: the largest unit that shows it
/// exactly.
pub fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".to_owned()
    } else if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if !ms.is_multiple_of(60_000) {
        format!("{}s", ms / 1000)
    } else if !ms.is_multiple_of(3_600_000) {
        format!("{}m", ms / 60_000)
    } else if !ms.is_multiple_of(86_400_000) {
        format!("{}h", ms / 3_600_000)
    } else {
        format!("{}d", ms / 86_400_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse(" 0s "), Ok(Duration::ZERO));
        assert_eq!(parse("3650d"), Ok(LONGEST));
    }

    #[test]
    fn malformed_values_say_what_is_wrong() {
        for (bad, says) in [
            ("", "no unit"),
            ("15", "no unit"),
            ("m", "whole number"),
            ("1.5h", "unknown unit `.5h`"),
            ("-1s", "whole number"),
            ("1w", "unknown unit `w`"),
            ("1 h", "unknown unit ` h`"),
            ("3651d", "longer than 10 years"),
            ("99999999999999999999s", "longer than 10 years"),
            ("18446744073709551615d", "longer than 10 years"),
        ] {
            let error = parse(bad).expect_err(bad);
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn shown_in_the_largest_exact_unit() {
        for (d, shown) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(5400), "90m"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_secs(172_800), "2d"),
        ] {
            assert_eq!(show(d), shown);
            assert_eq!(parse(&show(d)), Ok(d), "{shown} parses back");
        }
    }
}
