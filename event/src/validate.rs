//! The contract's event rules (CONTRACT.md section 1), in one place.
//!
//! Validation works on a `serde_json::Value` rather than a derived `Deserialize`, so
//! that every rejection can name the field it is about, which serde's messages do not
//! do reliably.

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use serde_json::{Map, Value};

use crate::model::{Event, Kind};

/// How far in the future `occurred_at` may be, against the time the event was received:
/// clocks drift, but an event from next week is a bug in the sender.
pub const MAX_FUTURE: TimeDelta = TimeDelta::minutes(5);

/// Every field an event may carry; anything else is rejected.
pub const FIELDS: [&str; 9] = [
    "id",
    "kind",
    "service",
    "environment",
    "git_sha",
    "succeeded",
    "commit_at",
    "ref_id",
    "occurred_at",
];

/// Where an event came from, which decides whether `id` may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The HTTP gateway: a missing `id` gets a fresh UUIDv7.
    Gateway,
    /// A message on the stream: `id` is required, it is the idempotency key.
    Stream,
}

/// Why an event was rejected, and which field it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    /// The offending field, when the problem is one field.
    pub field: Option<String>,
    /// A sentence a person can act on.
    pub message: String,
}

impl ValidationError {
    /// A problem with one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ValidationError {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    /// A problem with the event as a whole.
    pub fn whole(message: impl Into<String>) -> Self {
        ValidationError {
            field: None,
            message: message.into(),
        }
    }
}

type Result<T> = std::result::Result<T, ValidationError>;

/// Validates one event under the contract's rules.
///
/// `received_at` is when the event reached dora: the gateway's clock over HTTP, the
/// stream's timestamp for a message. It is the default `occurred_at` and the reference
/// for the future limit, so re-validating a stored message on replay gives the same
/// answer as it did when it arrived.
pub fn validate(value: &Value, origin: Origin, received_at: DateTime<Utc>) -> Result<Event> {
    let obj = value
        .as_object()
        .ok_or_else(|| ValidationError::whole("an event must be a JSON object"))?;
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ValidationError::field(
            unknown,
            format!(
                "unknown field `{unknown}`; the fields are {}",
                FIELDS.join(", ")
            ),
        ));
    }

    let kind_name = string(obj, "kind")?
        .ok_or_else(|| ValidationError::field("kind", "missing required field `kind`"))?;
    let kind = Kind::parse(kind_name).ok_or_else(|| {
        ValidationError::field(
            "kind",
            format!(
                "`kind` must be one of deploy, rollback, incident_opened, incident_closed; got `{}`",
                quoted(kind_name)
            ),
        )
    })?;
    reject_foreign_fields(obj, kind)?;

    let id = match (string(obj, "id")?, origin) {
        (Some(id), _) => checked_id(id)?,
        (None, Origin::Gateway) => uuid::Uuid::now_v7().to_string(),
        (None, Origin::Stream) => {
            return Err(ValidationError::field(
                "id",
                "missing required field `id`: events published to NATS carry their own id",
            ))
        }
    };

    let service = string(obj, "service")?
        .ok_or_else(|| ValidationError::field("service", "missing required field `service`"))?;
    let service = subject_token("service", service)?;
    let environment = match string(obj, "environment")? {
        Some(env) => subject_token("environment", env)?,
        None => "prod".to_owned(),
    };

    let git_sha = string(obj, "git_sha")?.map(checked_sha).transpose()?;
    if git_sha.is_none() && matches!(kind, Kind::Deploy | Kind::Rollback) {
        return Err(ValidationError::field(
            "git_sha",
            format!("missing required field `git_sha`: a {kind} names the change it ships"),
        ));
    }

    let succeeded = match kind {
        Kind::Deploy => Some(boolean(obj, "succeeded")?.unwrap_or(true)),
        _ => None,
    };

    let ref_id = string(obj, "ref_id")?.map(checked_ref_id).transpose()?;
    if ref_id.is_none() && matches!(kind, Kind::IncidentOpened | Kind::IncidentClosed) {
        return Err(ValidationError::field(
            "ref_id",
            "missing required field `ref_id`: it pairs an incident's close with its open",
        ));
    }

    let received_at = received_at.trunc_subsecs(6);
    let occurred_at = time(obj, "occurred_at")?.unwrap_or(received_at);
    if occurred_at > received_at + MAX_FUTURE {
        return Err(ValidationError::field(
            "occurred_at",
            format!(
                "`occurred_at` {} is more than 5 minutes after the time it was received ({})",
                rfc3339(occurred_at),
                rfc3339(received_at)
            ),
        ));
    }

    let commit_at = time(obj, "commit_at")?;
    if let Some(commit_at) = commit_at {
        if commit_at > occurred_at {
            return Err(ValidationError::field(
                "commit_at",
                format!(
                    "`commit_at` {} is after `occurred_at` {}: a change cannot ship before it is committed",
                    rfc3339(commit_at),
                    rfc3339(occurred_at)
                ),
            ));
        }
    }

    Ok(Event {
        id,
        kind,
        service,
        environment,
        git_sha,
        succeeded,
        commit_at,
        ref_id,
        occurred_at,
    })
}

/// Rejects a field that does not belong to the event's kind (`succeeded` on an incident,
/// say): it would be silently meaningless otherwise.
fn reject_foreign_fields(obj: &Map<String, Value>, kind: Kind) -> Result<()> {
    let allowed = |field: &str| match field {
        "succeeded" | "commit_at" => kind == Kind::Deploy,
        "git_sha" => kind != Kind::IncidentClosed,
        "ref_id" => matches!(kind, Kind::IncidentOpened | Kind::IncidentClosed),
        _ => true,
    };
    for (field, value) in obj {
        if !value.is_null() && !allowed(field) {
            return Err(ValidationError::field(
                field,
                format!("field `{field}` does not belong to a `{kind}` event"),
            ));
        }
    }
    Ok(())
}

/// A string field; `null` counts as absent.
fn string<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ValidationError::field(
            field,
            format!("`{field}` must be a string"),
        )),
    }
}

fn boolean(obj: &Map<String, Value>, field: &str) -> Result<Option<bool>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ValidationError::field(
            field,
            format!("`{field}` must be true or false"),
        )),
    }
}

/// An RFC 3339 time with any offset, as UTC truncated to the microsecond PostgreSQL keeps.
///
/// A leap second (`23:59:60`, which RFC 3339 allows) becomes the last microsecond of
/// the minute, `23:59:59.999999`: PostgreSQL has no leap seconds and would store it as
/// the next minute's `00:00:00`, moving it across a minute, a day or a window boundary
/// and making the stored event differ from the published one.
fn time(obj: &Map<String, Value>, field: &str) -> Result<Option<DateTime<Utc>>> {
    let Some(text) = string(obj, field)? else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(text)
        .map(|t| Some(without_leap_second(t.with_timezone(&Utc).trunc_subsecs(6))))
        .map_err(|e| {
            ValidationError::field(
                field,
                format!(
                    "`{field}` must be an RFC 3339 time such as 2026-03-09T14:00:00Z; `{}`: {e}",
                    quoted(text)
                ),
            )
        })
}

/// chrono keeps a leap second as a nanosecond count of a second or more.
fn without_leap_second(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Timelike;
    if t.nanosecond() >= 1_000_000_000 {
        t.with_nanosecond(999_999_000).unwrap_or(t)
    } else {
        t
    }
}

fn checked_id(id: &str) -> Result<String> {
    let ok = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(id.to_owned())
    } else {
        Err(ValidationError::field(
            "id",
            "`id` must be 1-128 characters of A-Z a-z 0-9 . _ : -",
        ))
    }
}

/// Checks a `service` or `environment` value (named `field` in the error): they become
/// NATS subject tokens, hence the narrow charset.
pub fn subject_token(field: &str, value: &str) -> Result<String> {
    let ok = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(ValidationError::field(
            field,
            format!(
                "`{field}` must be 1-64 characters of A-Z a-z 0-9 _ -; got `{}`",
                quoted(value)
            ),
        ))
    }
}

fn checked_sha(sha: &str) -> Result<String> {
    if (4..=64).contains(&sha.len()) && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(sha.to_ascii_lowercase())
    } else {
        Err(ValidationError::field(
            "git_sha",
            format!(
                "`git_sha` must be 4-64 hexadecimal characters; got `{}`",
                quoted(sha)
            ),
        ))
    }
}

/// Any printable text: incident tools name incidents their own way. Control characters
/// are refused (PostgreSQL text cannot hold NUL, and none belongs in an identifier).
fn checked_ref_id(ref_id: &str) -> Result<String> {
    if (1..=128).contains(&ref_id.chars().count()) && !ref_id.chars().any(char::is_control) {
        Ok(ref_id.to_owned())
    } else {
        Err(ValidationError::field(
            "ref_id",
            "`ref_id` must be 1-128 characters, none of them control characters",
        ))
    }
}

/// A refused value as the error quotes it: whole when short, else its start and its
/// length, so a megabyte-long value is not sent back, logged and kept whole.
fn quoted(value: &str) -> String {
    const KEEP: usize = 80;
    match value.char_indices().nth(KEEP) {
        None => value.to_owned(),
        Some((end, _)) => format!("{}... ({} bytes)", &value[..end], value.len()),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-03-16T12:00:00Z".parse().unwrap()
    }

    fn check(v: Value) -> Result<Event> {
        validate(&v, Origin::Gateway, now())
    }

    fn field_of(v: Value) -> String {
        check(v).unwrap_err().field.unwrap()
    }

    #[test]
    fn a_minimal_deploy_gets_the_defaults() {
        let e = check(json!({"kind": "deploy", "service": "api", "git_sha": "ABCDEF12"})).unwrap();
        assert_eq!(e.environment, "prod");
        assert_eq!(e.succeeded, Some(true));
        assert_eq!(e.git_sha.as_deref(), Some("abcdef12"));
        assert_eq!(e.occurred_at, now());
        assert_eq!(e.id.len(), 36, "a UUID is assigned: {}", e.id);
    }

    #[test]
    fn offsets_are_stored_as_utc() {
        let e = check(
            json!({"kind": "deploy", "service": "api", "git_sha": "abcd",
            "occurred_at": "2026-03-16T07:30:00.1234567-04:00",
            "commit_at": "2026-03-16T11:00:00+00:00"}),
        )
        .unwrap();
        assert_eq!(
            e.occurred_at.to_rfc3339(),
            "2026-03-16T11:30:00.123456+00:00"
        );
        let again = validate(
            &serde_json::from_slice(&e.to_json()).unwrap(),
            Origin::Stream,
            now(),
        )
        .unwrap();
        assert_eq!(again, e, "the canonical form re-validates to itself");
    }

    #[test]
    fn every_rule_names_its_field() {
        let d = |extra: Value| {
            let mut base = json!({"kind": "deploy", "service": "api", "git_sha": "abcd"});
            base.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            base
        };
        assert_eq!(field_of(d(json!({"succeded": false}))), "succeded");
        assert_eq!(field_of(d(json!({"kind": "deployed"}))), "kind");
        assert_eq!(field_of(json!({"service": "api"})), "kind");
        assert_eq!(field_of(d(json!({"id": "has space"}))), "id");
        assert_eq!(field_of(d(json!({"id": "x".repeat(129)}))), "id");
        assert_eq!(field_of(d(json!({"service": "a.b"}))), "service");
        assert_eq!(field_of(d(json!({"service": "s".repeat(65)}))), "service");
        assert_eq!(field_of(d(json!({"environment": "prod*"}))), "environment");
        assert_eq!(field_of(d(json!({"git_sha": "xyz1"}))), "git_sha");
        assert_eq!(field_of(d(json!({"git_sha": "abc"}))), "git_sha");
        assert_eq!(field_of(d(json!({"git_sha": null}))), "git_sha");
        assert_eq!(field_of(d(json!({"succeeded": "yes"}))), "succeeded");
        assert_eq!(
            field_of(d(json!({"occurred_at": "yesterday"}))),
            "occurred_at"
        );
        assert_eq!(
            field_of(d(json!({"occurred_at": "2026-03-16T12:05:01Z"}))),
            "occurred_at"
        );
        assert_eq!(
            field_of(d(json!({"commit_at": "2026-03-16T12:00:01Z"}))),
            "commit_at"
        );
        assert_eq!(field_of(d(json!({"ref_id": "INC-1"}))), "ref_id");
        assert_eq!(
            field_of(json!({"kind": "incident_opened", "service": "api", "ref_id": "a\u{0}b"})),
            "ref_id"
        );
        assert_eq!(
            field_of(
                json!({"kind": "rollback", "service": "api", "git_sha": "abcd", "succeeded": true})
            ),
            "succeeded"
        );
        assert_eq!(
            field_of(json!({"kind": "incident_opened", "service": "api"})),
            "ref_id"
        );
        assert_eq!(
            field_of(
                json!({"kind": "incident_closed", "service": "api", "ref_id": "1", "git_sha": "abcd"})
            ),
            "git_sha"
        );
        assert_eq!(
            field_of(
                json!({"kind": "incident_closed", "service": "api", "ref_id": "1", "commit_at": "2026-03-16T12:00:00Z"})
            ),
            "commit_at"
        );
        assert!(check(json!([])).unwrap_err().field.is_none());
    }

    /// A rejection quotes what it refused, so the sender sees their own value, but
    /// never more than its first 80 characters and its length.
    #[test]
    fn messages_quote_the_refused_value_and_the_times() {
        let message = |v: Value| check(v).unwrap_err().message;
        let m = message(json!({"kind": "deploy", "service": "api", "git_sha": "xyz!"}));
        assert!(m.ends_with("got `xyz!`"), "{m}");
        let long = "q".repeat(200);
        let m = message(json!({"kind": "deploy", "service": long, "git_sha": "abcd"}));
        assert!(
            m.contains(&format!("got `{}... (200 bytes)`", "q".repeat(80))),
            "{m}"
        );
        let m = message(
            json!({"kind": "deploy", "service": "api", "git_sha": "abcd",
                                "occurred_at": "2026-03-16T12:00:00Z",
                                "commit_at": "2026-03-16T13:00:00Z"}),
        );
        assert!(
            m.starts_with(
                "`commit_at` 2026-03-16T13:00:00Z is after `occurred_at` 2026-03-16T12:00:00Z"
            ),
            "{m}"
        );
        let m = message(
            json!({"kind": "deploy", "service": "api", "git_sha": "abcd",
                                "occurred_at": "2026-03-16T12:06:00Z"}),
        );
        assert!(
            m.contains("2026-03-16T12:06:00Z is more than 5 minutes after the time it was received (2026-03-16T12:00:00Z)"),
            "{m}"
        );
    }

    #[test]
    fn limits_are_inclusive() {
        let ok = check(
            json!({"kind": "deploy", "service": "s".repeat(64), "git_sha": "a".repeat(64),
            "id": "i".repeat(128), "occurred_at": "2026-03-16T12:05:00Z",
            "commit_at": "2026-03-16T12:05:00Z"}),
        );
        assert!(ok.is_ok(), "{ok:?}");
        let old = check(
            json!({"kind": "incident_opened", "service": "api", "ref_id": "r",
            "occurred_at": "1999-01-01T00:00:00Z"}),
        );
        assert!(old.is_ok(), "backfill of any age: {old:?}");
    }

    #[test]
    fn a_stream_message_must_carry_its_id() {
        let v = json!({"kind": "rollback", "service": "api", "git_sha": "abcd"});
        let err = validate(&v, Origin::Stream, now()).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("id"));
    }
}
