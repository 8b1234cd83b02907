//! Rebuilding the store from the first message of the stream.
//!
//! The new store is built in its own schema (`dora_replay`) with the same migrations
//! and the same batch code as the live one, then renamed into place in one
//! transaction. Readers see the old store or the new one, never a half-built one. The
//! live projector may keep running: while the swap holds the old log locked, replay
//! catches up to the last message the live projector wrote, so nothing it appended is
//! lost; its next batch lands in the new store.

use std::time::Instant;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use sqlx::PgPool;

use crate::decode::{decode, Incoming};
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
/// `live_schema`, already migrated.
pub async fn replay(
    database_url: &str,
    live: &PgPool,
    live_schema: &str,
    stream: &mut jetstream::stream::Stream,
    prefix: &str,
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
    let result = rebuild(database_url, live, live_schema, stream, prefix, batch_size).await;
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
    batch_size: usize,
) -> Result<ReplayOutcome> {
    // A replay that died half-way leaves its schema behind; start clean.
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {REPLAY_SCHEMA} CASCADE"))
        .execute(live)
        .await?;
    let stream_name = stream.cached_info().config.name.clone();
    let live_position = store::claim(live, &stream_name).await?;
    if let Some(recorded) = live_position.stream.as_ref().filter(|s| **s != stream_name) {
        return Err(Error::OtherStream {
            recorded: recorded.clone(),
            configured: stream_name,
        });
    }
    let fresh = store::connect(database_url, REPLAY_SCHEMA, 2).await?;
    store::migrate(&fresh, REPLAY_SCHEMA).await?;
    // The rebuilt store is the same store: the live projector's consumer, named and
    // described after its id, must still be its own after the swap.
    store::adopt_identity(&fresh, &live_position).await?;

    let target = stream
        .info()
        .await
        .map_err(|e| Error::Nats(e.into()))?
        .state
        .last_sequence;
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

    let mut outcome = read_until(
        &mut batches,
        &fresh,
        prefix,
        target,
        ReplayOutcome::default(),
    )
    .await?;

    // The swap. Locking the live log in EXCLUSIVE mode stops the live projector's
    // writes but not the readers; then whatever it wrote after our target is read from
    // the stream too, and the schemas change names in the same transaction.
    let mut tx = live.begin().await?;
    sqlx::query("SET LOCAL lock_timeout = '30s'")
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!(
        "LOCK TABLE {live_schema}.events IN EXCLUSIVE MODE"
    ))
    .execute(&mut *tx)
    .await?;
    let live_last: Option<i64> =
        sqlx::query_scalar(&format!("SELECT max(stream_seq) FROM {live_schema}.events"))
            .fetch_one(&mut *tx)
            .await?;
    let live_last = live_last.map_or(0, |s| u64::try_from(s).unwrap_or(0));
    if live_last > outcome.last_seq {
        outcome = read_until(&mut batches, &fresh, prefix, live_last, outcome).await?;
    }
    for statement in [
        format!("DROP SCHEMA IF EXISTS {RETIRED_SCHEMA} CASCADE"),
        format!("ALTER SCHEMA {live_schema} RENAME TO {RETIRED_SCHEMA}"),
        format!("ALTER SCHEMA {REPLAY_SCHEMA} RENAME TO {live_schema}"),
        format!("DROP SCHEMA {RETIRED_SCHEMA} CASCADE"),
    ] {
        sqlx::query(&statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    fresh.close().await;
    Ok(outcome)
}

/// Applies batches from the ordered consumer to `store` until `wanted` is in.
async fn read_until<S>(
    batches: &mut S,
    store: &PgPool,
    prefix: &str,
    wanted: u64,
    mut outcome: ReplayOutcome,
) -> Result<ReplayOutcome>
where
    S: futures::Stream<Item = Vec<Result<jetstream::Message, consumer::pull::OrderedError>>>
        + Unpin,
{
    while outcome.last_seq < wanted {
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
            decoded.push(decode(prefix, incoming));
        }
        let applied = store::apply_at(store, &decoded, Some(outcome.last_seq)).await?;
        outcome.messages += decoded.len() as u64;
        outcome.applied += applied;
    }
    Ok(outcome)
}
