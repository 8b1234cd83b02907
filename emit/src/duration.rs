//! Durations as settings write them: `30s`, `2m`, `1h`, `500ms`, or bare seconds.

use std::time::Duration;

/// Parses `DORA_EMIT_TIMEOUT`: a positive whole number with an optional unit.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("`{text}` is not a duration; write it like 30s, 2m, 1h or 500ms");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let duration = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(bad()),
    };
    if duration.is_zero() {
        return Err(format!(
            "`{text}` is zero: give the event some time to arrive"
        ));
    }
    Ok(duration)
}

/// A duration the way a person reads it in a message.
pub fn show(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if !ms.is_multiple_of(60_000) || ms == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}m", ms / 60_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("45"), Ok(Duration::from_secs(45)));
        assert!(parse("0s").is_err());
        assert!(parse("1.5m").is_err());
        assert!(parse("soon").is_err());
        assert!(parse("-3s").is_err());
        assert_eq!(show(Duration::from_secs(60)), "1m");
        assert_eq!(show(Duration::from_secs(90)), "90s");
    }
}
