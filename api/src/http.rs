//! The API's routes: `GET /dora`, `/dora/trend`, `/dora/failures`, `/dashboard` (and
//! `/` to it), `/alerts`, `/healthz`, `/readyz`. Handlers parse and render; the SQL is in [`dora`].

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Redirect;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgPool;
use tower_http::trace::TraceLayer;

use crate::alerts;
use crate::dashboard;
use crate::dora::failures::{self, Failures};
use crate::dora::{self, MetricsQuery, Report};
use crate::error::Result;
use crate::params;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Read-only pool on the live store.
    pub pool: PgPool,
    /// Writable pool on the alert schema (`dora_alerts`).
    pub alerts: PgPool,
}

/// The API's router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/dora", get(get_dora))
        .route("/dora/trend", get(get_trend))
        .route("/dora/failures", get(get_failures))
        .route("/dashboard", get(dashboard::get_dashboard))
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route("/alerts", get(get_alerts))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn get_dora(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Report>> {
    let query = parse_query(query.as_deref().unwrap_or(""), now())?;
    Ok(Json(dora::compute(&state.pool, &query).await?))
}

/// The `/dora/trend` answer.
#[derive(Debug, Serialize)]
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
async fn get_alerts(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<(StatusCode, Json<Value>)> {
    let p = params::parse(query.as_deref().unwrap_or(""), now(), &["limit"])?;
    match alerts::store::overview(&state.alerts, p.limit).await {
        Ok(overview) => Ok((StatusCode::OK, Json(json!(overview)))),
        Err(e) => {
            tracing::warn!(error = %e, "GET /alerts: the alert state is unavailable");
            Ok((
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "the alert state is unavailable; see the dora-api log"})),
            ))
        }
    }
}

/// The default `as_of`, in whole seconds: the windows' bounds are read by people.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// Ready when the database answers and the store's schema is there; the body tells
/// how current the data is: when the newest event reached the store (JetStream's time)
/// and how long ago, `null` for an empty store. An old newest event does not make the
/// API unready (no deploys at night is normal): a monitor judges the age by its own
/// threshold, and the projector's `/readyz` and lag metric say whether it keeps up.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let unavailable = |error: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "error": error})),
        )
    };
    let newest =
        sqlx::query_scalar::<_, Option<DateTime<Utc>>>("SELECT max(received_at) FROM events")
            .fetch_one(&state.pool)
            .await;
    match newest {
        Ok(newest) => {
            let last_event = newest.map(|at| {
                json!({
                    "received_at": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    "age_seconds": (Utc::now() - at).as_seconds_f64().max(0.0),
                })
            });
            (
                StatusCode::OK,
                Json(json!({"status": "ready", "last_event": last_event})),
            )
        }
        Err(e) => unavailable(
            crate::error::store_unavailable(&e).unwrap_or_else(|| format!("database: {e}")),
        ),
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
