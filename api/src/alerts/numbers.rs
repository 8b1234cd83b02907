//! The numbers the rules read: for one environment, the current and the prior window
//! of every service with attempts in the current window, and of all services together.
//!
//! They come from [`dora::compute_grouped`], the same code as `/dora/trend` (two
//! windows, one pass over their facts grouped by window and service), so an alert's
//! numbers are those the dashboard and `/dora` show for the same windows.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::rules::{ScopeNumbers, WindowNumbers};
use crate::dora::{self, MetricsQuery, Report, Window};

/// The scopes of `environment` at `now`: windows of `days` days ending at `now` and
/// `days` before it, failures as known at `now` (as `/dora` with `as_of = now` and
/// `offset` 0 and `days`). All services together come first, then the services with
/// attempts in the current window, in name order.
pub async fn scopes(
    store: &PgPool,
    environment: &str,
    days: u32,
    now: DateTime<Utc>,
) -> Result<Vec<ScopeNumbers>, sqlx::Error> {
    let query = MetricsQuery {
        days,
        offset: 0,
        as_of: now,
        service: None,
        environment: environment.to_owned(),
    };
    let (prior_window, current_window) = (
        MetricsQuery {
            offset: days,
            ..query.clone()
        }
        .window(),
        query.window(),
    );
    let (all, by_service) = tokio::try_join!(
        dora::compute_grouped(store, &query, 2, false),
        dora::compute_grouped(store, &query, 2, true),
    )?;
    let pick = |reports: &[Report], service: Option<&str>, window: &Window| {
        reports
            .iter()
            .find(|r| r.window == *window && r.service.as_deref() == service)
            .map_or_else(|| empty(window), numbers)
    };
    let mut out = vec![ScopeNumbers {
        environment: environment.to_owned(),
        service: None,
        prior: pick(&all, None, &prior_window),
        current: pick(&all, None, &current_window),
    }];
    // compute_grouped orders by window, then service: the current window's services
    // come in name order. A service with only incidents in the window has no attempts.
    for report in &by_service {
        if report.window == current_window && report.change_failure_rate.attempts > 0 {
            out.push(ScopeNumbers {
                environment: environment.to_owned(),
                service: report.service.clone(),
                prior: pick(&by_service, report.service.as_deref(), &prior_window),
                current: numbers(report),
            });
        }
    }
    Ok(out)
}

fn numbers(r: &Report) -> WindowNumbers {
    WindowNumbers {
        start: r.window.start,
        end: r.window.end,
        attempts: r.change_failure_rate.attempts,
        failed: r.change_failure_rate.failed,
        lead_median_seconds: r.lead_time.median_seconds,
        lead_samples: r.lead_time.samples,
    }
}

fn empty(w: &Window) -> WindowNumbers {
    WindowNumbers {
        start: w.start,
        end: w.end,
        attempts: 0,
        failed: 0,
        lead_median_seconds: None,
        lead_samples: 0,
    }
}
