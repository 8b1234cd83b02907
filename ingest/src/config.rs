//! The gateway's settings, from flags or the environment.

use std::net::SocketAddr;

use clap::Parser;
use std::time::Duration;

use dora_event::settings::{HttpSettings, LogSettings, StreamSettings};
use dora_event::signature::Sources;

use crate::auth::Tokens;

/// dora-ingest: authenticated HTTP gateway that publishes lifecycle events to JetStream.
#[derive(Debug, Clone, Parser)]
#[command(name = "dora-ingest", version)]
pub struct Config {
    /// Where the stream lives.
    #[command(flatten)]
    pub stream: StreamSettings,
    /// Ingest tokens as `name=secret` pairs, comma-separated. The name becomes the
    /// `source` of the events sent with that secret. Required: no token, no start.
    #[arg(long, env = "DORA_INGEST_TOKENS", value_name = "DORA_INGEST_TOKENS", value_parser = Tokens::parse, hide_env_values = true)]
    pub tokens: Tokens,
    /// Keys that sign each event's `source` (`Dora-Source-Signature`), so the
    /// projector can tell the gateway's events from anything published straight to
    /// NATS. Comma-separated, each at least 32 characters; the first signs. The
    /// projector's list must hold it. Without it the source is published unsigned, and
    /// the gateway warns at start.
    #[arg(long = "source-key", env = "DORA_SOURCE_KEY", value_name = "DORA_SOURCE_KEY", value_parser = Sources::parse, hide_env_values = true)]
    pub sources: Option<Sources>,
    /// Address to listen on.
    #[arg(
        long,
        env = "DORA_INGEST_ADDR",
        value_name = "DORA_INGEST_ADDR",
        default_value = "127.0.0.1:8081"
    )]
    pub addr: SocketAddr,
    /// Largest request body in bytes; a larger one gets 413. The default fits 1000
    /// events of the largest valid size. At least 1024: a smaller limit refuses every
    /// event and is a mistake.
    #[arg(long, env = "DORA_INGEST_MAX_BODY_BYTES", value_name = "DORA_INGEST_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=256 * 1024 * 1024))]
    pub max_body_bytes: usize,
    /// Longest a request waits for JetStream to acknowledge its events (`10s`); past it
    /// the request gets `503` naming this setting, and the client retries.
    #[arg(long, env = "DORA_INGEST_PUBLISH_TIMEOUT", value_name = "DORA_INGEST_PUBLISH_TIMEOUT", default_value = "10s",
          value_parser = dora_event::settings::positive_duration)]
    pub publish_timeout: Duration,
    /// The tools' webhooks: their secrets, names and commit lookups.
    #[command(flatten)]
    pub webhooks: crate::webhooks::settings::WebhookSettings,
    /// Timeouts and the in-flight limit of the HTTP server.
    #[command(flatten)]
    pub http: HttpSettings,
    /// How the gateway logs.
    #[command(flatten)]
    pub log: LogSettings,
}
