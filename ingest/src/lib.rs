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

pub mod auth;
pub mod body;
pub mod config;
mod error;
pub mod http;
pub mod idempotency;
pub mod metrics;
pub mod publish;

use async_nats::jetstream;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::Config;
pub use error::{Error, Result};

/// Serves the gateway on `listener` until `shutdown` turns true; requests in flight
/// finish (their publishes acked or failed) before it returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
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
    let state = http::AppState {
        tokens: config.tokens,
        publisher: publish::Publisher::new(
            js.clone(),
            &config.stream.subject_prefix,
            config.sources,
        ),
        nats: nats.clone(),
        js,
        stream: config.stream.stream,
        max_body_bytes: config.max_body_bytes,
        metrics: metrics::IngestMetrics::new(),
    };
    tracing::info!(addr = ?listener.local_addr().ok(), "ingest gateway listening");
    axum::serve(listener, http::app(state))
        .with_graceful_shutdown(dora_event::process::requested(shutdown))
        .await?;
    let _ = nats.flush().await;
    Ok(())
}
