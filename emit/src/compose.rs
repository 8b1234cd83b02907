//! Turns the command line into one validated event, with the defaults of CONTRACT.md
//! section 7 filled in, before anything is sent.

use chrono::{DateTime, SecondsFormat, Utc};
use dora_event::{Event, Kind, Origin};
use serde_json::{json, Map, Value};

use crate::ci;
use crate::cli::Request;
use crate::error::{Error, Result};
use crate::git;

/// The event to send, and what the user should know about how it was made.
#[derive(Debug, Clone)]
pub struct Composed {
    /// The event, validated by the same code as the gateway's.
    pub event: Event,
    /// Defaults that could not be applied, for stderr.
    pub warnings: Vec<String>,
}

/// Builds and validates the event. `env` reads the CI's variables (the process
/// environment in production); `now` is the default `--at`.
pub fn compose(
    req: &Request,
    env: impl Fn(&str) -> Option<String>,
    now: DateTime<Utc>,
) -> Result<Composed> {
    let mut warnings = Vec::new();
    let sha = match (&req.sha, req.sha_from_checkout) {
        (Some(sha), _) => Some(sha.to_ascii_lowercase()),
        (None, true) => Some(git::head_sha()?),
        (None, false) => None,
    };

    // The time is set here, not left to the gateway: the event happened when the job
    // said so, not when a retry finally got through.
    let occurred_at = req
        .at
        .clone()
        .unwrap_or_else(|| now.to_rfc3339_opts(SecondsFormat::Micros, true));

    let mut commit_at = req.commit_at.clone();
    if req.kind == Kind::Deploy && commit_at.is_none() {
        if let Some(committed) = sha.as_deref().and_then(git::commit_time) {
            match (parse(&committed), parse(&occurred_at)) {
                (Some(c), Some(o)) if c > o => warnings.push(format!(
                    "the commit time of {} ({committed}) is after the deploy's time ({occurred_at}): \
                     a committer's clock ahead? Sending the deploy without commit_at, so it has no lead time",
                    sha.as_deref().unwrap_or_default()
                )),
                _ => commit_at = Some(committed),
            }
        }
    }

    let id = match &req.id {
        Some(id) => id.clone(),
        None => ci::derive_id(
            env,
            ci::Identity {
                kind: req.kind.as_str(),
                service: &req.service,
                environment: &req.environment,
                sha: sha.as_deref(),
                ref_id: req.ref_id.as_deref(),
            },
        )
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
    };

    let mut body = Map::new();
    body.insert("id".into(), json!(id));
    body.insert("kind".into(), json!(req.kind.as_str()));
    body.insert("service".into(), json!(req.service));
    body.insert("environment".into(), json!(req.environment));
    let optional = [
        ("git_sha", sha.map(Value::from)),
        ("succeeded", req.succeeded.map(Value::from)),
        ("commit_at", commit_at.map(Value::from)),
        ("ref_id", req.ref_id.clone().map(Value::from)),
    ];
    for (field, value) in optional {
        if let Some(value) = value {
            body.insert(field.into(), value);
        }
    }
    body.insert("occurred_at".into(), json!(occurred_at));

    let event = dora_event::validate(&Value::Object(body), Origin::Stream, now).map_err(|e| {
        let flag = e.field.as_deref().map(flag_for).unwrap_or("the event");
        Error::Usage(format!("{flag}: {}", e.message))
    })?;
    Ok(Composed { event, warnings })
}

/// The flag that sets an event field, so a rejection names what the user typed.
fn flag_for(field: &str) -> &'static str {
    match field {
        "id" => "--id",
        "service" => "--service",
        "environment" => "--environment",
        "git_sha" => "--sha",
        "succeeded" => "--outcome",
        "commit_at" => "--commit-at",
        "ref_id" => "--ref",
        "occurred_at" => "--at",
        _ => "the event",
    }
}

fn parse(time: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(time)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: Kind) -> Request {
        Request {
            kind,
            service: "web".into(),
            environment: "prod".into(),
            sha: Some("ABC123".into()),
            sha_from_checkout: true,
            succeeded: Some(false),
            commit_at: Some("2026-03-01T10:00:00+02:00".into()),
            ref_id: None,
            at: Some("2026-03-01T12:00:00Z".into()),
            id: None,
            dry_run: false,
            nats: false,
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-03-02T00:00:00Z".parse().unwrap_or_default()
    }

    #[test]
    fn a_failed_deploy() {
        let c = compose(&request(Kind::Deploy), |_| None, now()).unwrap();
        assert_eq!(c.event.git_sha.as_deref(), Some("abc123"));
        assert_eq!(c.event.succeeded, Some(false));
        assert_eq!(
            c.event.commit_at.map(|t| t.to_rfc3339()),
            Some("2026-03-01T08:00:00+00:00".into())
        );
        // Outside CI: a UUIDv7.
        assert_eq!(
            uuid::Uuid::parse_str(&c.event.id)
                .map(|u| u.get_version_num())
                .ok(),
            Some(7)
        );
    }

    #[test]
    fn bad_values_name_the_flag() {
        let mut r = request(Kind::Deploy);
        r.sha = Some("xyz".into());
        let e = compose(&r, |_| None, now()).unwrap_err();
        assert!(e.to_string().starts_with("--sha:"), "{e}");
        assert_eq!(e.exit_code(), 2);

        let mut r = request(Kind::Deploy);
        r.commit_at = Some("2026-03-01T13:00:00Z".into());
        assert!(compose(&r, |_| None, now())
            .unwrap_err()
            .to_string()
            .starts_with("--commit-at:"));

        let mut r = request(Kind::Deploy);
        r.at = Some("yesterday".into());
        assert!(compose(&r, |_| None, now())
            .unwrap_err()
            .to_string()
            .starts_with("--at:"));
    }

    #[test]
    fn an_incident_takes_no_sha_from_the_checkout() {
        let mut r = request(Kind::IncidentOpened);
        r.sha = None;
        r.sha_from_checkout = false;
        r.succeeded = None;
        r.commit_at = None;
        r.ref_id = Some("INC-1".into());
        let c = compose(&r, |_| None, now()).unwrap();
        assert_eq!(c.event.git_sha, None);
        assert_eq!(c.event.ref_id.as_deref(), Some("INC-1"));
    }
}
