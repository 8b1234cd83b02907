//! The numbers the rules read: for one environment, the current and the prior window
//! of every service with attempts in the current window, and of all services together.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;

use super::rules::{ScopeNumbers, WindowNumbers};

/// Both windows, every service and all services together, in one pass over the
/// attempts of the two windows (`deploy_facts_window` range scan): grouping sets give
/// the per-service rows and the all-services rows from the same scan. The service is
/// `NULL` on the all-services rows (it is never `NULL` in the table).
const BOTH_WINDOWS: &str = r#"
SELECT
    service,
    occurred_at >= $3                                                 AS is_current,
    count(*)                                                          AS attempts,
    count(*) FILTER (WHERE failed_at <= $5)                           AS failed,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY lead_seconds)
        FILTER (WHERE succeeded)                                      AS lead_median,
    count(lead_seconds) FILTER (WHERE succeeded)                      AS lead_samples
FROM deploy_facts
WHERE environment = $1
  AND occurred_at >= $2 AND occurred_at < $4
GROUP BY GROUPING SETS ((service, occurred_at >= $3), (occurred_at >= $3))
"#;

type Row = (Option<String>, bool, i64, i64, Option<f64>, i64);

/// The scopes of `environment` at `now`: windows of `days` days ending at `now` and
/// `days` before it, failures as known at `now` (as `/dora` with `as_of = now` and
/// `offset` 0 and `days`). All services together come first; the services follow in
/// name order, only those with attempts in the current window.
pub async fn scopes(
    store: &PgPool,
    environment: &str,
    days: u32,
    now: DateTime<Utc>,
) -> Result<Vec<ScopeNumbers>, sqlx::Error> {
    let length = TimeDelta::days(i64::from(days));
    let (prior_start, middle) = (now - length - length, now - length);
    let rows: Vec<Row> = sqlx::query_as(BOTH_WINDOWS)
        .bind(environment)
        .bind(prior_start)
        .bind(middle)
        .bind(now)
        .bind(now)
        .fetch_all(store)
        .await?;
    let empty = |start, end| WindowNumbers {
        start,
        end,
        attempts: 0,
        failed: 0,
        lead_median_seconds: None,
        lead_samples: 0,
    };
    let mut out: Vec<ScopeNumbers> = vec![ScopeNumbers {
        environment: environment.to_owned(),
        service: None,
        prior: empty(prior_start, middle),
        current: empty(middle, now),
    }];
    // Current rows first, so a service's scope exists before its prior row arrives.
    let mut rows = rows;
    rows.sort_by(|a, b| (!a.1, &a.0).cmp(&(!b.1, &b.0)));
    for (service, is_current, attempts, failed, lead_median, lead_samples) in rows {
        let numbers = WindowNumbers {
            attempts,
            failed,
            lead_median_seconds: lead_median,
            lead_samples,
            ..if is_current {
                empty(middle, now)
            } else {
                empty(prior_start, middle)
            }
        };
        let index = match &service {
            None => Some(0),
            Some(_) => out.iter().position(|s| s.service == service),
        };
        match (index, is_current) {
            (Some(i), true) => out[i].current = numbers,
            (Some(i), false) => out[i].prior = numbers,
            (None, true) => out.push(ScopeNumbers {
                environment: environment.to_owned(),
                service,
                prior: empty(prior_start, middle),
                current: numbers,
            }),
            // A service with attempts only in the prior window is not watched.
            (None, false) => {}
        }
    }
    Ok(out)
}
