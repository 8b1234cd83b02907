//! `DORA_EMIT_TIMEOUT`: a duration in the grammar every dora setting uses.

use std::time::Duration;

pub use dora_event::duration::show;

/// Parses `DORA_EMIT_TIMEOUT` (`30s`, `2m`, `500ms`); zero leaves no time to deliver.
pub fn parse(text: &str) -> Result<Duration, String> {
    match dora_event::duration::parse(text)? {
        d if d.is_zero() => Err(format!(
            "`{}` is zero: give the event some time to arrive",
            text.trim()
        )),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_refused() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert!(parse("0s").unwrap_err().contains("zero"));
        assert!(parse("0ms").unwrap_err().contains("zero"));
        assert!(parse("soon").is_err());
    }
}
