//! Following the stream with a durable pull consumer.
//!
//! One step takes every message that is ready (up to the batch size), writes them in one
//! transaction, and only then acks them. A database outage means no ack and a retry with
//! backoff; shutdown during the retry leaves the messages unacked for the next start.
//! While a backlog waits, [`Projector::run`] writes two batches at once, each acked
//! after its own commit.

use std::pin::Pin;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, AckKind};
use dora_event::signature::Sources;
use dora_event::ValidationError;
use futures::stream::FuturesOrdered;
use futures::{Stream, StreamExt};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::decode::{decode, Decoded, Incoming, Rejected, Stored};
use crate::error::{Error, Result};
use crate::metrics::ProjectorMetrics;
use crate::store::{self, Applied};

type Batches = Pin<
    Box<
        dyn Stream<Item = Vec<Result<jetstream::Message, consumer::pull::MessagesError>>>
            + Send
            + Sync,
    >,
>;

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Messages in the batch.
    pub messages: u64,
    /// What the store made of them.
    pub applied: Applied,
    /// Highest stream sequence in the batch.
    pub last_seq: u64,
    /// Messages still waiting for this consumer after the batch (the lag).
    pub pending: u64,
    /// Stream sequences of the messages kept as rejected.
    pub rejected_seqs: Vec<u64>,
    /// Events whose claimed source was not signed and is stored as `nats`.
    pub sources_refused: u64,
}

/// The consumer half of the projector: a durable pull consumer and the store.
pub struct Projector {
    pool: PgPool,
    prefix: String,
    consumer: String,
    sources: Option<Sources>,
    batches: Batches,
    batch_size: usize,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("prefix", &self.prefix)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

/// The consumer name of a store when `DORA_PROJECTOR_CONSUMER` is not set: its own, so
/// two stores following one stream never share a consumer (each would miss what the
/// other acked).
pub fn default_consumer(store_id: &str) -> String {
    format!("dora-projector-{store_id}")
}

/// What the consumer's description says before the store it belongs to.
const DESCRIPTION: &str = "dora-projector: appends events to the PostgreSQL log of store ";

/// The store a consumer's description names, if it names one.
fn store_of(description: Option<&str>) -> Option<&str> {
    description?.strip_prefix(DESCRIPTION).map(str::trim)
}

/// The durable consumer's configuration: explicit acks, redelivered forever, from the
/// start of the stream, for the store `store_id`.
pub fn consumer_config(
    name: &str,
    store_id: &str,
    ack_wait: Duration,
    batch_size: usize,
) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(name.to_owned()),
        description: Some(format!("{DESCRIPTION}{store_id}")),
        ack_policy: consumer::AckPolicy::Explicit,
        deliver_policy: consumer::DeliverPolicy::All,
        ack_wait,
        // Room for a few batches in flight; never -1 (max_deliver) so nothing is dropped.
        max_ack_pending: max_ack_pending(batch_size),
        ..Default::default()
    }
}

fn max_ack_pending(batch_size: usize) -> i64 {
    (batch_size * 4).max(1000) as i64
}

/// True for the deliver policies that miss nothing the store lacks: everything, or from
/// a sequence the store's position chose.
fn from_the_store(policy: consumer::DeliverPolicy) -> bool {
    matches!(
        policy,
        consumer::DeliverPolicy::All | consumer::DeliverPolicy::ByStartSequence { .. }
    )
}

/// The first setting of an existing consumer that is not what the projector needs:
/// its name, what it is, what it should be.
fn differs(
    have: &consumer::Config,
    want: &consumer::pull::Config,
) -> Option<(&'static str, String, String)> {
    let checks = [
        (
            "ack_policy",
            format!("{:?}", have.ack_policy),
            format!("{:?}", want.ack_policy),
        ),
        (
            // All, or a start the store's position chose: either misses nothing.
            "deliver_policy",
            format!("{:?}", have.deliver_policy),
            if from_the_store(have.deliver_policy) {
                format!("{:?}", have.deliver_policy)
            } else {
                format!("{:?}", want.deliver_policy)
            },
        ),
        (
            "filter_subject",
            have.filter_subject.clone(),
            want.filter_subject.clone(),
        ),
        (
            // 0 and -1 both mean "redeliver forever"; the server reports -1.
            "max_deliver",
            forever(have.max_deliver),
            forever(want.max_deliver),
        ),
        (
            "ack_wait",
            format!("{:?}", have.ack_wait),
            format!("{:?}", want.ack_wait),
        ),
        (
            "max_ack_pending",
            have.max_ack_pending.to_string(),
            want.max_ack_pending.to_string(),
        ),
        (
            "description",
            have.description.clone().unwrap_or_default(),
            want.description.clone().unwrap_or_default(),
        ),
    ];
    checks.into_iter().find(|(_, have, want)| have != want)
}

fn forever(max_deliver: i64) -> String {
    if max_deliver <= 0 { -1 } else { max_deliver }.to_string()
}

/// Whether the consumer may have acked a message the store does not hold: its ack
/// floor is past the store's position, or a message past the position was delivered
/// and is no longer pending (acked out of order). The store only moves forward and the
/// projector acks only what it committed, so either means the store went back in time.
fn ahead_of(store_seq: u64, info: &consumer::Info) -> bool {
    let floor = info.ack_floor.stream_sequence;
    let delivered = info.delivered.stream_sequence;
    floor > store_seq
        || (delivered > store_seq
            && (info.num_ack_pending as u64) < delivered - store_seq.max(floor))
}

/// Where a consumer made for a store at `store_seq` starts. A little before the
/// position: a message below it may have been pending (redelivered out of order) when
/// the position was written, and at most `max_ack_pending` are. Reading one again is
/// harmless: events are kept by id, rejections by stream sequence.
fn start_for(store_seq: u64, batch_size: usize) -> consumer::DeliverPolicy {
    if store_seq == 0 {
        return consumer::DeliverPolicy::All;
    }
    let rewind = u64::try_from(max_ack_pending(batch_size)).unwrap_or(0);
    consumer::DeliverPolicy::ByStartSequence {
        start_sequence: (store_seq + 1).saturating_sub(rewind).max(1),
    }
}

impl Projector {
    /// Binds to the store's durable consumer on `stream` (`name`, or the store's own
    /// when `None`), creating it if needed. A consumer that acked messages the store
    /// does not hold (the store was restored, failed over, or is another, empty,
    /// database) is made again from the store's position. A claimed source is kept
    /// when signed under one of `sources`, or unverified without keys (`None`).
    pub async fn new(
        pool: PgPool,
        stream: &jetstream::stream::Stream,
        prefix: &str,
        sources: Option<Sources>,
        name: Option<&str>,
        ack_wait: Duration,
        batch_size: usize,
    ) -> Result<Projector> {
        let stream_name = stream.cached_info().config.name.clone();
        let position = store::claim(&pool, &stream_name).await?;
        if let Some(recorded) = position.stream.as_ref().filter(|s| **s != stream_name) {
            return Err(Error::OtherStream {
                recorded: recorded.clone(),
                configured: stream_name,
            });
        }
        let name = name.map_or_else(|| default_consumer(&position.store_id), str::to_owned);
        let mut wanted = consumer_config(&name, &position.store_id, ack_wait, batch_size);
        wanted.deliver_policy = start_for(position.last_seq, batch_size);
        let mut consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(&name, wanted.clone())
            .await
            .map_err(|e| Error::Nats(e.into()))?;
        let info = consumer.cached_info().clone();
        if let Some(other) =
            store_of(info.config.description.as_deref()).filter(|other| *other != position.store_id)
        {
            return Err(Error::OtherStore {
                consumer: name,
                other: other.to_owned(),
                ours: position.store_id,
            });
        }
        if ahead_of(position.last_seq, &info) {
            tracing::warn!(
                consumer = %name,
                store_position = position.last_seq,
                consumer_ack_floor = info.ack_floor.stream_sequence,
                consumer_delivered = info.delivered.stream_sequence,
                "THE STORE IS BEHIND ITS CONSUMER: it was restored from a backup, failed over to a replica that missed commits, or DATABASE_URL names another database. \
                 The consumer acked messages the store does not hold; making it again from the store's position so they are read again"
            );
            stream
                .delete_consumer(&name)
                .await
                .map_err(|e| Error::Nats(e.into()))?;
            consumer = stream
                .create_consumer(wanted.clone())
                .await
                .map_err(|e| Error::Nats(e.into()))?;
        } else if from_the_store(info.config.deliver_policy) {
            // An update must keep the policy the consumer was made with.
            wanted.deliver_policy = info.config.deliver_policy;
        }
        if let Some((setting, have, want)) = differs(&consumer.cached_info().config, &wanted) {
            // An existing consumer keeps the settings it was made with; ack wait, the
            // ack backlog and the description can be changed in place, the rest cannot
            // without losing the consumer's position, which is the operator's call.
            tracing::info!(consumer = %name, setting, %have, %want, "updating the consumer's settings");
            consumer = stream.create_consumer(wanted.clone()).await.map_err(|e| {
                Error::ConsumerSettings {
                    consumer: name.clone(),
                    setting,
                    have: have.clone(),
                    want: want.clone(),
                    reason: e.to_string(),
                }
            })?;
            if let Some((setting, have, want)) = differs(&consumer.cached_info().config, &wanted) {
                return Err(Error::ConsumerSettings {
                    consumer: name,
                    setting,
                    have,
                    want,
                    reason: "the server kept the old value".to_owned(),
                });
            }
        }
        let messages = consumer
            .stream()
            .max_messages_per_batch(batch_size)
            .messages()
            .await
            .map_err(|e| Error::Nats(e.into()))?;
        Ok(Projector {
            pool,
            prefix: prefix.to_owned(),
            consumer: name,
            sources,
            batches: Box::pin(messages.ready_chunks(batch_size)),
            batch_size,
        })
    }

    /// The durable consumer's name.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Waits for messages and returns every one that is ready, up to the batch size.
    /// `None` when the consumer's stream has ended.
    pub async fn next_batch(&mut self) -> Option<Vec<jetstream::Message>> {
        next_batch(&mut self.batches).await
    }

    /// Writes a batch, retrying a failing database with backoff until it succeeds or
    /// `shutdown` turns true. Does not ack.
    pub async fn apply(
        &self,
        batch: &[jetstream::Message],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<BatchOutcome> {
        let mut decoded: Vec<Decoded> = Vec::with_capacity(batch.len());
        let mut rejected_seqs = Vec::new();
        let mut sources_refused = 0;
        for msg in batch {
            let incoming = Incoming::from_message(msg)?;
            let stream_seq = incoming.stream_seq;
            let d = decode(&self.prefix, self.sources.as_ref(), incoming);
            if let Decoded::Event(Stored {
                refused_source: Some(refused),
                event,
                ..
            }) = &d
            {
                sources_refused += 1;
                tracing::warn!(stream_seq, id = %event.id, claimed = %refused.claimed,
                    reason = refused.reason, "claimed source not signed; stored as `nats`");
            }
            if let Decoded::Rejected(r) = &d {
                rejected_seqs.push(r.incoming.stream_seq);
                tracing::warn!(stream_seq = r.incoming.stream_seq, subject = %r.incoming.subject,
                    field = ?r.error.field, reason = %r.error, "rejected message kept in rejected_events");
            }
            decoded.push(d);
        }
        let mut backoff = Duration::from_millis(100);
        let applied = loop {
            let written = match store::apply_at(&self.pool, &decoded, last_seq(batch)).await {
                Err(e) if store::is_refusal(&e) => {
                    tracing::warn!(error = %e, "the store refused the batch; writing it one message at a time");
                    self.apply_one_by_one(batch, &mut decoded, &mut rejected_seqs)
                        .await
                }
                written => written,
            };
            // Any other failure, on either path, is retried whole: what was already
            // written comes back as duplicates.
            match written {
                Ok(applied) => break applied,
                Err(e) if *shutdown.borrow() => return Err(e),
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?backoff, "batch not written; messages stay unacked");
                    // Tell JetStream we are still on it, so it does not hand the batch to
                    // another consumer while we wait for the database.
                    for msg in batch {
                        let _ = msg.ack_with(AckKind::Progress).await;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        let (last_seq, pending) = batch
            .last()
            .and_then(|m| m.info().ok())
            .map(|i| (i.stream_sequence, i.pending))
            .unwrap_or_default();
        Ok(BatchOutcome {
            messages: batch.len() as u64,
            applied,
            last_seq,
            pending,
            rejected_seqs,
            sources_refused,
        })
    }

    /// The slow path for a batch the store refused: each message in its own
    /// transaction, and one the store refuses is kept as rejected with the store's
    /// reason, so one bad message cannot block the stream.
    async fn apply_one_by_one(
        &self,
        batch: &[jetstream::Message],
        decoded: &mut [Decoded],
        rejected_seqs: &mut Vec<u64>,
    ) -> Result<Applied> {
        let mut total = Applied::default();
        for (msg, d) in batch.iter().zip(decoded.iter_mut()) {
            let at = last_seq(std::slice::from_ref(msg));
            let applied = match store::apply_at(&self.pool, std::slice::from_ref(d), at).await {
                Err(e) if store::is_refusal(&e) => {
                    let incoming = Incoming::from_message(msg)?;
                    tracing::warn!(stream_seq = incoming.stream_seq, error = %e, "message refused by the store; kept as rejected");
                    rejected_seqs.push(incoming.stream_seq);
                    *d = Decoded::Rejected(Rejected {
                        incoming,
                        error: ValidationError::whole(format!("the store refused it: {e}")),
                    });
                    store::apply_at(&self.pool, std::slice::from_ref(d), at).await?
                }
                other => other?,
            };
            total += applied;
        }
        Ok(total)
    }

    /// Acks a batch that [`Projector::apply`] wrote. Rejected messages are terminated:
    /// they are kept in the store and redelivering them cannot help.
    pub async fn ack(&self, batch: &[jetstream::Message], outcome: &BatchOutcome) -> Result<()> {
        for msg in batch {
            let seq = msg.info()?.stream_sequence;
            if outcome.rejected_seqs.contains(&seq) {
                msg.ack_with(AckKind::Term).await?;
            } else {
                msg.ack().await?;
            }
        }
        Ok(())
    }

    /// One step: the next batch, written, then acked. `None` when the stream ended.
    pub async fn step(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<BatchOutcome>> {
        let Some(batch) = self.next_batch().await else {
            return Ok(None);
        };
        let outcome = self.apply(&batch, shutdown).await?;
        self.ack(&batch, &outcome).await?;
        Ok(Some(outcome))
    }

    /// Steps until `shutdown` turns true, recording each batch in `metrics`. While a
    /// backlog waits (a whole batch more pending), up to [`IN_FLIGHT`] batches are
    /// written at once: the next batch is decoded and its events appended while the one
    /// before it recomputes its facts and commits (the store serialises the recomputes,
    /// see `store::SERIALISE_BATCHES`). Each batch is acked once its own transaction
    /// committed. The batches in hand when `shutdown` turns true are finished (written
    /// and acked) if the database allows, else left unacked.
    pub async fn run(
        mut self,
        shutdown: watch::Receiver<bool>,
        metrics: &ProjectorMetrics,
    ) -> Result<()> {
        let mut batches =
            std::mem::replace(&mut self.batches, Box::pin(futures::stream::pending()));
        let this = &self;
        let mut progress = Progress::default();
        let mut writing = FuturesOrdered::new();
        let mut stopping = shutdown.clone();
        let (mut stopped, mut ended, mut failed) = (false, false, None);
        // A second batch only while a backlog waits: caught up, the next batch would be
        // a few messages, and splitting the work into more, smaller transactions costs
        // PostgreSQL more CPU per event (one event per request, 64 connections, 3 runs:
        // 202s median 7.8k events/s with two in flight regardless, 10.2k one at a time
        // in a run just before).
        let mut backlog = false;
        loop {
            let room = if backlog { IN_FLIGHT } else { 1 };
            let more = !stopped && !ended && failed.is_none() && writing.len() < room;
            if !more && writing.is_empty() {
                break;
            }
            tokio::select! {
                batch = next_batch(&mut batches), if more => match batch {
                    Some(batch) => {
                        backlog = batch
                            .last()
                            .and_then(|m| m.info().ok())
                            .is_some_and(|i| i.pending >= this.batch_size as u64);
                        writing.push_back(this.write(batch, shutdown.clone()));
                    }
                    None => ended = true,
                },
                Some(written) = writing.next(), if !writing.is_empty() => match written {
                    Ok((outcome, took)) => {
                        metrics.batch(&outcome, took.as_secs_f64());
                        progress.record(outcome);
                    }
                    // Asked to stop while the database refused the batch: it stays
                    // unacked and comes again to the next projector. A requested stop
                    // is not a failure, so a supervisor must not see one.
                    Err(e) if *shutdown.borrow() => {
                        tracing::warn!(error = %e, "stopping with a batch not written; it stays unacked for the next start");
                    }
                    // The other batch in flight is finished first.
                    Err(e) => failed = failed.or(Some(e)),
                },
                _ = stopping.wait_for(|stop| *stop), if !stopped => stopped = true,
            }
        }
        progress.log();
        match failed {
            Some(e) => Err(e),
            // The consumer was deleted, or the stream with it. Exiting non-zero lets a
            // supervisor restart the projector, which recreates the consumer.
            None if ended && !stopped => Err(Error::ConsumerGone),
            None => Ok(()),
        }
    }

    /// Writes one batch, then acks it; how long that took.
    async fn write(
        &self,
        batch: Vec<jetstream::Message>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(BatchOutcome, Duration)> {
        let started = Instant::now();
        let outcome = self.apply(&batch, &mut shutdown).await?;
        if let Err(e) = self.ack(&batch, &outcome).await {
            // The batch is committed: a redelivery is recognised as duplicates.
            tracing::warn!(error = %e, "acks not sent; the batch will come again and change nothing");
        }
        Ok((outcome, started.elapsed()))
    }
}

/// Batches being written at once by [`Projector::run`]: one appending while the other
/// recomputes and commits. On the pipeline benchmark PostgreSQL was the busy process
/// (0.8 of a core) while the projector wrote one batch at a time, the other core mostly
/// idle; a third batch would only queue behind the same two.
pub const IN_FLIGHT: usize = 2;

/// Waits for messages and returns every one that is ready, up to the batch size.
/// `None` when the consumer's stream has ended.
async fn next_batch(batches: &mut Batches) -> Option<Vec<jetstream::Message>> {
    loop {
        // Unconstrained: tokio's cooperative budget would otherwise end every chunk
        // after ~64 ready messages, however many are waiting, and a batch's fixed cost
        // would then dominate (measured: 10k instead of 120k messages/s).
        let chunk = tokio::task::unconstrained(batches.next()).await?;
        let mut batch = Vec::with_capacity(chunk.len());
        for item in chunk {
            match item {
                Ok(msg) => batch.push(msg),
                // Heartbeats missed, a pull that expired: the client re-pulls.
                Err(e) => tracing::warn!(error = %e, "consumer hiccup"),
            }
        }
        if !batch.is_empty() {
            return Some(batch);
        }
    }
}

/// The highest stream sequence of a batch, which the store records with it.
fn last_seq(batch: &[jetstream::Message]) -> Option<u64> {
    batch
        .iter()
        .filter_map(|m| m.info().ok().map(|i| i.stream_sequence))
        .max()
}

/// Running totals, logged every few seconds while there is traffic.
#[derive(Debug)]
struct Progress {
    totals: Applied,
    last: BatchOutcome,
    logged_at: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            totals: Applied::default(),
            last: BatchOutcome::default(),
            logged_at: Instant::now(),
        }
    }
}

impl Progress {
    fn record(&mut self, outcome: BatchOutcome) {
        self.totals += outcome.applied;
        tracing::debug!(?outcome, "batch applied");
        self.last = outcome;
        if self.logged_at.elapsed() >= Duration::from_secs(10) {
            self.log();
        }
    }

    fn log(&mut self) {
        tracing::info!(
            last_seq = self.last.last_seq,
            lag = self.last.pending,
            inserted = self.totals.inserted,
            duplicates = self.totals.duplicates,
            rejected = self.totals.rejected,
            "projector progress"
        );
        self.logged_at = Instant::now();
    }
}
