//! The bulk path: building a whole store at once, for replay and for a first backfill.
//!
//! The live path appends a batch and recomputes the facts its events touch, under the
//! store's indexes: right for a trickle, wasteful for ten million events, where every
//! row would update a dozen index pages scattered over the whole history and every late
//! marker would re-read its key. Here the log is streamed into `events` with COPY while
//! it has no index at all (a writer task copies one chunk while the next is read and
//! decoded), the facts are derived by two window passes over the whole log, and the
//! indexes are built last, each by one sort. An id the stream holds twice (rare: a
//! resend after JetStream's duplicate window) keeps its first copy, as on the live path.
//!
//! The facts follow the same definitions as the live path's recompute (CONTRACT.md
//! section 5; `store::RECOMPUTE_FAILURES` and `store::RECOMPUTE_INCIDENTS`); the tests
//! hold the two and a naive reading of the contract to the same answers on random logs.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use crate::decode::{Decoded, Rejected, Stored};
use crate::error::Result;
use crate::store::Applied;

/// The tables whose indexes are dropped for the load and built after it.
const INDEXED_TABLES: &str = "'events', 'deploy_facts', 'incident_facts'";

/// Rows buffered before one COPY round trip: large enough that the per-statement cost
/// vanishes, small enough to keep the process's memory flat (a row is ~200 bytes).
const COPY_CHUNK: usize = 20_000;

const EVENT_COLUMNS: &str = "id, kind, service, environment, git_sha, succeeded, commit_at, \
                             ref_id, occurred_at, source, stream_seq, received_at";

/// The log's primary key: when its build fails on an id copied twice, the later copies
/// go (see [`KEEP_FIRST_COPIES`]) and it is built again.
const LOG_KEY: &str = "events_pkey";

/// Removes every copy of an id but its first on the stream. The log refuses DELETE by
/// a trigger, which guards the log the API serves against a mistaken script; this store
/// is not served yet, and the statement restores the log to what the live path would
/// have appended, so the trigger is set aside for it alone, in one transaction.
const KEEP_FIRST_COPIES: [&str; 3] = [
    "ALTER TABLE events DISABLE TRIGGER events_are_append_only",
    "DELETE FROM events e
     USING (SELECT id, min(stream_seq) AS first FROM events GROUP BY id HAVING count(*) > 1) d
     WHERE e.id = d.id AND e.stream_seq > d.first",
    "ALTER TABLE events ENABLE TRIGGER events_are_append_only",
];

/// Every attempt's facts. Per service/environment/sha, the attempts and the markers
/// (rollbacks, sha-carrying incident opens) in the order (time, attempts before markers,
/// stream): a marker marks the latest attempt at or before it, ties to the later in the
/// stream, which is the last attempt before it in this order. So the markers of an
/// attempt are the rows between it and the next attempt, and its earliest marker (by
/// time, then stream) is the row right after it, when that row is a marker.
///
/// Most keys have no marker at all (a sha deployed and never rolled back or blamed):
/// their attempts failed only by their own outcome and need no ordering, so only the
/// keys with a marker (`MARKED_KEYS`) go through the window's sort. At 10M events that
/// sort held every attempt and took most of the 78 s this step took.
const DERIVE_DEPLOY_FACTS: &str = r#"
INSERT INTO deploy_facts (event_id, service, environment, git_sha, occurred_at, stream_seq,
                          succeeded, lead_seconds, failed_at, failed_by)
SELECT id, service, environment, git_sha, occurred_at, stream_seq, succeeded,
       extract(epoch FROM occurred_at - commit_at)::float8,
       CASE WHEN NOT succeeded THEN occurred_at WHEN next_kind <> 'deploy' THEN next_at END,
       CASE WHEN NOT succeeded THEN id WHEN next_kind <> 'deploy' THEN next_id END
FROM (
    SELECT e.id, e.kind, e.service, e.environment, e.git_sha, e.occurred_at, e.stream_seq,
           e.succeeded, e.commit_at,
           lead(e.kind) OVER timeline AS next_kind,
           lead(e.occurred_at) OVER timeline AS next_at,
           lead(e.id) OVER timeline AS next_id
    FROM events e
    JOIN marked_keys m
      ON m.service = e.service AND m.environment = e.environment AND m.git_sha = e.git_sha
    WHERE e.kind IN ('deploy', 'rollback', 'incident_opened')
    -- The sha first: the sort then tells most keys apart by their first bytes (see
    -- migration 0012); the partitions are the same in any column order.
    WINDOW timeline AS (PARTITION BY e.git_sha, e.service, e.environment
                        ORDER BY e.occurred_at, e.kind <> 'deploy', e.stream_seq)
) t
WHERE kind = 'deploy'
UNION ALL
SELECT id, service, environment, git_sha, occurred_at, stream_seq, succeeded,
       extract(epoch FROM occurred_at - commit_at)::float8,
       CASE WHEN NOT succeeded THEN occurred_at END,
       CASE WHEN NOT succeeded THEN id END
FROM events e
WHERE kind = 'deploy'
  AND NOT EXISTS (SELECT 1 FROM marked_keys m
                  WHERE m.service = e.service AND m.environment = e.environment
                    AND m.git_sha = e.git_sha)
-- In time order on disk, as the live path appends them: a window's index-only scan
-- then finds its rows' visibility-map bits together. In stream order (a backfill's
-- random order) a 90-day window at 10M events switched visibility-map pages at almost
-- every row (575k buffer hits for 696k rows) and its scan took 225 ms against 127 ms.
ORDER BY occurred_at
"#;

/// The service/environment/sha keys that some marker names, as a table with statistics:
/// as a CTE the planner guessed one row, and took the attempts without a marker by
/// sorting them all for a merge anti-join (2.2 s of 4.7 at 1M events) instead of
/// hashing the 62k keys.
const MARKED_KEYS: [&str; 2] = [
    "CREATE TEMPORARY TABLE marked_keys AS
     SELECT DISTINCT service, environment, git_sha
     FROM events
     WHERE kind IN ('rollback', 'incident_opened') AND git_sha IS NOT NULL",
    "ANALYZE marked_keys",
];

/// The services the facts name (as the live path's `born`, and migration 0008). Each
/// side grouped first: a bare UNION sorted all 9.4M rows of a 10M-event log (18 s);
/// grouped, each is a hash of a few thousand services (1.8 s).
const DERIVE_SERVICES: &str = r#"
INSERT INTO services (environment, service)
SELECT environment, service FROM deploy_facts GROUP BY environment, service
UNION
SELECT environment, service FROM incident_facts GROUP BY environment, service
"#;

/// Every incident in one pass. Per ref_id, the opens and closes in the order (time, opens
/// before closes, stream): the walk's state after an event is that event's kind (an
/// open leaves an incident running, a close leaves none), so an open starts an incident
/// exactly when the event before it is not an open; later opens re-trigger it; its close
/// is the first close after its start, and any further close before the next start
/// finds nothing running. Numbering the starts groups each incident's rows.
const DERIVE_INCIDENT_FACTS: &str = r#"
INSERT INTO incident_facts (open_event_id, ref_id, service, environment, opened_at,
                            closed_at, close_event_id)
SELECT max(id) FILTER (WHERE starts), ref_id,
       max(service) FILTER (WHERE starts), max(environment) FILTER (WHERE starts),
       max(occurred_at) FILTER (WHERE starts),
       min(occurred_at) FILTER (WHERE kind = 'incident_closed'),
       (array_agg(id ORDER BY occurred_at, stream_seq)
            FILTER (WHERE kind = 'incident_closed'))[1]
FROM (
    SELECT *, count(*) FILTER (WHERE starts) OVER (PARTITION BY ref_id ORDER BY n) AS incident
    FROM (
        SELECT id, kind, ref_id, service, environment, occurred_at, stream_seq,
               row_number() OVER timeline AS n,
               kind = 'incident_opened'
                 AND lag(kind) OVER timeline IS DISTINCT FROM 'incident_opened' AS starts
        FROM events
        WHERE kind IN ('incident_opened', 'incident_closed')
        WINDOW timeline AS (PARTITION BY ref_id
                            ORDER BY occurred_at, kind = 'incident_closed', stream_seq)
    ) walked
) numbered
WHERE incident > 0
GROUP BY ref_id, incident
"#;

/// The groups of rework pieces (migration 0015, whose filling of an existing store is
/// this statement): each service's incidents grouped by opening instant, the reach of
/// the groups before each by one window over them, and the attempts in each non-empty
/// piece by one count, a range of `deploy_facts_service_window`. Run once the facts and
/// their indexes are built.
const DERIVE_PIECES: &str = r#"
INSERT INTO rework_pieces (environment, service, opened_at, until, piece_from, reach, attempts)
SELECT environment, service, opened_at, until, piece_from, reach,
       CASE WHEN piece_from < until THEN (
           SELECT count(*)
           FROM deploy_facts d
           WHERE d.environment = g.environment AND d.service = g.service
             AND d.occurred_at >= g.piece_from AND d.occurred_at < g.until
       ) ELSE 0 END
FROM (
    SELECT environment, service, opened_at, until,
           greatest(opened_at, before) AS piece_from, greatest(before, until) AS reach
    FROM (
        SELECT environment, service, opened_at, until,
               max(until) OVER (PARTITION BY environment, service ORDER BY opened_at
                                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
        FROM (
            SELECT environment, service, opened_at, max(coalesce(closed_at, 'infinity')) AS until
            FROM incident_facts
            GROUP BY environment, service, opened_at
        ) groups
    ) ordered
) g
"#;

/// Where a load stands, for the progress line.
#[derive(Debug, Clone, Copy)]
struct Progress {
    started: Instant,
    last_line: Instant,
    every: Duration,
}

/// Rows of one COPY round trip: events, rejected messages.
type Chunk = (String, String);

/// The task that copies chunks while the next is read and decoded; it hands its
/// connection back when the channel closes.
type Writer = tokio::task::JoinHandle<Result<PoolConnection<Postgres>>>;

/// A store being built by the bulk path. Made on an empty, migrated store that nothing
/// else writes to (replay's fresh schema); [`BulkLoad::finish`] leaves it indexed, with
/// its facts, at the given position.
pub struct BulkLoad {
    /// Chunks to the writer; two in flight at most, so memory stays flat.
    chunks: tokio::sync::mpsc::Sender<Chunk>,
    writer: Writer,
    /// The index and constraint definitions dropped for the load, to build afterwards.
    deferred: Vec<Deferred>,
    /// For the second connection that builds the log's indexes while the facts are
    /// derived.
    pool: PgPool,
    events: String,
    rejected: String,
    buffered: usize,
    applied: Applied,
    /// Messages read, for the progress line.
    messages: u64,
    /// The stream sequence the load must reach, for the progress line's time left.
    target: u64,
    progress: Progress,
}

impl std::fmt::Debug for BulkLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkLoad")
            .field("messages", &self.messages)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl BulkLoad {
    /// Prepares the store at `pool` (empty, migrated) for a load up to stream sequence
    /// `target`: drops the indexes and primary keys of the log and facts tables, keeping
    /// their definitions. A progress line is logged every `every`.
    pub async fn begin(pool: &PgPool, target: u64, every: Duration) -> Result<BulkLoad> {
        let mut conn = pool.acquire().await?;
        // The definitions as the migrations made them, schema-qualified by PostgreSQL,
        // so the migrations stay the one place an index is declared.
        let indexes: Vec<(String, String, String)> = sqlx::query_as(&format!(
            "SELECT i.tablename, i.indexname, i.indexdef FROM pg_indexes i
             WHERE i.schemaname = current_schema() AND i.tablename IN ({INDEXED_TABLES})
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                               WHERE c.conname = i.indexname
                                 AND c.connamespace = current_schema()::regnamespace)
             ORDER BY i.indexname"
        ))
        .fetch_all(&mut *conn)
        .await?;
        // A primary key comes back as a unique index, built beside other work (a
        // unique index takes a lock reads can share), and attached as the key at the end.
        let keys: Vec<(String, String, String)> = sqlx::query_as(&format!(
            "SELECT t.relname, c.conname, pg_get_indexdef(c.conindid)
             FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
             WHERE c.contype = 'p' AND c.connamespace = current_schema()::regnamespace
               AND t.relname IN ({INDEXED_TABLES})
             ORDER BY t.relname"
        ))
        .fetch_all(&mut *conn)
        .await?;
        let mut deferred = Vec::new();
        for (table, name, definition) in keys {
            sqlx::query(&format!("ALTER TABLE {table} DROP CONSTRAINT {name}"))
                .execute(&mut *conn)
                .await?;
            let attach =
                format!("ALTER TABLE {table} ADD CONSTRAINT {name} PRIMARY KEY USING INDEX {name}");
            deferred.push(Deferred {
                table,
                name,
                definition,
                attach: Some(attach),
            });
        }
        for (table, name, definition) in indexes {
            sqlx::query(&format!("DROP INDEX {name}"))
                .execute(&mut *conn)
                .await?;
            deferred.push(Deferred {
                table,
                name,
                definition,
                attach: None,
            });
        }
        let (chunks, mut incoming) = tokio::sync::mpsc::channel::<Chunk>(1);
        let writer = tokio::spawn(async move {
            while let Some((events, rejected)) = incoming.recv().await {
                if !events.is_empty() {
                    copy(&mut conn, &format!("events ({EVENT_COLUMNS})"), &events).await?;
                }
                if !rejected.is_empty() {
                    copy(
                        &mut conn,
                        "rejected_events (stream_seq, subject, payload, reason, field, received_at)",
                        &rejected,
                    )
                    .await?;
                }
            }
            Ok(conn)
        });
        let now = Instant::now();
        Ok(BulkLoad {
            chunks,
            writer,
            deferred,
            pool: pool.clone(),
            events: String::new(),
            rejected: String::new(),
            buffered: 0,
            applied: Applied::default(),
            messages: 0,
            target,
            progress: Progress {
                started: now,
                last_line: now,
                every,
            },
        })
    }

    /// Adds decoded messages, in stream order; `last_seq` is the highest sequence among
    /// them. Rows go to PostgreSQL in chunks as they fill.
    pub async fn push(&mut self, batch: &[Decoded], last_seq: u64) -> Result<()> {
        for decoded in batch {
            match decoded {
                Decoded::Event(stored) => event_row(&mut self.events, stored),
                Decoded::Rejected(rejected) => {
                    rejected_row(&mut self.rejected, rejected);
                    self.applied.rejected += 1;
                }
            }
            self.buffered += 1;
        }
        self.messages += batch.len() as u64;
        if self.buffered >= COPY_CHUNK {
            self.flush().await?;
        }
        if self.progress.last_line.elapsed() >= self.progress.every {
            self.progress.last_line = Instant::now();
            self.report(last_seq);
        }
        Ok(())
    }

    /// The progress line: messages read, their rate, and the time left at that rate.
    fn report(&self, last_seq: u64) {
        let elapsed = self.progress.started.elapsed().as_secs_f64();
        let rate = self.messages as f64 / elapsed.max(0.001);
        let left = self.target.saturating_sub(last_seq) as f64 / rate.max(1.0);
        tracing::info!(
            "bulk load: {} of {} messages, {:.0} messages/s, about {} left before the facts and indexes",
            last_seq,
            self.target,
            rate,
            humanize(Duration::from_secs_f64(left))
        );
    }

    /// Hands the buffered rows to the writer. When it has stopped, its error is the one
    /// to report.
    async fn flush(&mut self) -> Result<()> {
        let chunk = (
            std::mem::take(&mut self.events),
            std::mem::take(&mut self.rejected),
        );
        self.buffered = 0;
        if self.chunks.send(chunk).await.is_err() {
            // The receiver is gone: the writer has returned, with its error.
            return match (&mut self.writer).await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(_)) | Err(_) => Err(crate::Error::BulkWriter),
            };
        }
        Ok(())
    }

    /// Keys the log, derives the facts, builds the indexes and records `last_seq` as the
    /// store's position. Returns what the store made of the messages.
    ///
    /// Two connections share the work. Deriving the deploy facts is the longest step
    /// and one backend on one core (PostgreSQL 15 runs no INSERT ... SELECT in
    /// parallel), so it starts at once on the first, and everything that does not need
    /// it runs beside it on the second: the log's key (a unique index, which reads can
    /// share), the incident facts and their indexes, the log's other indexes. Then both
    /// take the deploy facts' indexes from one queue. One after the other, the second
    /// core sat idle for 38 of the derivation's 46 s at 10M events (`vmstat`).
    ///
    /// The derivation does not wait for the key: ids the stream holds twice are rare.
    /// When the key finds some, the later copies go and the deploy facts, derived from
    /// a log that still held them, are derived again.
    pub async fn finish(mut self, last_seq: u64) -> Result<Applied> {
        self.flush().await?;
        let BulkLoad {
            chunks,
            writer,
            deferred,
            pool,
            mut applied,
            messages,
            progress,
            ..
        } = self;
        drop(chunks);
        let mut conn = writer.await.map_err(|_| crate::Error::BulkWriter)??;
        tracing::info!(messages, took = ?progress.started.elapsed(), "bulk load: the log is copied");
        sort_in_memory(&mut conn).await?;
        let mut other = pool.acquire().await?;
        sort_in_memory(&mut other).await?;
        let step = Instant::now();

        let attach: Vec<String> = deferred.iter().filter_map(|d| d.attach.clone()).collect();
        let mut log_key = None;
        let (mut log_indexes, mut incident_indexes, mut deploy_indexes) =
            (Vec::new(), Vec::new(), Vec::new());
        for index in deferred {
            match index.table.as_str() {
                "events" if index.name == LOG_KEY => log_key = Some(index),
                "events" => log_indexes.push(index),
                "incident_facts" => incident_indexes.push(index),
                _ => deploy_indexes.push(index),
            }
        }
        // Popped from the end, the longest builds first so that the two connections
        // finish together: the indexes over every row before the partial ones, the
        // wider keys first among each.
        deploy_indexes.sort_by_key(|d| {
            let every_row = !d.definition.contains(" WHERE ");
            (every_row, d.definition.matches(',').count())
        });
        let deploy_indexes = std::sync::Mutex::new(deploy_indexes);

        let (keyed, key_ready) = tokio::sync::oneshot::channel::<u64>();
        let (incidents_derived, incidents_ready) = tokio::sync::oneshot::channel::<()>();
        let (deploys_derived, deploys_ready) = tokio::sync::oneshot::channel::<()>();
        let first = async {
            let started = Instant::now();
            derive_deploy_facts(&mut conn).await?;
            // A closed channel means the second connection failed: its error is the one
            // returned, as below.
            let Ok(removed) = key_ready.await else {
                return Ok(0);
            };
            if removed > 0 {
                sqlx::query("TRUNCATE deploy_facts")
                    .execute(&mut *conn)
                    .await?;
                derive_deploy_facts(&mut conn).await?;
            }
            tracing::info!(took = ?started.elapsed(), "bulk load: deploy facts derived");
            let _ = deploys_derived.send(());
            if incidents_ready.await.is_err() {
                return Ok(removed);
            }
            sqlx::query(DERIVE_SERVICES).execute(&mut *conn).await?;
            build_indexes(&mut conn, &deploy_indexes).await?;
            Ok::<u64, crate::Error>(removed)
        };
        let second = async {
            // Beside the derivation, each index is built by this backend alone. With
            // PostgreSQL's parallel workers each build ran three processes and took the
            // core the derivation needed (10M events: derivation 40.6 -> 32.9 s, replay
            // 146 -> 139 s without them). The deploy facts' indexes, last, may use them.
            sqlx::query("SET max_parallel_maintenance_workers = 0")
                .execute(&mut *other)
                .await?;
            let removed = match log_key {
                Some(key) => key_the_log(&mut other, &key.definition).await?,
                None => 0,
            };
            tracing::info!(removed, took = ?step.elapsed(), "bulk load: the log is keyed");
            let _ = keyed.send(removed);
            let started = Instant::now();
            let incidents = sqlx::query(DERIVE_INCIDENT_FACTS)
                .execute(&mut *other)
                .await?
                .rows_affected();
            tracing::info!(incidents, took = ?started.elapsed(), "bulk load: incident facts derived");
            let _ = incidents_derived.send(());
            incident_indexes.append(&mut log_indexes);
            build_indexes(&mut other, &std::sync::Mutex::new(incident_indexes)).await?;
            // Nothing to take when the derivation failed: its error is the one returned.
            if deploys_ready.await.is_ok() {
                sqlx::query("RESET max_parallel_maintenance_workers")
                    .execute(&mut *other)
                    .await?;
                build_indexes(&mut other, &deploy_indexes).await?;
            }
            Ok(())
        };
        let (removed, ()) = tokio::try_join!(first, second)?;
        sqlx::query("RESET ALL").execute(&mut *other).await?;
        drop(other);
        // Each key needs its table to itself for a moment: attached once nothing reads.
        for statement in attach {
            sqlx::query(&statement).execute(&mut *conn).await?;
        }
        let inserted = (messages - applied.rejected).saturating_sub(removed);
        tracing::info!(took = ?step.elapsed(), "bulk load: facts derived and indexes built");
        let started = Instant::now();
        sqlx::query(DERIVE_PIECES).execute(&mut *conn).await?;
        tracing::info!(took = ?started.elapsed(), "bulk load: rework pieces derived");
        // Statistics for the planner, and the visibility map of the facts the metrics
        // read: without it no scan is index-only, and a 90-day window on a freshly
        // loaded million events read every heap page it covered (233 ms against 36 ms
        // after this, measured). Frozen now, while the pages are hot, rather than by an
        // anti-wraparound vacuum of the whole history some day under load. The log
        // itself is only analysed: no metric scans it, and the insert-driven autovacuum
        // (migration 0006) visits it in the background after the swap. This store's
        // tables only: a bare VACUUM would visit every schema of the database.
        let step = Instant::now();
        sqlx::query(
            "VACUUM (FREEZE, ANALYZE) deploy_facts, incident_facts, rework_pieces, services",
        )
        .execute(&mut *conn)
        .await?;
        sqlx::query("ANALYZE events, rejected_events")
            .execute(&mut *conn)
            .await?;
        tracing::info!(took = ?step.elapsed(), "bulk load: vacuumed and analysed");
        sqlx::query("UPDATE store_position SET last_seq = greatest(last_seq, $1)")
            .bind(i64::try_from(last_seq).unwrap_or(i64::MAX))
            .execute(&mut *conn)
            .await?;
        sqlx::query("RESET ALL").execute(&mut *conn).await?;
        applied.inserted = inserted;
        applied.duplicates = removed;
        tracing::info!(messages, took = ?progress.started.elapsed(), "bulk load: done");
        Ok(applied)
    }
}

/// Builds the log's key (as a unique index: `definition`). Every valid message was
/// copied, so when the stream held an id twice the build fails; the later copies go and
/// it is built again. Returns how many copies went.
async fn key_the_log(conn: &mut PoolConnection<Postgres>, definition: &str) -> Result<u64> {
    match sqlx::query(definition).execute(&mut **conn).await {
        Ok(_) => return Ok(0),
        Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("23505") => {}
        Err(e) => return Err(e.into()),
    }
    let [disable, delete, enable] = KEEP_FIRST_COPIES;
    let mut tx = sqlx::Connection::begin(&mut **conn).await?;
    sqlx::query(disable).execute(&mut *tx).await?;
    let removed = sqlx::query(delete).execute(&mut *tx).await?.rows_affected();
    sqlx::query(enable).execute(&mut *tx).await?;
    tx.commit().await?;
    sqlx::query(definition).execute(&mut **conn).await?;
    Ok(removed)
}

/// An index or primary key dropped for the load: its table, name, the statement that
/// builds the index again and, for a primary key, the one that makes that index the key.
struct Deferred {
    table: String,
    name: String,
    definition: String,
    attach: Option<String>,
}

/// Sorts and index builds in memory where they fit; on this connection only, reset
/// before it goes back to the pool.
async fn sort_in_memory(conn: &mut PoolConnection<Postgres>) -> Result<()> {
    for setting in ["work_mem = '256MB'", "maintenance_work_mem = '512MB'"] {
        sqlx::query(&format!("SET {setting}"))
            .execute(&mut **conn)
            .await?;
    }
    Ok(())
}

/// The facts of every attempt.
async fn derive_deploy_facts(conn: &mut PoolConnection<Postgres>) -> Result<()> {
    for statement in MARKED_KEYS {
        sqlx::query(statement).execute(&mut **conn).await?;
    }
    let deploys = sqlx::query(DERIVE_DEPLOY_FACTS)
        .execute(&mut **conn)
        .await?
        .rows_affected();
    sqlx::query("DROP TABLE marked_keys")
        .execute(&mut **conn)
        .await?;
    tracing::debug!(deploys, "bulk load: deploy facts inserted");
    Ok(())
}

/// Builds the indexes `queue` holds, taking one at a time, until it is empty: two
/// connections share one queue.
async fn build_indexes(
    conn: &mut PoolConnection<Postgres>,
    queue: &std::sync::Mutex<Vec<Deferred>>,
) -> Result<()> {
    loop {
        // The lock is not held across the build: the guard is gone by the `await`.
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let Some(index) = next else {
            return Ok(());
        };
        let started = Instant::now();
        sqlx::query(&index.definition).execute(&mut **conn).await?;
        tracing::debug!(name = %index.name, took = ?started.elapsed(), "bulk load: index built");
    }
}

/// One COPY of text-format rows into `target`.
async fn copy(conn: &mut PoolConnection<Postgres>, target: &str, rows: &str) -> Result<()> {
    let mut copy = conn
        .copy_in_raw(&format!("COPY {target} FROM STDIN"))
        .await?;
    copy.send(rows.as_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

/// Appends a text-format COPY field: backslash and the characters that end a field or
/// a row are escaped; a NUL cannot be stored in text and is written as `\u0000`, as the
/// live path's rejected reasons do.
fn field(out: &mut String, value: Option<&str>) {
    let Some(value) = value else {
        out.push_str("\\N");
        return;
    };
    // Runs of ordinary characters are copied whole: pushed one char at a time, the
    // fields were a tenth of the process's CPU while the log is copied (perf).
    let mut rest = value;
    while let Some(at) = rest.find(['\\', '\t', '\n', '\r', '\0']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'\\' => "\\\\",
            b'\t' => "\\t",
            b'\n' => "\\n",
            b'\r' => "\\r",
            _ => "\\\\u0000",
        });
        // Each of them is one byte: `at + 1` is the next character's start.
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// Truncated to the microsecond, as the live path's binary binding stores it (a
/// JetStream time carries nanoseconds, which PostgreSQL's text input would round).
fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn row(out: &mut String, fields: &[Option<&str>]) {
    for (i, value) in fields.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        field(out, *value);
    }
    out.push('\n');
}

fn event_row(out: &mut String, stored: &Stored) {
    let e = &stored.event;
    let commit_at = e.commit_at.map(time);
    let succeeded = if e.succeeded.unwrap_or(true) {
        "t"
    } else {
        "f"
    };
    row(
        out,
        &[
            Some(&e.id),
            Some(e.kind.as_str()),
            Some(&e.service),
            Some(&e.environment),
            e.git_sha.as_deref(),
            Some(succeeded),
            commit_at.as_deref(),
            e.ref_id.as_deref(),
            Some(&time(e.occurred_at)),
            Some(&stored.source),
            Some(&stored.stream_seq.to_string()),
            Some(&time(stored.received_at)),
        ],
    );
}

fn rejected_row(out: &mut String, rejected: &Rejected) {
    let incoming = &rejected.incoming;
    let mut payload = String::with_capacity(2 + 2 * incoming.payload.len());
    payload.push_str("\\x");
    for byte in &incoming.payload {
        let _ = write!(payload, "{byte:02x}");
    }
    row(
        out,
        &[
            Some(&incoming.stream_seq.to_string()),
            Some(&incoming.subject),
            Some(&payload),
            Some(&rejected.error.message),
            rejected.error.field.as_deref(),
            Some(&time(incoming.received_at)),
        ],
    );
}

/// `1h 02m`, `3m 07s`, `12s`: the time left, as a person reads it.
fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_fields_escape_what_ends_a_field_or_a_row() {
        let mut out = String::new();
        row(&mut out, &[Some("a\tb\\c\nd\re\0"), None, Some("plain")]);
        assert_eq!(out, "a\\tb\\\\c\\nd\\re\\\\u0000\t\\N\tplain\n");
    }

    #[test]
    fn time_left_reads_as_a_person_would() {
        assert_eq!(humanize(Duration::from_secs(12)), "12s");
        assert_eq!(humanize(Duration::from_secs(187)), "3m 07s");
        assert_eq!(humanize(Duration::from_secs(3720)), "1h 02m");
    }
}
