//! Hostile bodies against the gateway's request handling (body reading, the batch
//! limit, ids, validation), property-based: random and mutated bodies never panic,
//! every refusal is a 4xx, never a 5xx, and every accepted event obeys the contract's
//! rules. The system test `hostile` sends such bodies through the running gateway.

// A panic in a test is a failed assertion with a line number.
#![allow(clippy::unwrap_used)]

use axum::response::IntoResponse;
use chrono::Utc;
use dora_ingest::http::{parse, MAX_BATCH};
use dora_ingest::Error;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Runs the handler's parsing on `body` and checks the outcome's soundness.
fn check(body: &[u8], key: Option<&str>) -> Result<usize, Error> {
    let before = Utc::now();
    match parse(body, "ci", key) {
        Ok(parsed) => {
            let events = parsed.events;
            assert!((1..=MAX_BATCH).contains(&events.len()));
            assert_eq!(parsed.msg_ids.len(), events.len());
            let after = Utc::now();
            for event in &events {
                // `received_at` is between `before` and `after`; the later bound is
                // the one the future limit is judged against.
                if let Err(rule) = dora_event::invariants::check(event, after) {
                    panic!("accepted an event that breaks `{rule}`: {event:?}");
                }
                let back = dora_event::json::from_slice(&event.to_json()).unwrap();
                let again = dora_event::validate(&back, dora_event::Origin::Stream, before);
                assert_eq!(again.as_ref().ok(), Some(event), "{again:?}");
            }
            Ok(events.len())
        }
        Err(e) => {
            let status = e.rejection();
            assert!(status.is_some(), "a body made the gateway fail: {e}");
            let response = e.into_response();
            assert!(response.status().is_client_error(), "{}", response.status());
            // Rebuilt for the caller: Error is not Clone.
            Err(Error::BadRequest(String::new()))
        }
    }
}

fn valid_body() -> impl Strategy<Value = Value> {
    let one = (
        prop::sample::select(vec![
            "deploy",
            "rollback",
            "incident_opened",
            "incident_closed",
        ]),
        "[a-z0-9-]{1,10}",
        "[0-9a-f]{4,12}",
        prop::option::of("[A-Za-z0-9:.-]{1,20}"),
    )
        .prop_map(|(kind, service, sha, id)| {
            let mut e = json!({"kind": kind, "service": service,
                               "occurred_at": "2026-03-10T12:00:00+01:00"});
            match kind {
                "deploy" => {
                    e["git_sha"] = json!(sha);
                    e["succeeded"] = json!(false);
                    e["commit_at"] = json!("2026-03-10T10:00:00Z");
                }
                "rollback" => e["git_sha"] = json!(sha),
                _ => e["ref_id"] = json!(format!("INC {sha}")),
            }
            if let Some(id) = id {
                e["id"] = json!(id);
            }
            e
        });
    prop_oneof![
        one.clone(),
        prop::collection::vec(one, 1..20).prop_map(Value::Array),
    ]
}

/// Byte-level edits of a body: what a broken client or an attacker would send.
#[derive(Debug, Clone)]
enum Edit {
    Replace(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Delete(prop::sample::Index, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let interesting = prop::sample::select(
        [
            &b"\""[..],
            b"{",
            b"}",
            b"[",
            b"]",
            b",",
            b":",
            b"\\",
            b"\\u0000",
            b"\\ud800",
            b"\xff",
            b"\xc3",
            b"\x00",
            b"1e999",
            b"-0",
            b"null",
            b"true",
            b"\"kind\":\"deploy\",",
            b"\"succeeded\":true,",
            b"\"id\":\"x\",",
            b"23:59:60",
            b"+23:59",
            b"-00:00",
        ]
        .to_vec(),
    )
    .prop_map(<[u8]>::to_vec);
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Replace(i, b)),
        (
            any::<prop::sample::Index>(),
            prop_oneof![interesting, prop::collection::vec(any::<u8>(), 1..8)]
        )
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<prop::sample::Index>(), 1usize..8).prop_map(|(i, n)| Edit::Delete(i, n)),
    ]
}

fn apply(mut body: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = body.len().max(1);
        match edit {
            Edit::Replace(i, b) if !body.is_empty() => {
                let at = i.index(len);
                body[at] = *b;
            }
            Edit::Insert(i, bytes) => {
                let at = i.index(len + 1).min(body.len());
                body.splice(at..at, bytes.iter().copied());
            }
            Edit::Delete(i, n) if !body.is_empty() => {
                let at = i.index(len);
                let end = (at + n).min(body.len());
                body.drain(at..end);
            }
            _ => {}
        }
    }
    body
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_bytes_are_refused_with_a_4xx(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = check(&body, None);
    }

    #[test]
    fn valid_bodies_are_accepted_whole(body in valid_body(), key in prop::option::of("[a-z0-9]{1,8}")) {
        let n = body.as_array().map_or(1, Vec::len);
        let accepted = check(&serde_json::to_vec(&body).unwrap(), key.as_deref());
        prop_assert_eq!(accepted.ok(), Some(n));
    }

    #[test]
    fn mutated_bodies_are_refused_with_a_4xx_or_sound(
        body in valid_body(),
        edits in prop::collection::vec(edit(), 1..6),
        key in prop::option::of("[a-z0-9]{1,8}"),
    ) {
        let body = apply(serde_json::to_vec(&body).unwrap(), &edits);
        let _ = check(&body, key.as_deref());
    }
}

fn refusal(body: &[u8]) -> (Option<usize>, Option<String>, String) {
    match parse(body, "ci", None) {
        Err(Error::InvalidEvent {
            index,
            field,
            message,
        }) => (index, field, message),
        other => panic!("{:?}", other.map(|p| p.events)),
    }
}

#[test]
fn a_key_given_twice_gets_a_400_naming_it() {
    let (index, field, message) = refusal(
        br#"{"kind":"deploy","service":"api","git_sha":"abcd","succeeded":false,"succeeded":true}"#,
    );
    assert_eq!((index, field.as_deref()), (None, Some("succeeded")));
    assert!(message.contains("duplicate key `succeeded`"), "{message}");
    let (index, field, message) = refusal(
        br#"[{"kind":"rollback","service":"api","git_sha":"abcd"},
             {"kind":"rollback","service":"api","git_sha":"abcd","service":"web"}]"#,
    );
    assert_eq!((index, field.as_deref()), (Some(1), Some("service")));
    assert!(message.starts_with("event 1: "), "{message}");
}

#[test]
fn numbers_where_strings_belong_are_named() {
    for field in [
        "id",
        "service",
        "environment",
        "git_sha",
        "occurred_at",
        "commit_at",
    ] {
        let mut event = json!({"kind": "deploy", "service": "api", "git_sha": "abcd"});
        event[field] = json!(12345);
        let (_, named, _) = refusal(&serde_json::to_vec(&event).unwrap());
        assert_eq!(named.as_deref(), Some(field));
    }
}

#[test]
fn deep_nesting_and_huge_bodies_are_refused_with_a_4xx() {
    let depth = 1_000_000;
    let deep = "[".repeat(depth) + &"]".repeat(depth);
    assert!(
        matches!(parse(deep.as_bytes(), "ci", None), Err(Error::InvalidJson(m)) if m.contains("recursion limit"))
    );
    let deep = r#"{"id":"#.repeat(depth) + "1" + &"}".repeat(depth);
    assert!(matches!(
        parse(deep.as_bytes(), "ci", None),
        Err(Error::InvalidJson(_))
    ));
    // 1001 elements: refused at the count, before validation.
    let many = format!("[{}{{}}]", "{},".repeat(MAX_BATCH));
    assert!(matches!(
        parse(many.as_bytes(), "ci", None),
        Err(Error::BatchSize(_))
    ));
    let huge = json!({"kind": "deploy", "service": "s".repeat(2 << 20), "git_sha": "abcd"});
    let (_, field, message) = refusal(&serde_json::to_vec(&huge).unwrap());
    assert_eq!(field.as_deref(), Some("service"));
    assert!(message.len() < 400);
}

#[test]
fn invalid_utf8_is_refused_as_invalid_json() {
    let mut body = br#"{"kind":"deploy","service":"a"#.to_vec();
    body.push(0xff);
    body.extend_from_slice(br#"","git_sha":"abcd"}"#);
    assert!(matches!(
        parse(&body, "ci", None),
        Err(Error::InvalidJson(m)) if m.contains("invalid unicode")
    ));
}
