//! Hostile input against validation, property-based: whatever JSON arrives, `validate`
//! does not panic, and what it accepts obeys the contract's rules (checked by
//! `dora_event::invariants`, written apart from `validate`) and survives the trip
//! through its canonical JSON; a valid event with one field broken is refused with
//! that field named.

// A panic in a test is a failed assertion with a line number.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, FixedOffset, SecondsFormat, TimeDelta, Utc};
use dora_event::{invariants, json, validate, Event, Origin};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn received() -> DateTime<Utc> {
    "2026-03-16T12:00:00Z".parse().unwrap()
}

/// The property every accepted event must have: the rules hold, and its canonical
/// JSON, read back as the projector reads a stream message, is the same event.
fn assert_sound(event: &Event, received_at: DateTime<Utc>) {
    if let Err(rule) = invariants::check(event, received_at) {
        panic!("accepted an event that breaks `{rule}`: {event:?}");
    }
    let back = json::from_slice(&event.to_json()).unwrap();
    let again = validate(&back, Origin::Stream, received_at).unwrap();
    assert_eq!(&again, event, "the canonical JSON re-validates to itself");
}

/// Any JSON value, with strings from anywhere in Unicode and some long ones.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        (0usize..200_000).prop_map(|n| Value::String("a".repeat(n))),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..10)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Mostly the real field names, so random objects get past the unknown-field check.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(dora_event::FIELDS.to_vec()).prop_map(str::to_owned),
        1 => ".{0,12}",
    ]
}

/// A time in RFC 3339 with any offset the format allows, any precision, sometimes a
/// leap second, between year 1 and `latest`.
fn rfc3339_at_or_before(latest: DateTime<Utc>) -> impl Strategy<Value = (String, DateTime<Utc>)> {
    // Back to about year 1: RFC 3339 has four-digit years.
    let span: i64 = 2024 * 365 * 86_400;
    (
        0..span,
        0u32..1_000_000_000,
        -(23 * 3600 + 59 * 60)..=(23 * 3600 + 59 * 60),
        prop::sample::select(vec![
            SecondsFormat::Secs,
            SecondsFormat::Millis,
            SecondsFormat::Micros,
            SecondsFormat::Nanos,
        ]),
    )
        .prop_map(move |(back, nanos, offset_secs, format)| {
            let offset_secs = offset_secs - offset_secs % 60;
            let t = latest - TimeDelta::seconds(back) - TimeDelta::nanoseconds(nanos.into());
            let offset = FixedOffset::east_opt(offset_secs).unwrap();
            (t.with_timezone(&offset).to_rfc3339_opts(format, false), t)
        })
}

/// A valid event of any kind, as a sender would write it.
fn valid_event() -> impl Strategy<Value = Value> {
    let limit = received() + dora_event::MAX_FUTURE;
    (
        prop::sample::select(vec![
            "deploy",
            "rollback",
            "incident_opened",
            "incident_closed",
        ]),
        prop::option::of("[A-Za-z0-9._:-]{1,128}"),
        "[A-Za-z0-9_-]{1,64}",
        prop::option::of("[A-Za-z0-9_-]{1,64}"),
        "[0-9a-fA-F]{4,64}",
        any::<Option<bool>>(),
        prop::option::of(rfc3339_at_or_before(limit)),
        (0i64..10 * 86_400, any::<bool>()),
        "\\PC{1,128}",
    )
        .prop_map(
            |(kind, id, service, environment, sha, succeeded, occurred, commit, ref_id)| {
                let mut e = Map::new();
                e.insert("kind".into(), json!(kind));
                e.insert("service".into(), json!(service));
                if let Some(id) = id {
                    e.insert("id".into(), json!(id));
                }
                if let Some(env) = environment {
                    e.insert("environment".into(), json!(env));
                }
                let occurred_at = occurred.as_ref().map_or(received(), |(_, t)| *t);
                if let Some((text, _)) = &occurred {
                    e.insert("occurred_at".into(), json!(text));
                }
                match kind {
                    "deploy" => {
                        e.insert("git_sha".into(), json!(sha));
                        if let Some(s) = succeeded {
                            e.insert("succeeded".into(), json!(s));
                        }
                        let (before, with_commit) = commit;
                        if with_commit {
                            let c = occurred_at - TimeDelta::seconds(before);
                            e.insert("commit_at".into(), json!(c.to_rfc3339()));
                        }
                    }
                    "rollback" => {
                        e.insert("git_sha".into(), json!(sha));
                    }
                    _ => {
                        e.insert("ref_id".into(), json!(ref_id));
                        if kind == "incident_opened" && succeeded == Some(true) {
                            e.insert("git_sha".into(), json!(sha));
                        }
                    }
                }
                Value::Object(e)
            },
        )
}

/// Values that break `field`'s rule for an event of `kind`, or `None` where the field
/// has no rule to break for that kind.
fn breakers(kind: &str, field: &str) -> Vec<Value> {
    let future = "2026-03-16T12:05:00.000001Z";
    let not_times = vec![
        json!("yesterday"),
        json!(1_773_662_400),
        json!("2026-02-30T00:00:00Z"),
        json!("2026-03-16T12:00:00+24:00"),
        json!("2016-12-31T23:59:61Z"),
        json!("2026-03-16T12:00:00"),
        json!(["2026-03-16T12:00:00Z"]),
    ];
    let deploy = kind == "deploy";
    let incident = kind.starts_with("incident");
    match field {
        "id" => vec![
            json!(""),
            json!("i".repeat(129)),
            json!("has space"),
            json!("caf\u{e9}"),
            json!("a/b"),
            json!(42),
            json!({"id": "x"}),
        ],
        "kind" => vec![
            json!("deployed"),
            json!("Deploy"),
            json!(""),
            json!(1),
            json!(null),
        ],
        "service" | "environment" => vec![
            json!(""),
            json!("s".repeat(65)),
            json!("a.b"),
            json!("a b"),
            json!("a*"),
            json!(">"),
            json!(7),
            json!(false),
        ],
        "git_sha" if kind == "incident_closed" => vec![json!("abcd")],
        "git_sha" => {
            let mut v = vec![
                json!("abc"),
                json!("xyz1"),
                json!("a".repeat(65)),
                json!(1234),
                json!("abcd "),
            ];
            if !incident {
                v.push(json!(null));
            }
            v
        }
        "succeeded" if deploy => vec![json!("true"), json!(1), json!("yes"), json!([])],
        "succeeded" => vec![json!(true), json!(false)],
        "commit_at" if deploy => {
            let mut v = not_times;
            v.push(json!(future));
            v
        }
        "commit_at" => vec![json!("2026-03-16T11:00:00Z")],
        "ref_id" if incident => vec![
            json!(""),
            json!("r".repeat(129)),
            json!("a\u{0}b"),
            json!("a\nb"),
            json!("\u{7f}"),
            json!(5),
            json!(null),
        ],
        "ref_id" => vec![json!("INC-1")],
        "occurred_at" => {
            let mut v = not_times;
            v.push(json!(future));
            v.push(json!("2026-03-16T12:05:01+00:00"));
            v.push(json!("2026-03-16T13:05:01+01:00"));
            v
        }
        _ => vec![],
    }
}

/// A valid event, a field, and a value that breaks that field's rule.
fn broken_event() -> impl Strategy<Value = (Value, String, Value)> {
    (
        valid_event(),
        prop::sample::select(dora_event::FIELDS.to_vec()),
        any::<prop::sample::Index>(),
    )
        .prop_filter_map("no rule to break", |(event, field, pick)| {
            let kind = event["kind"].as_str().unwrap_or("").to_owned();
            let bad = breakers(&kind, field);
            if bad.is_empty() {
                return None;
            }
            Some((event, field.to_owned(), pick.get(&bad).clone()))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_json_is_refused_or_sound(value in any_json(), stream in any::<bool>()) {
        let origin = if stream { Origin::Stream } else { Origin::Gateway };
        if let Ok(event) = validate(&value, origin, received()) {
            assert_sound(&event, received());
        }
    }

    #[test]
    fn a_valid_event_is_accepted_and_survives_its_json(value in valid_event()) {
        let event = validate(&value, Origin::Gateway, received())
            .map_err(|e| TestCaseError::fail(format!("{value}: {e}")))?;
        assert_sound(&event, received());
        // Sent again as its own text (the sender's, not the canonical form): the same.
        let text = serde_json::to_vec(&value).unwrap();
        let again = validate(&json::from_slice(&text).unwrap(), Origin::Gateway, received()).unwrap();
        if value.get("id").is_some() {
            prop_assert_eq!(again, event);
        }
    }

    #[test]
    fn one_broken_field_is_refused_and_named((mut value, field, bad) in broken_event()) {
        value[field.as_str()] = bad.clone();
        match validate(&value, Origin::Gateway, received()) {
            Ok(e) => prop_assert!(false, "accepted `{}` = {}: {:?}", field, bad, e),
            Err(e) => prop_assert_eq!(e.field.as_deref(), Some(field.as_str()), "{}", e.message),
        }
    }

    #[test]
    fn a_misspelt_field_is_named(value in valid_event(), typo in "[a-z_]{1,12}") {
        prop_assume!(!dora_event::FIELDS.contains(&typo.as_str()));
        let mut value = value;
        value[typo.as_str()] = json!(false);
        let err = validate(&value, Origin::Gateway, received()).unwrap_err();
        prop_assert_eq!(err.field, Some(typo));
    }

    #[test]
    fn a_key_given_twice_is_refused_and_named(value in valid_event(), pick in any::<prop::sample::Index>()) {
        let obj = value.as_object().unwrap();
        let keys: Vec<&String> = obj.keys().collect();
        let key = pick.get(&keys).as_str();
        // The object's text with `key` repeated at the end.
        let mut text = serde_json::to_string(&value).unwrap();
        text.pop();
        text.push_str(&format!(",{}:false}}", json!(key)));
        let err = json::from_slice(text.as_bytes()).unwrap_err();
        prop_assert_eq!(err.field.as_deref(), Some(key));
    }

    #[test]
    fn bytes_that_are_not_json_are_refused_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(value) = json::from_slice(&bytes) {
            if let Ok(event) = validate(&value, Origin::Gateway, received()) {
                assert_sound(&event, received());
            }
        }
    }
}

#[test]
fn invalid_utf8_inside_a_string_is_refused() {
    let mut body = br#"{"kind":"deploy","service":"api","git_sha":"abcd","id":""#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe, b'"', b'}']);
    let err = json::from_slice(&body).unwrap_err();
    assert!(err.message.contains("invalid unicode"), "{}", err.message);
    let lone = br#"{"kind":"deploy","service":"\ud800","git_sha":"abcd"}"#;
    assert!(json::from_slice(lone).is_err());
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    for depth in [129, 10_000, 1_000_000] {
        let arrays = "[".repeat(depth) + &"]".repeat(depth);
        assert!(
            json::from_slice(arrays.as_bytes()).is_err(),
            "depth {depth}"
        );
        let objects = r#"{"id":"#.repeat(depth) + "1" + &"}".repeat(depth);
        assert!(
            json::from_slice(objects.as_bytes()).is_err(),
            "depth {depth}"
        );
    }
    // Deep but within serde_json's limit of 128: read, then refused by validation.
    let value =
        json::from_slice(format!("{}1{}", r#"{"id":"#.repeat(100), "}".repeat(100)).as_bytes())
            .unwrap();
    let err = validate(&value, Origin::Gateway, received()).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("kind"));
}

#[test]
fn a_huge_string_is_refused_and_named_without_echoing_it_whole() {
    // The 400 quotes the value to help the sender, but a 1 MiB value is not repeated
    // back whole (into the response, the logs and the rejected-events table).
    let huge = "f".repeat(1 << 20);
    for field in [
        "id",
        "service",
        "environment",
        "git_sha",
        "ref_id",
        "occurred_at",
        "kind",
    ] {
        let mut value = json!({"kind": "incident_opened", "service": "api", "ref_id": "r"});
        value[field] = json!(huge);
        let err = validate(&value, Origin::Gateway, received()).unwrap_err();
        assert_eq!(err.field.as_deref(), Some(field));
        assert!(
            err.message.len() < 400,
            "{field}: {} bytes of message",
            err.message.len()
        );
    }
}

#[test]
fn leap_seconds_are_the_last_microsecond_of_their_minute() {
    let value = json!({"kind": "deploy", "service": "api", "git_sha": "abcd",
        "occurred_at": "2016-12-31T23:59:60.5Z", "commit_at": "2016-12-31T18:59:60-05:00"});
    let event = validate(&value, Origin::Gateway, received()).unwrap();
    assert_eq!(
        event.occurred_at.to_rfc3339(),
        "2016-12-31T23:59:59.999999+00:00"
    );
    assert_eq!(event.commit_at, Some(event.occurred_at));
    assert_sound(&event, received());
}

#[test]
fn odd_offsets_are_the_same_instant_in_utc() {
    for (text, utc) in [
        ("2026-03-16T23:59:00+23:59", "2026-03-16T00:00:00+00:00"),
        ("2026-03-15T00:01:00-23:59", "2026-03-16T00:00:00+00:00"),
        ("2026-03-16T00:00:00-00:00", "2026-03-16T00:00:00+00:00"),
        ("2026-03-16t05:45:00+05:45", "2026-03-16T00:00:00+00:00"),
        (
            "2026-03-16T00:00:00.000000999z",
            "2026-03-16T00:00:00+00:00",
        ),
    ] {
        let value =
            json!({"kind": "rollback", "service": "api", "git_sha": "abcd", "occurred_at": text});
        let event = validate(&value, Origin::Gateway, received()).unwrap();
        assert_eq!(event.occurred_at.to_rfc3339(), utc, "{text}");
    }
}

#[test]
fn the_future_edge_is_five_minutes_to_the_microsecond() {
    let at = |text: &str| {
        let value =
            json!({"kind": "rollback", "service": "api", "git_sha": "abcd", "occurred_at": text});
        validate(&value, Origin::Gateway, received()).map_err(|e| e.field)
    };
    assert!(at("2026-03-16T12:05:00Z").is_ok());
    assert!(
        at("2026-03-16T12:05:00.000000999Z").is_ok(),
        "below the microsecond the store keeps"
    );
    assert!(at("2026-03-16T13:05:00+01:00").is_ok());
    assert_eq!(
        at("2026-03-16T12:05:00.000001Z"),
        Err(Some("occurred_at".to_owned()))
    );
    // A leap second in the last minute before the edge is not past it.
    let late: DateTime<Utc> = "2016-12-31T23:55:00Z".parse().unwrap();
    let value = json!({"kind": "rollback", "service": "api", "git_sha": "abcd", "occurred_at": "2016-12-31T23:59:60.9Z"});
    assert!(validate(&value, Origin::Gateway, late).is_ok());
}
