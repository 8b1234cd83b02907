//! The gateway's OpenAPI document, served at `GET /openapi.json`.
//!
//! The operations come from the handlers' `#[utoipa::path]` annotations, registered
//! with their routes by `utoipa-axum` (see [`crate::http::app`]), and the response
//! schemas from the types the handlers return. The request body is described by
//! [`EventIn`], one schema per kind: the gateway validates a body field by field (so
//! that a rejection names the field), not by deserializing these types, so the tests
//! below hold them to `dora_event::FIELDS`, the kinds and what each kind requires.

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

/// The fields every kind of event has; `$extra` are the kind's own.
macro_rules! event_schema {
    ($(#[$doc:meta])* $name:ident, $kind:ident, { $($extra:tt)* }) => {
        $(#[$doc])*
        #[derive(Debug, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// The idempotency key; assigned by the gateway when missing.
            #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:-]{1,128}$")]
            id: Option<String>,
            /// What happened.
            kind: $kind,
            /// The service it happened to.
            #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$")]
            service: String,
            /// Where; `prod` when missing.
            #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$")]
            environment: Option<String>,
            $($extra)*
            /// When it happened, at most 5 minutes ahead of the gateway's clock; the
            /// time received when missing.
            occurred_at: Option<DateTime<Utc>>,
        }

        /// The kind's name.
        #[derive(Debug, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $kind {
            /// The only value.
            $name,
        }
    };
}

event_schema!(
    /// A deploy attempt, successful or not.
    Deploy, DeployKind, {
        /// The change deployed; hexadecimal.
        #[schema(min_length = 4, max_length = 64, pattern = "^[0-9A-Fa-f]{4,64}$")]
        git_sha: String,
        /// The outcome; `true` when missing.
        succeeded: Option<bool>,
        /// When the deployed change was committed; not after `occurred_at`.
        commit_at: Option<DateTime<Utc>>,
    }
);

event_schema!(
    /// A rollback of a deployed `git_sha`: it marks that deploy failed.
    Rollback, RollbackKind, {
        /// The change rolled back; hexadecimal.
        #[schema(min_length = 4, max_length = 64, pattern = "^[0-9A-Fa-f]{4,64}$")]
        git_sha: String,
    }
);

event_schema!(
    /// An incident started; with a `git_sha` it marks the deploy that caused it.
    IncidentOpened, IncidentOpenedKind, {
        /// The change blamed; hexadecimal.
        #[schema(min_length = 4, max_length = 64, pattern = "^[0-9A-Fa-f]{4,64}$")]
        git_sha: Option<String>,
        /// Pairs the incident's close with its open; no control characters.
        #[schema(min_length = 1, max_length = 128, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]{1,128}$")]
        ref_id: String,
    }
);

event_schema!(
    /// An incident ended.
    IncidentClosed, IncidentClosedKind, {
        /// Pairs the close with its open; no control characters.
        #[schema(min_length = 1, max_length = 128, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]{1,128}$")]
        ref_id: String,
    }
);

/// One lifecycle event as sent (CONTRACT.md section 1), one schema per kind. An
/// optional field may be `null`, which the gateway reads as absent (so, too, a field of
/// another kind that is `null`). What the schemas cannot say: `commit_at` is not after
/// `occurred_at`, which is at most 5 minutes in the future.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum EventIn {
    /// `deploy`.
    Deploy(Deploy),
    /// `rollback`.
    Rollback(Rollback),
    /// `incident_opened`.
    IncidentOpened(IncidentOpened),
    /// `incident_closed`.
    IncidentClosed(IncidentClosed),
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

/// What dora reads of Alertmanager's webhook payload; the rest of it (`version`,
/// `groupKey`, `commonLabels`, ...) is accepted and not read.
#[derive(Debug, ToSchema)]
pub struct AlertmanagerPayload {
    /// The alerts of the notification: each firing one opens an incident, each
    /// resolved one closes it.
    alerts: Vec<AlertmanagerAlert>,
}

/// One alert of an Alertmanager notification.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerAlert {
    /// `firing` or `resolved`.
    status: AlertStatus,
    /// `service` (else `job`) names the service, `environment` (else `env`) the
    /// environment.
    labels: std::collections::BTreeMap<String, String>,
    /// When it started firing: the incident's open.
    starts_at: DateTime<Utc>,
    /// When it was resolved: the incident's close.
    ends_at: DateTime<Utc>,
    /// With `startsAt`, which incident it is.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,64}$")]
    fingerprint: String,
}

/// An alert's state.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// It opens an incident.
    Firing,
    /// It closes the incident.
    Resolved,
}

/// What dora reads of Opsgenie's alert webhook payload; the rest is accepted and not read.
#[derive(Debug, ToSchema)]
pub struct OpsgeniePayload {
    /// `Create` opens an incident, `Close` closes it; other actions are ignored.
    action: String,
    /// The alert.
    alert: OpsgenieAlert,
}

/// The alert of an Opsgenie payload.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpsgenieAlert {
    /// Which incident it is.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,64}$")]
    alert_id: String,
    /// A `service:<name>` tag names the service.
    tags: Option<Vec<String>>,
    /// The service, without such a tag.
    entity: Option<String>,
    /// When it was created, in milliseconds since the Unix epoch (`Create`).
    created_at: i64,
    /// When it was last updated, in nanoseconds since the Unix epoch (`Close`).
    updated_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn schema_of<T: utoipa::PartialSchema>() -> Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    #[test]
    fn the_event_schemas_name_exactly_the_contract_fields_and_kinds() {
        let kinds = [
            schema_of::<Deploy>(),
            schema_of::<Rollback>(),
            schema_of::<IncidentOpened>(),
            schema_of::<IncidentClosed>(),
        ];
        let mut fields: Vec<String> = Vec::new();
        let mut names: Vec<Value> = Vec::new();
        for schema in &kinds {
            assert_eq!(
                schema["additionalProperties"],
                Value::Bool(false),
                "{schema}"
            );
            fields.extend(schema["properties"].as_object().unwrap().keys().cloned());
            names.push(schema["properties"]["kind"].clone());
        }
        fields.sort_unstable();
        fields.dedup();
        let mut expected = dora_event::FIELDS.to_vec();
        expected.sort_unstable();
        assert_eq!(fields, expected);

        let kind_schemas = [
            schema_of::<DeployKind>(),
            schema_of::<RollbackKind>(),
            schema_of::<IncidentOpenedKind>(),
            schema_of::<IncidentClosedKind>(),
        ];
        let kinds: Vec<&str> = kind_schemas
            .iter()
            .map(|k| k["enum"][0].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = dora_event::Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(kinds, expected);
        assert_eq!(names.len(), 4);
    }

    #[test]
    fn each_kind_requires_what_the_validation_requires() {
        let required = |schema: Value| -> Vec<String> {
            serde_json::from_value(schema["required"].clone()).unwrap()
        };
        assert_eq!(
            required(schema_of::<Deploy>()),
            ["kind", "service", "git_sha"]
        );
        assert_eq!(
            required(schema_of::<Rollback>()),
            ["kind", "service", "git_sha"]
        );
        assert_eq!(
            required(schema_of::<IncidentOpened>()),
            ["kind", "service", "ref_id"]
        );
        assert_eq!(
            required(schema_of::<IncidentClosed>()),
            ["kind", "service", "ref_id"]
        );
    }

    /// The webhook schemas name the payload fields the mappings read, spelled as the
    /// tools spell them.
    #[test]
    fn the_webhook_schemas_name_what_the_mappings_read() {
        let keys = |schema: Value| -> Vec<String> {
            schema["properties"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(keys(schema_of::<AlertmanagerPayload>()), ["alerts"]);
        assert_eq!(
            keys(schema_of::<AlertmanagerAlert>()),
            ["endsAt", "fingerprint", "labels", "startsAt", "status"]
        );
        assert_eq!(keys(schema_of::<OpsgeniePayload>()), ["action", "alert"]);
        assert_eq!(
            keys(schema_of::<OpsgenieAlert>()),
            ["alertId", "createdAt", "entity", "tags", "updatedAt"]
        );
        assert_eq!(
            schema_of::<AlertStatus>()["enum"],
            serde_json::json!(["firing", "resolved"])
        );
    }

    #[test]
    fn the_batch_limit_is_the_gateways() {
        let batch = schema_of::<Batch>();
        assert_eq!(batch["maxItems"], crate::http::MAX_BATCH);
    }
}
