//! The event id derived from the CI run, so that a retried step is one event.
//!
//! # The rule
//!
//! One deploy (or rollback, or incident event) per *attempt of a job*: the id is a
//! name-based UUID (v5) of the job attempt and of what the event says (kind, service,
//! environment, sha, ref).
//!
//! - Retrying the HTTP call, or the step, or running the same command twice in one job
//!   attempt, gives the same id: the gateway and the projector keep one event.
//! - Re-running the job is a new attempt and a new event: GitHub raises
//!   `GITHUB_RUN_ATTEMPT`, GitLab gives the retried job a new `CI_JOB_ID`. A failed
//!   deploy followed by a successful re-run is two attempts, one failed, as it should be.
//! - What the event does *not* include: its outcome and time. A job that emits
//!   `success` and then `failure` for the same deploy has contradicted itself; the first
//!   one to arrive stands.
//!
//! Matrix legs of one GitHub job share `GITHUB_JOB`; legs that deploy the same service
//! to the same environment need `--id` (or distinct environments) to stay apart.

use uuid::Uuid;

/// The namespace of dora-emit's name-based ids; fixed forever, or ids change meaning.
const NAMESPACE: Uuid = Uuid::from_u128(0x6d0a_5c1e_2b7f_4e8a_9c3d_1f0e_7a6b_5d42);

/// What the event says, as far as it decides the id.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// The event kind's wire name.
    pub kind: &'a str,
    /// The service.
    pub service: &'a str,
    /// The environment.
    pub environment: &'a str,
    /// The sha, lower-case, if the event names one.
    pub sha: Option<&'a str>,
    /// The incident's ref, if any.
    pub ref_id: Option<&'a str>,
}

/// The id for this event in the CI run described by `env`, or `None` outside a
/// recognised CI (then the caller makes a random one).
pub fn derive_id(env: impl Fn(&str) -> Option<String>, what: Identity<'_>) -> Option<String> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    let (label, run, attempt, names): (&str, _, _, &[&str]) =
        if set("GITHUB_ACTIONS").as_deref() == Some("true") {
            (
                "gh",
                set("GITHUB_RUN_ID")?,
                set("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".to_owned()),
                &[
                    "GITHUB_SERVER_URL",
                    "GITHUB_REPOSITORY",
                    "GITHUB_RUN_ID",
                    "GITHUB_RUN_ATTEMPT",
                    "GITHUB_JOB",
                ],
            )
        } else if set("GITLAB_CI").as_deref() == Some("true") {
            (
                "gl",
                set("CI_PIPELINE_ID")?,
                set("CI_JOB_ID")?,
                &[
                    "CI_SERVER_URL",
                    "CI_PROJECT_ID",
                    "CI_PIPELINE_ID",
                    "CI_JOB_ID",
                ],
            )
        } else {
            return None;
        };

    // One `name=value` per line: no value can hold a newline (refs refuse control
    // characters, the rest are narrower still), so the key is unambiguous.
    let mut key = String::from("dora-emit/1\n");
    for name in names {
        key.push_str(&format!("{name}={}\n", set(name).unwrap_or_default()));
    }
    key.push_str(&format!(
        "kind={}\nservice={}\nenvironment={}\nsha={}\nref={}\n",
        what.kind,
        what.service,
        what.environment,
        what.sha.unwrap_or(""),
        what.ref_id.unwrap_or("")
    ));
    let uuid = Uuid::new_v5(&NAMESPACE, key.as_bytes());

    // The run and attempt numbers up front make the id findable from the CI's page.
    let digits = |s: &str| !s.is_empty() && s.len() <= 24 && s.bytes().all(|b| b.is_ascii_digit());
    Some(if digits(&run) && digits(&attempt) {
        format!("{label}-{run}-{attempt}-{uuid}")
    } else {
        format!("{label}-{uuid}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const DEPLOY: Identity<'static> = Identity {
        kind: "deploy",
        service: "web",
        environment: "prod",
        sha: Some("abc123"),
        ref_id: None,
    };

    fn github(attempt: &str, job: &str) -> Vec<(&'static str, String)> {
        vec![
            ("GITHUB_ACTIONS", "true".into()),
            ("GITHUB_RUN_ID", "9876543210".into()),
            ("GITHUB_RUN_ATTEMPT", attempt.into()),
            ("GITHUB_JOB", job.into()),
            ("GITHUB_REPOSITORY", "acme/web".into()),
        ]
    }

    fn id(pairs: Vec<(&'static str, String)>, what: Identity<'_>) -> Option<String> {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        derive_id(env(&pairs), what)
    }

    #[test]
    fn github_attempts() {
        let first = id(github("1", "deploy"), DEPLOY).unwrap();
        assert!(first.starts_with("gh-9876543210-1-"), "{first}");
        assert_eq!(id(github("1", "deploy"), DEPLOY).unwrap(), first);
        assert_ne!(id(github("2", "deploy"), DEPLOY).unwrap(), first);
        assert_ne!(id(github("1", "deploy-eu"), DEPLOY).unwrap(), first);
        let rollback = Identity {
            kind: "rollback",
            ..DEPLOY
        };
        assert_ne!(id(github("1", "deploy"), rollback).unwrap(), first);
        let staging = Identity {
            environment: "staging",
            ..DEPLOY
        };
        assert_ne!(id(github("1", "deploy"), staging).unwrap(), first);
        assert!(dora_event::validate(
            &serde_json::json!({"id": first, "kind": "deploy", "service": "web", "git_sha": "abc123"}),
            dora_event::Origin::Stream,
            chrono::Utc::now()
        )
        .is_ok());
    }

    #[test]
    fn gitlab_jobs() {
        let gl = |job: &str| {
            vec![
                ("GITLAB_CI", "true".to_owned()),
                ("CI_PIPELINE_ID", "555".to_owned()),
                ("CI_JOB_ID", job.to_owned()),
            ]
        };
        let first = id(gl("42"), DEPLOY).unwrap();
        assert!(first.starts_with("gl-555-42-"), "{first}");
        assert_eq!(id(gl("42"), DEPLOY).unwrap(), first);
        assert_ne!(id(gl("43"), DEPLOY).unwrap(), first);
    }

    #[test]
    fn incidents_by_ref() {
        let open = |r| Identity {
            kind: "incident_opened",
            sha: None,
            ref_id: Some(r),
            ..DEPLOY
        };
        assert_ne!(
            id(github("1", "page"), open("INC-1")),
            id(github("1", "page"), open("INC-2"))
        );
    }

    #[test]
    fn outside_ci() {
        assert_eq!(derive_id(env(&[]), DEPLOY), None);
        // GitHub without a run id is not a run we can name.
        assert_eq!(derive_id(env(&[("GITHUB_ACTIONS", "true")]), DEPLOY), None);
    }
}
