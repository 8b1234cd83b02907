//! The PostgreSQL store: connecting to one schema, migrating it, and appending one batch.
//!
//! A batch is one transaction: the new events, the per-attempt and per-incident facts
//! they change, and the rejected messages. Its caller acks the messages only after
//! [`apply`] returned `Ok`, so a crash at any point loses nothing: the messages come
//! again and the event ids make the second append a no-op.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::decode::{Decoded, Rejected, Stored};
use crate::error::Result;

/// The migrations, embedded; [`migrate`] applies them to one schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// What one batch did to the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Events appended to the log.
    pub inserted: u64,
    /// Valid events whose id was already in the log (or earlier in the batch).
    pub duplicates: u64,
    /// Messages kept in `rejected_events`.
    pub rejected: u64,
}

impl std::ops::AddAssign for Applied {
    fn add_assign(&mut self, other: Applied) {
        self.inserted += other.inserted;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
    }
}

/// A pool whose connections see `schema` and nothing else.
pub async fn connect(database_url: &str, schema: &str, max_connections: u32) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(database_url)?
        .options([
            ("search_path", schema),
            // A batch's keys arrive as arrays. PostgreSQL plans a prepared statement
            // generically after five runs, and a generic plan guesses 10 rows per array:
            // it then joined a batch's ~1000 attempts to their markers by nested loop
            // and read each key's attempts through the service's window index, a scan
            // of the service's history per new deploy. Planning for the actual arrays
            // costs about a millisecond a batch.
            ("plan_cache_mode", "force_custom_plan"),
            // The batch statements are index probes of a few milliseconds; the planner
            // prices row-comparison ranges pessimistically (a tenth of the table a
            // probe), and a recompute written with them passed the server's JIT
            // threshold: compiling took 48 ms where the statement ran in 20.
            ("jit", "off"),
        ])
        .application_name("dora-projector");
    pool(options, max_connections).await
}

/// [`connect`] without sqlx's statement logging, whose slow-statement warning (over 1 s)
/// would print replay's bulk statements whole: they run for seconds to minutes by
/// design, and each step logs its own time.
pub async fn connect_for_bulk(
    database_url: &str,
    schema: &str,
    max_connections: u32,
) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(database_url)?
        .options([("search_path", schema)])
        .application_name("dora-projector replay")
        .disable_statement_logging();
    pool(options, max_connections).await
}

async fn pool(options: PgConnectOptions, max_connections: u32) -> Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?)
}

/// True when `error` says the database `DATABASE_URL` names does not exist (SQLSTATE
/// 3D000) while its server answered.
pub fn is_missing_database(error: &crate::Error) -> bool {
    matches!(error, crate::Error::Database(sqlx::Error::Database(e))
        if e.code().as_deref() == Some("3D000"))
}

/// The database `database_url` names (libpq's default: the user's name).
pub fn database_name(database_url: &str) -> String {
    PgConnectOptions::from_str(database_url)
        .map(|o| o.get_database().unwrap_or(o.get_username()).to_owned())
        .unwrap_or_default()
}

/// Creates the database `database_url` names, connecting to the server's `postgres`
/// database to do it. The projector owns the store, so a server that is reachable but
/// lacks the database is set up rather than refused. Returns the database's name.
/// Another projector creating it at the same moment is not an error.
pub async fn create_database(database_url: &str) -> Result<String> {
    let options = PgConnectOptions::from_str(database_url)?;
    let name = database_name(database_url);
    let mut admin = sqlx::PgConnection::connect_with(
        &options
            .database("postgres")
            .application_name("dora-projector"),
    )
    .await?;
    // An identifier cannot be a bind parameter; quoted, with its quotes doubled.
    let created = sqlx::query(&format!(
        "CREATE DATABASE \"{}\"",
        name.replace('"', "\"\"")
    ))
    .execute(&mut admin)
    .await;
    match created {
        Ok(_) => Ok(name),
        // duplicate_database: someone else was first.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => Ok(name),
        Err(e) => Err(e.into()),
    }
}

/// Creates `schema` if it is missing and applies the migrations to it. Safe when several
/// processes start at once: the schema creation and sqlx's migrator both take an
/// advisory lock.
pub async fn migrate(pool: &PgPool, schema: &str) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('dora-create-schema'))")
        .execute(&mut *tx)
        .await?;
    // The schema name is one of two constants, never user input.
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// The store lock: held shared by every batch transaction from its first statement to
/// its commit ([`enter_store`]), and exclusively by replay's swap ([`lock_store`]):
/// the swap waits for the batches in flight and no batch starts until the schemas have
/// changed names, so a batch never appends to one store and recomputes in the other.
const SHARE_STORE: &str =
    "SELECT pg_advisory_xact_lock_shared(hashtext('dora-store:' || current_schema()))";
/// The store lock, exclusively (see [`SHARE_STORE`]).
const LOCK_STORE: &str =
    "SELECT pg_advisory_xact_lock(hashtext('dora-store:' || current_schema()))";

/// Serialises the part of a batch that reads what other batches wrote: the recompute of
/// the facts, the rejections and the position. Two projectors (or a projector and a late
/// replay catch-up), or two batches of one projector in flight at once, recomputing the
/// same deploy's facts concurrently could each miss the other's uncommitted rows; with
/// this lock each sees the other's commit. The appends before it need no lock: a batch's
/// recompute reads the log as the batches committed before it left it, plus its own
/// rows, exactly as if it had appended them under the lock too, and a later batch's
/// recompute covers whatever its own rows change. So one batch's appends run while
/// another's recompute and commit do (see `consume`).
const SERIALISE_BATCHES: &str =
    "SELECT pg_advisory_xact_lock(hashtext('dora-batch:' || current_schema()))";

/// Takes the store lock of the store `conn`'s search path points at, exclusively, until
/// the end of its transaction: it waits for every batch in flight, and no batch starts
/// meanwhile, not even one that only keeps rejected messages (replay's swap needs that).
pub async fn lock_store(conn: &mut sqlx::PgConnection) -> Result<()> {
    sqlx::query(LOCK_STORE).execute(conn).await?;
    Ok(())
}

/// What a batch transaction takes first: the store lock, shared (see [`lock_store`]).
pub async fn enter_store(conn: &mut sqlx::PgConnection) -> Result<()> {
    sqlx::query(SHARE_STORE).execute(conn).await?;
    Ok(())
}

/// Where a store stands: which store it is, which stream it is derived from, and the
/// highest stream sequence written into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Made once when the store is created; kept by backups and by replay.
    pub store_id: String,
    /// The stream it follows, once a projector has followed one.
    pub stream: Option<String>,
    /// The highest stream sequence written (0: none).
    pub last_seq: u64,
}

#[derive(sqlx::FromRow)]
struct PositionRow {
    store_id: String,
    stream: Option<String>,
    last_seq: i64,
}

impl From<PositionRow> for Position {
    fn from(row: PositionRow) -> Position {
        Position {
            store_id: row.store_id,
            stream: row.stream,
            last_seq: u64::try_from(row.last_seq).unwrap_or(0),
        }
    }
}

/// The store's position.
pub async fn position(pool: &PgPool) -> Result<Position> {
    let row: PositionRow =
        sqlx::query_as("SELECT store_id::text AS store_id, stream, last_seq FROM store_position")
            .fetch_one(pool)
            .await?;
    Ok(row.into())
}

/// The store's position, recording `stream` as its stream if it has none yet. Only a
/// store without a stream is written to: the row is not locked otherwise, so a batch in
/// flight does not hold this up.
pub async fn claim(pool: &PgPool, stream: &str) -> Result<Position> {
    sqlx::query("UPDATE store_position SET stream = $1 WHERE stream IS NULL")
        .bind(stream)
        .execute(pool)
        .await?;
    position(pool).await
}

/// Gives the store at `pool` the identity of `of` (its id and stream), for a store
/// that replay builds to take the place of `of`.
pub async fn adopt_identity(pool: &PgPool, of: &Position) -> Result<()> {
    sqlx::query("UPDATE store_position SET store_id = $1::uuid, stream = $2")
        .bind(&of.store_id)
        .bind(&of.stream)
        .execute(pool)
        .await?;
    Ok(())
}

/// Appends the batch's events (first occurrence of an id wins) and inserts the facts of
/// the new deploys and incident opens, and the services they name, in one statement.
/// Returns the rows it appended, so the caller knows which keys to recompute and how
/// many were duplicates.
///
/// Two batches' appends can run at once (see `SERIALISE_BATCHES`), and an insert that
/// meets a key the other inserted and has not committed waits for it: rows go in key
/// order (ids, services), so two batches holding the same new keys wait in one
/// direction and never deadlock.
const APPEND_EVENTS: &str = r#"
WITH incoming AS (
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[],
                $7::timestamptz[], $8::text[], $9::timestamptz[], $10::text[], $11::int8[],
                $12::timestamptz[])
         WITH ORDINALITY
         AS t(id, kind, service, environment, git_sha, succeeded, commit_at, ref_id,
              occurred_at, source, stream_seq, received_at, ord)
),
appended AS (
    INSERT INTO events (id, kind, service, environment, git_sha, succeeded, commit_at,
                        ref_id, occurred_at, source, stream_seq, received_at)
    SELECT DISTINCT ON (id) id, kind, service, environment, git_sha, succeeded, commit_at,
           ref_id, occurred_at, source, stream_seq, received_at
    FROM incoming
    ORDER BY id, ord
    ON CONFLICT (id) DO NOTHING
    RETURNING *
),
deploys AS (
    INSERT INTO deploy_facts (event_id, service, environment, git_sha, occurred_at,
                              stream_seq, succeeded, lead_seconds, failed_at, failed_by)
    SELECT id, service, environment, git_sha, occurred_at, stream_seq, succeeded,
           extract(epoch FROM occurred_at - commit_at)::float8,
           CASE WHEN NOT succeeded THEN occurred_at END,
           CASE WHEN NOT succeeded THEN id END
    FROM appended
    WHERE kind = 'deploy'
),
opens AS (
    INSERT INTO incident_facts (open_event_id, ref_id, service, environment, opened_at)
    SELECT id, ref_id, service, environment, occurred_at
    FROM appended
    WHERE kind = 'incident_opened'
),
born AS (
    INSERT INTO services (environment, service)
    SELECT DISTINCT environment, service
    FROM appended
    WHERE kind IN ('deploy', 'incident_opened')
    ORDER BY environment, service
    ON CONFLICT DO NOTHING
)
SELECT kind, service, environment, git_sha, ref_id, occurred_at FROM appended
"#;

/// Recomputes `failed_at` for the attempts of service/environment/sha keys that new
/// events can change (CONTRACT.md section 5): each rollback or sha-carrying incident
/// marks the latest attempt of its key at or before it (ties: the later in the stream),
/// and an attempt's `failed_at` is its own time if it did not succeed, else its earliest
/// marker's time. Only rows whose value changes are written.
///
/// A key can be deployed thousands of times, and this runs under the batch lock, so it
/// reads a slice of the key per new event at `at`, not the key's history. A new deploy
/// at `at` only changes which attempt the markers between `at` and the key's next
/// attempt point to (its own, instead of the attempt before it); a new marker at `at`
/// only marks the latest attempt at or before `at`. So the attempts that can change lie
/// from `lo`, the time of the latest attempt strictly before `at` (or `at` itself if there
/// is none), up to `at`; and every marker that points to one of them lies in
/// [`lo`, `hi`), `hi` being the time of the first attempt strictly after `at`. A marker in
/// that span points to an attempt in it, so the span is recomputed whole and exactly.
/// Strict bounds on both sides keep every attempt tied with `lo` or `at` in the span.
/// Measured on a key with 5000 attempts and 5000 markers, one new event: 10k-row reads
/// before, a handful of index probes now (figures in the commit message).
const RECOMPUTE_FAILURES: &str = r#"
WITH news AS (
    SELECT DISTINCT n.*
    FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
         AS n(service, environment, git_sha, at)
),
-- Each bound is one probe of the attempts index (git_sha, service, environment,
-- occurred_at): the entry just below, or just above, (key, at) in its order, kept when
-- it is of the same key. Written as equalities and a time range, the probe was also a
-- scan of the service's window index filtered by sha, which the planner chose on a
-- small store (25 pages a probe instead of 3; a third of a batch's recompute).
spans AS (
    SELECT n.service, n.environment, n.git_sha,
           coalesce(CASE WHEN (before.git_sha, before.service, before.environment)
                              = (n.git_sha, n.service, n.environment)
                         THEN before.occurred_at END, n.at) AS lo,
           coalesce(CASE WHEN (after.git_sha, after.service, after.environment)
                              = (n.git_sha, n.service, n.environment)
                         THEN after.occurred_at END, 'infinity') AS hi
    FROM news n
    LEFT JOIN LATERAL (
        SELECT d.git_sha, d.service, d.environment, d.occurred_at
        FROM deploy_facts d
        WHERE (d.git_sha, d.service, d.environment, d.occurred_at)
              < (n.git_sha, n.service, n.environment, n.at)
        ORDER BY d.git_sha DESC, d.service DESC, d.environment DESC, d.occurred_at DESC
        LIMIT 1
    ) before ON true
    LEFT JOIN LATERAL (
        SELECT d.git_sha, d.service, d.environment, d.occurred_at
        FROM deploy_facts d
        WHERE (d.git_sha, d.service, d.environment, d.occurred_at)
              > (n.git_sha, n.service, n.environment, n.at)
        ORDER BY d.git_sha, d.service, d.environment, d.occurred_at
        LIMIT 1
    ) after ON true
),
attempts AS (
    SELECT DISTINCT d.event_id, d.occurred_at, d.succeeded
    FROM spans s
    JOIN deploy_facts d
      ON d.service = s.service AND d.environment = s.environment
     AND d.git_sha = s.git_sha AND d.occurred_at >= s.lo AND d.occurred_at < s.hi
),
markers AS (
    SELECT DISTINCT m.id, m.service, m.environment, m.git_sha, m.occurred_at, m.stream_seq
    FROM spans s
    JOIN events m
      ON m.service = s.service AND m.environment = s.environment
     AND m.git_sha = s.git_sha AND m.kind IN ('rollback', 'incident_opened')
     AND m.occurred_at >= s.lo AND m.occurred_at < s.hi
),
marks AS (
    SELECT DISTINCT ON (attempt.event_id) attempt.event_id, m.occurred_at, m.id
    FROM markers m
    CROSS JOIN LATERAL (
        SELECT d.event_id
        FROM deploy_facts d
        WHERE d.service = m.service AND d.environment = m.environment
          AND d.git_sha = m.git_sha AND d.occurred_at <= m.occurred_at
        ORDER BY d.occurred_at DESC, d.stream_seq DESC
        LIMIT 1
    ) attempt
    ORDER BY attempt.event_id, m.occurred_at, m.stream_seq
),
-- Each attempt's own row, and its earliest mark if it has one; per attempt its own
-- failure first, then the mark, then (no failure at all) its own row's NULLs. One sort,
-- not a join: estimated at a row or two each, a join of the two was planned as a nested
-- loop, a batch's ~1000 attempts each scanning every mark (30 of a batch's 45 ms).
fresh AS (
    SELECT DISTINCT ON (event_id) event_id, failed_at, failed_by
    FROM (
        SELECT a.event_id,
               CASE WHEN NOT a.succeeded THEN a.occurred_at END AS failed_at,
               CASE WHEN NOT a.succeeded THEN a.event_id END AS failed_by,
               CASE WHEN NOT a.succeeded THEN 0 ELSE 2 END AS rank
        FROM attempts a
      UNION ALL
        SELECT marks.event_id, marks.occurred_at, marks.id, 1
        FROM marks
    ) candidates
    ORDER BY event_id, rank
)
UPDATE deploy_facts d
SET failed_at = fresh.failed_at, failed_by = fresh.failed_by
FROM fresh
WHERE d.event_id = fresh.event_id
  AND (d.failed_at, d.failed_by) IS DISTINCT FROM (fresh.failed_at, fresh.failed_by)
"#;

/// Rebuilds the incidents of the given ref_ids from the log (CONTRACT.md section 5):
/// walking a ref_id's opens in time order (ties: the earlier in the stream), an
/// incident starts at an open, closes at the first close of the ref_id at or after it
/// (ties: the earlier in the stream), and the next incident starts at the first open
/// after that close. An open while an incident runs, up to and including its close's
/// instant, re-triggers it: the same incident, one sample. `incident_facts` keeps one
/// row per incident, keyed by its first open; the rows of re-triggering opens go.
///
/// A ref_id can be reused thousands of times, and this runs under the batch lock, so the
/// walk does not start at the ref_id's first open. Let `after` be the latest close of
/// the ref_id strictly before its earliest new event. Every incident opened at or before
/// `after` closed by `after` (that close is at or after its open), so nothing the batch
/// adds changes them, and the walk goes on exactly as from a close at `after`: from the
/// first open strictly after it. Only the rows of opens after `after` are touched.
const RECOMPUTE_INCIDENTS: &str = r#"
WITH RECURSIVE news AS (
    SELECT ref_id, min(at) AS at
    FROM unnest($1::text[], $2::timestamptz[]) AS n(ref_id, at)
    GROUP BY ref_id
),
refs AS (
    SELECT n.ref_id, coalesce(c.occurred_at, '-infinity') AS after
    FROM news n
    LEFT JOIN LATERAL (
        SELECT e.occurred_at
        FROM events e
        WHERE e.kind = 'incident_closed' AND e.ref_id = n.ref_id AND e.occurred_at < n.at
        ORDER BY e.occurred_at DESC
        LIMIT 1
    ) c ON true
),
incidents AS (
    SELECT o.ref_id, o.id AS open_id, o.occurred_at AS opened_at,
           c.id AS close_id, c.occurred_at AS closed_at, o.service, o.environment
    FROM refs
    CROSS JOIN LATERAL (
        SELECT e.id, e.ref_id, e.occurred_at, e.service, e.environment
        FROM events e
        WHERE e.kind = 'incident_opened' AND e.ref_id = refs.ref_id
          AND e.occurred_at > refs.after
        ORDER BY e.occurred_at, e.stream_seq
        LIMIT 1
    ) o
    LEFT JOIN LATERAL (
        SELECT e.id, e.occurred_at
        FROM events e
        WHERE e.kind = 'incident_closed' AND e.ref_id = o.ref_id
          AND e.occurred_at >= o.occurred_at
        ORDER BY e.occurred_at, e.stream_seq
        LIMIT 1
    ) c ON true
  UNION ALL
    SELECT o.ref_id, o.id, o.occurred_at, c.id, c.occurred_at, o.service, o.environment
    FROM incidents i
    CROSS JOIN LATERAL (
        SELECT e.id, e.ref_id, e.occurred_at, e.service, e.environment
        FROM events e
        WHERE e.kind = 'incident_opened' AND e.ref_id = i.ref_id
          AND e.occurred_at > i.closed_at
        ORDER BY e.occurred_at, e.stream_seq
        LIMIT 1
    ) o
    LEFT JOIN LATERAL (
        SELECT e.id, e.occurred_at
        FROM events e
        WHERE e.kind = 'incident_closed' AND e.ref_id = o.ref_id
          AND e.occurred_at >= o.occurred_at
        ORDER BY e.occurred_at, e.stream_seq
        LIMIT 1
    ) c ON true
),
retriggers AS (
    -- Each incident_facts row is keyed by an open of its ref_id, so the rows after
    -- `after` are found through the opens, not by reading the ref_id's every row.
    DELETE FROM incident_facts f
    USING refs
    JOIN events o
      ON o.kind = 'incident_opened' AND o.ref_id = refs.ref_id AND o.occurred_at > refs.after
    WHERE f.open_event_id = o.id
      AND NOT EXISTS (SELECT 1 FROM incidents i WHERE i.open_id = f.open_event_id)
)
INSERT INTO incident_facts AS f
    (open_event_id, ref_id, service, environment, opened_at, closed_at, close_event_id)
-- The open's service and environment come with it from the walk: joined back to the
-- log instead, the recursion's row estimate (thousands) made that a hash join over
-- every event (57 of a batch's 70 ms at 220k events).
SELECT i.open_id, i.ref_id, i.service, i.environment, i.opened_at, i.closed_at, i.close_id
FROM incidents i
ON CONFLICT (open_event_id) DO UPDATE
SET closed_at = EXCLUDED.closed_at, close_event_id = EXCLUDED.close_event_id
WHERE (f.closed_at, f.close_event_id) IS DISTINCT FROM (EXCLUDED.closed_at, EXCLUDED.close_event_id)
"#;

/// Keeps messages that failed validation; a redelivered one is kept once.
const KEEP_REJECTED: &str = r#"
INSERT INTO rejected_events (stream_seq, subject, payload, reason, field, received_at)
SELECT * FROM unnest($1::int8[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::timestamptz[])
ON CONFLICT (stream_seq) DO NOTHING
"#;

#[derive(sqlx::FromRow)]
struct AppendedRow {
    kind: String,
    service: String,
    environment: String,
    git_sha: Option<String>,
    ref_id: Option<String>,
    occurred_at: DateTime<Utc>,
}

/// A reason or field name may quote the message, and PostgreSQL text cannot hold NUL.
fn storable(text: &str) -> String {
    text.replace('\0', "\\u0000")
}

/// True for errors a retry cannot fix: the database refused the data itself (SQLSTATE
/// class 22, data exception, or 23, integrity constraint violation).
pub fn is_refusal(error: &crate::Error) -> bool {
    match error {
        crate::Error::Database(sqlx::Error::Database(e)) => e
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        _ => false,
    }
}

/// Writes one batch in one transaction without moving the store's position: for
/// fixtures and benchmarks whose sequences are not the stream's. Nothing is written if
/// it fails.
pub async fn apply(pool: &PgPool, batch: &[Decoded]) -> Result<Applied> {
    apply_at(pool, batch, None).await
}

/// Writes one batch in one transaction and, in the same transaction, moves the store's
/// position up to `last_seq` (never back), so the position never claims a batch that
/// was not committed. Nothing is written if it fails.
pub async fn apply_at(pool: &PgPool, batch: &[Decoded], last_seq: Option<u64>) -> Result<Applied> {
    let events: Vec<&Stored> = batch
        .iter()
        .filter_map(|d| match d {
            Decoded::Event(s) => Some(s),
            Decoded::Rejected(_) => None,
        })
        .collect();
    let rejected: Vec<&Rejected> = batch
        .iter()
        .filter_map(|d| match d {
            Decoded::Rejected(r) => Some(r),
            Decoded::Event(_) => None,
        })
        .collect();

    let mut tx = pool.begin().await?;
    enter_store(&mut tx).await?;

    let appended: Vec<AppendedRow> = if events.is_empty() {
        Vec::new()
    } else {
        let col = |f: fn(&Stored) -> String| events.iter().map(|s| f(s)).collect::<Vec<_>>();
        let opt =
            |f: fn(&Stored) -> Option<String>| events.iter().map(|s| f(s)).collect::<Vec<_>>();
        let time = |f: fn(&Stored) -> Option<DateTime<Utc>>| {
            events.iter().map(|s| f(s)).collect::<Vec<_>>()
        };
        sqlx::query_as(APPEND_EVENTS)
            .bind(col(|s| s.event.id.clone()))
            .bind(col(|s| s.event.kind.as_str().to_owned()))
            .bind(col(|s| s.event.service.clone()))
            .bind(col(|s| s.event.environment.clone()))
            .bind(opt(|s| s.event.git_sha.clone()))
            .bind(
                events
                    .iter()
                    .map(|s| s.event.succeeded.unwrap_or(true))
                    .collect::<Vec<_>>(),
            )
            .bind(time(|s| s.event.commit_at))
            .bind(opt(|s| s.event.ref_id.clone()))
            .bind(time(|s| Some(s.event.occurred_at)))
            .bind(col(|s| s.source.clone()))
            .bind(events.iter().map(|s| s.stream_seq).collect::<Vec<_>>())
            .bind(time(|s| Some(s.received_at)))
            .fetch_all(&mut *tx)
            .await?
    };

    // From here on one batch at a time: see SERIALISE_BATCHES.
    sqlx::query(SERIALISE_BATCHES).execute(&mut *tx).await?;

    // The keys whose facts the new rows can change, with when: each recompute reads only
    // the slice of its key around the new events. BTree: each once, and the same order in
    // every transaction.
    let mut failure_events = BTreeSet::new();
    let mut ref_ids: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for row in &appended {
        match (row.kind.as_str(), &row.git_sha, &row.ref_id) {
            ("deploy" | "rollback", Some(sha), _) | ("incident_opened", Some(sha), _) => {
                failure_events.insert((
                    row.service.clone(),
                    row.environment.clone(),
                    sha.clone(),
                    row.occurred_at,
                ));
            }
            _ => {}
        }
        if let ("incident_opened" | "incident_closed", Some(ref_id)) =
            (row.kind.as_str(), &row.ref_id)
        {
            let at = ref_ids.entry(ref_id.clone()).or_insert(row.occurred_at);
            *at = (*at).min(row.occurred_at);
        }
    }
    if !failure_events.is_empty() {
        let (mut services, mut envs, mut shas, mut ats) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (service, env, sha, at) in failure_events {
            services.push(service);
            envs.push(env);
            shas.push(sha);
            ats.push(at);
        }
        sqlx::query(RECOMPUTE_FAILURES)
            .bind(services)
            .bind(envs)
            .bind(shas)
            .bind(ats)
            .execute(&mut *tx)
            .await?;
    }
    if !ref_ids.is_empty() {
        let (refs, ats): (Vec<String>, Vec<DateTime<Utc>>) = ref_ids.into_iter().unzip();
        sqlx::query(RECOMPUTE_INCIDENTS)
            .bind(refs)
            .bind(ats)
            .execute(&mut *tx)
            .await?;
    }

    if !rejected.is_empty() {
        sqlx::query(KEEP_REJECTED)
            .bind(
                rejected
                    .iter()
                    .map(|r| i64::try_from(r.incoming.stream_seq).unwrap_or(i64::MAX))
                    .collect::<Vec<_>>(),
            )
            .bind(
                rejected
                    .iter()
                    .map(|r| r.incoming.subject.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                rejected
                    .iter()
                    .map(|r| r.incoming.payload.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                rejected
                    .iter()
                    .map(|r| storable(&r.error.message))
                    .collect::<Vec<_>>(),
            )
            .bind(
                rejected
                    .iter()
                    .map(|r| r.error.field.as_deref().map(storable))
                    .collect::<Vec<_>>(),
            )
            .bind(
                rejected
                    .iter()
                    .map(|r| r.incoming.received_at)
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *tx)
            .await?;
    }
    if let Some(last_seq) = last_seq {
        sqlx::query("UPDATE store_position SET last_seq = greatest(last_seq, $1)")
            .bind(i64::try_from(last_seq).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;

    let inserted = appended.len() as u64;
    Ok(Applied {
        inserted,
        duplicates: events.len() as u64 - inserted,
        rejected: rejected.len() as u64,
    })
}
