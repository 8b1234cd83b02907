//! The gateway's OpenAPI document, served at `GET /openapi.json`.
//!
//! The operations come from the handlers' `#[utoipa::path]` annotations, registered
//! with their routes by `utoipa-axum` (see [`crate::http::app`]), and the response
//! schemas from the types the handlers return. The request body is described by
//! [`EventIn`]: the gateway validates a body field by field (so that a rejection names
//! the field), not by deserializing this type, so the tests below hold it to
//! `dora_event::FIELDS` and the kinds.

#![allow(dead_code)] // The types below exist to be described, never built.

use chrono::{DateTime, Utc};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The document's top: title, version, the bearer scheme. The paths are added by
/// [`crate::http::app`] as it registers the routes.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "dora-ingest",
        description = "Authenticated HTTP gateway for DORA lifecycle events (CONTRACT.md section 2). \
                       `202` only after JetStream acknowledged every event of the request."
    ),
    modifiers(&Bearer),
    tags((name = "ingest", description = "Sending events"), (name = "health", description = "Probes and metrics"))
)]
pub struct IngestDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A secret of DORA_INGEST_TOKENS; its name becomes the events' `source`",
                    ))
                    .build(),
            ),
        );
    }
}

/// One lifecycle event as sent (CONTRACT.md section 1). Rules the schema cannot say:
/// `git_sha` is required for `deploy` and `rollback`, `ref_id` for the incident kinds;
/// `succeeded` and `commit_at` belong to `deploy` only; `commit_at` is not after
/// `occurred_at`, which is at most 5 minutes in the future.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    /// The idempotency key; assigned by the gateway when missing.
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9._:-]{1,128}$"
    )]
    id: Option<String>,
    /// What happened.
    kind: EventKind,
    /// The service it happened to.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    service: String,
    /// Where; `prod` when missing.
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9_-]{1,64}$"
    )]
    environment: Option<String>,
    /// The change deployed, rolled back or blamed; hexadecimal.
    #[schema(
        nullable = false,
        min_length = 4,
        max_length = 64,
        pattern = "^[0-9A-Fa-f]{4,64}$"
    )]
    git_sha: Option<String>,
    /// The outcome of a deploy attempt; `true` when missing.
    #[schema(nullable = false)]
    succeeded: Option<bool>,
    /// When the deployed change was committed.
    #[schema(nullable = false)]
    commit_at: Option<DateTime<Utc>>,
    /// Pairs an incident's close with its open; no control characters.
    #[schema(nullable = false, min_length = 1, max_length = 128)]
    ref_id: Option<String>,
    /// When it happened; the time received when missing.
    #[schema(nullable = false)]
    occurred_at: Option<DateTime<Utc>>,
}

/// The kinds of event.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A deploy attempt.
    Deploy,
    /// A rollback of a deployed `git_sha`.
    Rollback,
    /// An incident started.
    IncidentOpened,
    /// An incident ended.
    IncidentClosed,
}

/// A batch (a backfill): validated as a whole, one bad element rejects all.
#[derive(Debug, ToSchema)]
#[schema(min_items = 1, max_items = 1000)]
pub struct Batch(Vec<EventIn>);

/// The body of `POST /events`: one event, or an array of 1-1000.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum EventsBody {
    /// One event.
    One(EventIn),
    /// Several.
    Many(Batch),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn schema_of<T: utoipa::PartialSchema>() -> Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    #[test]
    fn the_event_schema_names_exactly_the_contract_fields_and_kinds() {
        let event = schema_of::<EventIn>();
        let mut fields: Vec<&str> = event["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        let mut expected = dora_event::FIELDS.to_vec();
        expected.sort_unstable();
        assert_eq!(fields, expected);
        assert_eq!(event["additionalProperties"], Value::Bool(false));

        let kinds: Vec<String> =
            serde_json::from_value(schema_of::<EventKind>()["enum"].clone()).unwrap();
        let expected: Vec<&str> = dora_event::Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(kinds, expected);
    }

    #[test]
    fn the_batch_limit_is_the_gateways() {
        let batch = schema_of::<Batch>();
        assert_eq!(batch["maxItems"], crate::http::MAX_BATCH);
    }
}
