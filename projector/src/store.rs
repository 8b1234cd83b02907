//! The PostgreSQL store: connecting to one schema, migrating it, and appending one batch.
//!
//! A batch is one transaction: the new events, the per-attempt and per-incident facts
//! they change, and the rejected messages. Its caller acks the messages only after
//! [`apply`] returned `Ok`, so a crash at any point loses nothing: the messages come
//! again and the event ids make the second append a no-op.

use std::collections::BTreeSet;
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
/// the new deploys and the services they and the incident opens name, in one statement.
/// Returns the rows it appended, so the caller knows which keys to recompute and how
/// many were duplicates. An open gets no row here: only an open that starts an incident
/// has one, and [`RECOMPUTE_INCIDENTS`] writes it. Every open inserted here, each
/// re-trigger deleted again by the recompute, would leave a dead row and its index
/// entries in the range of the ref_id that the next batch's recompute reads.
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
born AS (
    INSERT INTO services (environment, service)
    SELECT DISTINCT environment, service
    FROM appended
    WHERE kind IN ('deploy', 'incident_opened')
    ORDER BY environment, service
    ON CONFLICT DO NOTHING
)
SELECT kind, service, environment, git_sha, ref_id, occurred_at, stream_seq FROM appended
"#;

/// Recomputes `failed_at` for the attempts that new events can change (CONTRACT.md
/// section 5): each rollback or sha-carrying incident marks the latest attempt of its
/// service/environment/sha at or before it (ties: the later in the stream), and an
/// attempt's `failed_at` is its own time if it did not succeed, else its earliest
/// marker's time (ties: the earlier in the stream). Only rows whose value changes are
/// written.
///
/// In a key's attempts ordered by (time, stream), the markers of an attempt are those
/// at or after its time and before the next attempt's time (a marker at an attempt's
/// instant goes to the last attempt of that instant). So an attempt's earliest marker is
/// the key's first marker at or after its time, if that marker is earlier than the next
/// attempt; else it has none. Each of the two is one probe in (time, stream) order
/// (migration 0013), whatever the ties. A new attempt changes only its own facts and
/// those of the attempt just before it, whose markers from the new one's time on now go
/// to the new one; a new marker changes only the facts of the attempt it marks. Those
/// are the attempts recomputed: at most two per new event, each found by one probe (the
/// new attempt and the one before it are the two entries at or below the new attempt's
/// (time, stream); a marker's attempt is the entry at or below (its time, any stream)).
///
/// Before, a new event's span ran between the times of the key's attempts around it
/// and was recomputed whole: at an instant shared by one sha's attempts that was every
/// attempt and marker of the instant, in every batch. Now the work is a few probes per
/// new event on any history.
const RECOMPUTE_FAILURES: &str = r#"
WITH news AS (
    SELECT DISTINCT n.*
    FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int8[], $6::bool[])
         AS n(service, environment, git_sha, at, seq, is_attempt)
),
-- Each probe is one descent of the attempts index (git_sha, service, environment,
-- occurred_at, stream_seq), read backwards from the bound, its entries kept when they
-- are of the same key. Written as equalities and a time range, the probe was also a
-- scan of the service's window index filtered by sha, which the planner chose on a
-- small store.
targets AS (
    SELECT DISTINCT d.event_id, d.service, d.environment, d.git_sha, d.occurred_at,
           d.stream_seq, d.succeeded
    FROM news n
    CROSS JOIN LATERAL (
        SELECT d.event_id, d.service, d.environment, d.git_sha, d.occurred_at, d.stream_seq,
               d.succeeded
        FROM deploy_facts d
        WHERE (d.git_sha, d.service, d.environment, d.occurred_at, d.stream_seq)
              <= (n.git_sha, n.service, n.environment, n.at, n.seq)
        ORDER BY d.git_sha DESC, d.service DESC, d.environment DESC, d.occurred_at DESC,
                 d.stream_seq DESC
        LIMIT CASE WHEN n.is_attempt THEN 2 ELSE 1 END
    ) d
    WHERE (d.git_sha, d.service, d.environment) = (n.git_sha, n.service, n.environment)
),
-- Each target's first marker at or after it, and the attempt after it: one probe each,
-- of the markers index and of the attempts index.
probed AS (
    SELECT t.event_id, t.occurred_at, t.succeeded, m.id AS marker, m.occurred_at AS marked_at,
           m.occurred_at < coalesce(next.occurred_at, 'infinity') AS marks
    FROM targets t
    LEFT JOIN LATERAL (
        SELECT m.id, m.service, m.environment, m.git_sha, m.occurred_at
        FROM events m
        WHERE m.kind IN ('rollback', 'incident_opened') AND m.git_sha IS NOT NULL
          AND (m.git_sha, m.service, m.environment, m.occurred_at)
              >= (t.git_sha, t.service, t.environment, t.occurred_at)
        ORDER BY m.git_sha, m.service, m.environment, m.occurred_at, m.stream_seq
        LIMIT 1
    ) m ON (m.git_sha, m.service, m.environment) = (t.git_sha, t.service, t.environment)
    LEFT JOIN LATERAL (
        SELECT d.service, d.environment, d.git_sha, d.occurred_at
        FROM deploy_facts d
        WHERE (d.git_sha, d.service, d.environment, d.occurred_at, d.stream_seq)
              > (t.git_sha, t.service, t.environment, t.occurred_at, t.stream_seq)
        ORDER BY d.git_sha, d.service, d.environment, d.occurred_at, d.stream_seq
        LIMIT 1
    ) next ON (next.git_sha, next.service, next.environment)
              = (t.git_sha, t.service, t.environment)
)
UPDATE deploy_facts d
SET failed_at = fresh.failed_at, failed_by = fresh.failed_by
FROM (
    SELECT event_id,
           CASE WHEN NOT succeeded THEN occurred_at WHEN marks THEN marked_at END AS failed_at,
           CASE WHEN NOT succeeded THEN event_id WHEN marks THEN marker END AS failed_by
    FROM probed
) fresh
WHERE d.event_id = fresh.event_id
  AND (d.failed_at, d.failed_by) IS DISTINCT FROM (fresh.failed_at, fresh.failed_by)
"#;

/// Rebuilds the incidents that new events of the given ref_ids can change (CONTRACT.md
/// section 5): walking a ref_id's opens in time order (ties: the earlier in the stream),
/// an incident starts at an open, closes at the first close of the ref_id at or after it
/// (ties: the earlier in the stream), and the next incident starts at the first open
/// after that close. An open while an incident runs, up to and including its close's
/// instant, re-triggers it: the same incident, one sample. `incident_facts` keeps one
/// row per incident, keyed by its first open; a row whose open no longer starts an
/// incident goes.
///
/// A ref_id can be reused thousands of times, and this runs under the batch lock, so a
/// walk covers a stretch of the ref_id around its new events, not its history. Where it
/// starts: let `after` be the latest close of the ref_id strictly before a new event.
/// Every incident opened at or before `after` closed by `after` (that close is at or
/// after its open), so nothing the event adds changes them, and the walk goes on
/// exactly as from a close at `after`: from the first open strictly after it. New
/// events with the same `after` share one walk; they lie after `after` and at or before
/// the ref_id's next close, so the walk's first incident closes at or after all of them
/// (or, with no open before that close, they are closes that end nothing).
///
/// Where it stops: at the first incident the store already holds with the same close
/// (a row the walk before this batch wrote; this batch writes none before here). After
/// that close's instant no incident runs, in the log as it was and as it is now, and the
/// events after it are the same up to the next walk's start: the incidents in between
/// are the ones stored. Or it stops on reaching the next walk's start, and that walk
/// goes on from there. So a walk is as long as the stretch its events change, plus one
/// incident: a late event in front of thousands of incidents does not re-walk them all
/// (5,000 incidents on one ref_id: 132 ms for one event before), nor does a batch of
/// late events re-walk each other's. Every open and close is one probe in (time,
/// stream) order (migration 0013), and the stored incidents of a walk's stretch one
/// range of `incident_facts_ref`.
const RECOMPUTE_INCIDENTS: &str = r#"
WITH RECURSIVE news AS (
    SELECT DISTINCT n.ref_id, n.at
    FROM unnest($1::text[], $2::timestamptz[]) AS n(ref_id, at)
),
starts AS (
    SELECT DISTINCT n.ref_id, coalesce(c.occurred_at, '-infinity') AS after
    FROM news n
    LEFT JOIN LATERAL (
        SELECT e.occurred_at
        FROM events e
        WHERE e.kind = 'incident_closed' AND e.ref_id = n.ref_id AND e.occurred_at < n.at
        ORDER BY e.occurred_at DESC
        LIMIT 1
    ) c ON true
),
-- Each walk hands over to the next walk of its ref_id (`upto`, that one's start) once
-- it reaches it: a batch of late events, each its own walk, would otherwise re-walk all
-- the later ones.
walks AS (
    SELECT ref_id, after,
           coalesce(lead(after) OVER (PARTITION BY ref_id ORDER BY after), 'infinity') AS upto
    FROM starts
),
-- One incident a step. `held`: whether the store holds it with this close, one probe
-- of the key (as EXISTS it was planned as a hash of every stored incident, read once a
-- batch).
incidents AS (
    SELECT w.ref_id, w.after, w.upto, o.id AS open_id, o.occurred_at AS opened_at,
           c.id AS close_id, c.occurred_at AS closed_at, o.service, o.environment,
           coalesce(c.id = (SELECT f.close_event_id FROM incident_facts f
                            WHERE f.open_event_id = o.id), false) AS held
    FROM walks w
    CROSS JOIN LATERAL (
        SELECT e.id, e.ref_id, e.occurred_at, e.service, e.environment
        FROM events e
        WHERE e.kind = 'incident_opened' AND e.ref_id = w.ref_id
          AND e.occurred_at > w.after
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
    SELECT i.ref_id, i.after, i.upto, o.id, o.occurred_at, c.id, c.occurred_at, o.service,
           o.environment,
           coalesce(c.id = (SELECT f.close_event_id FROM incident_facts f
                            WHERE f.open_event_id = o.id), false)
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
    WHERE NOT i.held AND i.closed_at < i.upto
),
-- The opens each walk covered: after `after`, up to its last incident's close, or to
-- the end when that incident is still open (or the walk found no open at all).
stretches AS (
    SELECT ref_id, after,
           CASE WHEN count(*) = count(closed_at) THEN max(closed_at) ELSE 'infinity' END AS until
    FROM incidents
    GROUP BY ref_id, after
),
-- The stored incidents of each stretch, by a range of `incident_facts_ref` per stretch
-- (OFFSET 0 keeps the planner from flattening it into a join, which it planned as a
-- hash of every stored incident), that the walks no longer start.
retriggers AS (
    DELETE FROM incident_facts f
    WHERE f.open_event_id = ANY (ARRAY(
        SELECT x.open_event_id
        FROM stretches s
        CROSS JOIN LATERAL (
            SELECT x.open_event_id
            FROM incident_facts x
            WHERE x.ref_id = s.ref_id AND x.opened_at > s.after AND x.opened_at <= s.until
            OFFSET 0
        ) x
        WHERE NOT EXISTS (SELECT 1 FROM incidents i WHERE i.open_id = x.open_event_id)
    ))
    RETURNING f.service, f.environment, f.opened_at
),
written AS (
INSERT INTO incident_facts AS f
    (open_event_id, ref_id, service, environment, opened_at, closed_at, close_event_id)
-- The open's service and environment come with it from the walk: joined back to the
-- log instead, the recursion's row estimate (thousands) made that a hash join over
-- every event (57 of a batch's 70 ms at 220k events). Two walks of one ref_id meet at a
-- hand-over: each incident once.
SELECT DISTINCT ON (i.open_id)
       i.open_id, i.ref_id, i.service, i.environment, i.opened_at, i.closed_at, i.close_id
FROM incidents i
ORDER BY i.open_id
ON CONFLICT (open_event_id) DO UPDATE
SET closed_at = EXCLUDED.closed_at, close_event_id = EXCLUDED.close_event_id
WHERE (f.closed_at, f.close_event_id) IS DISTINCT FROM (EXCLUDED.closed_at, EXCLUDED.close_event_id)
RETURNING f.service, f.environment, f.opened_at
)
-- What changed, for the rework pieces (SYNC_GROUPS): the incidents inserted, closed
-- differently, or gone.
SELECT * FROM retriggers
UNION ALL
SELECT * FROM written
"#;

/// Brings the groups of rework pieces (migration 0015) that the batch's incident
/// changes touch up to date: `$1`-`$3` the changed incidents' service, environment and
/// opening time (incidents inserted, closed differently or removed by
/// [`RECOMPUTE_INCIDENTS`]). A group's `until` is the latest close of the incidents
/// opened at its instant, one range of `incident_facts_service_opened`; a group left with
/// no incident goes. Returns the groups whose `until` changed, or that went: the
/// changes [`RECOMPUTE_PIECES`] starts from. Their pieces are left to it (NULL when new).
const SYNC_GROUPS: &str = r#"
WITH keys AS (
    SELECT DISTINCT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS c(service, environment, at)
),
-- Each group read once (an alert storm's thousands of incidents at one instant change
-- hundreds of times a batch).
changed AS (
    SELECT c.service, c.environment, c.at,
           (SELECT max(coalesce(i.closed_at, 'infinity'))
            FROM incident_facts i
            WHERE i.environment = c.environment AND i.service = c.service
              AND i.opened_at = c.at) AS until
    FROM keys c
),
gone AS (
    DELETE FROM rework_pieces p
    USING changed c
    WHERE c.until IS NULL
      AND p.environment = c.environment AND p.service = c.service AND p.opened_at = c.at
    RETURNING p.service, p.environment, p.opened_at
),
kept AS (
    INSERT INTO rework_pieces AS p (environment, service, opened_at, until)
    SELECT environment, service, at, until FROM changed WHERE until IS NOT NULL
    ON CONFLICT (environment, service, opened_at) DO UPDATE
    SET until = EXCLUDED.until
    WHERE p.until <> EXCLUDED.until
    RETURNING p.service, p.environment, p.opened_at
)
SELECT * FROM gone
UNION ALL
SELECT * FROM kept
"#;

/// Recomputes the pieces that changed groups (`$1`-`$3`: service, environment,
/// instant, from [`SYNC_GROUPS`]) move, and recounts their attempts. Returns the
/// groups it recounted.
///
/// A piece depends on its group and on the reach of the groups before it, so a change
/// can move the pieces after it. Each service's walk starts at its first change, with
/// the stored reach of the group before it, and goes on in order while the pieces it
/// computes differ from the stored ones. At a group whose piece and reach are as stored,
/// every group up to the next change is as stored too (the reach it hands on is the one
/// they were computed from), so the walk jumps to the next change, taking the stored
/// reach of the group before it; after the last change it stops. A batch's cost is its
/// changes and the pieces they really move, not every group between them.
const RECOMPUTE_PIECES: &str = r#"
WITH RECURSIVE keys AS (
    SELECT c.service, c.environment, array_agg(DISTINCT c.at ORDER BY c.at) AS ats
    FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS c(service, environment, at)
    GROUP BY c.service, c.environment
),
walk AS (
    SELECT k.service, k.environment, k.ats, g.opened_at, g.until,
           g.piece_from AS was_from, g.reach AS was_reach,
           greatest(g.opened_at, b.reach) AS piece_from, greatest(b.reach, g.until) AS reach
    FROM keys k
    CROSS JOIN LATERAL (
        SELECT x.opened_at, x.until, x.piece_from, x.reach
        FROM rework_pieces x
        WHERE x.environment = k.environment AND x.service = k.service
          AND x.opened_at >= k.ats[1]
        ORDER BY x.opened_at
        LIMIT 1
    ) g
    LEFT JOIN LATERAL (
        SELECT x.reach
        FROM rework_pieces x
        WHERE x.environment = k.environment AND x.service = k.service
          AND x.opened_at < g.opened_at
        ORDER BY x.opened_at DESC
        LIMIT 1
    ) b ON true
  UNION ALL
    SELECT w.service, w.environment, w.ats, g.opened_at, g.until, g.piece_from, g.reach,
           greatest(g.opened_at, g.before), greatest(g.before, g.until)
    FROM walk w
    CROSS JOIN LATERAL (
        SELECT (w.was_from, w.was_reach) IS NOT DISTINCT FROM (w.piece_from, w.reach) AS stable
    ) s
    -- As stored: the next change after this group, if there is one.
    LEFT JOIN LATERAL (
        SELECT min(a) AS at
        FROM unnest(w.ats) AS a
        WHERE s.stable AND a > w.opened_at
    ) q ON true
    CROSS JOIN LATERAL (
        (
            -- Moved: the next group, after this one's reach.
            SELECT x.opened_at, x.until, x.piece_from, x.reach, w.reach AS before
            FROM rework_pieces x
            WHERE NOT s.stable
              AND x.environment = w.environment AND x.service = w.service
              AND x.opened_at > w.opened_at
            ORDER BY x.opened_at
            LIMIT 1
        )
        UNION ALL
        (
            -- As stored: the first group at or after the next change, after the stored
            -- reach of the one before it.
            SELECT x.opened_at, x.until, x.piece_from, x.reach,
                   (SELECT y.reach
                    FROM rework_pieces y
                    WHERE y.environment = w.environment AND y.service = w.service
                      AND y.opened_at < x.opened_at
                    ORDER BY y.opened_at DESC
                    LIMIT 1)
            FROM rework_pieces x
            WHERE s.stable
              AND x.environment = w.environment AND x.service = w.service
              AND x.opened_at >= q.at
            ORDER BY x.opened_at
            LIMIT 1
        )
    ) g
)
UPDATE rework_pieces p
SET piece_from = w.piece_from,
    reach = w.reach,
    attempts = CASE WHEN w.piece_from < w.until THEN (
        SELECT count(*)
        FROM deploy_facts d
        WHERE d.environment = w.environment AND d.service = w.service
          AND d.occurred_at >= w.piece_from AND d.occurred_at < w.until
    ) ELSE 0 END
FROM walk w
WHERE p.environment = w.environment AND p.service = w.service AND p.opened_at = w.opened_at
  AND (w.was_from, w.was_reach) IS DISTINCT FROM (w.piece_from, w.reach)
RETURNING p.service, p.environment, p.opened_at
"#;

/// Counts the batch's new attempts (`$1`-`$3`: service, environment, time) into the
/// pieces they fall in, except the pieces [`RECOMPUTE_PIECES`] just recounted whole
/// (`$4`-`$6`), which hold them already. A new attempt's piece is the last non-empty
/// piece of its service that starts at or before it, when that piece has not ended by
/// then: one probe of `rework_pieces_piece`. Each attempt is new exactly once (the
/// append returns only the rows it added), so adding is exact.
const COUNT_NEW_ATTEMPTS: &str = r#"
WITH hits AS (
    SELECT p.environment, p.service, p.opened_at, count(*) AS n
    FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS a(service, environment, at)
    CROSS JOIN LATERAL (
        SELECT x.environment, x.service, x.opened_at, x.until
        FROM rework_pieces x
        WHERE x.environment = a.environment AND x.service = a.service
          AND x.piece_from <= a.at
          AND x.piece_from < x.until
        ORDER BY x.piece_from DESC
        LIMIT 1
    ) p
    WHERE a.at < p.until
      AND NOT EXISTS (
          SELECT 1
          FROM unnest($4::text[], $5::text[], $6::timestamptz[]) AS r(service, environment, at)
          WHERE r.service = p.service AND r.environment = p.environment
            AND r.at = p.opened_at)
    GROUP BY p.environment, p.service, p.opened_at
)
UPDATE rework_pieces p
SET attempts = p.attempts + h.n
FROM hits h
WHERE p.environment = h.environment AND p.service = h.service AND p.opened_at = h.opened_at
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
    stream_seq: i64,
}

/// An incident that [`RECOMPUTE_INCIDENTS`] inserted, closed differently or removed, or
/// a group of rework pieces that [`SYNC_GROUPS`] or [`RECOMPUTE_PIECES`] changed: by its
/// service, environment and opening instant.
#[derive(sqlx::FromRow)]
struct Changed {
    service: String,
    environment: String,
    opened_at: DateTime<Utc>,
}

/// `rows` as the three arrays the rework statements take: services, environments,
/// instants.
fn columns<'a>(
    rows: impl Iterator<Item = (&'a str, &'a str, DateTime<Utc>)>,
) -> (Vec<&'a str>, Vec<&'a str>, Vec<DateTime<Utc>>) {
    let (mut services, mut environments, mut instants) = (Vec::new(), Vec::new(), Vec::new());
    for (service, environment, at) in rows {
        services.push(service);
        environments.push(environment);
        instants.push(at);
    }
    (services, environments, instants)
}

/// [`columns`] of changed incidents or groups.
fn changed_columns(changed: &[Changed]) -> (Vec<&str>, Vec<&str>, Vec<DateTime<Utc>>) {
    columns(
        changed
            .iter()
            .map(|c| (c.service.as_str(), c.environment.as_str(), c.opened_at)),
    )
}

/// Keeps the rework pieces (migration 0015) right after the batch: the groups its
/// incident changes touch and the pieces they move, then the batch's new attempts
/// counted into theirs.
async fn recount_rework(
    tx: &mut sqlx::PgConnection,
    appended: &[AppendedRow],
    changed: &[Changed],
) -> Result<()> {
    let mut recounted: Vec<Changed> = Vec::new();
    if !changed.is_empty() {
        let (services, environments, instants) = changed_columns(changed);
        let groups: Vec<Changed> = sqlx::query_as(SYNC_GROUPS)
            .bind(services)
            .bind(environments)
            .bind(instants)
            .fetch_all(&mut *tx)
            .await?;
        if !groups.is_empty() {
            let (services, environments, instants) = changed_columns(&groups);
            recounted = sqlx::query_as(RECOMPUTE_PIECES)
                .bind(services)
                .bind(environments)
                .bind(instants)
                .fetch_all(&mut *tx)
                .await?;
        }
    }
    let (services, environments, instants) = columns(
        appended
            .iter()
            .filter(|r| r.kind == "deploy")
            .map(|r| (r.service.as_str(), r.environment.as_str(), r.occurred_at)),
    );
    if !services.is_empty() {
        let (recounted_services, recounted_environments, recounted_instants) =
            changed_columns(&recounted);
        sqlx::query(COUNT_NEW_ATTEMPTS)
            .bind(services)
            .bind(environments)
            .bind(instants)
            .bind(recounted_services)
            .bind(recounted_environments)
            .bind(recounted_instants)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
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

    // The new events that can change facts, each with its place in its key's order:
    // each recompute reads only its keys' entries next to them. BTree: each once, and
    // the same order in every transaction.
    let mut failure_events = BTreeSet::new();
    let mut incident_events = BTreeSet::new();
    for row in &appended {
        let place = match (row.kind.as_str(), &row.git_sha) {
            // A new attempt: its own place, (time, stream).
            ("deploy", Some(sha)) => Some((sha, row.stream_seq, true)),
            // A marker: after every attempt of its instant, whatever their stream order.
            ("rollback" | "incident_opened", Some(sha)) => Some((sha, i64::MAX, false)),
            _ => None,
        };
        if let Some((sha, seq, attempt)) = place {
            failure_events.insert((
                row.service.clone(),
                row.environment.clone(),
                sha.clone(),
                row.occurred_at,
                seq,
                attempt,
            ));
        }
        if let ("incident_opened" | "incident_closed", Some(ref_id)) =
            (row.kind.as_str(), &row.ref_id)
        {
            incident_events.insert((ref_id.clone(), row.occurred_at));
        }
    }
    if !failure_events.is_empty() {
        let (mut services, mut envs, mut shas) = (Vec::new(), Vec::new(), Vec::new());
        let (mut ats, mut seqs, mut attempts) = (Vec::new(), Vec::new(), Vec::new());
        for (service, env, sha, at, seq, attempt) in failure_events {
            services.push(service);
            envs.push(env);
            shas.push(sha);
            ats.push(at);
            seqs.push(seq);
            attempts.push(attempt);
        }
        sqlx::query(RECOMPUTE_FAILURES)
            .bind(services)
            .bind(envs)
            .bind(shas)
            .bind(ats)
            .bind(seqs)
            .bind(attempts)
            .execute(&mut *tx)
            .await?;
    }
    let changed: Vec<Changed> = if incident_events.is_empty() {
        Vec::new()
    } else {
        let (refs, ats): (Vec<String>, Vec<DateTime<Utc>>) = incident_events.into_iter().unzip();
        sqlx::query_as(RECOMPUTE_INCIDENTS)
            .bind(refs)
            .bind(ats)
            .fetch_all(&mut *tx)
            .await?
    };
    recount_rework(&mut tx, &appended, &changed).await?;

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
