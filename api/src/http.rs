//! The API's routes: `GET /dora`, `/dora/trend`, `/dora/failures`, `/dashboard` (and
//! `/` to it), `/alerts`, `/healthz`, `/readyz`, `/openapi.json`. Handlers parse and
//! render; the SQL is in [`dora`]. Each route is registered with its OpenAPI
//! description (see [`crate::openapi`]), so the document names exactly the routes served.

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::Redirect;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::alerts;
use crate::alerts::store::Overview;
use crate::dashboard;
use crate::dora::failures::{self, Failures};
use crate::dora::{self, MetricsQuery, Report};
use dora_event::serve::Health;

use crate::error::{ErrorBody, Result};
use crate::params;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Read-only pool on the live store.
    pub pool: PgPool,
    /// Writable pool on the alert schema (`dora_alerts`).
    pub alerts: PgPool,
}

/// The API's router, with `/openapi.json` describing it.
pub fn app(state: AppState) -> Router {
    let (router, doc) = OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(get_dora))
        .routes(routes!(get_trend))
        .routes(routes!(get_failures))
        .routes(routes!(dashboard::get_dashboard))
        .routes(routes!(root))
        .routes(routes!(get_alerts))
        .routes(routes!(dora_event::serve::healthz))
        .routes(routes!(readyz))
        .split_for_parts();
    // Written once: the document does not change while the process runs.
    let doc = axum::body::Bytes::from(doc.to_json().unwrap_or_default());
    router
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], doc) }),
        )
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The dashboard.
#[utoipa::path(get, path = "/", tag = "metrics", responses(
    (status = 303, description = "To the dashboard", headers(("Location" = String, description = "`/dashboard`"))),
))]
async fn root() -> Redirect {
    Redirect::to("/dashboard")
}

/// The DORA metrics over one window (CONTRACT.md section 5).
#[utoipa::path(get, path = "/dora", tag = "metrics", params(params::WindowQuery), responses(
    (status = 200, description = "The report", body = Report),
    (status = 400, description = "A bad, unknown or repeated parameter, named in `param`", body = ErrorBody),
    (status = 503, description = "The database is busy, slow or unreachable, or too many requests in flight: retry", body = ErrorBody,
     headers(("Retry-After" = u32, description = "Seconds to wait"))),
))]
async fn get_dora(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Report>> {
    let query = parse_query(query.as_deref().unwrap_or(""), now())?;
    Ok(Json(dora::compute(&state.pool, &query).await?))
}

/// The `/dora/trend` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Trend {
    /// Each window's length.
    pub days: u32,
    /// The service filter, `null` for all.
    pub service: Option<String>,
    /// The environment.
    pub environment: String,
    /// Consecutive reports, oldest first; the last is what `/dora` answers.
    pub windows: Vec<Report>,
}

/// Consecutive windows, oldest first (CONTRACT.md section 5.1).
#[utoipa::path(get, path = "/dora/trend", tag = "metrics", params(params::WindowQuery, params::TrendQuery), responses(
    (status = 200, description = "The reports", body = Trend),
    (status = 400, description = "A bad, unknown or repeated parameter, named in `param`", body = ErrorBody),
    (status = 503, description = "The database is busy, slow or unreachable, or too many requests in flight: retry", body = ErrorBody,
     headers(("Retry-After" = u32, description = "Seconds to wait"))),
))]
async fn get_trend(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Trend>> {
    let p = params::parse(query.as_deref().unwrap_or(""), now(), params::TREND)?;
    let windows = dora::compute_grouped(&state.pool, &p.query, p.windows, false).await?;
    Ok(Json(Trend {
        days: p.query.days,
        service: p.query.service,
        environment: p.query.environment,
        windows,
    }))
}

/// The failed deploy attempts of a window and what failed each (CONTRACT.md section 5.2).
#[utoipa::path(get, path = "/dora/failures", tag = "metrics", params(params::WindowQuery, params::LimitQuery), responses(
    (status = 200, description = "The failures, newest first", body = Failures),
    (status = 400, description = "A bad, unknown or repeated parameter, named in `param`", body = ErrorBody),
    (status = 503, description = "The database is busy, slow or unreachable, or too many requests in flight: retry", body = ErrorBody,
     headers(("Retry-After" = u32, description = "Seconds to wait"))),
))]
async fn get_failures(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Failures>> {
    let p = params::parse(query.as_deref().unwrap_or(""), now(), params::FAILURES)?;
    Ok(Json(
        failures::failures(&state.pool, &p.query, p.limit).await?,
    ))
}

/// The state of every scope that ever fired and the newest messages (`limit`, 1-1000,
/// default 100).
#[utoipa::path(get, path = "/alerts", tag = "alerts", params(params::LimitQuery), responses(
    (status = 200, description = "Scopes and messages", body = Overview),
    (status = 400, description = "A bad, unknown or repeated parameter, named in `param`", body = ErrorBody),
    (status = 503, description = "The alert state is unavailable, or too many requests in flight", body = ErrorBody,
     headers(("Retry-After" = u32, description = "Seconds to wait, when refused for load"))),
))]
async fn get_alerts(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<axum::response::Response> {
    use axum::response::IntoResponse;
    let p = params::parse(query.as_deref().unwrap_or(""), now(), &["limit"])?;
    match alerts::store::overview(&state.alerts, p.limit).await {
        Ok(overview) => Ok(Json(overview).into_response()),
        Err(e) => {
            tracing::warn!(error = %e, "GET /alerts: the alert state is unavailable");
            Ok((
                StatusCode::SERVICE_UNAVAILABLE,
                Json(ErrorBody::new(
                    "the alert state is unavailable; see the dora-api log",
                )),
            )
                .into_response())
        }
    }
}

/// The default `as_of`, in whole seconds: the windows' bounds are read by people.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// How current the store is: when the newest event reached it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LastEvent {
    /// When JetStream stored the newest event in the log.
    pub received_at: String,
    /// Seconds since then.
    pub age_seconds: f64,
}

/// What a ready API answers on `/readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready`.
    pub status: &'static str,
    /// The newest event, `null` for an empty store.
    pub last_event: Option<LastEvent>,
}

/// Ready when the database answers and the store's schema is there; the body tells
/// how current the data is: when the newest event reached the store (JetStream's time)
/// and how long ago, `null` for an empty store. An old newest event does not make the
/// API unready (no deploys at night is normal): a monitor judges the age by its own
/// threshold, and the projector's `/readyz` and lag metric say whether it keeps up.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready, and how current the data is", body = Readiness),
    (status = 503, description = "The database unreachable or missing, the store not migrated, or too many requests in flight", body = Health,
     headers(("Retry-After" = u32, description = "Seconds to wait, when refused for load"))),
))]
async fn readyz(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let newest =
        sqlx::query_scalar::<_, Option<DateTime<Utc>>>("SELECT max(received_at) FROM events")
            .fetch_one(&state.pool)
            .await;
    match newest {
        Ok(newest) => {
            let last_event = newest.map(|at| LastEvent {
                received_at: at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                age_seconds: (Utc::now() - at).as_seconds_f64().max(0.0),
            });
            Json(Readiness {
                status: "ready",
                last_event,
            })
            .into_response()
        }
        Err(e) => Health::unavailable(
            crate::error::store_unavailable(&e).unwrap_or_else(|| format!("database: {e}")),
        )
        .into_response(),
    }
}

/// Parses `/dora`'s query string. Unknown and repeated parameters are refused: a typo
/// such as `day=30` must not silently answer for the default 7 days.
pub fn parse_query(raw: &str, now: DateTime<Utc>) -> Result<MetricsQuery> {
    Ok(params::parse(raw, now, params::DORA)?.query)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn now() -> DateTime<Utc> {
        "2026-03-16T00:00:00Z".parse().unwrap()
    }

    fn param_of(raw: &str) -> String {
        match parse_query(raw, now()) {
            Err(Error::BadParam { param, .. }) => param,
            other => panic!("{raw}: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_values() {
        let q = parse_query("", now()).unwrap();
        assert_eq!(
            (q.days, q.offset, q.as_of, q.service, q.environment.as_str()),
            (7, 0, now(), None, "prod")
        );
        let q = parse_query(
            "days=90&offset=7&as_of=2026-03-16T02:00:00%2B02:00&service=api&environment=staging",
            now(),
        )
        .unwrap();
        assert_eq!((q.days, q.offset), (90, 7));
        assert_eq!(q.as_of, now());
        assert_eq!(q.service.as_deref(), Some("api"));
        assert_eq!(q.environment, "staging");
    }

    #[test]
    fn every_bad_parameter_is_named() {
        assert_eq!(param_of("days=0"), "days");
        assert_eq!(param_of("days=3651"), "days");
        assert_eq!(param_of("days=seven"), "days");
        assert_eq!(param_of("offset=-1"), "offset");
        assert_eq!(param_of("as_of=yesterday"), "as_of");
        assert_eq!(param_of("service=a.b"), "service");
        assert_eq!(param_of("environment="), "environment");
        assert_eq!(param_of("day=30"), "day");
        assert_eq!(param_of("days=7&days=8"), "days");
    }
}
