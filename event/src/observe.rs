//! Process plumbing for `GET /metrics`: the exposition format, the HTTP request
//! series every process keeps, and the middleware that records them.
//!
//! Each process builds its own [`Registry`] in its `run(...)`: there is no global
//! recorder, so several processes started in one test binary each show only their own
//! series. The text is the OpenMetrics flavour of the Prometheus text format (what
//! `prometheus-client` writes), served with its content type so Prometheus picks the
//! right parser.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The content type of [`render`]'s body.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `route` label of requests that matched no route: unknown paths must not mint
/// a series each.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// `registry` in the text format, as a `200` response (`500` if it cannot be encoded,
/// which would be a bug in a metric's encoding).
pub fn render(registry: &Registry) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics could not be encoded");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics could not be encoded",
            )
                .into_response()
        }
    }
}

/// Histogram buckets for durations in seconds: 0.5 ms to about 33 s.
pub fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 17)
}

/// Labels of a request count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// The route's pattern (`/events`), never the raw URI, so the series stay few.
    pub route: String,
    /// The response's status code.
    pub status: u16,
}

/// Labels of a request duration.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method.
    pub method: String,
    /// The route's pattern.
    pub route: String,
}

/// A family of histograms that all get [`duration_buckets`].
pub type DurationFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// An empty [`DurationFamily`].
pub fn duration_family<L>() -> DurationFamily<L>
where
    L: Clone + std::hash::Hash + Eq,
{
    Family::new_with_constructor(|| Histogram::new(duration_buckets()))
}

/// The HTTP series every process keeps: `<prefix>_http_requests_total{method,route,status}`
/// and `<prefix>_http_request_duration_seconds{method,route}`.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: DurationFamily<RouteLabels>,
}

impl HttpMetrics {
    /// Registers the series under `prefix` (the process's name, `dora_ingest`).
    pub fn register(registry: &mut Registry, prefix: &str) -> HttpMetrics {
        let metrics = HttpMetrics {
            requests: Family::default(),
            duration: duration_family(),
        };
        let registry = registry.sub_registry_with_prefix(prefix);
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            metrics.duration.clone(),
        );
        metrics
    }
}

/// Axum middleware (`middleware::from_fn_with_state(http_metrics, observe::track)`,
/// added with `Router::layer`) that counts and times every request by its matched route.
pub async fn track(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, |p| p.as_str())
        .to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    metrics
        .duration
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status,
        })
        .inc();
    response
}
