//! NATS subjects: `<prefix>.<environment>.<service>.<kind>`.

use crate::model::Event;
use crate::validate::ValidationError;

/// The subject an event is published on.
pub fn for_event(prefix: &str, event: &Event) -> String {
    format!(
        "{prefix}.{}.{}.{}",
        event.environment, event.service, event.kind
    )
}

/// The subjects the stream captures.
pub fn wildcard(prefix: &str) -> String {
    format!("{prefix}.>")
}

/// Checks that a message's subject says what its body says, so a consumer filtering by
/// subject never sees an event that belongs elsewhere.
pub fn check(prefix: &str, subject: &str, event: &Event) -> Result<(), ValidationError> {
    let expected = for_event(prefix, event);
    if subject == expected {
        Ok(())
    } else {
        Err(ValidationError::field(
            "subject",
            format!(
                "subject `{subject}` disagrees with the event body, which belongs on `{expected}`"
            ),
        ))
    }
}

/// Checks a configured subject prefix: dot-separated tokens without wildcards or spaces.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let bad_token = |t: &str| t.is_empty() || t.contains(['*', '>', ' ', '\t', '\r', '\n']);
    if prefix.split('.').any(bad_token) {
        Err(format!(
            "`{prefix}` is not a subject prefix: use dot-separated tokens without wildcards, e.g. dora.events"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(check_prefix("dora.events").is_ok());
        assert!(check_prefix("dora.>").is_err());
        assert!(check_prefix("dora..events").is_err());
        assert!(check_prefix("").is_err());
    }
}
