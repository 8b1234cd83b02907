//! The projector's own HTTP server on `DORA_PROJECTOR_ADDR`: `GET /healthz` (the process
//! is up), `GET /readyz` (connected to NATS and to a migrated PostgreSQL store) and
//! `GET /metrics`.
//!
//! It serves from the moment the process starts, before the servers are reached, so a
//! projector waiting for its database says so on `/readyz` instead of exiting.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_nats::jetstream;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{middleware, Json, Router};
use serde_json::{json, Value};
use sqlx::PgPool;
use tower_http::trace::TraceLayer;

use crate::metrics::ProjectorMetrics;

/// How long a readiness or lag question may take before it counts as unanswered.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the routes read; filled in as the projector reaches its servers.
#[derive(Debug)]
pub struct Health {
    /// The series `/metrics` serves.
    pub metrics: ProjectorMetrics,
    /// Name of the durable consumer whose lag is reported, once the store named it.
    pub consumer: OnceLock<String>,
    /// The migrated store, once reached.
    pub pool: OnceLock<PgPool>,
    /// The NATS connection, once made.
    pub nats: OnceLock<async_nats::Client>,
    /// The stream, once the consumer follows it.
    pub stream: OnceLock<jetstream::stream::Stream>,
    /// Why the last attempt to reach a server failed, while the projector waits.
    pub waiting_for: Mutex<Option<String>>,
}

impl Health {
    /// Nothing reached yet.
    pub fn new(metrics: ProjectorMetrics) -> Arc<Health> {
        Arc::new(Health {
            metrics,
            consumer: OnceLock::new(),
            pool: OnceLock::new(),
            nats: OnceLock::new(),
            stream: OnceLock::new(),
            waiting_for: Mutex::new(None),
        })
    }

    /// Records why a server is not reached yet (`None` once it is), for `/readyz`.
    pub fn waiting_for(&self, why: Option<String>) {
        if let Ok(mut waiting_for) = self.waiting_for.lock() {
            *waiting_for = why;
        }
    }

    /// Why the projector is not ready, or `None` when it is.
    pub async fn unready(&self) -> Option<String> {
        use async_nats::connection::State as Conn;
        if let Some(why) = self.waiting_for.lock().ok().and_then(|w| w.clone()) {
            return Some(why);
        }
        // The store is reached first, then NATS.
        let Some(pool) = self.pool.get() else {
            return Some("not connected to PostgreSQL yet".to_owned());
        };
        match self.nats.get() {
            None => return Some("not connected to NATS yet".to_owned()),
            Some(nats) if nats.connection_state() != Conn::Connected => {
                return Some("not connected to NATS".to_owned())
            }
            Some(_) => {}
        }
        let ping = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(pool);
        match tokio::time::timeout(PROBE_TIMEOUT, ping).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Some(format!("PostgreSQL: {e}")),
            Err(_) => return Some("PostgreSQL did not answer within 2 s".to_owned()),
        }
        if self.stream.get().is_none() {
            return Some("not following the stream yet".to_owned());
        }
        None
    }

    /// Asks the server for the consumer's state and updates the lag gauges. Keeps the
    /// last values when the server does not answer.
    pub async fn refresh_lag(&self) {
        let (Some(stream), Some(consumer)) = (self.stream.get(), self.consumer.get()) else {
            return;
        };
        match tokio::time::timeout(PROBE_TIMEOUT, stream.consumer_info(consumer)).await {
            Ok(Ok(info)) => self.metrics.consumer(&info),
            Ok(Err(e)) => tracing::debug!(error = %e, "consumer info for /metrics"),
            Err(_) => tracing::debug!("consumer info for /metrics timed out"),
        }
    }
}

/// The projector's router.
pub fn app(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(
            health.metrics.http.clone(),
            dora_event::observe::track,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(health)
}

async fn readyz(State(health): State<Arc<Health>>) -> (StatusCode, Json<Value>) {
    match health.unready().await {
        None => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Some(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "error": error})),
        ),
    }
}

async fn metrics(State(health): State<Arc<Health>>) -> Response {
    health.refresh_lag().await;
    dora_event::observe::render(&health.metrics.registry)
}
