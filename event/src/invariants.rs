//! What every validated [`Event`] holds, stated a second time, apart from
//! [`validate`](crate::validate): the property tests and the fuzzer check each accepted
//! event against it, so a rule that `validate` forgets or gets wrong shows up as a
//! disagreement between the two rather than as a bad row in the store.

use chrono::{DateTime, Timelike, Utc};

use crate::{Event, Kind, MAX_FUTURE};

/// `Ok` when `event` obeys every rule of CONTRACT.md section 1 for an event received
/// at `received_at`; otherwise the broken rule.
pub fn check(event: &Event, received_at: DateTime<Utc>) -> Result<(), String> {
    let charset = |s: &str, extra: &[u8]| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    let rule = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_owned()) };
    rule(
        (1..=128).contains(&event.id.len()) && charset(&event.id, b"._:-"),
        "id: 1-128 of A-Z a-z 0-9 . _ : -",
    )?;
    for (name, value) in [
        ("service", &event.service),
        ("environment", &event.environment),
    ] {
        rule(
            (1..=64).contains(&value.len()) && charset(value, b"_-"),
            &format!("{name}: 1-64 of A-Z a-z 0-9 _ -"),
        )?;
    }
    let deploy = event.kind == Kind::Deploy;
    let incident = matches!(event.kind, Kind::IncidentOpened | Kind::IncidentClosed);
    match &event.git_sha {
        Some(sha) => rule(
            event.kind != Kind::IncidentClosed
                && (4..=64).contains(&sha.len())
                && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "git_sha: 4-64 lower-case hex, not on incident_closed",
        )?,
        None => rule(
            !matches!(event.kind, Kind::Deploy | Kind::Rollback),
            "git_sha: required for deploy and rollback",
        )?,
    }
    rule(
        event.succeeded.is_some() == deploy,
        "succeeded: deploy only, always set",
    )?;
    rule(
        event.commit_at.is_none() || deploy,
        "commit_at: deploy only",
    )?;
    match &event.ref_id {
        Some(r) => rule(
            incident && (1..=128).contains(&r.chars().count()) && !r.chars().any(char::is_control),
            "ref_id: incidents only, 1-128 chars, no control characters",
        )?,
        None => rule(!incident, "ref_id: required for incidents")?,
    }
    for (name, t) in [
        ("occurred_at", Some(event.occurred_at)),
        ("commit_at", event.commit_at),
    ] {
        if let Some(t) = t {
            rule(
                t.nanosecond() % 1000 == 0 && t.nanosecond() < 1_000_000_000,
                &format!("{name}: whole microseconds, no leap second"),
            )?;
        }
    }
    rule(
        event.commit_at.is_none_or(|c| c <= event.occurred_at),
        "commit_at: not after occurred_at",
    )?;
    rule(
        event.occurred_at <= received_at + MAX_FUTURE,
        "occurred_at: at most 5 minutes after it was received",
    )
}
