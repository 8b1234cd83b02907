//! Rebuilding the store from the first message of the stream.
//!
//! The new store is built in its own schema (`dora_replay`) with the same migrations
//! as the live one, by the bulk path (`crate::bulk`: COPY, facts derived over the whole
//! log, indexes built last), then renamed into place in one transaction. Readers see the old store or the new one, never a half-built one. The
//! live projector may keep running: replay catches up with it in rounds, then, holding
//! its store lock for a moment, reads the last messages it wrote, so nothing it
//! appended or rejected is lost; its next batch lands in the new store.
//!
//! Replay deletes nothing it cannot rebuild: a stream that can drop messages, or has
//! dropped some (its first sequence is not 1), is refused, and so is a rebuilt store
//! with fewer events than the live one; a rebuilt store that could not be swapped in
//! is kept under another name.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use dora_event::signature::Sources;
use futures::StreamExt;
use sqlx::PgPool;

use crate::bulk::BulkLoad;
use crate::decode::{decode, Decoded, Incoming};
use crate::error::{Error, Result};
use crate::store::{self, Applied};

/// The schema a replay builds into.
pub const REPLAY_SCHEMA: &str = "dora_replay";
/// The name the old store has for the instant between the renames and its drop.
const RETIRED_SCHEMA: &str = "dora_retired";

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// Messages read from the stream.
    pub messages: u64,
    /// What the new store made of them.
    pub applied: Applied,
    /// Last stream sequence in the new store.
    pub last_seq: u64,
}

/// Rebuilds the store at `live_schema` from `stream`. `live` must be a pool on
/// `live_schema`, already migrated. Sources are checked against `sources` as the live
/// projector does (kept unverified when `None`), so a replay with the same keys gives
/// the same sources.
pub async fn replay(
    database_url: &str,
    live: &PgPool,
    live_schema: &str,
    stream: &mut jetstream::stream::Stream,
    prefix: &str,
    sources: Option<&Sources>,
    batch_size: usize,
) -> Result<ReplayOutcome> {
    let started = Instant::now();
    // One replay at a time: a session lock, held by this connection until we return.
    let mut guard = live.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('dora-replay'))")
        .fetch_one(&mut *guard)
        .await?;
    if !locked {
        return Err(Error::ReplayRunning);
    }
    let result = rebuild(
        database_url,
        live,
        live_schema,
        stream,
        prefix,
        sources,
        batch_size,
    )
    .await;
    sqlx::query("SELECT pg_advisory_unlock(hashtext('dora-replay'))")
        .execute(&mut *guard)
        .await?;
    let outcome = result?;
    tracing::info!(?outcome, elapsed = ?started.elapsed(), "replay swapped in the rebuilt store");
    Ok(outcome)
}

async fn rebuild(
    database_url: &str,
    live: &PgPool,
    live_schema: &str,
    stream: &mut jetstream::stream::Stream,
    prefix: &str,
    sources: Option<&Sources>,
    batch_size: usize,
) -> Result<ReplayOutcome> {
    let stream_name = stream.cached_info().config.name.clone();
    let live_position = store::claim(live, &stream_name).await?;
    if let Some(recorded) = live_position.stream.as_ref().filter(|s| **s != stream_name) {
        return Err(Error::OtherStream {
            recorded: recorded.clone(),
            configured: stream_name,
        });
    }
    // After the live position, so that a store ahead of the stream is not a race.
    let info = stream.info().await.map_err(|e| Error::Nats(e.into()))?;
    let target = info.state.last_sequence;
    complete(&stream_name, info, live_position.last_seq)?;

    // A replay that died half-way leaves its schema behind; start clean.
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {REPLAY_SCHEMA} CASCADE"))
        .execute(live)
        .await?;
    let fresh = store::connect_for_bulk(database_url, REPLAY_SCHEMA, 2).await?;
    store::migrate(&fresh, REPLAY_SCHEMA).await?;
    // The rebuilt store is the same store: the live projector's consumer, named and
    // described after its id, must still be its own after the swap.
    store::adopt_identity(&fresh, &live_position).await?;

    tracing::info!(target, "replaying the stream into a fresh store");
    let ordered = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::Nats(e.into()))?;
    let mut batches = ordered
        .messages()
        .await
        .map_err(|e| Error::Nats(e.into()))?
        .ready_chunks(batch_size);

    let mut outcome = load_until(&mut batches, &fresh, prefix, sources, target).await?;

    // Catch up with the live projector in rounds, without a lock, until it is less than
    // a batch ahead: the swap below blocks its writes, and should for a moment only.
    loop {
        let live_seq = store::position(live).await?.last_seq;
        if live_seq <= outcome.last_seq + batch_size as u64 {
            break;
        }
        tracing::info!(
            from = outcome.last_seq,
            to = live_seq,
            "catching up with the live projector"
        );
        outcome = read_until(&mut batches, &fresh, prefix, sources, live_seq, outcome).await?;
    }

    let swapped = swap(
        live,
        live_schema,
        &fresh,
        &mut batches,
        prefix,
        sources,
        outcome,
    )
    .await;
    fresh.close().await;
    match swapped {
        Ok(outcome) => Ok(outcome),
        Err(Swap::Refused {
            live: live_events,
            rebuilt,
        }) => Err(Error::SwapRefused {
            live: live_events,
            rebuilt,
            kept: keep_rebuilt(live).await,
        }),
        Err(Swap::Failed(e)) => Err(Error::SwapFailed {
            kept: keep_rebuilt(live).await,
            source: Box::new(e),
        }),
    }
}

/// Refuses a stream that no longer holds the whole history: a store rebuilt from it
/// would lack the events it lost.
fn complete(name: &str, info: &jetstream::stream::Info, live_seq: u64) -> Result<()> {
    if let Err((setting, value, fix)) = dora_event::stream::keeps_everything(&info.config) {
        return Err(Error::Stream(
            dora_event::stream::StreamError::DropsEvents {
                name: name.to_owned(),
                setting,
                value,
                fix,
            },
        ));
    }
    let state = &info.state;
    if state.first_sequence > 1 {
        return Err(Error::StreamIncomplete {
            stream: name.to_owned(),
            reason: format!(
                "its first message is sequence {}: messages 1 to {} expired or were purged",
                state.first_sequence,
                state.first_sequence - 1
            ),
        });
    }
    if live_seq > state.last_sequence {
        return Err(Error::StreamIncomplete {
            stream: name.to_owned(),
            reason: format!(
                "the store has written up to sequence {live_seq} but the stream ends at {}: it was recreated, or restored from an older backup",
                state.last_sequence
            ),
        });
    }
    Ok(())
}

/// Why a swap did not happen.
enum Swap {
    /// The rebuilt store holds fewer events than the live one.
    Refused { live: u64, rebuilt: u64 },
    /// Something failed on the way.
    Failed(Error),
}

impl From<Error> for Swap {
    fn from(e: Error) -> Swap {
        Swap::Failed(e)
    }
}

impl From<sqlx::Error> for Swap {
    fn from(e: sqlx::Error) -> Swap {
        Swap::Failed(e.into())
    }
}

/// Swaps the rebuilt store in, in one transaction on the live store. The store lock
/// first, exclusively: the batches in flight commit, and no other starts until the
/// renames are committed, not even one of only rejected messages (which never touches
/// the log, so the log's lock alone would let it land in the store being retired).
/// Then the last messages the live store wrote are read into the rebuilt one, the two
/// are compared, and the schemas change names.
async fn swap<S>(
    live: &PgPool,
    live_schema: &str,
    fresh: &PgPool,
    batches: &mut S,
    prefix: &str,
    sources: Option<&Sources>,
    outcome: ReplayOutcome,
) -> Result<ReplayOutcome, Swap>
where
    S: futures::Stream<Item = Vec<Result<jetstream::Message, consumer::pull::OrderedError>>>
        + Unpin,
{
    // A store a crash left retired goes before the lock, not under it.
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {RETIRED_SCHEMA} CASCADE"))
        .execute(live)
        .await?;
    let locking = Instant::now();
    let mut tx = live.begin().await?;
    sqlx::query("SET LOCAL lock_timeout = '30s'")
        .execute(&mut *tx)
        .await?;
    store::lock_store(&mut tx).await?;
    // Readers go on; writers that do not take the store lock (none of dora's) wait too.
    sqlx::query(&format!(
        "LOCK TABLE {live_schema}.events IN EXCLUSIVE MODE"
    ))
    .execute(&mut *tx)
    .await?;
    let live_seq: i64 = sqlx::query_scalar(&format!(
        "SELECT last_seq FROM {live_schema}.store_position"
    ))
    .fetch_one(&mut *tx)
    .await?;
    let outcome = read_until(
        batches,
        fresh,
        prefix,
        sources,
        u64::try_from(live_seq).unwrap_or(0),
        outcome,
    )
    .await?;
    let live_events: i64 =
        sqlx::query_scalar(&format!("SELECT count(*) FROM {live_schema}.events"))
            .fetch_one(&mut *tx)
            .await?;
    let rebuilt_events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(fresh)
        .await?;
    if rebuilt_events < live_events {
        return Err(Swap::Refused {
            live: u64::try_from(live_events).unwrap_or(0),
            rebuilt: u64::try_from(rebuilt_events).unwrap_or(0),
        });
    }
    for statement in [
        format!("DROP SCHEMA IF EXISTS {RETIRED_SCHEMA} CASCADE"),
        format!("ALTER SCHEMA {live_schema} RENAME TO {RETIRED_SCHEMA}"),
        format!("ALTER SCHEMA {REPLAY_SCHEMA} RENAME TO {live_schema}"),
    ] {
        sqlx::query(&statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    tracing::info!(held = ?locking.elapsed(), "the live store was locked for the swap");
    // The old store goes after the lock: dropped in the swap's transaction, its files
    // (6.5 GB at 10M events) were unlinked by the commit, and writes waited 1.4 s
    // more for it. If this fails, the store is swapped all the same, and the next
    // replay drops what is left.
    if let Err(e) = sqlx::query(&format!("DROP SCHEMA {RETIRED_SCHEMA} CASCADE"))
        .execute(live)
        .await
    {
        tracing::warn!(error = %e, "the retired store was not dropped; the next replay drops it");
    }
    Ok(outcome)
}

/// Renames the rebuilt schema out of the way of the next replay, which starts by
/// dropping `dora_replay`, so a store that took long to build is not lost with a swap
/// that failed. Returns where it is.
async fn keep_rebuilt(live: &PgPool) -> String {
    let kept = format!(
        "dora_rebuilt_{}",
        chrono::Utc::now().format("%Y%m%d_%H%M%S")
    );
    let renamed = sqlx::query(&format!("ALTER SCHEMA {REPLAY_SCHEMA} RENAME TO {kept}"))
        .execute(live)
        .await;
    match renamed {
        Ok(_) => kept,
        Err(e) => {
            tracing::error!(error = %e, "the rebuilt store stays in schema {REPLAY_SCHEMA}, which the next replay drops");
            REPLAY_SCHEMA.to_owned()
        }
    }
}

/// How often the bulk load logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Builds the fresh store from the stream's first message up to `target` by the bulk
/// path (COPY, set-based facts, indexes last): the stream's whole history at once.
async fn load_until<S>(
    batches: &mut S,
    store: &PgPool,
    prefix: &str,
    sources: Option<&Sources>,
    target: u64,
) -> Result<ReplayOutcome>
where
    S: futures::Stream<Item = Vec<Result<jetstream::Message, consumer::pull::OrderedError>>>
        + Unpin,
{
    let mut load = BulkLoad::begin(store, target, PROGRESS_EVERY).await?;
    let mut outcome = ReplayOutcome::default();
    while outcome.last_seq < target {
        let decoded = next_chunk(batches, prefix, sources, target, &mut outcome).await?;
        load.push(&decoded, outcome.last_seq).await?;
    }
    outcome.applied = load.finish(outcome.last_seq).await?;
    Ok(outcome)
}

/// The next chunk of messages from the ordered consumer, decoded; counts them and moves
/// `outcome.last_seq`.
async fn next_chunk<S>(
    batches: &mut S,
    prefix: &str,
    sources: Option<&Sources>,
    wanted: u64,
    outcome: &mut ReplayOutcome,
) -> Result<Vec<Decoded>>
where
    S: futures::Stream<Item = Vec<Result<jetstream::Message, consumer::pull::OrderedError>>>
        + Unpin,
{
    // Unconstrained for full chunks; see `consume::Projector::next_batch`.
    let Some(chunk) = tokio::task::unconstrained(batches.next()).await else {
        return Err(Error::StreamEnded {
            at: outcome.last_seq,
            wanted,
        });
    };
    let mut decoded = Vec::with_capacity(chunk.len());
    for msg in chunk {
        let msg = msg.map_err(|e| Error::Nats(e.into()))?;
        let incoming = Incoming::from_message(&msg)?;
        outcome.last_seq = outcome.last_seq.max(incoming.stream_seq);
        decoded.push(decode(prefix, sources, incoming));
    }
    outcome.messages += decoded.len() as u64;
    Ok(decoded)
}

/// Applies batches from the ordered consumer to `store` through the live path until
/// `wanted` is in: the catch-up after the bulk load, a few batches at most.
async fn read_until<S>(
    batches: &mut S,
    store: &PgPool,
    prefix: &str,
    sources: Option<&Sources>,
    wanted: u64,
    mut outcome: ReplayOutcome,
) -> Result<ReplayOutcome>
where
    S: futures::Stream<Item = Vec<Result<jetstream::Message, consumer::pull::OrderedError>>>
        + Unpin,
{
    while outcome.last_seq < wanted {
        let decoded = next_chunk(batches, prefix, sources, wanted, &mut outcome).await?;
        let applied = store::apply_at(store, &decoded, Some(outcome.last_seq)).await?;
        outcome.applied += applied;
    }
    Ok(outcome)
}
