//! The alert state and outbox, in schema `dora_alerts` (outside the store that replay
//! rebuilds): which scopes fire, and the messages their changes call for.
//!
//! A message is inserted in the transaction that changes its scope's state, so a state
//! change and its message commit together or not at all. Checks are serialised by an
//! advisory lock held for the check's transaction; deliveries claim one message at a
//! time with `FOR UPDATE SKIP LOCKED`, so replicas never send the same message twice.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, Transaction};

use super::rules::Metric;
use crate::error::Result;

/// The schema holding the alert state; never touched by replay.
pub const SCHEMA: &str = "dora_alerts";

/// The alert schema's migrations, embedded; [`migrate`] applies them.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/alerts");

/// A small writable pool whose connections see schema `dora_alerts` only. Lazy, like
/// the store's pool: the API starts while the database is down.
pub fn connect(database_url: &str, max_connections: u32) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(database_url)?
        .options([("search_path", SCHEMA), ("statement_timeout", "30s")])
        .application_name("dora-api-alerts");
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// Creates the schema if it is missing and applies the migrations. Safe when several
/// replicas start at once: both steps take an advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('dora-create-schema'))")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Whether `error` is the database refusing to write: a read-only transaction (a
/// read replica, or `default_transaction_read_only`) or a role without the right.
pub fn refuses_writes(error: &crate::Error) -> bool {
    let sql = match error {
        crate::Error::Database(e) => e,
        crate::Error::Migrate(sqlx::migrate::MigrateError::Execute(e)) => e,
        _ => return false,
    };
    // read_only_sql_transaction, insufficient_privilege.
    matches!(sql, sqlx::Error::Database(e) if matches!(e.code().as_deref(), Some("25006" | "42501")))
}

/// One watched scope of one metric.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScopeKey {
    /// The metric.
    pub metric: Metric,
    /// The environment.
    pub environment: String,
    /// One service, or `None` for all together (stored as `''`).
    pub service: Option<String>,
}

impl ScopeKey {
    fn service_column(&self) -> &str {
        self.service.as_deref().unwrap_or("")
    }
}

fn service_of(column: String) -> Option<String> {
    (!column.is_empty()).then_some(column)
}

/// Takes the check lock for the transaction; `false` when another replica holds it.
pub async fn try_lock(tx: &mut PgConnection) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('dora-alerts-check'))")
            .fetch_one(tx)
            .await?,
    )
}

/// The scopes firing now.
pub async fn firing(tx: &mut PgConnection) -> Result<HashSet<ScopeKey>> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT metric, environment, service FROM scopes WHERE firing")
            .fetch_all(tx)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(metric, environment, service)| {
            Some(ScopeKey {
                metric: Metric::parse(&metric)?,
                environment,
                service: service_of(service),
            })
        })
        .collect())
}

/// Records what a check saw of a scope: `firing` and, when `changed`, a new episode
/// boundary (a start when firing, an end otherwise).
pub async fn record(
    tx: &mut PgConnection,
    key: &ScopeKey,
    firing: bool,
    changed: bool,
    now: DateTime<Utc>,
    prior: &Value,
    current: &Value,
) -> Result<()> {
    sqlx::query(
        r#"
INSERT INTO scopes (metric, environment, service, firing, changed_at, checked_at, prior, current)
VALUES ($1, $2, $3, $4, $5, $5, $6::jsonb, $7::jsonb)
ON CONFLICT (metric, environment, service) DO UPDATE SET
    firing     = EXCLUDED.firing,
    changed_at = CASE WHEN $8 THEN EXCLUDED.changed_at ELSE scopes.changed_at END,
    checked_at = EXCLUDED.checked_at,
    prior      = EXCLUDED.prior,
    current    = EXCLUDED.current,
    episodes   = scopes.episodes + CASE WHEN $8 AND EXCLUDED.firing THEN 1 ELSE 0 END
"#,
    )
    .bind(key.metric.as_str())
    .bind(&key.environment)
    .bind(key.service_column())
    .bind(firing)
    .bind(now)
    .bind(prior.to_string())
    .bind(current.to_string())
    .bind(changed)
    .execute(tx)
    .await?;
    Ok(())
}

/// Whether a message announces a start or an end of an episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The scope regressed.
    Firing,
    /// The scope is back within tolerance.
    Recovered,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Firing => "firing",
            Kind::Recovered => "recovered",
        }
    }
}

/// Marks the scope's still-undelivered firing message superseded: the regression it
/// announces is over before anyone heard of it. Returns how many it marked. A message
/// a replica is delivering right now is row-locked; this waits for that delivery, and
/// then finds it delivered.
pub async fn supersede_undelivered(tx: &mut PgConnection, key: &ScopeKey) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE messages SET status = 'superseded', next_attempt_at = now()
         WHERE metric = $1 AND environment = $2 AND service = $3
           AND kind = 'firing' AND status = 'pending'",
    )
    .bind(key.metric.as_str())
    .bind(&key.environment)
    .bind(key.service_column())
    .execute(tx)
    .await?
    .rows_affected())
}

/// Puts a message in the outbox (pending, or already superseded); returns its id.
pub async fn enqueue(
    tx: &mut PgConnection,
    key: &ScopeKey,
    kind: Kind,
    now: DateTime<Utc>,
    text: &str,
    body: &Value,
    superseded: bool,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO messages (kind, metric, environment, service, evaluated_at, text, body, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)
         RETURNING id",
    )
    .bind(kind.as_str())
    .bind(key.metric.as_str())
    .bind(&key.environment)
    .bind(key.service_column())
    .bind(now)
    .bind(text)
    .bind(body.to_string())
    .bind(if superseded { "superseded" } else { "pending" })
    .fetch_one(tx)
    .await?)
}

/// A message claimed for delivery.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Its id.
    pub id: i64,
    /// The plain text (what is logged without a webhook).
    pub text: String,
    /// The Slack body.
    pub body: Value,
    /// Attempts made before this one.
    pub attempts: i32,
}

/// Claims the oldest due pending message, row-locked until `tx` ends, skipping those
/// another replica holds and those whose scope has an older message still pending (a
/// "recovered" never overtakes its "firing").
pub async fn claim(tx: &mut Transaction<'_, Postgres>) -> Result<Option<Outgoing>> {
    let row: Option<(i64, String, String, i32)> = sqlx::query_as(
        r#"
SELECT m.id, m.text, m.body::text, m.attempts
FROM messages m
WHERE m.status = 'pending' AND m.next_attempt_at <= now()
  AND NOT EXISTS (
      SELECT 1 FROM messages e
      WHERE e.status = 'pending' AND e.id < m.id
        AND e.metric = m.metric AND e.environment = m.environment AND e.service = m.service)
ORDER BY m.next_attempt_at, m.id
LIMIT 1
FOR UPDATE OF m SKIP LOCKED
"#,
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|(id, text, body, attempts)| Outgoing {
        id,
        text,
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
        attempts,
    }))
}

/// How a claimed message ended this time.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// Slack answered 2xx.
    Delivered {
        /// Requests this delivery made.
        tries: u32,
        /// The last failed request's error, when there were failures first.
        error: Option<String>,
    },
    /// No webhook: written to the log instead.
    Logged,
    /// Not delivered yet: retried after `after`.
    Later {
        /// Requests this delivery made.
        tries: u32,
        /// Why, for `GET /alerts` (status and Slack's answer, or the network error).
        error: String,
        /// When to try again.
        after: Duration,
    },
}

/// Records how a claimed message ended.
pub async fn settle(tx: &mut PgConnection, id: i64, settled: &Settled) -> Result<()> {
    let (status, tries, error, after_ms) = match settled {
        Settled::Delivered { tries, error } => ("delivered", *tries, error.as_deref(), 0),
        Settled::Logged => ("logged", 0, None, 0),
        Settled::Later {
            tries,
            error,
            after,
        } => (
            "pending",
            *tries,
            Some(error.as_str()),
            i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        ),
    };
    sqlx::query(
        "UPDATE messages SET
             status = $2,
             attempts = attempts + $3,
             last_error = coalesce($4, last_error),
             next_attempt_at = now() + make_interval(secs => $5::float8 / 1000),
             delivered_at = CASE WHEN $2 = 'pending' THEN NULL ELSE now() END
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(i32::try_from(tries).unwrap_or(i32::MAX))
    .bind(error)
    .bind(after_ms as f64)
    .execute(tx)
    .await?;
    Ok(())
}

/// A scope that ever fired, as `GET /alerts` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScopeState {
    /// `change_failure_rate` or `lead_time`.
    pub metric: String,
    /// The environment.
    pub environment: String,
    /// The service, `null` for all services together.
    pub service: Option<String>,
    /// Firing now.
    pub firing: bool,
    /// When the current episode started (firing) or the last one ended.
    pub since: DateTime<Utc>,
    /// The last check that judged it.
    pub checked_at: DateTime<Utc>,
    /// Episodes so far.
    pub episodes: i32,
    /// What that check saw in the prior window.
    pub prior: Value,
    /// What that check saw in the current window.
    pub current: Value,
}

/// A message, as `GET /alerts` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageState {
    /// Its id.
    pub id: i64,
    /// `firing` or `recovered`.
    pub kind: String,
    /// The metric.
    pub metric: String,
    /// The environment.
    pub environment: String,
    /// The service, `null` for all.
    pub service: Option<String>,
    /// The check's `now`.
    pub evaluated_at: DateTime<Utc>,
    /// What it says.
    pub text: String,
    /// `pending`, `delivered`, `logged` or `superseded`.
    pub status: String,
    /// Requests made to Slack.
    pub attempts: i32,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// When a pending message is tried next.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it was delivered (or logged).
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The `GET /alerts` answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// Every scope that ever fired, firing ones first.
    pub scopes: Vec<ScopeState>,
    /// The newest messages, newest first.
    pub messages: Vec<MessageState>,
}

type ScopeRow = (
    String,
    String,
    String,
    bool,
    DateTime<Utc>,
    DateTime<Utc>,
    i32,
    String,
    String,
);
type MessageRow = (
    i64,
    String,
    String,
    String,
    String,
    DateTime<Utc>,
    String,
    String,
    i32,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

/// The state of every scope that ever fired, and the `limit` newest messages.
pub async fn overview(pool: &PgPool, limit: u32) -> Result<Overview> {
    let scopes: Vec<ScopeRow> = sqlx::query_as(
        "SELECT metric, environment, service, firing, changed_at, checked_at, episodes,
                prior::text, current::text
         FROM scopes ORDER BY firing DESC, environment, service, metric",
    )
    .fetch_all(pool)
    .await?;
    let messages: Vec<MessageRow> = sqlx::query_as(
        "SELECT id, kind, metric, environment, service, evaluated_at, text, status, attempts,
                last_error, next_attempt_at, delivered_at
         FROM messages ORDER BY id DESC LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    let json = |s: &str| serde_json::from_str(s).unwrap_or(Value::Null);
    Ok(Overview {
        scopes: scopes
            .into_iter()
            .map(|r| ScopeState {
                metric: r.0,
                environment: r.1,
                service: service_of(r.2),
                firing: r.3,
                since: r.4,
                checked_at: r.5,
                episodes: r.6,
                prior: json(&r.7),
                current: json(&r.8),
            })
            .collect(),
        messages: messages
            .into_iter()
            .map(|r| MessageState {
                id: r.0,
                kind: r.1,
                metric: r.2,
                environment: r.3,
                service: service_of(r.4),
                evaluated_at: r.5,
                text: r.6,
                next_attempt_at: (r.7 == "pending").then_some(r.10),
                status: r.7,
                attempts: r.8,
                last_error: r.9,
                delivered_at: r.11,
            })
            .collect(),
    })
}
