//! The webhooks of the tools teams already run (CONTRACT.md section 9): GitHub,
//! GitLab, PagerDuty, Opsgenie and Alertmanager post their own payloads, and the
//! gateway turns each into zero or more events and publishes them exactly as
//! `POST /events` does: the same validation, `202` only after JetStream's
//! acknowledgement, the same answer.
//!
//! A delivery goes: the route's secret configured (else `404`), the tool's proof of
//! origin checked on the raw body (else `401`), the URL's names read, the body read as
//! the tool's JSON (else `400`), mapped to events by the tool's module (or ignored, with
//! the reason), validated, given its commit time where lead time needs one, published.
//!
//! # Layout
//!
//! - [`github`], [`gitlab`], [`pagerduty`], [`opsgenie`], [`alertmanager`]: each tool's
//!   payload to [`Mapped`], pure functions of the body and the names.
//! - [`proof`]: HMAC signatures of the raw body (GitHub, PagerDuty), with rotation.
//! - [`names`]: the service and environment, from the URL, the maps, or the tool.
//! - [`payload`]: reading a payload by path, with messages that name the path.
//! - [`commits`]: the commit time of a deployed sha from GitHub's or GitLab's API.
//! - [`settings`]: the routes' settings.

pub mod alertmanager;
pub mod commits;
pub mod github;
pub mod gitlab;
pub mod names;
pub mod opsgenie;
pub mod pagerduty;
pub mod payload;
pub mod proof;
pub mod settings;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use dora_event::{validate, Event, Kind, Origin};
use serde_json::{json, Map, Value};

use crate::auth::bearer;
use crate::error::{Error, ErrorBody, Result};
use crate::http::{store, Accepted, AppState};
use commits::{Commits, Lookup};
use names::Names;
use payload::{rfc3339, PayloadError};
use settings::WebhookSettings;

/// The routes' settings and the commit lookups, shared by the handlers.
#[derive(Debug, Clone)]
pub struct Webhooks {
    /// What the routes accept and how they name things.
    pub settings: WebhookSettings,
    /// The commit-time lookups.
    pub commits: Commits,
}

impl Webhooks {
    /// The routes of `settings`.
    pub fn new(settings: WebhookSettings) -> Webhooks {
        Webhooks {
            commits: Commits::new(&settings),
            settings,
        }
    }
}

/// What a payload means to dora.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// These events, to validate and publish.
    Events(Vec<Draft>),
    /// Nothing: a deploy still running, an event dora does not use, a ping. Why, in
    /// words for the person reading the tool's delivery log.
    Ignored(String),
}

/// When the deployed change was committed, or where to find out.
#[derive(Debug, Clone, PartialEq)]
pub enum Commit {
    /// Not known.
    None,
    /// Carried by the payload.
    Known(DateTime<Utc>),
    /// To ask the tool's API, when its token is set.
    Lookup(Lookup),
}

/// One event a payload maps to, before validation: the event's fields (section 1),
/// and its commit time apart, since a time after the deploy is left out rather than
/// refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// The event's fields.
    pub fields: Map<String, Value>,
    /// Its `commit_at`, for a deploy.
    pub commit: Commit,
}

impl Draft {
    /// A deploy attempt.
    pub fn deploy(
        id: String,
        service: String,
        environment: Option<String>,
        sha: &str,
        succeeded: bool,
        occurred_at: DateTime<Utc>,
        commit: Commit,
    ) -> Draft {
        let mut fields = Draft::common(Kind::Deploy, id, service, environment, occurred_at);
        fields.insert("git_sha".to_owned(), json!(sha));
        fields.insert("succeeded".to_owned(), json!(succeeded));
        Draft { fields, commit }
    }

    /// An incident's open or close.
    pub fn incident(
        kind: Kind,
        id: String,
        service: String,
        environment: Option<String>,
        ref_id: String,
        occurred_at: DateTime<Utc>,
    ) -> Draft {
        let mut fields = Draft::common(kind, id, service, environment, occurred_at);
        fields.insert("ref_id".to_owned(), json!(ref_id));
        Draft {
            fields,
            commit: Commit::None,
        }
    }

    fn common(
        kind: Kind,
        id: String,
        service: String,
        environment: Option<String>,
        occurred_at: DateTime<Utc>,
    ) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("id".to_owned(), json!(id));
        fields.insert("kind".to_owned(), json!(kind.as_str()));
        fields.insert("service".to_owned(), json!(service));
        if let Some(environment) = environment {
            fields.insert("environment".to_owned(), json!(environment));
        }
        fields.insert("occurred_at".to_owned(), json!(rfc3339(occurred_at)));
        fields
    }
}

/// The five routes, for labels and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `POST /webhooks/github`.
    GitHub,
    /// `POST /webhooks/gitlab`.
    GitLab,
    /// `POST /webhooks/pagerduty`.
    PagerDuty,
    /// `POST /webhooks/opsgenie`.
    Opsgenie,
    /// `POST /webhooks/alertmanager`.
    Alertmanager,
}

impl Tool {
    /// Every route.
    pub const ALL: [Tool; 5] = [
        Tool::GitHub,
        Tool::GitLab,
        Tool::PagerDuty,
        Tool::Opsgenie,
        Tool::Alertmanager,
    ];

    /// The route's last segment, and the `tool` label.
    pub fn label(self) -> &'static str {
        match self {
            Tool::GitHub => "github",
            Tool::GitLab => "gitlab",
            Tool::PagerDuty => "pagerduty",
            Tool::Opsgenie => "opsgenie",
            Tool::Alertmanager => "alertmanager",
        }
    }
}

/// Every route answers with [`deliver`]; these are its documented entry points.
type Answer = Result<(StatusCode, Json<Accepted>)>;

/// GitHub's webhook: `deployment_status`, and `workflow_run` of the workflows in
/// `DORA_GITHUB_DEPLOY_WORKFLOWS`; every other event is ignored. Signed with
/// `X-Hub-Signature-256` under `DORA_GITHUB_WEBHOOK_SECRET`.
#[utoipa::path(post, path = "/webhooks/github", tag = "webhooks",
    params(
        ("X-GitHub-Event" = String, Header, description = "The event's name, as GitHub sends it"),
        ("X-Hub-Signature-256" = String, Header, description = "`sha256=<hex>`: HMAC-SHA256 of the body under the webhook's secret"),
        ("service" = Option<String>, Query, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "The service, instead of the repository's name"),
        ("environment" = Option<String>, Query, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "The environment, instead of the deployment's"),
    ),
    request_body(content(
        (Object = "application/json"),
        (Object = "application/x-www-form-urlencoded"),
    ), description = "GitHub's payload, as JSON or as its form-encoded `payload` field"),
    responses(
        (status = 202, description = "Every event stored (or already there), or the payload ignored, with why", body = Accepted),
        (status = 400, description = "Not a GitHub payload dora can read, one that maps to an invalid event, or a bad query parameter", body = ErrorBody),
        (status = 401, description = "Missing or wrong signature", body = ErrorBody),
        (status = 404, description = "DORA_GITHUB_WEBHOOK_SECRET is not set", body = ErrorBody),
        (status = 413, description = "Body over DORA_INGEST_MAX_BODY_BYTES", body = ErrorBody),
        (status = 503, description = "JetStream unavailable or slow, or the gateway busy: the tool redelivers", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn github(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Answer {
    deliver(&state, Tool::GitHub, query, &headers, body).await
}

/// GitLab's webhook: `Deployment Hook`; every other event is ignored. Authenticated by
/// `X-Gitlab-Token`, a secret of DORA_INGEST_TOKENS.
#[utoipa::path(post, path = "/webhooks/gitlab", tag = "webhooks",
    params(
        ("X-Gitlab-Event" = String, Header, description = "The event's name, as GitLab sends it"),
        ("X-Gitlab-Token" = String, Header, description = "A secret of DORA_INGEST_TOKENS; its name becomes the events' source"),
        ("service" = Option<String>, Query, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "The service, instead of the project's name"),
        ("environment" = Option<String>, Query, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "The environment, instead of the deployment's"),
    ),
    request_body(content = Object, content_type = "application/json", description = "GitLab's payload"),
    responses(
        (status = 202, description = "Every event stored (or already there), or the payload ignored, with why", body = Accepted),
        (status = 400, description = "Not a GitLab payload dora can read, one that maps to an invalid event, or a bad query parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 413, description = "Body over DORA_INGEST_MAX_BODY_BYTES", body = ErrorBody),
        (status = 503, description = "JetStream unavailable or slow, or the gateway busy: the tool redelivers", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn gitlab(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Answer {
    deliver(&state, Tool::GitLab, query, &headers, body).await
}

/// PagerDuty's v3 webhook: incidents triggered, reopened and resolved; every other
/// event type is ignored. Signed with `X-PagerDuty-Signature` under
/// `DORA_PAGERDUTY_WEBHOOK_SECRET`.
#[utoipa::path(post, path = "/webhooks/pagerduty", tag = "webhooks",
    params(
        ("X-PagerDuty-Signature" = String, Header, description = "`v1=<hex>`, comma-separated: HMAC-SHA256 of the body under the subscription's secret"),
        ("service" = Option<String>, Query, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "The service, instead of the PagerDuty service's name"),
        ("environment" = Option<String>, Query, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "The environment; `prod` when missing"),
    ),
    request_body(content = Object, content_type = "application/json", description = "PagerDuty's v3 payload"),
    responses(
        (status = 202, description = "Every event stored (or already there), or the payload ignored, with why", body = Accepted),
        (status = 400, description = "Not a PagerDuty payload dora can read, one that maps to an invalid event, or a bad query parameter", body = ErrorBody),
        (status = 401, description = "Missing or wrong signature", body = ErrorBody),
        (status = 404, description = "DORA_PAGERDUTY_WEBHOOK_SECRET is not set", body = ErrorBody),
        (status = 413, description = "Body over DORA_INGEST_MAX_BODY_BYTES", body = ErrorBody),
        (status = 503, description = "JetStream unavailable or slow, or the gateway busy: the tool redelivers", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn pagerduty(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Answer {
    deliver(&state, Tool::PagerDuty, query, &headers, body).await
}

/// Opsgenie's webhook: alerts created and closed; every other action is ignored.
/// Authenticated by `Authorization: Bearer`, a secret of DORA_INGEST_TOKENS.
#[utoipa::path(post, path = "/webhooks/opsgenie", tag = "webhooks", security(("bearer" = [])),
    params(
        ("service" = Option<String>, Query, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "The service, instead of the alert's `service:` tag or entity"),
        ("environment" = Option<String>, Query, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "The environment; `prod` when missing"),
    ),
    request_body(content = crate::openapi::OpsgeniePayload, content_type = "application/json", description = "Opsgenie's payload"),
    responses(
        (status = 202, description = "Every event stored (or already there), or the payload ignored, with why", body = Accepted),
        (status = 400, description = "Not an Opsgenie payload dora can read, one that maps to an invalid event, or a bad query parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody,
         headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 413, description = "Body over DORA_INGEST_MAX_BODY_BYTES", body = ErrorBody),
        (status = 503, description = "JetStream unavailable or slow, or the gateway busy: the tool redelivers", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn opsgenie(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Answer {
    deliver(&state, Tool::Opsgenie, query, &headers, body).await
}

/// Alertmanager's webhook: each alert firing opens an incident, resolved closes it.
/// Authenticated by `Authorization: Bearer`, a secret of DORA_INGEST_TOKENS.
#[utoipa::path(post, path = "/webhooks/alertmanager", tag = "webhooks", security(("bearer" = [])),
    params(
        ("service" = Option<String>, Query, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "The service, instead of each alert's `service` or `job` label"),
        ("environment" = Option<String>, Query, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "The environment, instead of each alert's `environment` or `env` label"),
    ),
    request_body(content = crate::openapi::AlertmanagerPayload, content_type = "application/json", description = "Alertmanager's payload"),
    responses(
        (status = 202, description = "Every event stored (or already there), or the payload ignored, with why", body = Accepted),
        (status = 400, description = "Not an Alertmanager payload dora can read, one that maps to an invalid event, or a bad query parameter", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody,
         headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 413, description = "Body over DORA_INGEST_MAX_BODY_BYTES", body = ErrorBody),
        (status = 503, description = "JetStream unavailable or slow, or the gateway busy: the tool redelivers", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub async fn alertmanager(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Answer {
    deliver(&state, Tool::Alertmanager, query, &headers, body).await
}

/// One delivery of `tool`'s, answered; a refusal is counted as `POST /events`'s are.
async fn deliver(
    state: &AppState,
    tool: Tool,
    query: Option<String>,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Answer {
    let answer = receive(state, tool, query.as_deref(), headers, body).await;
    if let Err(e) = &answer {
        state.metrics.refused(e);
    }
    answer
}

async fn receive(
    state: &AppState,
    tool: Tool,
    query: Option<&str>,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Answer {
    let body = crate::http::read_body(state, body)?;
    let delivery = Delivery {
        tool,
        query,
        headers,
        body: &body,
    };
    let (source, events) = match interpret(
        &delivery,
        &state.webhooks.settings,
        &state.tokens,
        Utc::now(),
    )? {
        Interpreted::Ignored { source, why } => {
            tracing::info!(tool = tool.label(), %source, reason = %why, "webhook ignored");
            state.metrics.webhook_ignored(tool.label());
            return Ok((StatusCode::ACCEPTED, Json(Accepted::ignored(why))));
        }
        Interpreted::Events { source, events } => (source, events),
    };
    let mut ready = Vec::with_capacity(events.len());
    for (mut event, commit) in events {
        event.commit_at = commit_at(state, &event, commit).await;
        ready.push(event);
    }
    let msg_ids = ready
        .iter()
        .map(|e| dora_event::dedup::msg_id(e, true))
        .collect();
    let accepted = store(state, ready, msg_ids, &source, false).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// One request to a webhook route, as received.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// Which route.
    pub tool: Tool,
    /// The URL's query, if any.
    pub query: Option<&'a str>,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The raw body, as signed.
    pub body: &'a [u8],
}

/// What a delivery means, once proven and read.
#[derive(Debug, Clone, PartialEq)]
pub enum Interpreted {
    /// Nothing to publish.
    Ignored {
        /// Who sent it.
        source: String,
        /// Why nothing.
        why: String,
    },
    /// Valid events, each deploy with where its commit time comes from.
    Events {
        /// Who sent them: the events' `source`.
        source: String,
        /// The events in payload order.
        events: Vec<(Event, Commit)>,
    },
}

/// Everything a delivery goes through before publishing, as `POST /events` goes
/// through [`crate::http::parse`]: the route's secret, the proof of origin, the URL's
/// names, the tool's JSON, the mapping and the validation (at `received_at`). Nothing
/// here waits or publishes, so the property tests drive it with hostile bodies.
pub fn interpret(
    delivery: &Delivery,
    settings: &WebhookSettings,
    tokens: &crate::auth::Tokens,
    received_at: DateTime<Utc>,
) -> Result<Interpreted> {
    let source = prove(delivery, settings, tokens)?;
    let names = Names::from_query(delivery.query, &settings.services, &settings.environments)?;
    let json = read_json(delivery.tool, delivery.headers, delivery.body)?;
    let mapped = map(delivery.tool, delivery.headers, &json, settings, &names)
        .map_err(|PayloadError(message)| Error::InvalidPayload(message))?;
    let drafts = match mapped {
        Mapped::Events(drafts) => drafts,
        Mapped::Ignored(why) => return Ok(Interpreted::Ignored { source, why }),
    };
    let many = drafts.len() > 1;
    let events = drafts
        .into_iter()
        .enumerate()
        .map(|(i, draft)| {
            let index = many.then_some(i);
            validate(&Value::Object(draft.fields), Origin::Gateway, received_at)
                .map(|event| (event, draft.commit))
                .map_err(|e| Error::InvalidEvent {
                    index,
                    field: e.field,
                    message: match index {
                        Some(i) => format!("event {i} of the payload is refused: {}", e.message),
                        None => format!("the payload maps to an event dora refuses: {}", e.message),
                    },
                })
        })
        .collect::<Result<_>>()?;
    Ok(Interpreted::Events { source, events })
}

/// A deploy's commit time: the payload's, or the tool's API's when its token is set;
/// none that is after the deploy.
async fn commit_at(state: &AppState, event: &Event, commit: Commit) -> Option<DateTime<Utc>> {
    match commit {
        Commit::None => None,
        Commit::Known(at) if at <= event.occurred_at => Some(at),
        Commit::Known(at) => {
            tracing::warn!(id = %event.id, committed = %at, deployed = %event.occurred_at,
                "the payload's commit time is after the deploy; the deploy is kept without commit_at");
            None
        }
        Commit::Lookup(lookup) => {
            state
                .webhooks
                .commits
                .commit_at(&lookup, event.occurred_at, &state.metrics)
                .await
        }
    }
}

/// The tool's proof of origin for `body`; the events' `source` when it holds.
fn prove(
    delivery: &Delivery,
    settings: &WebhookSettings,
    tokens: &crate::auth::Tokens,
) -> Result<String> {
    let (headers, body) = (delivery.headers, delivery.body);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match delivery.tool {
        Tool::GitHub => {
            let secrets = settings.github_secret.as_ref().ok_or(Error::NotConfigured(
                "no GitHub webhook here: DORA_GITHUB_WEBHOOK_SECRET is not set",
            ))?;
            let Some(signature) = header("x-hub-signature-256") else {
                tracing::warn!("GitHub webhook rejected: no X-Hub-Signature-256 header");
                return Err(Error::Unproven(
                    "missing `X-Hub-Signature-256` header: give the GitHub webhook a secret",
                ));
            };
            let hex = signature.trim().strip_prefix("sha256=").unwrap_or("");
            if !secrets.verify(body, [hex]) {
                tracing::warn!("GitHub webhook rejected: the signature matches no secret");
                return Err(Error::Unproven(
                    "`X-Hub-Signature-256` does not match the body under any secret of DORA_GITHUB_WEBHOOK_SECRET",
                ));
            }
            Ok("github".to_owned())
        }
        Tool::PagerDuty => {
            let secrets = settings
                .pagerduty_secret
                .as_ref()
                .ok_or(Error::NotConfigured(
                    "no PagerDuty webhook here: DORA_PAGERDUTY_WEBHOOK_SECRET is not set",
                ))?;
            let Some(signatures) = header("x-pagerduty-signature") else {
                tracing::warn!("PagerDuty webhook rejected: no X-PagerDuty-Signature header");
                return Err(Error::Unproven("missing `X-PagerDuty-Signature` header"));
            };
            let v1 = signatures
                .split(',')
                .filter_map(|s| s.trim().strip_prefix("v1="));
            if !secrets.verify(body, v1) {
                tracing::warn!("PagerDuty webhook rejected: no signature matches a secret");
                return Err(Error::Unproven(
                    "no `v1=` signature of `X-PagerDuty-Signature` matches the body under a secret of DORA_PAGERDUTY_WEBHOOK_SECRET",
                ));
            }
            Ok("pagerduty".to_owned())
        }
        Tool::GitLab => {
            let Some(token) = header("x-gitlab-token") else {
                tracing::warn!("GitLab webhook rejected: no X-Gitlab-Token header");
                return Err(Error::Unproven(
                    "missing `X-Gitlab-Token` header: give the GitLab webhook a secret token of DORA_INGEST_TOKENS",
                ));
            };
            match tokens.lookup(token.as_bytes()) {
                Some(name) => Ok(name.to_owned()),
                None => {
                    tracing::warn!("GitLab webhook rejected: unknown X-Gitlab-Token");
                    Err(Error::Unproven(
                        "`X-Gitlab-Token` is not a secret of DORA_INGEST_TOKENS",
                    ))
                }
            }
        }
        Tool::Opsgenie | Tool::Alertmanager => bearer(headers, tokens),
    }
}

/// The body as the tool's JSON object. GitHub may send it form-encoded, as the
/// `payload` field, which is its default content type.
fn read_json(tool: Tool, headers: &HeaderMap, body: &[u8]) -> Result<Value> {
    let (_, essence) = crate::http::content_type(headers);
    let form;
    let json: &[u8] = if tool == Tool::GitHub
        && essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
    {
        form = form_urlencoded::parse(body)
            .find(|(key, _)| key == "payload")
            .map(|(_, value)| value.into_owned())
            .ok_or_else(|| {
                Error::InvalidPayload(
                    "a form-encoded GitHub delivery carries its JSON in the `payload` field; there is none"
                        .to_owned(),
                )
            })?;
        form.as_bytes()
    } else {
        body
    };
    let value: Value = serde_json::from_slice(json).map_err(|e| {
        Error::InvalidJson(format!(
            "invalid JSON: {e}; a {} webhook body is JSON",
            tool.label()
        ))
    })?;
    if !value.is_object() {
        return Err(Error::InvalidPayload(format!(
            "a {} webhook body is a JSON object",
            tool.label()
        )));
    }
    Ok(value)
}

/// The tool's module's reading of the payload.
fn map(
    tool: Tool,
    headers: &HeaderMap,
    json: &Value,
    settings: &WebhookSettings,
    names: &Names,
) -> std::result::Result<Mapped, PayloadError> {
    let event_header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| PayloadError(format!("missing `{name}` header: it names the event")))
    };
    match tool {
        Tool::GitHub => github::map(
            event_header("X-GitHub-Event")?,
            json,
            &settings.github_deploy_workflows,
            names,
        ),
        Tool::GitLab => gitlab::map(event_header("X-Gitlab-Event")?, json, names),
        Tool::PagerDuty => pagerduty::map(json, names),
        Tool::Opsgenie => opsgenie::map(json, names),
        Tool::Alertmanager => alertmanager::map(json, names),
    }
}
