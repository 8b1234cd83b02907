//! The API's routes: `GET /dora`, `GET /alerts`, `GET /healthz`, `GET /readyz`.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use tower_http::trace::TraceLayer;

use crate::alerts;
use crate::dora::{self, MetricsQuery, Report};
use crate::error::{Error, Result};

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
    // Whole seconds: the window's bounds are read by people.
    let now = Utc::now().trunc_subsecs(0);
    let query = parse_query(query.as_deref().unwrap_or(""), now)?;
    Ok(Json(dora::compute(&state.pool, &query).await?))
}

/// The state of every scope that ever fired and the newest messages (`limit`, 1-1000,
/// default 50).
async fn get_alerts(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<(StatusCode, Json<Value>)> {
    let mut limit = 50;
    let mut seen = false;
    for (name, value) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "limit" if seen => return Err(bad("limit", "`limit` is given more than once")),
            "limit" => {
                limit = ranged(&name, &value, 1, 1000)?;
                seen = true;
            }
            other => {
                return Err(bad(
                    other,
                    format!("unknown parameter `{other}`; the parameter is limit"),
                ))
            }
        }
    }
    match alerts::store::overview(&state.alerts, limit).await {
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

/// Ready when the database answers and the store's schema is there.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match sqlx::query_scalar::<_, bool>("SELECT to_regclass('deploy_facts') IS NOT NULL")
        .fetch_one(&state.pool)
        .await
    {
        Ok(true) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Ok(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "unavailable", "error": "the store is not migrated yet: start dora-projector"}),
            ),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "error": format!("database: {e}")})),
        ),
    }
}

fn bad(param: &str, message: impl Into<String>) -> Error {
    Error::BadParam {
        param: param.to_owned(),
        message: message.into(),
    }
}

/// Parses `/dora`'s query string. Unknown and repeated parameters are refused: a typo
/// such as `day=30` must not silently answer for the default 7 days.
pub fn parse_query(raw: &str, now: DateTime<Utc>) -> Result<MetricsQuery> {
    let mut query = MetricsQuery {
        days: 7,
        offset: 0,
        as_of: now,
        service: None,
        environment: "prod".to_owned(),
    };
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        if seen.iter().any(|s| *s == name) {
            return Err(bad(&name, format!("`{name}` is given more than once")));
        }
        seen.push(name.to_string());
        match name.as_ref() {
            "days" => query.days = ranged(&name, &value, 1, 3650)?,
            "offset" => query.offset = ranged(&name, &value, 0, 3650)?,
            "as_of" => {
                query.as_of = DateTime::parse_from_rfc3339(&value)
                    .map_err(|e| bad("as_of", format!("`as_of` must be an RFC 3339 time such as 2026-03-16T00:00:00Z; `{value}`: {e}")))?
                    .with_timezone(&Utc)
            }
            "service" => query.service = Some(token(&name, &value)?),
            "environment" => query.environment = token(&name, &value)?,
            other => {
                return Err(bad(
                    other,
                    format!("unknown parameter `{other}`; the parameters are days, offset, as_of, service, environment"),
                ))
            }
        }
    }
    Ok(query)
}

fn ranged(name: &str, value: &str, min: u32, max: u32) -> Result<u32> {
    match value.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(bad(
            name,
            format!("`{name}` must be a whole number from {min} to {max}; got `{value}`"),
        )),
    }
}

/// The event's own rule for `service` and `environment`.
fn token(name: &str, value: &str) -> Result<String> {
    dora_event::subject_token(name, value).map_err(|e| bad(name, e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

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
