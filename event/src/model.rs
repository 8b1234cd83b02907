//! The validated event, in the canonical form that is published and stored.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What happened. The database constrains `events.kind` to the same four names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A deploy attempt, successful or not.
    Deploy,
    /// A rollback of a deployed `git_sha`; it marks that deploy as failed.
    Rollback,
    /// An incident started; with a `git_sha` it marks the deploy that caused it.
    IncidentOpened,
    /// An incident ended; paired with its open by `ref_id`.
    IncidentClosed,
}

impl Kind {
    /// All kinds, in the order the contract lists them.
    pub const ALL: [Kind; 4] = [
        Kind::Deploy,
        Kind::Rollback,
        Kind::IncidentOpened,
        Kind::IncidentClosed,
    ];

    /// The wire and database name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deploy => "deploy",
            Kind::Rollback => "rollback",
            Kind::IncidentOpened => "incident_opened",
            Kind::IncidentClosed => "incident_closed",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One lifecycle event that passed validation, with every default filled in.
///
/// Its JSON form is what the gateway publishes, so the projector re-validating it gets
/// the same event back: timestamps are UTC and truncated to the microsecond that
/// PostgreSQL stores, the sha is lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The idempotency key.
    pub id: String,
    /// What happened.
    pub kind: Kind,
    /// The service it happened to.
    pub service: String,
    /// Where; `prod` unless the sender said otherwise.
    pub environment: String,
    /// The change deployed, rolled back, or blamed for an incident; lower-case hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_sha: Option<String>,
    /// The outcome of a deploy attempt; `None` for the other kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub succeeded: Option<bool>,
    /// When the deployed change was committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_at: Option<DateTime<Utc>>,
    /// Pairs an incident's close with its open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_id: Option<String>,
    /// When it happened (event time).
    pub occurred_at: DateTime<Utc>,
}

impl Event {
    /// The canonical JSON body, as published to the stream.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing a struct of strings, bools and times cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
