//! The projector's Prometheus series, served on `GET /metrics` at `DORA_PROJECTOR_ADDR`.
//!
//! - `dora_projector_consumer_lag`: messages of the stream not yet delivered to the
//!   durable consumer (`num_pending`), asked of the server on every scrape and after
//!   every batch; `dora_projector_consumer_ack_pending`: delivered and not yet acked.
//! - `dora_projector_last_applied_sequence`: the highest stream sequence written and
//!   acked (at start, the consumer's ack floor).
//! - `dora_projector_events_applied_total`, `dora_projector_events_duplicates_total`,
//!   `dora_projector_events_rejected_total`: what the store made of each message.
//! - `dora_projector_sources_refused_total`: events whose `Dora-Source` was missing a
//!   valid signature; they are stored with source `nats`.
//! - `dora_projector_batch_duration_seconds`: one batch, from its write to its acks.
//! - `dora_projector_http_requests_total`, `dora_projector_http_request_duration_seconds`.

use std::sync::Arc;

use async_nats::jetstream::consumer;
use dora_event::observe::{duration_buckets, HttpMetrics};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::consume::BatchOutcome;

/// The projector's series and the registry that serves them.
#[derive(Debug, Clone)]
pub struct ProjectorMetrics {
    /// Everything below, for `/metrics`.
    pub registry: Arc<Registry>,
    /// Requests to the projector's own HTTP server.
    pub http: HttpMetrics,
    lag: Gauge,
    ack_pending: Gauge,
    last_seq: Gauge,
    applied: Counter,
    duplicates: Counter,
    rejected: Counter,
    sources_refused: Counter,
    batch_duration: Histogram,
}

impl ProjectorMetrics {
    /// A fresh registry with the projector's series, all at zero.
    pub fn new() -> ProjectorMetrics {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry, "dora_projector");
        let metrics = ProjectorMetrics {
            registry: Arc::default(),
            http,
            lag: Gauge::default(),
            ack_pending: Gauge::default(),
            last_seq: Gauge::default(),
            applied: Counter::default(),
            duplicates: Counter::default(),
            rejected: Counter::default(),
            sources_refused: Counter::default(),
            batch_duration: Histogram::new(duration_buckets()),
        };
        let sub = registry.sub_registry_with_prefix("dora_projector");
        sub.register(
            "consumer_lag",
            "Messages of the stream not yet delivered to the projector's consumer",
            metrics.lag.clone(),
        );
        sub.register(
            "consumer_ack_pending",
            "Messages delivered to the projector and not yet acked",
            metrics.ack_pending.clone(),
        );
        sub.register(
            "last_applied_sequence",
            "Highest stream sequence written to the store and acked",
            metrics.last_seq.clone(),
        );
        sub.register(
            "events_applied",
            "Events appended to the log",
            metrics.applied.clone(),
        );
        sub.register(
            "events_duplicates",
            "Valid events whose id the log already held",
            metrics.duplicates.clone(),
        );
        sub.register(
            "events_rejected",
            "Messages kept in rejected_events with their reason",
            metrics.rejected.clone(),
        );
        sub.register(
            "sources_refused",
            "Events whose claimed source had no valid signature, stored as `nats`",
            metrics.sources_refused.clone(),
        );
        sub.register(
            "batch_duration_seconds",
            "Time to write one batch and ack its messages",
            metrics.batch_duration.clone(),
        );
        ProjectorMetrics {
            registry: Arc::new(registry),
            ..metrics
        }
    }

    /// A batch was written and acked in `seconds`.
    pub fn batch(&self, outcome: &BatchOutcome, seconds: f64) {
        self.batch_duration.observe(seconds);
        self.applied.inc_by(outcome.applied.inserted);
        self.duplicates.inc_by(outcome.applied.duplicates);
        self.rejected.inc_by(outcome.applied.rejected);
        self.sources_refused.inc_by(outcome.sources_refused);
        self.lag.set(gauge_value(outcome.pending));
        if outcome.last_seq > 0 {
            // A batch redelivered after a slower one must not move the gauge back.
            self.last_seq.inner().fetch_max(
                gauge_value(outcome.last_seq),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    /// The consumer's state as the server reports it.
    pub fn consumer(&self, info: &consumer::Info) {
        self.lag.set(gauge_value(info.num_pending));
        self.ack_pending
            .set(gauge_value(info.num_ack_pending as u64));
        self.last_seq.inner().fetch_max(
            gauge_value(info.ack_floor.stream_sequence),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

impl Default for ProjectorMetrics {
    fn default() -> Self {
        ProjectorMetrics::new()
    }
}

/// Gauges hold `i64`; a count past that is not a real stream.
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
