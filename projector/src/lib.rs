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
//! - [`bulk`]: a whole store at once (COPY, set-based facts, indexes last), for replay.
//! - [`http`]: `/healthz`, `/readyz` and `/metrics` on `DORA_PROJECTOR_ADDR`.
//! - [`metrics`]: the Prometheus series.

pub mod bulk;
pub mod config;
pub mod consume;
pub mod decode;
mod error;
pub mod http;
pub mod metrics;
pub mod replay;
pub mod store;

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use dora_event::STORE_SCHEMA;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{Command, Config};
pub use error::{Error, Result};

/// Connects to PostgreSQL and migrates the live store. A database that does not exist
/// on a server that answers is created; if that fails, the error names the database
/// and how to create it.
pub async fn connect_store(config: &Config) -> Result<sqlx::PgPool> {
    let url = &config.database.url;
    let pool = match store::connect(url, STORE_SCHEMA, 4).await {
        Err(e) if store::is_missing_database(&e) => {
            let name = store::create_database(url)
                .await
                .map_err(|e| Error::NoDatabase {
                    name: store::database_name(url),
                    url: dora_event::settings::redact_url(url),
                    reason: e.to_string(),
                })?;
            tracing::info!(database = %name, "created the store's database");
            store::connect(url, STORE_SCHEMA, 4).await
        }
        connected => connected,
    };
    let pool = pool.map_err(|e| Error::Connect {
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
    Ok(connect_nats(config).await?.1)
}

/// Connects to NATS and makes sure the stream exists; returns the connection too.
pub async fn connect_nats(
    config: &Config,
) -> Result<(async_nats::Client, jetstream::stream::Stream)> {
    let client = dora_event::stream::connect(&config.stream.nats_url)
        .await
        .map_err(|e| Error::Connect {
            what: "NATS",
            url: dora_event::settings::redact_nats_url(&config.stream.nats_url),
            setting: "NATS_URL",
            source: Box::new(e),
        })?;
    let js = jetstream::new(client.clone());
    let stream = dora_event::stream::ensure(
        &js,
        &config.stream.stream,
        &config.stream.subject_prefix,
        config.stream.replicas,
    )
    .await?;
    Ok((client, stream))
}

/// Runs the projector until `shutdown` turns true, serving `/healthz`, `/readyz` and
/// `/metrics` on `listener` from the start. A server that cannot be reached yet is
/// tried again until it can (the process is then up but not ready); a store or stream
/// that is reached but wrong stops it.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    warn_if_unverified(&config);
    let health = http::Health::new(metrics::ProjectorMetrics::new());
    tracing::info!(addr = ?listener.local_addr().ok(), "projector health and metrics listening");
    // The server stops when following stops, for whatever reason, not only on the signal.
    let (stop_server, server_stopped) = watch::channel(false);
    let server = tokio::spawn(
        axum::serve(listener, http::app(health.clone()))
            .with_graceful_shutdown(dora_event::process::requested(server_stopped))
            .into_future(),
    );
    let followed = follow(&config, &health, shutdown).await;
    let _ = stop_server.send(true);
    let served = server.await;
    followed?;
    match served {
        Ok(served) => served.map_err(Error::Serve),
        Err(e) => Err(Error::Serve(std::io::Error::other(e))),
    }
}

/// Reaches the store and the stream, then applies batches until `shutdown`.
async fn follow(
    config: &Config,
    health: &Arc<http::Health>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let Some(pool) = until_reached(health, &mut shutdown, || connect_store(config)).await? else {
        return Ok(());
    };
    let _ = health.pool.set(pool.clone());
    let Some((client, stream)) =
        until_reached(health, &mut shutdown, || connect_nats(config)).await?
    else {
        return Ok(());
    };
    let _ = health.nats.set(client);
    tokio::select! {
        filled = first_fill(config, health, &pool, stream.clone()) => filled?,
        _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
    }
    let projector = consume::Projector::new(
        pool,
        &stream,
        &config.stream.subject_prefix,
        config.sources.clone(),
        config.consumer.as_deref(),
        config.ack_wait,
        config.batch_size,
    )
    .await?;
    let _ = health.consumer.set(projector.consumer().to_owned());
    let _ = health.stream.set(stream);
    // The lag and the last applied sequence are known before the first batch.
    health.refresh_lag().await;
    tracing::info!(stream = %config.stream.stream, consumer = %projector.consumer(), "projector following the stream");
    projector.run(shutdown, &health.metrics).await
}

/// Builds an empty store by replay's bulk path when the stream already holds a history
/// of at least `DORA_PROJECTOR_BULK_FROM` messages (a first start on a backfilled
/// stream, a new database): minutes instead of the hours the batch path takes over
/// millions of events. Only when the store's consumer does not exist yet: a consumer
/// that exists has a place in the stream, and a store built past it would be read
/// again from there. The consumer made next starts from the built store's position.
async fn first_fill(
    config: &Config,
    health: &http::Health,
    pool: &sqlx::PgPool,
    mut stream: jetstream::stream::Stream,
) -> Result<()> {
    if config.bulk_from == 0 {
        return Ok(());
    }
    let position = store::position(pool).await?;
    if position.last_seq > 0 {
        return Ok(());
    }
    let name = config
        .consumer
        .clone()
        .unwrap_or_else(|| consume::default_consumer(&position.store_id));
    match stream.consumer_info(&name).await {
        Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => {}
        // It exists, or the server did not say: follow as usual, the batch path
        // misses nothing either way.
        _ => return Ok(()),
    }
    let messages = stream
        .info()
        .await
        .map_err(|e| Error::Nats(e.into()))?
        .state
        .messages;
    if messages < config.bulk_from {
        return Ok(());
    }
    tracing::info!(
        messages,
        bulk_from = config.bulk_from,
        "the store is empty and the stream holds a history: building the store by the bulk path before following"
    );
    health.waiting_for(Some(format!(
        "building the empty store from the stream's {messages} messages (bulk path); see the log for progress"
    )));
    replay::replay(
        &config.database.url,
        pool,
        STORE_SCHEMA,
        &mut stream,
        &config.stream.subject_prefix,
        config.sources.as_ref(),
        config.batch_size,
    )
    .await?;
    health.waiting_for(None);
    Ok(())
}

/// Calls `connect` until it reaches its server, waiting longer after each failure (up
/// to 5 s) and telling `/readyz` why it waits. `None` if `shutdown` turned true first.
/// Only an unreachable server is tried again: one that answers with something wrong
/// is an error now.
async fn until_reached<T, F, Fut>(
    health: &http::Health,
    shutdown: &mut watch::Receiver<bool>,
    mut connect: F,
) -> Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        if *shutdown.borrow() {
            return Ok(None);
        }
        match connect().await {
            Ok(connected) => {
                health.waiting_for(None);
                return Ok(Some(connected));
            }
            Err(e @ Error::Connect { .. }) => {
                tracing::error!(error = %e, retry_in = ?backoff, "not ready: server unreachable");
                health.waiting_for(Some(e.to_string()));
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait_for(|stop| *stop) => return Ok(None),
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Rebuilds the store from the first message of the stream and swaps it in.
pub async fn replay(config: &Config) -> Result<replay::ReplayOutcome> {
    warn_if_unverified(config);
    let pool = connect_store(config).await?;
    let mut stream = connect_stream(config).await?;
    replay::replay(
        &config.database.url,
        &pool,
        STORE_SCHEMA,
        &mut stream,
        &config.stream.subject_prefix,
        config.sources.as_ref(),
        config.batch_size,
    )
    .await
}

/// Without `DORA_SOURCE_KEY` every claimed `source` is kept as claimed; the operator
/// hears it once, at start, with what it risks.
fn warn_if_unverified(config: &Config) {
    if config.sources.is_none() {
        tracing::warn!(
            "DORA_SOURCE_KEY is not set: each event's claimed source (Dora-Source) is kept unverified, \
             so anyone who can publish to the stream can claim an ingest token's name. \
             Set the same DORA_SOURCE_KEY on the gateways and the projector to have claims checked"
        );
    }
}
