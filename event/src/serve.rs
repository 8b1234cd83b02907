//! Serving a router with limits, for the gateway and the API: a client that never
//! finishes its headers is disconnected, a request that runs too long is stopped, one
//! request over the in-flight limit is refused at once rather than queued, and shutdown
//! waits for the requests in flight but not for ever.
//!
//! `axum::serve` exposes none of hyper's connection settings (it sets no timer, so
//! hyper's header-read timeout never fires), hence the accept loop here. It speaks
//! HTTP/1 only, with hyper's own HTTP/1 builder: hyper-util's auto builder (axum's)
//! first waits for the bytes that tell HTTP/1 from HTTP/2, with no timeout, so a
//! client that connects and sends nothing would never be timed out. No client of dora
//! speaks cleartext HTTP/2.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::settings::HttpSettings;

/// Seconds a refused client is told to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 1;

/// What the limits need per process.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The limits themselves.
    pub settings: HttpSettings,
    /// Appended to the request-timeout answer: what a retry does for this process.
    pub on_timeout: &'static str,
}

#[derive(Debug, Clone)]
struct Guard {
    in_flight: Arc<Semaphore>,
    limits: Limits,
}

/// Serves `app` on `listener` under `limits` until `shutdown` turns true. Then it stops
/// accepting, closes idle connections, lets requests in flight finish, and returns at
/// the latest after the header timeout plus the request timeout, closing whatever is
/// still open.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let settings = limits.settings;
    let guard = Guard {
        in_flight: Arc::new(Semaphore::new(settings.max_in_flight as usize)),
        limits,
    };
    let app = app.layer(middleware::from_fn_with_state(guard, guarded));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let stop = crate::process::requested(shutdown);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    if !is_connection_error(&e) {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(
            // No upgrades (WebSocket): dora has none, and hyper-util's graceful
            // shutdown knows only the plain connection.
            builder.serve_connection(TokioIo::new(stream), service),
        );
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let deadline = settings.header_timeout + settings.request_timeout;
    if tokio::time::timeout(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still open {}s after shutdown began; closing them",
            deadline.as_secs()
        );
    }
    connections.shutdown().await;
    Ok(())
}

/// What `/healthz` and `/readyz` answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` (alive), `ready`, or `unavailable`.
    pub status: &'static str,
    /// Why it is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
}

impl Health {
    /// `200 {"status": "ready"}`.
    pub fn ready() -> (StatusCode, Json<Health>) {
        let ready = Health {
            status: "ready",
            error: None,
        };
        (StatusCode::OK, Json(ready))
    }

    /// `503 {"status": "unavailable", "error": ...}`.
    pub fn unavailable(error: String) -> (StatusCode, Json<Health>) {
        let unavailable = Health {
            status: "unavailable",
            error: Some(error),
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(unavailable))
    }
}

/// The process is up: the gateway's and the API's `GET /healthz`.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        error: None,
    })
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}

/// The in-flight limit and the request timeout, around every route but `/healthz`: a
/// liveness probe must not fail, and get the process restarted, because it is busy.
async fn guarded(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let settings = guard.limits.settings;
    let Ok(_permit) = guard.in_flight.clone().try_acquire_owned() else {
        return unavailable(&format!(
            "{} requests are in flight, the most DORA_HTTP_MAX_IN_FLIGHT allows; retry shortly",
            settings.max_in_flight
        ));
    };
    match tokio::time::timeout(settings.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => unavailable(&format!(
            "the request did not finish within {} (DORA_HTTP_REQUEST_TIMEOUT) and was stopped; {}",
            seconds(settings.request_timeout),
            guard.limits.on_timeout
        )),
    }
}

fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// A `503` with `Retry-After` and the JSON error body every route uses; with
/// `"status"` too, so that it is also what `/readyz` answers when unavailable.
pub fn unavailable(message: &str) -> Response {
    tracing::warn!(message, "request refused");
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({ "error": message, "status": "unavailable" })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}
