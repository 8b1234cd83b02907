//! The gateway's Prometheus series, served on `GET /metrics`.
//!
//! - `dora_ingest_http_requests_total{method,route,status}` and
//!   `dora_ingest_http_request_duration_seconds{method,route}`: every request.
//! - `dora_ingest_events_accepted_total`: events in `202` answers (duplicates included,
//!   as the answer's `accepted` counts them); `dora_ingest_events_duplicates_total`: of
//!   those, the ones JetStream already had.
//! - `dora_ingest_requests_rejected_total{reason,field}`: requests refused for what they
//!   sent. `reason` is one of a fixed set ([`crate::Error::rejection`]); `field` is the
//!   event field at fault for `invalid_event` (a field of the contract, `unknown` for a
//!   field it does not know, empty when the event as a whole is wrong).
//! - `dora_ingest_publish_duration_seconds`: one request's publishes until the last
//!   JetStream ack; `dora_ingest_publish_failures_total`: requests answered `503`.
//! - `dora_ingest_webhooks_ignored_total{tool}`: webhook payloads that mapped to no
//!   event (a ping, a running deploy, an event dora does not use).
//! - `dora_ingest_commit_lookups_total{tool,outcome}`: commit-time lookups for lead
//!   time, by how they ended (`found`, `after_deploy`, `not_found`, `refused`,
//!   `failed`, `timeout`).

use std::sync::Arc;

use dora_event::observe::{duration_buckets, HttpMetrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::error::Error;

/// Labels of a refused request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectedLabels {
    /// Why ([`Error::rejection`]).
    pub reason: String,
    /// The event field at fault, for `invalid_event`.
    pub field: String,
}

/// Labels of a webhook series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    /// The route's tool.
    pub tool: String,
}

/// Labels of a commit lookup.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    /// `github` or `gitlab`.
    pub tool: String,
    /// How it ended.
    pub outcome: String,
}

/// The gateway's series and the registry that serves them.
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    /// Everything below, for `/metrics`.
    pub registry: Arc<Registry>,
    /// Requests by route and status.
    pub http: HttpMetrics,
    accepted: Counter,
    duplicates: Counter,
    rejected: Family<RejectedLabels, Counter>,
    publish_duration: Histogram,
    publish_failures: Counter,
    webhooks_ignored: Family<ToolLabels, Counter>,
    commit_lookups: Family<LookupLabels, Counter>,
}

impl IngestMetrics {
    /// A fresh registry with the gateway's series, all at zero.
    pub fn new() -> IngestMetrics {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry, "dora_ingest");
        let accepted = Counter::default();
        let duplicates = Counter::default();
        let rejected = Family::<RejectedLabels, Counter>::default();
        let publish_duration = Histogram::new(duration_buckets());
        let publish_failures = Counter::default();
        let webhooks_ignored = Family::<ToolLabels, Counter>::default();
        let commit_lookups = Family::<LookupLabels, Counter>::default();
        let sub = registry.sub_registry_with_prefix("dora_ingest");
        sub.register(
            "events_accepted",
            "Events in 202 answers, duplicates included",
            accepted.clone(),
        );
        sub.register(
            "events_duplicates",
            "Accepted events that JetStream already had",
            duplicates.clone(),
        );
        sub.register(
            "requests_rejected",
            "Requests refused for what they sent, by reason and event field",
            rejected.clone(),
        );
        sub.register(
            "publish_duration_seconds",
            "Time from a request's first publish to its last JetStream ack",
            publish_duration.clone(),
        );
        sub.register(
            "publish_failures",
            "Requests answered 503 because JetStream did not acknowledge",
            publish_failures.clone(),
        );
        sub.register(
            "webhooks_ignored",
            "Webhook payloads that mapped to no event, by tool",
            webhooks_ignored.clone(),
        );
        sub.register(
            "commit_lookups",
            "Commit-time lookups for lead time, by tool and outcome",
            commit_lookups.clone(),
        );
        // Every tool's and outcome's series from the start, at 0: a rate or an alert on
        // them then has a series to read before the first delivery or lookup.
        for tool in crate::webhooks::Tool::ALL {
            drop(webhooks_ignored.get_or_create(&ToolLabels {
                tool: tool.label().to_owned(),
            }));
        }
        for tool in crate::webhooks::commits::Tool::ALL {
            for outcome in crate::webhooks::commits::Outcome::ALL {
                drop(commit_lookups.get_or_create(&LookupLabels {
                    tool: tool.label().to_owned(),
                    outcome: outcome.label().to_owned(),
                }));
            }
        }
        IngestMetrics {
            registry: Arc::new(registry),
            http,
            accepted,
            duplicates,
            rejected,
            publish_duration,
            publish_failures,
            webhooks_ignored,
            commit_lookups,
        }
    }

    /// A webhook payload of `tool`'s mapped to nothing.
    pub fn webhook_ignored(&self, tool: &str) {
        self.webhooks_ignored
            .get_or_create(&ToolLabels {
                tool: tool.to_owned(),
            })
            .inc();
    }

    /// A commit lookup at `tool` ended with `outcome`.
    pub fn commit_lookup(&self, tool: &str, outcome: &str) {
        self.commit_lookups
            .get_or_create(&LookupLabels {
                tool: tool.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// A request's events are stored.
    pub fn accepted(&self, events: usize, duplicates: usize) {
        self.accepted.inc_by(events as u64);
        self.duplicates.inc_by(duplicates as u64);
    }

    /// One publish round took `seconds`, and succeeded or not.
    pub fn published(&self, seconds: f64, ok: bool) {
        self.publish_duration.observe(seconds);
        if !ok {
            self.publish_failures.inc();
        }
    }

    /// A request failed with `error`; counted if it was refused for what it sent.
    pub fn refused(&self, error: &Error) {
        let Some(reason) = error.rejection() else {
            return;
        };
        let field = match error {
            Error::InvalidEvent {
                field: Some(field), ..
            } => {
                // The field of an unknown-field error is whatever the sender wrote;
                // only the contract's own names become label values.
                if dora_event::FIELDS.contains(&field.as_str()) {
                    field.clone()
                } else {
                    "unknown".to_owned()
                }
            }
            _ => String::new(),
        };
        self.rejected
            .get_or_create(&RejectedLabels {
                reason: reason.to_owned(),
                field,
            })
            .inc();
    }
}

impl Default for IngestMetrics {
    fn default() -> Self {
        IngestMetrics::new()
    }
}
