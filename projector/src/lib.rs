//! dora-projector: appends every event of the JetStream stream, once, to the
//! append-only PostgreSQL event log, and rebuilds the store from the stream on demand.
//!
//! # Layout
//!
//! - [`config`]: settings from flags or the environment.
//! - [`decode`]: a stream message becomes an event for the log or a kept rejection.
//! - [`store`]: the schema, its migrations, and the one-transaction batch write.
//! - [`consume`]: the durable pull consumer; write, commit, then ack.
//! - [`replay`]: rebuild into a fresh schema and swap it in.

pub mod config;
pub mod consume;
pub mod decode;
mod error;
pub mod replay;
pub mod store;

use async_nats::jetstream;
use dora_event::STORE_SCHEMA;
use tokio::sync::watch;

pub use config::{Command, Config};
pub use error::{Error, Result};

/// Connects to PostgreSQL and migrates the live store.
pub async fn connect_store(config: &Config) -> Result<sqlx::PgPool> {
    let pool = store::connect(&config.database.url, STORE_SCHEMA, 4)
        .await
        .map_err(|e| Error::Connect {
            what: "PostgreSQL",
            url: dora_event::settings::redact_url(&config.database.url),
            setting: "DATABASE_URL",
            source: Box::new(e),
        })?;
    store::migrate(&pool, STORE_SCHEMA).await?;
    Ok(pool)
}

/// Connects to JetStream and makes sure the stream exists.
pub async fn connect_stream(config: &Config) -> Result<jetstream::stream::Stream> {
    let client = dora_event::stream::connect(&config.stream.nats_url)
        .await
        .map_err(|e| Error::Connect {
            what: "NATS",
            url: dora_event::settings::redact_nats_url(&config.stream.nats_url),
            setting: "NATS_URL",
            source: Box::new(e),
        })?;
    let js = jetstream::new(client);
    Ok(
        dora_event::stream::ensure(&js, &config.stream.stream, &config.stream.subject_prefix)
            .await?,
    )
}

/// Runs the projector until `shutdown` turns true.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> Result<()> {
    let pool = connect_store(&config).await?;
    let stream = connect_stream(&config).await?;
    let projector = consume::Projector::new(
        pool,
        &stream,
        &config.stream.subject_prefix,
        &config.consumer,
        config.ack_wait,
        config.batch_size,
    )
    .await?;
    tracing::info!(stream = %config.stream.stream, consumer = %config.consumer, "projector following the stream");
    projector.run(shutdown).await
}

/// Rebuilds the store from the first message of the stream and swaps it in.
pub async fn replay(config: &Config) -> Result<replay::ReplayOutcome> {
    let pool = connect_store(config).await?;
    let mut stream = connect_stream(config).await?;
    replay::replay(
        &config.database.url,
        &pool,
        STORE_SCHEMA,
        &mut stream,
        &config.stream.subject_prefix,
        config.batch_size,
    )
    .await
}
