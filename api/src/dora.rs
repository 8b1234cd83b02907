//! The DORA metrics over one window (CONTRACT.md section 5): the four keys and the
//! rework rate, computed with SQL at query time (the medians selected here from the
//! values SQL collects: [`median`]).
//!
//! They read the per-attempt and per-incident facts the projector derives from the log
//! in the transaction that appends each event (`deploy_facts`, `incident_facts`), so a
//! window is an index range scan: which deploy a late rollback marks, and which close
//! ends an incident, were settled when those events arrived. No metric is stored.
//! The queries run in one read-only, repeatable-read transaction, so the numbers of one
//! answer come from one state of the log.
//!
//! The queries are [`grouped`]'s (many windows, or every service, in one pass: the
//! trend), with one window. Beside it:
//! [`failures`] (the failed attempts of a window and what failed each, the open
//! incidents, the services), [`levels`] (the performance-level table) and [`median`].

pub mod failures;
pub mod grouped;
pub mod levels;
pub mod median;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use sqlx::PgPool;

pub use grouped::{compute_grouped, compute_grouped_sending};
use levels::Level;

/// What to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsQuery {
    /// Window length in days, 1-3650.
    pub days: u32,
    /// How many days before `as_of` the window ends, 0-3650.
    pub offset: u32,
    /// The instant the question is asked at; failures known after it do not count.
    pub as_of: DateTime<Utc>,
    /// One service, or all.
    pub service: Option<String>,
    /// The environment.
    pub environment: String,
}

/// `[start, end)` of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Window {
    /// Inclusive.
    pub start: DateTime<Utc>,
    /// Exclusive.
    pub end: DateTime<Utc>,
    /// Length in days.
    pub days: u32,
    /// Days between the end and `as_of`.
    pub offset: u32,
}

impl MetricsQuery {
    /// `end = as_of - offset days`, `start = end - days`.
    pub fn window(&self) -> Window {
        let end = self.as_of - TimeDelta::days(i64::from(self.offset));
        Window {
            start: end - TimeDelta::days(i64::from(self.days)),
            end,
            days: self.days,
            offset: self.offset,
        }
    }
}

/// The `/dora` answer. Fields may be added; none is ever renamed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// The window measured.
    pub window: Window,
    /// The service filter, `null` for all.
    pub service: Option<String>,
    /// The environment measured.
    pub environment: String,
    /// Successful deploy attempts per day.
    pub deployment_frequency: DeploymentFrequency,
    /// Commit-to-production time.
    pub lead_time: LeadTime,
    /// Share of deploy attempts that failed.
    pub change_failure_rate: ChangeFailureRate,
    /// Incident open-to-close time.
    pub time_to_restore: TimeToRestore,
    /// Share of deploy attempts made while an incident of their service ran.
    pub rework_rate: ReworkRate,
    /// The level table the metrics' `level`s come from (`"dora-2023"`).
    pub levels: &'static str,
}

/// Deployment frequency.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeploymentFrequency {
    /// Successful deploy attempts in the window.
    pub deploys: i64,
    /// `deploys / days`, to 3 decimals.
    pub per_day: f64,
    /// The performance level of `deploys / days`.
    pub level: Option<Level>,
}

/// Lead time for changes.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LeadTime {
    /// Interpolated median of `occurred_at - commit_at`; `null` without samples.
    pub median_seconds: Option<f64>,
    /// Successful deploys in the window that carry `commit_at`.
    pub samples: i64,
    /// The performance level of the median; `null` without samples.
    pub level: Option<Level>,
}

/// Change failure rate.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ChangeFailureRate {
    /// Attempts in the window that failed (known by `as_of`).
    pub failed: i64,
    /// All deploy attempts in the window.
    pub attempts: i64,
    /// `failed / attempts`, to 4 decimals; `null` without attempts.
    pub rate: Option<f64>,
    /// The performance level of the rate; `null` without attempts.
    pub level: Option<Level>,
}

/// Time to restore (failed deployment recovery time).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TimeToRestore {
    /// Interpolated median of `closed - opened` over incidents closed in the window.
    pub median_seconds: Option<f64>,
    /// Incidents closed in the window.
    pub samples: i64,
    /// Incidents opened before the end and not closed by it.
    pub open_incidents: i64,
    /// The performance level of the median; `null` without samples.
    pub level: Option<Level>,
}

/// Rework rate (DORA 2024's deployment rework rate). No level: DORA publishes no
/// clusters for it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReworkRate {
    /// Attempts in the window that started while an incident of their service and
    /// environment ran (opened at or before the attempt, not closed by it).
    pub rework: i64,
    /// All deploy attempts in the window (as for the change failure rate).
    pub attempts: i64,
    /// `rework / attempts`, to 4 decimals; `null` without attempts.
    pub rate: Option<f64>,
}

/// Makes a transaction's queries see one state of the log, read-only; the first
/// statement of every transaction that answers a question.
pub(crate) const ONE_STATE: &str = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// A read-only, repeatable-read transaction: every query of one answer sees one state
/// of the log.
pub(crate) async fn snapshot(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(ONE_STATE).execute(&mut *tx).await?;
    Ok(tx)
}

/// Computes the report for one query: the one window of [`compute_grouped`].
pub async fn compute(pool: &PgPool, query: &MetricsQuery) -> Result<Report, sqlx::Error> {
    let mut reports = compute_grouped(pool, query, 1, false).await?;
    Ok(reports
        .pop()
        .expect("one report per window without by_service"))
}

/// What the queries count for one window (and service); everything else in a report
/// is derived from it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Counts {
    pub deploys: i64,
    pub lead_median: Option<f64>,
    pub lead_samples: i64,
    pub failed: i64,
    pub attempts: i64,
    pub rework: i64,
    pub restore_median: Option<f64>,
    pub restore_samples: i64,
    pub open_incidents: i64,
}

impl Report {
    /// Rates, rounding and levels from the counts, in one place for every path.
    pub(crate) fn assemble(
        window: Window,
        service: Option<String>,
        environment: String,
        c: Counts,
    ) -> Report {
        let table = levels::CURRENT;
        Report {
            window,
            service,
            environment,
            deployment_frequency: DeploymentFrequency {
                deploys: c.deploys,
                per_day: round(c.deploys as f64 / f64::from(window.days), 3),
                level: Some(table.deployment_frequency(c.deploys, window.days)),
            },
            lead_time: LeadTime {
                median_seconds: c.lead_median,
                samples: c.lead_samples,
                level: table.lead_time(c.lead_median),
            },
            change_failure_rate: ChangeFailureRate {
                failed: c.failed,
                attempts: c.attempts,
                rate: share(c.failed, c.attempts),
                level: table.change_failure_rate(c.failed, c.attempts),
            },
            time_to_restore: TimeToRestore {
                median_seconds: c.restore_median,
                samples: c.restore_samples,
                open_incidents: c.open_incidents,
                level: table.time_to_restore(c.restore_median),
            },
            rework_rate: ReworkRate {
                rework: c.rework,
                attempts: c.attempts,
                rate: share(c.rework, c.attempts),
            },
            levels: table.name,
        }
    }
}

/// `part / whole` rounded to 4 decimals, `null` when `whole` is 0: the rates' shape.
fn share(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| round(part as f64 / whole as f64, 4))
}

fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_ends_offset_days_before_as_of() {
        let q = MetricsQuery {
            days: 7,
            offset: 7,
            as_of: "2026-03-16T00:00:00Z".parse().unwrap(),
            service: None,
            environment: "prod".into(),
        };
        let w = q.window();
        assert_eq!(w.end.to_rfc3339(), "2026-03-09T00:00:00+00:00");
        assert_eq!(w.start.to_rfc3339(), "2026-03-02T00:00:00+00:00");
    }

    /// The rework rate's shape (CONTRACT.md section 5): of the change failure rate's
    /// attempts, to 4 decimals, `null` without attempts, and no level.
    #[test]
    fn the_rework_rate_is_a_share_of_the_attempts() {
        let window = MetricsQuery {
            days: 7,
            offset: 0,
            as_of: "2026-03-16T00:00:00Z".parse().unwrap(),
            service: None,
            environment: "prod".into(),
        }
        .window();
        let report = |rework, attempts, failed| {
            let counts = Counts {
                deploys: attempts - failed,
                rework,
                attempts,
                failed,
                ..Counts::default()
            };
            Report::assemble(window, None, "prod".into(), counts)
        };
        let r = report(2, 6, 1);
        assert_eq!(
            r.rework_rate,
            ReworkRate {
                rework: 2,
                attempts: 6,
                rate: Some(0.3333)
            }
        );
        assert_eq!(r.change_failure_rate.attempts, 6);
        assert_eq!(r.change_failure_rate.rate, Some(0.1667));
        assert_eq!(r.deployment_frequency.per_day, 0.714, "5 deploys in 7 days");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json["rework_rate"],
            serde_json::json!({"rework": 2, "attempts": 6, "rate": 0.3333})
        );
        assert_eq!(report(0, 0, 0).rework_rate.rate, None);
        assert_eq!(report(0, 4, 0).rework_rate.rate, Some(0.0));
        assert_eq!(report(4, 4, 0).rework_rate.rate, Some(1.0));
    }

    #[test]
    fn rounding() {
        assert_eq!(round(5.0 / 7.0, 3), 0.714);
        assert_eq!(round(1.0 / 6.0, 4), 0.1667);
        assert_eq!(share(2, 6), Some(0.3333));
        assert_eq!(share(0, 6), Some(0.0));
        assert_eq!(share(0, 0), None);
    }
}
