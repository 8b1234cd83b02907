//! The `Nats-Msg-Id` an event is published with: its id and a digest of its content.
//!
//! JetStream drops a message whose `Nats-Msg-Id` it saw in the last two minutes (the
//! stream's duplicate window). With the id alone as that key, a rejected message spent
//! its id: the corrected resend, same id, was dropped as a duplicate and never stored.
//! With `<id>:<digest>`, an identical retry is still dropped, while a corrected (or any
//! different) body is a new message; the store still keeps one row per id, the first
//! valid one it is given, so "same id, one event" holds.

use sha2::{Digest, Sha256};

use crate::Event;

/// The first 16 hex digits of the SHA-256 of `bytes`: enough to tell two versions of
/// one event apart (a collision needs 2^32 versions of the same id).
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The `Nats-Msg-Id` the gateway publishes `event` with: `<id>:<digest of its canonical
/// JSON>`. Two requests that validate to the same event get the same key, however their
/// JSON was written (key order, offsets, sha case). `sent_occurred_at` says whether the
/// sender gave `occurred_at`: when it did not, the gateway filled in the arrival time,
/// which differs on every retry, so it is left out of the digest and an identical
/// retry is still a duplicate.
pub fn msg_id(event: &Event, sent_occurred_at: bool) -> String {
    let mut canonical = serde_json::to_value(event).unwrap_or_default();
    if !sent_occurred_at {
        if let Some(fields) = canonical.as_object_mut() {
            fields.remove("occurred_at");
        }
    }
    // Serializing a Value cannot fail; its object keys come out sorted.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    format!("{}:{}", event.id, digest(&bytes))
}

/// True when a message's `Nats-Msg-Id` names the event `event_id`: the id alone (the
/// form the contract first gave), or `<id>:<version>` with a version of 4-64 hex
/// digits, as the gateway sends and as the README recommends to NATS publishers.
pub fn names(msg_id: &str, event_id: &str) -> bool {
    msg_id == event_id
        || msg_id
            .strip_prefix(event_id)
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|v| {
                (4..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_hexdigit())
            })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(v: serde_json::Value) -> Event {
        let now = "2026-03-16T12:00:00Z".parse().unwrap_or_default();
        crate::validate(&v, crate::Origin::Stream, now).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_same_event_gets_the_same_key_and_a_corrected_one_another() {
        let a = event(
            json!({"id": "d:1", "kind": "deploy", "service": "api", "git_sha": "abcd",
                             "occurred_at": "2026-03-16T12:00:00Z"}),
        );
        let same = event(
            json!({"occurred_at": "2026-03-16T13:00:00+01:00", "git_sha": "ABCD",
                                "service": "api", "kind": "deploy", "id": "d:1"}),
        );
        let fixed = event(
            json!({"id": "d:1", "kind": "deploy", "service": "api", "git_sha": "abcd",
                                 "occurred_at": "2026-03-16T12:00:00Z", "succeeded": false}),
        );
        assert_eq!(msg_id(&a, true), msg_id(&same, true));
        assert_ne!(msg_id(&a, true), msg_id(&fixed, true));
        assert!(msg_id(&a, true).starts_with("d:1:"));
        assert_eq!(msg_id(&a, true).len(), "d:1:".len() + 16);
        assert!(names(&msg_id(&a, true), "d:1"));
        // Without a sent `occurred_at`, the arrival time the gateway filled in is not
        // part of the key: a retry of the same request is the same message.
        let mut later = a.clone();
        later.occurred_at += chrono::TimeDelta::seconds(3);
        assert_eq!(msg_id(&a, false), msg_id(&later, false));
        assert_ne!(msg_id(&a, true), msg_id(&later, true));
        assert_ne!(msg_id(&a, false), msg_id(&a, true));
    }

    #[test]
    fn a_header_names_its_event_alone_or_with_a_hex_version() {
        assert!(names("d-1", "d-1"));
        assert!(names("d-1:0123abcd", "d-1"));
        assert!(names("a:b", "a:b"));
        assert!(!names("d-2", "d-1"));
        assert!(!names("d-1:", "d-1"));
        assert!(!names("d-1:xyz1", "d-1"));
        assert!(!names("d-1x0123abcd", "d-1"));
        assert!(!names("d-1:abc", "d-1"));
        assert!(!names(&format!("d-1:{}", "a".repeat(65)), "d-1"));
    }
}
