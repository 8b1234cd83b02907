//! What went wrong in a window (CONTRACT.md section 5.2), and the lists the dashboard
//! shows beside the numbers: the open incidents and the services that have events.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::{MetricsQuery, Window};

/// The `/dora/failures` answer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Failures {
    /// The window listed.
    pub window: Window,
    /// The service filter, `null` for all.
    pub service: Option<String>,
    /// The environment.
    pub environment: String,
    /// All failed attempts of the window; equals `change_failure_rate.failed`.
    pub total: i64,
    /// The newest `limit` of them, newest first.
    pub failures: Vec<Failure>,
}

/// One failed deploy attempt.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Failure {
    /// The deploy event's id.
    pub deploy_id: String,
    /// Its service.
    pub service: String,
    /// The sha it shipped.
    pub git_sha: String,
    /// When it was attempted.
    pub occurred_at: DateTime<Utc>,
    /// The event that failed it: itself (a failed attempt), a rollback or an incident.
    pub failed_by: FailedBy,
}

/// The event that failed an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FailedBy {
    /// Its id.
    pub id: String,
    /// `deploy`, `rollback` or `incident_opened`.
    pub kind: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
}

/// The newest `$6` of the rows `change_failure_rate.failed` counts (the same filter),
/// with the event in `failed_by`: the earliest that failed the attempt, so its time is
/// `failed_at`. The log is joined only for the rows listed: joining first (to count
/// the rest with a window function) looked up every failed attempt of the window in
/// the log, 8k random reads for a week at 10M events.
const FAILED_ATTEMPTS: &str = r#"
SELECT d.event_id, d.service, d.git_sha, d.occurred_at,
       m.id AS failed_by, m.kind AS failed_by_kind, m.occurred_at AS failed_by_at
FROM (
    SELECT event_id, service, git_sha, occurred_at, stream_seq, failed_by
    FROM deploy_facts
    WHERE environment = $1
      AND ($5::text IS NULL OR service = $5)
      AND occurred_at >= $2 AND occurred_at < $3
      AND failed_at <= $4
    ORDER BY occurred_at DESC, stream_seq DESC
    LIMIT $6
) d
JOIN events m ON m.id = d.failed_by
ORDER BY d.occurred_at DESC, d.stream_seq DESC
"#;

/// All of them, counted on the facts' window index alone.
const FAILED_COUNT: &str = r#"
SELECT count(*)
FROM deploy_facts
WHERE environment = $1
  AND ($5::text IS NULL OR service = $5)
  AND occurred_at >= $2 AND occurred_at < $3
  AND failed_at <= $4
"#;

#[derive(sqlx::FromRow)]
struct FailureRow {
    event_id: String,
    service: String,
    git_sha: String,
    occurred_at: DateTime<Utc>,
    failed_by: String,
    failed_by_kind: String,
    failed_by_at: DateTime<Utc>,
}

/// The failed attempts of the query's window, newest first, at most `limit`.
pub async fn failures(
    pool: &PgPool,
    query: &MetricsQuery,
    limit: u32,
) -> Result<Failures, sqlx::Error> {
    let window = query.window();
    let service = query.service.as_deref();
    let env = query.environment.as_str();
    let mut tx = super::snapshot(pool).await?;
    let rows: Vec<FailureRow> = sqlx::query_as(FAILED_ATTEMPTS)
        .bind(env)
        .bind(window.start)
        .bind(window.end)
        .bind(query.as_of)
        .bind(service)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
    let total: i64 = sqlx::query_scalar(FAILED_COUNT)
        .bind(env)
        .bind(window.start)
        .bind(window.end)
        .bind(query.as_of)
        .bind(service)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Failures {
        window,
        service: query.service.clone(),
        environment: query.environment.clone(),
        total,
        failures: rows
            .into_iter()
            .map(|r| Failure {
                deploy_id: r.event_id,
                service: r.service,
                git_sha: r.git_sha,
                occurred_at: r.occurred_at,
                failed_by: FailedBy {
                    id: r.failed_by,
                    kind: r.failed_by_kind,
                    occurred_at: r.failed_by_at,
                },
            })
            .collect(),
    })
}

/// An incident open at a given instant.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OpenIncident {
    /// The pager's reference, as sent (any printable text).
    pub ref_id: String,
    /// The service of its `incident_opened`.
    pub service: String,
    /// When it opened.
    pub opened_at: DateTime<Utc>,
}

/// Incidents opened before `$2` and not closed by it: the ones `open_incidents` counts
/// (the same stab into their ranges, see `OPEN_INCIDENTS` in grouped.rs), longest open
/// first.
///
/// The stab is materialised before the sort. Written as one query, the planner
/// guessed thousands of incidents open at once (there are a few dozen) and so read the
/// opening-time index in order until 25 of them matched: every incident ever opened,
/// 246 ms at 10M events (334k incidents), the dashboard's slowest statement.
const OPEN_INCIDENTS: &str = r#"
WITH open AS MATERIALIZED (
    SELECT ref_id, service, opened_at FROM incident_facts
    WHERE environment = $1
      AND tstzrange(opened_at, closed_at, '(]') @> $2::timestamptz
      AND ($3::text IS NULL OR service = $3)
)
SELECT ref_id, service, opened_at FROM open
ORDER BY opened_at, ref_id
LIMIT $4
"#;

/// The incidents open at the end of the query's window (at most `limit`).
pub async fn open_incidents(
    pool: &PgPool,
    query: &MetricsQuery,
    limit: u32,
) -> Result<Vec<OpenIncident>, sqlx::Error> {
    let rows: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(OPEN_INCIDENTS)
        .bind(&query.environment)
        .bind(query.window().end)
        .bind(query.service.as_deref())
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(ref_id, service, opened_at)| OpenIncident {
            ref_id,
            service,
            opened_at,
        })
        .collect())
}

/// Every service with a deploy attempt or an incident in `environment`, by name: the
/// table the projector keeps of them (migration 0008).
const SERVICES: &str = r#"
SELECT service FROM services WHERE environment = $1 ORDER BY service
"#;

/// The services that have events in `environment`.
pub async fn services(pool: &PgPool, environment: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(SERVICES)
        .bind(environment)
        .fetch_all(pool)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use dora_system_tests::TestEnv;

    /// The incidents open at an instant are read through the index of their ranges,
    /// whatever the planner guesses of how many there are: on a long history of
    /// closed incidents, not a walk through every incident in opening order.
    #[tokio::test]
    async fn open_incidents_are_a_stab_not_a_walk_through_the_history() {
        let env = TestEnv::new().await;
        // A history as the facts hold it: 100k incidents, one opening every ten
        // minutes, most closed within hours, one in a hundred open for 300 days (the
        // tail that made the planner guess hundreds open at once and walk). The facts
        // are written directly: only the plan and the reading are under test.
        sqlx::query(
            "INSERT INTO incident_facts (open_event_id, ref_id, service, environment, opened_at,
                                         closed_at, close_event_id)
             SELECT 'o' || i, 'r' || i, 's' || i % 50, 'prod',
                    timestamptz '2024-01-01' + i * interval '10 minutes',
                    timestamptz '2024-01-01' + i * interval '10 minutes'
                        + CASE WHEN i % 100 = 0 THEN interval '300 days'
                               ELSE (i % 7 + 1) * interval '1 hour' END,
                    'c' || i
             FROM generate_series(1, 100000) i",
        )
        .execute(&env.pool)
        .await
        .unwrap();
        sqlx::query("ANALYZE incident_facts")
            .execute(&env.pool)
            .await
            .unwrap();
        let pool = crate::connect(&env.database_url, 1).unwrap();
        let at: DateTime<Utc> = "2025-03-01T00:00:00Z".parse().unwrap();
        let mut tx = pool.begin().await.unwrap();
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {OPEN_INCIDENTS}"))
            .bind("prod")
            .bind(at)
            .bind(None::<&str>)
            .bind(25i64)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("incident_facts_open_over"), "{plan}");
        assert!(!plan.contains("incident_facts_opened"), "{plan}");
        tx.rollback().await.unwrap();

        // And it reads them as a naive reading does: opened before `at`, not closed
        // by it, longest open first.
        let query = MetricsQuery {
            days: 7,
            offset: 0,
            as_of: at,
            service: None,
            environment: "prod".to_owned(),
        };
        let open = open_incidents(&pool, &query, 1000).await.unwrap();
        let naive: Vec<String> = sqlx::query_scalar(
            "SELECT ref_id FROM incident_facts
             WHERE opened_at < $1 AND (closed_at IS NULL OR closed_at >= $1)
             ORDER BY opened_at",
        )
        .bind(at)
        .fetch_all(&env.pool)
        .await
        .unwrap();
        assert!(naive.len() > 25, "{} open", naive.len());
        let read: Vec<String> = open.into_iter().map(|o| o.ref_id).collect();
        assert_eq!(read, naive);
        pool.close().await;
        env.cleanup().await;
    }
}
