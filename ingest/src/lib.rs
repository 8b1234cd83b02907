//! dora-ingest: the authenticated HTTP gateway. It validates lifecycle events under the
//! contract's rules and answers `202` only after JetStream acknowledged every one.
//!
//! # Layout
//!
//! - [`config`]: settings from flags or the environment.
//! - [`auth`]: named bearer tokens, compared in constant time.
//! - [`body`]: reading a body as one event or an array, stopping past the limit.
//! - [`http`]: routes, body checks and validation of single events and batches.
//! - [`idempotency`]: ids derived from the `Idempotency-Key` header, so a retried request is the same events.
//! - [`publish`]: pipelined publishes with `Nats-Msg-Id` for deduplication and the
//!   signed `Dora-Source`.
//! - [`metrics`]: the Prometheus series `/metrics` serves.
//! - [`openapi`]: the document `/openapi.json` serves, and the request body's schema.
//! - [`webhooks`]: the tools' own webhooks (GitHub, GitLab, PagerDuty, Opsgenie,
//!   Alertmanager), mapped to events and published as `POST /events` publishes.

pub mod auth;
pub mod body;
pub mod config;
mod error;
pub mod http;
pub mod idempotency;
pub mod metrics;
pub mod openapi;
pub mod publish;
pub mod webhooks;

use async_nats::jetstream;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::Config;
pub use error::{Error, ErrorBody, Result};

/// Serves the gateway on `listener` until `shutdown` turns true; requests in flight
/// finish (their publishes acked, failed or timed out) before it returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    if config.sources.is_none() {
        tracing::warn!(
            "DORA_SOURCE_KEY is not set: each event's source (its token's name) is published unsigned. \
             A projector with a key stores such events as `nats` and counts them in dora_projector_sources_refused_total; \
             one without a key keeps the claim unverified, so anyone who can publish to the stream can claim a token's name. \
             Set the same DORA_SOURCE_KEY on the gateways and the projector"
        );
    }
    let nats = dora_event::stream::connect(&config.stream.nats_url)
        .await
        .map_err(|e| Error::Connect {
            url: dora_event::settings::redact_nats_url(&config.stream.nats_url),
            source: e.into(),
        })?;
    let js = jetstream::new(nats.clone());
    dora_event::stream::ensure(
        &js,
        &config.stream.stream,
        &config.stream.subject_prefix,
        config.stream.replicas,
    )
    .await?;
    // async-nats gives up on an ack after its own 5 s; the publisher's acks wait as long
    // as DORA_INGEST_PUBLISH_TIMEOUT allows instead, and that bound, which the 503 names,
    // is the one that fires.
    let mut publishing = js.clone();
    publishing.set_timeout(config.publish_timeout + std::time::Duration::from_secs(1));
    let state = http::AppState {
        tokens: config.tokens,
        publisher: publish::Publisher::new(
            publishing,
            &config.stream.subject_prefix,
            config.sources,
        ),
        nats: nats.clone(),
        js,
        stream: config.stream.stream,
        max_body_bytes: config.max_body_bytes,
        publish_timeout: config.publish_timeout,
        metrics: metrics::IngestMetrics::new(),
        webhooks: std::sync::Arc::new(webhooks::Webhooks::new(config.webhooks)),
    };
    tracing::info!(addr = ?listener.local_addr().ok(), "ingest gateway listening");
    let limits = dora_event::serve::Limits {
        settings: config.http,
        on_timeout: "events with an `id`, or sent with an `Idempotency-Key`, are stored once however often they are sent",
    };
    dora_event::serve::serve(listener, http::app(state), limits, shutdown).await?;
    let _ = nats.flush().await;
    Ok(())
}
