//! dora-ingest: the authenticated HTTP gateway. It validates lifecycle events under the
//! contract's rules and answers `202` only after JetStream acknowledged every one.
//!
//! # Layout
//!
//! - [`config`]: settings from flags or the environment.
//! - [`auth`]: named bearer tokens, compared in constant time.
//! - [`http`]: routes, body checks and validation of single events and batches.
//! - [`publish`]: pipelined publishes with `Nats-Msg-Id` for deduplication.
//! - [`metrics`]: the Prometheus series `/metrics` serves.

pub mod auth;
pub mod config;
mod error;
pub mod http;
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
    let nats = async_nats::connect(&config.stream.nats_url)
        .await
        .map_err(|e| Error::Connect {
            url: config.stream.nats_url.clone(),
            source: e.into(),
        })?;
    let js = jetstream::new(nats.clone());
    dora_event::stream::ensure(&js, &config.stream.stream, &config.stream.subject_prefix).await?;
    let state = http::AppState {
        tokens: config.tokens,
        publisher: publish::Publisher::new(js.clone(), &config.stream.subject_prefix),
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
