//! The gateway's routes: `POST /events`, `GET /healthz`, `GET /readyz`, `GET /metrics`,
//! `GET /openapi.json`. Each is registered with its OpenAPI description (see
//! [`crate::openapi`]), so the document names exactly the routes served.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{middleware, Json, Router};
use chrono::Utc;
use dora_event::{validate, Event, Origin};
use serde::Serialize;
use tower_http::trace::TraceLayer;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Source, Tokens};
use crate::body::{self, Body, BodyError};
use dora_event::serve::Health;

use crate::error::{Error, ErrorBody, Result};
use crate::idempotency;
use crate::metrics::IngestMetrics;
use crate::publish::Publisher;

/// Most events in one request.
pub const MAX_BATCH: usize = 1000;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Accepted tokens.
    pub tokens: Tokens,
    /// Where events go.
    pub publisher: Publisher,
    /// For readiness: the connection and the stream.
    pub nats: async_nats::Client,
    /// For readiness.
    pub js: async_nats::jetstream::Context,
    /// Stream name, for readiness.
    pub stream: String,
    /// Body limit in bytes.
    pub max_body_bytes: usize,
    /// Longest a request waits for JetStream's acknowledgements.
    pub publish_timeout: std::time::Duration,
    /// What `/metrics` shows.
    pub metrics: IngestMetrics,
    /// The tools' webhook routes.
    pub webhooks: std::sync::Arc<crate::webhooks::Webhooks>,
}

/// The `202` body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Events in the request, all now stored.
    pub accepted: usize,
    /// Their ids, in request order (assigned ones included).
    pub ids: Vec<String>,
    /// How many JetStream already had.
    pub duplicates: usize,
    /// A webhook payload that maps to no event: why, and nothing was published.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub ignored: Option<String>,
}

impl Accepted {
    /// The answer to a webhook payload that maps to nothing.
    pub fn ignored(why: String) -> Accepted {
        Accepted {
            accepted: 0,
            ids: Vec::new(),
            duplicates: 0,
            ignored: Some(why),
        }
    }
}

/// The gateway's router, with `/openapi.json` describing it.
pub fn app(state: AppState) -> Router {
    let (router, doc) = OpenApiRouter::with_openapi(crate::openapi::IngestDoc::openapi())
        .routes(routes!(post_events))
        .routes(routes!(dora_event::serve::healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(crate::webhooks::github))
        .routes(routes!(crate::webhooks::gitlab))
        .routes(routes!(crate::webhooks::pagerduty))
        .routes(routes!(crate::webhooks::opsgenie))
        .routes(routes!(crate::webhooks::alertmanager))
        .split_for_parts();
    // Written once: the document does not change while the process runs.
    let doc = axum::body::Bytes::from(doc.to_json().unwrap_or_default());
    router
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], doc) }),
        )
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.metrics.http.clone(),
            dora_event::observe::track,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The Prometheus series, in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "The series", body = String, content_type = dora_event::observe::CONTENT_TYPE),
    (status = 503, description = "Too many requests in flight", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
))]
async fn metrics(State(state): State<AppState>) -> Response {
    dora_event::observe::render(&state.metrics.registry)
}

/// Sends one event, or an array of 1-1000 (CONTRACT.md section 2). `202` only once
/// JetStream acknowledged every event; a retry is safe when the events carry ids or the
/// request an `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/events",
    tag = "ingest",
    security(("bearer" = [])),
    params(
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:-]{1,128}$",
         description = "Derives the ids of events sent without one, so a retried request is the same events"),
    ),
    request_body(content = crate::openapi::EventsBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Every event stored (or already there)", body = Accepted),
        (status = 400, description = "Invalid JSON, an invalid event, a bad batch size or Idempotency-Key", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody,
         headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 413, description = "Body over DORA_INGEST_MAX_BODY_BYTES", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 503, description = "JetStream unavailable or slow, or the gateway busy: retry", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
async fn post_events(
    State(state): State<AppState>,
    source: Result<Source>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>)> {
    let answer = accept(&state, source, &headers, body).await;
    if let Err(e) = &answer {
        state.metrics.refused(e);
    }
    answer
}

async fn accept(
    state: &AppState,
    source: Result<Source>,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>)> {
    let Source(source) = source?;
    require_json(headers)?;
    let body = read_body(state, body)?;
    let key = idempotency::key(headers)?;
    let Parsed {
        events,
        msg_ids,
        fresh_ids,
    } = parse(&body, &source, key.as_deref())?;
    let accepted = store(state, events, msg_ids, &source, fresh_ids).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// The request's body, or why it could not be read (`413` past the limit).
pub(crate) fn read_body(
    state: &AppState,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Bytes> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge(state.max_body_bytes)
        } else {
            Error::BadRequest(format!("could not read the body: {rejection}"))
        }
    })
}

/// Publishes validated events from `source` and waits for JetStream to acknowledge
/// every one: the one path of `POST /events` and of the webhooks. `fresh_ids` says
/// whether some ids were made up for this request, so the 503 can say what a retry does.
pub(crate) async fn store(
    state: &AppState,
    events: Vec<Event>,
    msg_ids: Vec<String>,
    source: &str,
    fresh_ids: bool,
) -> Result<Accepted> {
    let started = Instant::now();
    // A publish that JetStream never acknowledges must not hold the request (and the
    // shutdown) for ever.
    let published = match tokio::time::timeout(
        state.publish_timeout,
        state.publisher.publish(&events, &msg_ids, source),
    )
    .await
    {
        Ok(published) => published,
        Err(_) => Err(Error::Unavailable(format!(
            "no acknowledgement within {}s (DORA_INGEST_PUBLISH_TIMEOUT)",
            state.publish_timeout.as_secs_f64()
        ))),
    };
    state
        .metrics
        .published(started.elapsed().as_secs_f64(), published.is_ok());
    let duplicates = published.map_err(|e| match e {
        Error::Unavailable(reason) => Error::Unavailable(unacknowledged(&reason, fresh_ids)),
        other => other,
    })?;
    state.metrics.accepted(events.len(), duplicates);
    tracing::info!(%source, accepted = events.len(), duplicates, "events accepted");
    Ok(Accepted {
        accepted: events.len(),
        ids: events.into_iter().map(|e| e.id).collect(),
        duplicates,
        ignored: None,
    })
}

/// The request's `Content-Type`, and its media type without parameters such as
/// `charset` (empty when there is none).
pub(crate) fn content_type(headers: &HeaderMap) -> (&str, &str) {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    (content_type, essence)
}

/// `application/json`, with or without parameters such as `charset`.
fn require_json(headers: &HeaderMap) -> Result<()> {
    let (content_type, essence) = content_type(headers);
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(Error::UnsupportedMediaType(format!(
            "Content-Type must be application/json; got `{content_type}`"
        )))
    }
}

/// The 503's text. Part of a batch may be stored when JetStream stops acknowledging
/// midway, so it tells the client what a retry does rather than claiming nothing was kept.
fn unacknowledged(reason: &str, fresh_ids: bool) -> String {
    let retry = if fresh_ids {
        "some events had no `id` and no `Idempotency-Key` was sent, so a retry stores \
         those as new events; send ids or an `Idempotency-Key` to make retries safe"
    } else {
        "retry the same request: every event has an id, so what was stored is kept once"
    };
    format!("JetStream did not acknowledge every event; some may be stored and some not; {retry} ({reason})")
}

/// A request's events, ready to publish.
#[derive(Debug)]
pub struct Parsed {
    /// The validated events, in request order.
    pub events: Vec<Event>,
    /// Each event's `Nats-Msg-Id`: its id and a digest of what was sent.
    pub msg_ids: Vec<String>,
    /// Whether any event got a fresh UUIDv7 (no `id`, no `Idempotency-Key`).
    pub fresh_ids: bool,
}

/// One event or an array of 1-1000, validated as a whole: one bad element rejects all.
/// Elements without an `id` get one derived from the `Idempotency-Key` when there is
/// one, else a fresh UUIDv7; the flag says whether any fresh id was assigned.
/// Public for the property tests and the fuzzer, which drive it with hostile bodies.
pub fn parse(body: &[u8], token: &str, key: Option<&str>) -> Result<Parsed> {
    let (mut items, batch) = match body::parse(body, MAX_BATCH) {
        Ok(Body::One(one)) => (vec![one], false),
        Ok(Body::Many(items)) => (items, true),
        Err(BodyError::Json(e)) => return Err(Error::InvalidJson(format!("invalid JSON: {e}"))),
        Err(BodyError::Count(e)) => return Err(Error::BatchSize(e)),
        Err(BodyError::DuplicateKey {
            index,
            key,
            message,
        }) => {
            return Err(Error::InvalidEvent {
                message: match index {
                    Some(i) => format!("event {i}: invalid JSON: {message}"),
                    None => format!("invalid JSON: {message}"),
                },
                index,
                field: Some(key),
            })
        }
    };
    let fresh_ids = match key {
        Some(key) => {
            for (i, item) in items.iter_mut().enumerate() {
                idempotency::assign(item, token, key, i);
            }
            false
        }
        None => items.iter().any(|item| item.get("id").is_none()),
    };
    let received_at = Utc::now();
    let events: Vec<Event> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let index = batch.then_some(i);
            validate(item, Origin::Gateway, received_at).map_err(|e| Error::InvalidEvent {
                index,
                field: e.field,
                message: match index {
                    Some(i) => format!("event {i}: {}", e.message),
                    None => e.message,
                },
            })
        })
        .collect::<Result<_>>()?;
    let msg_ids = events
        .iter()
        .zip(&items)
        .map(|(event, sent)| {
            let sent_occurred_at = sent.get("occurred_at").is_some_and(|t| !t.is_null());
            dora_event::dedup::msg_id(event, sent_occurred_at)
        })
        .collect();
    Ok(Parsed {
        events,
        msg_ids,
        fresh_ids,
    })
}

/// Ready when NATS is connected and the stream exists.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready", body = Health),
    (status = 503, description = "Not connected to NATS, the stream missing, or too many requests in flight", body = Health,
     headers(("Retry-After" = u32, description = "Seconds to wait, when refused for load"))),
))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    use async_nats::connection::State as Conn;
    if state.nats.connection_state() != Conn::Connected {
        return Health::unavailable("not connected to NATS".to_owned());
    }
    match state.js.get_stream(&state.stream).await {
        Ok(_) => Health::ready(),
        Err(e) => Health::unavailable(format!("stream `{}`: {e}", state.stream)),
    }
}
