//! Many windows, and optionally every service, in one pass (CONTRACT.md section 5.1).
//!
//! Each metric family is one statement for all the windows (`/dora` is the case of one).
//! The deploy and restore families join the windows' bounds (`unnest ... WITH
//! ORDINALITY`) laterally to one aggregate, so each window is one range scan of the
//! facts' window index and the rows are grouped by window as they are read. (Bucketing the whole
//! span with `width_bucket` and `GROUP BY` was tried first: on the 1M-event benchmark it
//! sorted every row of the span before aggregating, and took about 4x as long.) Open
//! incidents are read once and joined to the windows' ends. The medians are selected
//! from the values each group sends ([`median`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::PgPool;

use super::{median, Counts, MetricsQuery, Report, Window};

/// The deploy family of [`super::compute`] per window (`$2` starts, `$3` ends) and,
/// when `$6`, per service.
const DEPLOY_METRICS: &str = r#"
SELECT w.k::int4 AS bucket, m.*
FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS w(start_at, end_at, k)
CROSS JOIN LATERAL (
    SELECT
        CASE WHEN $6 THEN service END                                 AS service,
        count(*) FILTER (WHERE succeeded)                             AS deploys,
        count(lead_seconds) FILTER (WHERE succeeded)                  AS lead_samples,
        CASE WHEN count(lead_seconds) FILTER (WHERE succeeded) <= $7 THEN
            array_agg(lead_seconds) FILTER (WHERE succeeded AND lead_seconds IS NOT NULL)
        END                                                           AS leads,
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
        count(*)                                                      AS samples,
        CASE WHEN count(*) <= $6 THEN
            array_agg(extract(epoch FROM closed_at - opened_at)::float8)
        END                                                           AS restores
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

/// The lead-time median of one window and service sorted by PostgreSQL, for a group
/// with too many values to send (see [`median`]).
const LEAD_MEDIAN: &str = r#"
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lead_seconds)
FROM deploy_facts
WHERE environment = $1
  AND ($4::text IS NULL OR service = $4)
  AND occurred_at >= $2 AND occurred_at < $3
  AND succeeded
"#;

/// The time-to-restore median of one window and service sorted by PostgreSQL.
const RESTORE_MEDIAN: &str = r#"
SELECT percentile_cont(0.5) WITHIN GROUP (
    ORDER BY extract(epoch FROM closed_at - opened_at)::float8)
FROM incident_facts
WHERE environment = $1
  AND ($4::text IS NULL OR service = $4)
  AND closed_at >= $2 AND closed_at < $3
"#;

#[derive(sqlx::FromRow)]
struct DeployRow {
    bucket: i32,
    service: Option<String>,
    deploys: i64,
    lead_samples: i64,
    leads: Option<median::Values>,
    failed: i64,
    attempts: i64,
}

#[derive(sqlx::FromRow)]
struct RestoreRow {
    bucket: i32,
    service: Option<String>,
    samples: i64,
    restores: Option<median::Values>,
}

/// A group (window, service) and which of its medians PostgreSQL has to sort.
type Group = (usize, Option<String>);
enum Median {
    Lead,
    Restore,
}

/// The reports of `windows` consecutive windows ending at `query.window()`, oldest
/// first: window `k` (from 0) is the query with `offset = query.offset + (windows - 1 -
/// k) * days`. Without `by_service`, one report per window (service `query.service`).
/// With it, one per window and service, for every service with a deploy attempt, an
/// incident close or an open incident in that window (only `query.service` if set),
/// ordered by window, then service. Each equals [`super::compute`] for its window and
/// service. Three queries, whatever `windows` is, in one repeatable-read snapshot (and
/// one more per median of a group larger than [`median::IN_PROCESS_MAX`]).
pub async fn compute_grouped(
    pool: &PgPool,
    query: &MetricsQuery,
    windows: u32,
    by_service: bool,
) -> Result<Vec<Report>, sqlx::Error> {
    compute_grouped_sending(pool, query, windows, by_service, median::IN_PROCESS_MAX).await
}

/// [`compute_grouped`] with groups of more than `in_process_max` values taking their
/// medians from `percentile_cont`: tests pass 0 to check both ways agree.
pub async fn compute_grouped_sending(
    pool: &PgPool,
    query: &MetricsQuery,
    windows: u32,
    by_service: bool,
    in_process_max: i64,
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

    let mut counts: BTreeMap<Group, Counts> = BTreeMap::new();
    if !by_service {
        for k in 0..spans.len() {
            counts.insert((k, None), Counts::default());
        }
    }
    // Rows are read as they come, so one group's values are held at a time.
    let mut sort_there: Vec<(Group, Median)> = Vec::new();
    let mut tx = super::snapshot(pool).await?;
    let mut rows = sqlx::query_as::<_, DeployRow>(DEPLOY_METRICS)
        .bind(env)
        .bind(&starts)
        .bind(&ends)
        .bind(query.as_of)
        .bind(service)
        .bind(by_service)
        .bind(in_process_max)
        .fetch(&mut *tx);
    while let Some(r) = rows.try_next().await? {
        let group = (window_of(r.bucket), r.service);
        let c = counts.entry(group.clone()).or_default();
        c.deploys = r.deploys;
        c.lead_samples = r.lead_samples;
        c.lead_median = r.leads.and_then(|mut v| median::interpolated(&mut v.0));
        c.failed = r.failed;
        c.attempts = r.attempts;
        if c.lead_median.is_none() && c.lead_samples > 0 {
            sort_there.push((group, Median::Lead));
        }
    }
    drop(rows);
    let mut rows = sqlx::query_as::<_, RestoreRow>(RESTORE_TIMES)
        .bind(env)
        .bind(&starts)
        .bind(&ends)
        .bind(service)
        .bind(by_service)
        .bind(in_process_max)
        .fetch(&mut *tx);
    while let Some(r) = rows.try_next().await? {
        let group = (window_of(r.bucket), r.service);
        let c = counts.entry(group.clone()).or_default();
        c.restore_samples = r.samples;
        c.restore_median = r.restores.and_then(|mut v| median::interpolated(&mut v.0));
        if c.restore_median.is_none() && c.restore_samples > 0 {
            sort_there.push((group, Median::Restore));
        }
    }
    drop(rows);
    let open_rows: Vec<(i32, Option<String>, i64)> = sqlx::query_as(OPEN_INCIDENTS)
        .bind(env)
        .bind(&ends)
        .bind(first.end)
        .bind(span_end)
        .bind(service)
        .bind(by_service)
        .fetch_all(&mut *tx)
        .await?;
    for (bucket, svc, open) in open_rows {
        counts
            .entry((window_of(bucket), svc))
            .or_default()
            .open_incidents = open;
    }
    for ((k, svc), which) in sort_there {
        let Some(span) = spans.get(k) else { continue };
        let sql = match which {
            Median::Lead => LEAD_MEDIAN,
            Median::Restore => RESTORE_MEDIAN,
        };
        let value: Option<f64> = sqlx::query_scalar(sql)
            .bind(env)
            .bind(span.start)
            .bind(span.end)
            .bind(if by_service { svc.as_deref() } else { service })
            .fetch_one(&mut *tx)
            .await?;
        if let Some(c) = counts.get_mut(&(k, svc)) {
            match which {
                Median::Lead => c.lead_median = value,
                Median::Restore => c.restore_median = value,
            }
        }
    }
    tx.commit().await?;

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
