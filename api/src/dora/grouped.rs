//! Many windows, and optionally every service, in one pass (CONTRACT.md section 5.1).
//!
//! Each metric family is one statement for all the windows (`/dora` is the case of one).
//! The deploy and restore families join the windows' bounds (`unnest ... WITH
//! ORDINALITY`) laterally to one aggregate, so each window is one range scan of the
//! facts' window index and the rows are grouped by window as they are read. (Bucketing the whole
//! span with `width_bucket` and `GROUP BY` was tried first: on the 1M-event benchmark it
//! sorted every row of the span before aggregating, and took about 4x as long.) Open
//! incidents are read once and joined to the windows' ends. The rework family joins the
//! windows' bounds the same way, to the rework pieces in each ([`REWORK`]). The
//! medians are selected from the values each group sends ([`median`]).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::PgPool;

use super::{median, Counts, MetricsQuery, Report, Window};

/// The deploy family per range (`$2` starts, `$3` ends, `$7` the window each range is
/// in) and, as [`grouping`] makes it, per service.
const DEPLOY_METRICS: &str = r#"
SELECT w.k AS bucket, m.*
FROM unnest($2::timestamptz[], $3::timestamptz[], $7::int4[]) AS w(start_at, end_at, k)
CROSS JOIN LATERAL (
    SELECT
        {service}                                                     AS service,
        count(*) FILTER (WHERE succeeded)                             AS deploys,
        count(lead_seconds) FILTER (WHERE succeeded)                  AS lead_samples,
        CASE WHEN count(lead_seconds) FILTER (WHERE succeeded) <= $6 THEN
            string_agg(float8send(lead_seconds), ''::bytea)
                FILTER (WHERE succeeded AND lead_seconds IS NOT NULL)
        END                                                           AS leads,
        count(*) FILTER (WHERE failed_at <= $4)                       AS failed,
        count(*)                                                      AS attempts
    FROM deploy_facts
    WHERE environment = $1
      AND ($5::text IS NULL OR service = $5)
      AND occurred_at >= w.start_at AND occurred_at < w.end_at
    {group}
) m
"#;

/// Time to restore per range the close falls in (`$6` the ranges' windows; per service
/// as [`grouping`] makes it).
const RESTORE_TIMES: &str = r#"
SELECT w.k AS bucket, r.*
FROM unnest($2::timestamptz[], $3::timestamptz[], $6::int4[]) AS w(start_at, end_at, k)
CROSS JOIN LATERAL (
    SELECT
        {service}                                                     AS service,
        count(*)                                                      AS samples,
        CASE WHEN count(*) <= $5 THEN
            string_agg(float8send(extract(epoch FROM closed_at - opened_at)::float8), ''::bytea)
        END                                                           AS restores
    FROM incident_facts
    WHERE environment = $1
      AND ($4::text IS NULL OR service = $4)
      AND closed_at >= w.start_at AND closed_at < w.end_at
    {group}
) r
"#;

/// Rework per range (`$2` starts, `$3` ends, `$5` the ranges' windows; per service as
/// [`grouping`] makes it): the attempts that started while an incident of their
/// service ran, an incident running over `[opened_at, closed_at)` (open at its open's
/// instant, over at its close's). Each attempt that did lies in exactly one piece of
/// time (migration 0015), whose attempts the projector keeps counted: a piece within
/// the range adds its stored count, and only the few that cross the range's start or
/// end are counted here, within it. The pieces are those of the groups of incidents
/// opened in the range (a piece starts at or after its group's instant), and of the
/// groups running at its start (a stab into their GiST index), whose pieces may start
/// before the range or in it. A piece without attempts, or one inside the range after
/// all, needs no count: on the 10M-event benchmark most crossing pieces are one or the
/// other, and each count was a cold read of the per-service window index.
const REWORK: &str = r#"
SELECT w.k AS bucket, r.*
FROM unnest($2::timestamptz[], $3::timestamptz[], $5::int4[]) AS w(start_at, end_at, k)
CROSS JOIN LATERAL (
    SELECT
        {service}                                                     AS service,
        coalesce(sum(n), 0)::int8                                     AS rework
    FROM (
        -- Each piece's attempts within the range: none when it holds none or lies
        -- outside; its stored count when it lies inside; else counted.
        SELECT p.service,
               CASE WHEN p.attempts = 0
                      OR greatest(p.piece_from, w.start_at) >= least(p.until, w.end_at) THEN 0
                    WHEN p.piece_from >= w.start_at AND p.until <= w.end_at THEN p.attempts
                    ELSE (
                        SELECT count(*)
                        FROM deploy_facts d
                        WHERE d.environment = $1 AND d.service = p.service
                          AND d.occurred_at >= greatest(p.piece_from, w.start_at)
                          AND d.occurred_at < least(p.until, w.end_at)
                    )
               END                                                    AS n
        FROM (
            -- (A condition on the piece here would let the planner read the pieces' own
            -- index, every piece of the past up to the end, instead of the range of
            -- openings.)
            SELECT service, piece_from, until, attempts
            FROM rework_pieces
            WHERE environment = $1
              AND ($4::text IS NULL OR service = $4)
              AND opened_at >= w.start_at AND opened_at < w.end_at
          UNION ALL
            SELECT service, piece_from, until, attempts
            FROM rework_pieces
            WHERE tstzrange(opened_at, until, '(]') @> w.start_at
              AND environment = $1
              AND ($4::text IS NULL OR service = $4)
        ) p
    ) pieces
    {group}
) r
"#;

/// `sql` with its `{service}` and `{group}` filled: per service, grouped by it; for all
/// together (or one service), a plain aggregate, one row per range even when empty.
/// Grouping by a constant instead cost a group step per row: 63 against 53 ms for six
/// weeks' attempts (a trend's share) on the 10M-event benchmark.
fn grouping(sql: &str, by_service: bool) -> String {
    let (service, group) = if by_service {
        ("service", "GROUP BY service")
    } else {
        ("NULL::text", "")
    };
    sql.replace("{service}", service).replace("{group}", group)
}

/// Open incidents at each window's end (`$2`, the ends, oldest first): the incidents
/// whose `(opened_at, closed_at]` holds that end, each end a stab into their GiST index
/// (migration 0009), not a range over every incident closed since.
const OPEN_INCIDENTS: &str = r#"
SELECT
    w.k::int4                                                         AS bucket,
    CASE WHEN $4 THEN f.service END                                   AS service,
    count(*)                                                          AS open
FROM unnest($2::timestamptz[]) WITH ORDINALITY AS w(end_at, k)
JOIN incident_facts f ON tstzrange(f.opened_at, f.closed_at, '(]') @> w.end_at
WHERE f.environment = $1
  AND ($3::text IS NULL OR f.service = $3)
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

/// A group: a window (from 0) and, per service, the service.
type Group = (usize, Option<String>);

/// Which median of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Median {
    Lead,
    Restore,
}

impl Median {
    /// Where this median goes in a group's counts.
    fn set(self, counts: &mut Counts, value: Option<f64>) {
        match self {
            Median::Lead => counts.lead_median = value,
            Median::Restore => counts.restore_median = value,
        }
    }
}

/// The slices one window is cut in when two connections read it (see [`compute_grouped`]).
const SLICES: i32 = 8;

/// One range of the facts one connection scans, and the window (from 1) it is part of.
struct Cut {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    bucket: i32,
}

/// What one connection's scan found: the counts per group; for a window cut in two,
/// the values of its medians until both connections' shares are in; the medians to sort in
/// PostgreSQL (a group with more than `in_process_max` values).
#[derive(Default)]
struct Scanned {
    counts: BTreeMap<Group, Counts>,
    held: BTreeMap<(Group, Median), Vec<f64>>,
    sort_there: BTreeSet<(Group, Median)>,
}

/// The filters every scan shares.
struct Filter<'a> {
    env: &'a str,
    service: Option<&'a str>,
    as_of: DateTime<Utc>,
    by_service: bool,
    in_process_max: i64,
}

/// The reports of `windows` consecutive windows ending at `query.window()`, oldest
/// first: window `k` (from 0) is the query with `offset = query.offset + (windows - 1 -
/// k) * days`. Without `by_service`, one report per window (service `query.service`).
/// With it, one per window and service, for every service with a deploy attempt, an
/// incident close or an open incident in that window (only `query.service` if set),
/// ordered by window, then service. Each equals [`super::compute`] for its window and
/// service. At most seven queries, whatever `windows` is, in one repeatable-read
/// snapshot (and one more per median of a group larger than [`median::IN_PROCESS_MAX`]).
///
/// Unless it asks for one service, the scan is cut in two and read on two connections
/// at once when the pool has one idle (on this 2-core machine a 90-day window at 10M
/// events, 695k attempts: 1.8x faster): every other window to each, or one window (not
/// per service) cut in [`SLICES`] slices, every other slice to each, its values merged
/// before its medians are taken. The second connection imports the first one's
/// snapshot (`pg_export_snapshot`), so both read one state of the log; a standby
/// cannot export one, and there both shares run on one connection.
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
    if spans.is_empty() {
        return Ok(Vec::new());
    }
    let ends: Vec<DateTime<Utc>> = spans.iter().map(|w| w.end).collect();

    // One service's windows hold only its own attempts: a second connection would
    // cost more than it saves (0.7 -> 1.6 ms for a week at 10M events).
    let split = query.service.is_none();
    // One window is cut in slices, unless per service: then every service's values
    // would be held until both connections are done (all of a whole-history window's).
    let cut_one = split && spans.len() == 1 && !by_service;
    let filter = Filter {
        env: &query.environment,
        service: query.service.as_deref(),
        as_of: query.as_of,
        by_service,
        // Per row, which is a slice when the window is cut: the slices one connection
        // holds until the other's are in stay within the values two whole halves held.
        in_process_max: if cut_one {
            in_process_max / i64::from(SLICES / 2)
        } else {
            in_process_max
        },
    };
    let mut cuts: Vec<Cut> = Vec::new();
    for (k, w) in spans.iter().enumerate() {
        let bucket = i32::try_from(k + 1).unwrap_or(i32::MAX);
        let slices = if cut_one { SLICES } else { 1 };
        let step = (w.end - w.start) / slices;
        // The last slice ends at the window's end, whatever the division dropped.
        let at = |i: i32| {
            if i == slices {
                w.end
            } else {
                w.start + step * i
            }
        };
        cuts.extend((0..slices).map(|i| Cut {
            start: at(i),
            end: at(i + 1),
            bucket,
        }));
    }
    // Every other cut to each connection, so each reads about half the rows even where
    // the history is lumpy (weekends, a quiet month): halves of one span were 386k and
    // 46k attempts for a 90-day window on the 10M benchmark, and the larger half was the
    // whole request's time.
    let (early, late): (Vec<Cut>, Vec<Cut>) = if split {
        let (even, odd): (Vec<_>, Vec<_>) =
            cuts.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
        (
            even.into_iter().map(|(_, c)| c).collect(),
            odd.into_iter().map(|(_, c)| c).collect(),
        )
    } else {
        (Vec::new(), cuts)
    };
    let (early, late) = (early.as_slice(), late.as_slice());

    let mut tx = super::snapshot(pool).await?;
    let exported: Option<String> = if early.is_empty() {
        None
    } else {
        sqlx::query_scalar(
            "SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_export_snapshot() END",
        )
        .fetch_one(&mut *tx)
        .await?
    };
    // Only an idle connection: waiting for one could deadlock requests that each hold
    // their first. The pool keeps two open (see `connect`); this one goes back to it
    // when its half is read.
    let mut merged = {
        let mut spare = exported.as_ref().and_then(|_| pool.try_acquire());
        let twin = match (spare.as_mut(), &exported) {
            (Some(conn), Some(id)) => Some(in_snapshot(conn, id).await?),
            _ => None,
        };
        match twin {
            Some(mut twin) => {
                let (mut a, b) = futures::try_join!(
                    scan(&mut tx, &filter, early, !cut_one),
                    scan(&mut twin, &filter, late, !cut_one),
                )?;
                twin.commit().await?;
                a.merge(b);
                a
            }
            None => {
                let mut a = scan(&mut tx, &filter, early, !cut_one).await?;
                a.merge(scan(&mut tx, &filter, late, !cut_one).await?);
                a
            }
        }
    };

    let mut counts = std::mem::take(&mut merged.counts);
    if !by_service {
        for k in 0..spans.len() {
            counts.entry((k, None)).or_default();
        }
    }
    for ((group, which), mut values) in std::mem::take(&mut merged.held) {
        if merged.sort_there.contains(&(group.clone(), which)) {
            continue;
        }
        if let Some(c) = counts.get_mut(&group) {
            which.set(c, median::interpolated(&mut values));
        }
    }
    let open_rows: Vec<(i32, Option<String>, i64)> = sqlx::query_as(OPEN_INCIDENTS)
        .bind(filter.env)
        .bind(&ends)
        .bind(filter.service)
        .bind(by_service)
        .fetch_all(&mut *tx)
        .await?;
    for (bucket, svc, open) in open_rows {
        counts
            .entry((window_of(bucket), svc))
            .or_default()
            .open_incidents = open;
    }
    for ((k, svc), which) in merged.sort_there {
        let Some(span) = spans.get(k) else { continue };
        let sql = match which {
            Median::Lead => LEAD_MEDIAN,
            Median::Restore => RESTORE_MEDIAN,
        };
        let value: Option<f64> = sqlx::query_scalar(sql)
            .bind(filter.env)
            .bind(span.start)
            .bind(span.end)
            .bind(if by_service {
                svc.as_deref()
            } else {
                filter.service
            })
            .fetch_one(&mut *tx)
            .await?;
        if let Some(c) = counts.get_mut(&(k, svc)) {
            which.set(c, value);
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

/// A read-only transaction on `conn` that sees the snapshot `id` another one exported.
async fn in_snapshot<'c>(
    conn: &'c mut sqlx::pool::PoolConnection<sqlx::Postgres>,
    id: &str,
) -> Result<sqlx::Transaction<'c, sqlx::Postgres>, sqlx::Error> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    sqlx::query(super::ONE_STATE).execute(&mut *tx).await?;
    // SET TRANSACTION SNAPSHOT takes no parameter; the id is PostgreSQL's own
    // (hex digits and dashes), checked before it is quoted.
    if !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(sqlx::Error::Protocol(format!(
            "unexpected snapshot id {id:?}"
        )));
    }
    sqlx::query(&format!("SET TRANSACTION SNAPSHOT '{id}'"))
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// The deploy, restore and rework families over `cuts`, read as they come. With `whole` (no
/// window is cut), each group's medians are taken as its row arrives, so one group's
/// values are held at a time; otherwise they are kept for [`Scanned::merge`].
async fn scan(
    tx: &mut sqlx::PgConnection,
    filter: &Filter<'_>,
    cuts: &[Cut],
    whole: bool,
) -> Result<Scanned, sqlx::Error> {
    let mut found = Scanned::default();
    if cuts.is_empty() {
        return Ok(found);
    }
    let starts: Vec<DateTime<Utc>> = cuts.iter().map(|c| c.start).collect();
    let ends: Vec<DateTime<Utc>> = cuts.iter().map(|c| c.end).collect();
    let buckets: Vec<i32> = cuts.iter().map(|c| c.bucket).collect();
    let sql = grouping(DEPLOY_METRICS, filter.by_service);
    let mut rows = sqlx::query_as::<_, DeployRow>(&sql)
        .bind(filter.env)
        .bind(&starts)
        .bind(&ends)
        .bind(filter.as_of)
        .bind(filter.service)
        .bind(filter.in_process_max)
        .bind(&buckets)
        .fetch(&mut *tx);
    while let Some(r) = rows.try_next().await? {
        let group = (window_of(r.bucket), r.service);
        let c = found.counts.entry(group.clone()).or_default();
        c.deploys += r.deploys;
        c.lead_samples += r.lead_samples;
        c.failed += r.failed;
        c.attempts += r.attempts;
        found.values(group, Median::Lead, r.leads, r.lead_samples, whole);
    }
    drop(rows);
    let sql = grouping(RESTORE_TIMES, filter.by_service);
    let mut rows = sqlx::query_as::<_, RestoreRow>(&sql)
        .bind(filter.env)
        .bind(&starts)
        .bind(&ends)
        .bind(filter.service)
        .bind(filter.in_process_max)
        .bind(&buckets)
        .fetch(&mut *tx);
    while let Some(r) = rows.try_next().await? {
        let group = (window_of(r.bucket), r.service);
        found
            .counts
            .entry(group.clone())
            .or_default()
            .restore_samples += r.samples;
        found.values(group, Median::Restore, r.restores, r.samples, whole);
    }
    drop(rows);
    let sql = grouping(REWORK, filter.by_service);
    let mut rows = sqlx::query_as::<_, (i32, Option<String>, i64)>(&sql)
        .bind(filter.env)
        .bind(&starts)
        .bind(&ends)
        .bind(filter.service)
        .bind(&buckets)
        .fetch(&mut *tx);
    while let Some((bucket, service, rework)) = rows.try_next().await? {
        // A group with rework has attempts; an empty row makes no group of its own.
        if rework > 0 {
            found
                .counts
                .entry((window_of(bucket), service))
                .or_default()
                .rework += rework;
        }
    }
    Ok(found)
}

impl Scanned {
    /// One row's values for one median of `group`: taken now when the window is whole,
    /// held when it is cut; none sent while there are samples means PostgreSQL sorts.
    fn values(
        &mut self,
        group: Group,
        which: Median,
        values: Option<median::Values>,
        samples: i64,
        whole: bool,
    ) {
        match values {
            Some(mut v) if whole => {
                if let Some(c) = self.counts.get_mut(&group) {
                    which.set(c, median::interpolated(&mut v.0));
                }
            }
            Some(v) => self.held.entry((group, which)).or_default().extend(v.0),
            None if samples > 0 => {
                self.sort_there.insert((group, which));
            }
            None => {}
        }
    }

    /// Adds `other`'s counts and values to these (the two shares of a cut window, or
    /// disjoint windows).
    fn merge(&mut self, other: Scanned) {
        for (group, c) in other.counts {
            let mine = self.counts.entry(group).or_default();
            mine.deploys += c.deploys;
            mine.lead_samples += c.lead_samples;
            mine.failed += c.failed;
            mine.attempts += c.attempts;
            mine.rework += c.rework;
            mine.restore_samples += c.restore_samples;
            mine.lead_median = mine.lead_median.or(c.lead_median);
            mine.restore_median = mine.restore_median.or(c.restore_median);
        }
        for (key, values) in other.held {
            self.held.entry(key).or_default().extend(values);
        }
        self.sort_there.extend(other.sort_there);
    }
}

/// Buckets count windows from 1 (as `WITH ORDINALITY` does for the open incidents), so
/// every bucket is a window; anything else would be dropped by the caller's range check
/// (`usize::MAX` is never a window).
fn window_of(bucket: i32) -> usize {
    usize::try_from(bucket - 1).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dora_system_tests::TestEnv;
    use serde_json::json;

    /// A transaction that plans as on a large store: a test's few hundred rows would
    /// otherwise be read whole, by no index.
    async fn as_on_a_large_store(pool: &PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let mut tx = pool.begin().await.unwrap();
        for off in ["enable_seqscan", "enable_bitmapscan"] {
            sqlx::query(&format!("SET LOCAL {off} = off"))
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx
    }

    /// A window of `prod` is a range of the index keyed by time alone, any other
    /// environment's a range of the other window index (migration 0011): the planner
    /// sees the environment because dora-api plans with the parameters' values.
    #[tokio::test]
    async fn each_environment_reads_its_own_window_index() {
        let env = TestEnv::new().await;
        let events: Vec<_> = (0..200)
            .map(|i| {
                json!({"id": format!("d{i}"), "kind": "deploy", "service": format!("s{}", i % 7),
                       "environment": if i % 2 == 0 { "prod" } else { "staging" },
                       "git_sha": format!("{i:08x}"),
                       "occurred_at": format!("2026-03-{:02}T00:00:00Z", 1 + i % 28)})
            })
            .collect();
        env.seed(&events).await;
        let pool = crate::connect(&env.database_url, 1).unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        for (environment, index) in [
            ("prod", "deploy_facts_prod_window"),
            ("staging", "deploy_facts_other_window"),
        ] {
            let mut tx = as_on_a_large_store(&pool).await;
            let sql = grouping(DEPLOY_METRICS, false);
            let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {sql}"))
                .bind(environment)
                .bind(vec![at("2026-03-01T00:00:00Z"), at("2026-03-10T00:00:00Z")])
                .bind(vec![at("2026-03-10T00:00:00Z"), at("2026-03-20T00:00:00Z")])
                .bind(at("2026-03-20T00:00:00Z"))
                .bind(None::<&str>)
                .bind(median::IN_PROCESS_MAX)
                .bind(vec![1i32, 1])
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            let plan = plan.join("\n");
            assert!(
                plan.contains(&format!("Index Only Scan using {index} ")),
                "{environment}:\n{plan}"
            );
            tx.rollback().await.unwrap();
        }
        pool.close().await;
        env.cleanup().await;
    }

    /// One service's rework reads its own pieces (by an index keyed by service first),
    /// not every service's; all services read the opening-time index, with each piece's
    /// count in it.
    #[tokio::test]
    async fn rework_reads_the_pieces_of_its_scope() {
        let env = TestEnv::new().await;
        // Pieces as the projector keeps them, written directly (only the plan is under
        // test): 50k of them over two years, one every 20 minutes, of 50 services.
        sqlx::query(
            "INSERT INTO rework_pieces (environment, service, opened_at, until, piece_from,
                                        reach, attempts)
             SELECT 'prod', 's' || i % 50, t, t + interval '1 hour', t, t + interval '1 hour', i % 3
             FROM generate_series(1, 50000) i,
                  LATERAL (SELECT timestamptz '2025-01-01' + i * interval '20 minutes' AS t) at",
        )
        .execute(&env.pool)
        .await
        .unwrap();
        sqlx::query("ANALYZE rework_pieces")
            .execute(&env.pool)
            .await
            .unwrap();
        let pool = crate::connect(&env.database_url, 1).unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        for (service, indexes) in [
            (
                Some("s3"),
                &["rework_pieces_pkey", "rework_pieces_piece"][..],
            ),
            (None, &["rework_pieces_opened"][..]),
        ] {
            let mut tx = as_on_a_large_store(&pool).await;
            let sql = grouping(REWORK, false);
            let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {sql}"))
                .bind("prod")
                .bind(vec![at("2026-03-01T00:00:00Z"), at("2026-03-10T00:00:00Z")])
                .bind(vec![at("2026-03-10T00:00:00Z"), at("2026-03-20T00:00:00Z")])
                .bind(service)
                .bind(vec![1i32, 1])
                .fetch_all(&mut *tx)
                .await
                .unwrap();
            let plan = plan.join("\n");
            assert!(
                indexes
                    .iter()
                    .any(|index| plan.contains(&format!("Scan using {index} on rework_pieces "))),
                "{service:?}:\n{plan}"
            );
            if service.is_some() {
                assert!(!plan.contains("rework_pieces_opened"), "{plan}");
            }
            tx.rollback().await.unwrap();
        }
        pool.close().await;
        env.cleanup().await;
    }

    /// The second connection reads the log as the first one's snapshot had it, not as
    /// it is when the second one starts.
    #[tokio::test]
    async fn the_second_connection_reads_the_first_ones_snapshot() {
        let env = TestEnv::new().await;
        let deploy = |id: &str| {
            json!({"id": id, "kind": "deploy", "service": "api", "git_sha": "abcd",
                   "occurred_at": "2026-03-10T00:00:00Z"})
        };
        env.seed(&[deploy("d1")]).await;
        let pool = crate::connect(&env.database_url, 2).unwrap();
        let count = "SELECT count(*) FROM events";
        let mut first = crate::dora::snapshot(&pool).await.unwrap();
        let id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut *first)
            .await
            .unwrap();
        env.seed(&[deploy("d2")]).await;
        let mut conn = pool.acquire().await.unwrap();
        let mut twin = in_snapshot(&mut conn, &id).await.unwrap();
        let seen: i64 = sqlx::query_scalar(count)
            .fetch_one(&mut *twin)
            .await
            .unwrap();
        assert_eq!(seen, 1, "d2 was appended after the snapshot");
        twin.commit().await.unwrap();
        let now: i64 = sqlx::query_scalar(count)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(now, 2);
        assert!(in_snapshot(&mut conn, "x'; --").await.is_err());
        first.commit().await.unwrap();
        env.cleanup().await;
    }
}
