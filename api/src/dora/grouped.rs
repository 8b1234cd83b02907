//! Many windows, and optionally every service, in one pass (CONTRACT.md section 5.1).
//!
//! Each metric family is one statement for all the windows. The deploy and restore
//! families join the windows' bounds (`unnest ... WITH ORDINALITY`) laterally to the
//! same aggregate [`super::compute`] runs, so each window is one range scan of the index
//! `/dora` uses and the rows are grouped by window as they are read. (Bucketing the whole
//! span with `width_bucket` and `GROUP BY` was tried first: on the 1M-event benchmark it
//! sorted every row of the span before aggregating, and took about 4x as long.) Open
//! incidents are read once and joined to the windows' ends. The per-window reports are
//! then assembled by the same code as [`super::compute`], so the numbers are the ones
//! `/dora` gives.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{Counts, MetricsQuery, Report, Window};

/// The deploy family of [`super::compute`] per window (`$2` starts, `$3` ends) and,
/// when `$6`, per service.
const DEPLOY_METRICS: &str = r#"
SELECT w.k::int4 AS bucket, m.*
FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS w(start_at, end_at, k)
CROSS JOIN LATERAL (
    SELECT
        CASE WHEN $6 THEN service END                                 AS service,
        count(*) FILTER (WHERE succeeded)                             AS deploys,
        percentile_cont(0.5) WITHIN GROUP (ORDER BY lead_seconds)
            FILTER (WHERE succeeded)                                  AS lead_median,
        count(lead_seconds) FILTER (WHERE succeeded)                  AS lead_samples,
        count(*) FILTER (WHERE failed_at <= $4)                       AS failed,
        count(*)                                                      AS attempts
    FROM deploy_facts
    WHERE environment = $1
      AND ($5::text IS NULL OR service = $5)
      AND occurred_at >= w.start_at AND occurred_at < w.end_at
    GROUP BY 1
) m
"#;

/// Time to restore per window the close falls in (and, when `$5`, per service).
const RESTORE_TIMES: &str = r#"
SELECT w.k::int4 AS bucket, r.*
FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS w(start_at, end_at, k)
CROSS JOIN LATERAL (
    SELECT
        CASE WHEN $5 THEN service END                                 AS service,
        percentile_cont(0.5) WITHIN GROUP (
            ORDER BY extract(epoch FROM closed_at - opened_at)::float8) AS median,
        count(*)                                                      AS samples
    FROM incident_facts
    WHERE environment = $1
      AND ($4::text IS NULL OR service = $4)
      AND closed_at >= w.start_at AND closed_at < w.end_at
    GROUP BY 1
) r
"#;

/// Open incidents at each window's end (`$2`, the ends, oldest first): an incident is
/// counted in every window whose end falls in `(opened_at, closed_at]`. Only incidents
/// open at some end are joined: the ones never closed and the ones closed after the
/// first end (`$3`), read apart so each is an index range, not a scan of every
/// incident ever opened.
const OPEN_INCIDENTS: &str = r#"
SELECT
    w.k::int4                                                         AS bucket,
    CASE WHEN $6 THEN f.service END                                   AS service,
    count(*)                                                          AS open
FROM (
    SELECT service, opened_at, closed_at FROM incident_facts
    WHERE environment = $1 AND closed_at IS NULL AND opened_at < $4
      AND ($5::text IS NULL OR service = $5)
    UNION ALL
    SELECT service, opened_at, closed_at FROM incident_facts
    WHERE environment = $1 AND closed_at >= $3 AND opened_at < $4
      AND ($5::text IS NULL OR service = $5)
) f
JOIN unnest($2::timestamptz[]) WITH ORDINALITY AS w(end_at, k)
  ON f.opened_at < w.end_at AND (f.closed_at IS NULL OR f.closed_at >= w.end_at)
GROUP BY 1, 2
"#;

#[derive(sqlx::FromRow)]
struct DeployRow {
    bucket: i32,
    service: Option<String>,
    deploys: i64,
    lead_median: Option<f64>,
    lead_samples: i64,
    failed: i64,
    attempts: i64,
}

/// The reports of `windows` consecutive windows ending at `query.window()`, oldest
/// first: window `k` (from 0) is the query with `offset = query.offset + (windows - 1 -
/// k) * days`. Without `by_service`, one report per window (service `query.service`).
/// With it, one per window and service, for every service with a deploy attempt, an
/// incident close or an open incident in that window (only `query.service` if set),
/// ordered by window, then service. Each equals [`super::compute`] for its window and
/// service. Three queries, whatever `windows` is, in one repeatable-read snapshot.
pub async fn compute_grouped(
    pool: &PgPool,
    query: &MetricsQuery,
    windows: u32,
    by_service: bool,
) -> Result<Vec<Report>, sqlx::Error> {
    let spans: Vec<Window> = (0..windows)
        .map(|k| {
            MetricsQuery {
                offset: query.offset + (windows - 1 - k) * query.days,
                ..query.clone()
            }
            .window()
        })
        .collect();
    let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
        return Ok(Vec::new());
    };
    let span_end = last.end;
    let starts: Vec<DateTime<Utc>> = spans.iter().map(|w| w.start).collect();
    let ends: Vec<DateTime<Utc>> = spans.iter().map(|w| w.end).collect();
    let service = query.service.as_deref();
    let env = query.environment.as_str();

    let mut tx = super::snapshot(pool).await?;
    let deploy_rows: Vec<DeployRow> = sqlx::query_as(DEPLOY_METRICS)
        .bind(env)
        .bind(&starts)
        .bind(&ends)
        .bind(query.as_of)
        .bind(service)
        .bind(by_service)
        .fetch_all(&mut *tx)
        .await?;
    let restore_rows: Vec<(i32, Option<String>, Option<f64>, i64)> = sqlx::query_as(RESTORE_TIMES)
        .bind(env)
        .bind(&starts)
        .bind(&ends)
        .bind(service)
        .bind(by_service)
        .fetch_all(&mut *tx)
        .await?;
    let open_rows: Vec<(i32, Option<String>, i64)> = sqlx::query_as(OPEN_INCIDENTS)
        .bind(env)
        .bind(&ends)
        .bind(first.end)
        .bind(span_end)
        .bind(service)
        .bind(by_service)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;

    let mut counts: BTreeMap<(usize, Option<String>), Counts> = BTreeMap::new();
    if !by_service {
        for k in 0..spans.len() {
            counts.insert((k, None), Counts::default());
        }
    }
    for r in deploy_rows {
        let c = counts.entry((window_of(r.bucket), r.service)).or_default();
        c.deploys = r.deploys;
        c.lead_median = r.lead_median;
        c.lead_samples = r.lead_samples;
        c.failed = r.failed;
        c.attempts = r.attempts;
    }
    for (bucket, svc, median, samples) in restore_rows {
        let c = counts.entry((window_of(bucket), svc)).or_default();
        c.restore_median = median;
        c.restore_samples = samples;
    }
    for (bucket, svc, open) in open_rows {
        counts
            .entry((window_of(bucket), svc))
            .or_default()
            .open_incidents = open;
    }

    Ok(counts
        .into_iter()
        .filter(|((k, _), _)| *k < spans.len())
        .map(|((k, svc), c)| {
            let service = if by_service {
                svc
            } else {
                query.service.clone()
            };
            Report::assemble(spans[k], service, query.environment.clone(), c)
        })
        .collect())
}

/// `WITH ORDINALITY` counts from 1, so every bucket is a window; anything else would
/// be dropped by the caller's range check (`usize::MAX` is never a window).
fn window_of(bucket: i32) -> usize {
    usize::try_from(bucket - 1).unwrap_or(usize::MAX)
}
