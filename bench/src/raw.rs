//! The raw limits every benchmark measures dora against, on the same machine in the same
//! run: acked JetStream publishes and PostgreSQL multi-row inserts of the same events,
//! with nothing of dora's work (no HTTP, no validation, no facts, no secondary index).

use std::sync::Arc;
use std::time::Instant;

use async_nats::{jetstream, HeaderMap};
use dora_system_tests::{source_keys, SOURCE_KEY};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;

/// One event ready to publish or insert: its subject's tail (`env.service.kind`), id
/// and body.
#[derive(Debug, Clone)]
pub struct Message {
    /// `<environment>.<service>.<kind>`.
    pub tail: String,
    /// The event's id.
    pub id: String,
    /// The event's JSON.
    pub body: Vec<u8>,
}

impl Message {
    /// The message of an event as `POST /events` takes it.
    pub fn of(event: &Value) -> anyhow::Result<Message> {
        let field = |name: &str| event[name].as_str().unwrap_or("prod").to_owned();
        Ok(Message {
            tail: format!(
                "{}.{}.{}",
                field("environment"),
                field("service"),
                field("kind")
            ),
            id: field("id"),
            body: serde_json::to_vec(event)?,
        })
    }
}

/// Publishes `events` under `prefix` as the gateway would (id header, source `ci`
/// signed with the test key), in pipelined windows of `batch` from `clients` tasks;
/// events per second, all acked.
pub async fn publish(
    js: &jetstream::Context,
    prefix: &str,
    events: Arc<Vec<Message>>,
    clients: usize,
    batch: usize,
) -> anyhow::Result<f64> {
    let keys = source_keys(SOURCE_KEY);
    let clients = clients.max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (js, events, prefix, keys) =
            (js.clone(), events.clone(), prefix.to_owned(), keys.clone());
        tasks.push(tokio::spawn(async move {
            let mine: Vec<&Message> = events.iter().skip(c).step_by(clients).collect();
            for window in mine.chunks(batch.max(1)) {
                let mut acks = Vec::with_capacity(window.len());
                for m in window {
                    let mut headers = HeaderMap::new();
                    headers.insert(dora_event::MSG_ID_HEADER, m.id.as_str());
                    headers.insert(dora_event::SOURCE_HEADER, "ci");
                    headers.insert(
                        dora_event::signature::SIGNATURE_HEADER,
                        keys.sign(&m.id, "ci").as_str(),
                    );
                    acks.push(
                        js.publish_with_headers(
                            format!("{prefix}.{}", m.tail),
                            headers,
                            m.body.clone().into(),
                        )
                        .await?,
                    );
                }
                for ack in acks {
                    ack.await?;
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(events.len() as f64 / started.elapsed().as_secs_f64())
}

/// Multi-row inserts of `events` into a bare table with a primary key (dropped after),
/// in chunks of `batch` from `clients` connections to `database_url`; events per second.
pub async fn insert(
    database_url: &str,
    events: Arc<Vec<Message>>,
    clients: usize,
    batch: usize,
) -> anyhow::Result<f64> {
    let clients = clients.max(1);
    let pg = PgPoolOptions::new()
        .max_connections(clients as u32)
        .connect(database_url)
        .await?;
    sqlx::query("CREATE TABLE public.bench_raw (id text PRIMARY KEY, subject text, body bytea)")
        .execute(&pg)
        .await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (pg, events) = (pg.clone(), events.clone());
        tasks.push(tokio::spawn(async move {
            let mine: Vec<&Message> = events.iter().skip(c).step_by(clients).collect();
            for chunk in mine.chunks(batch.max(1)) {
                sqlx::query(
                    "INSERT INTO public.bench_raw SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[])",
                )
                .bind(chunk.iter().map(|m| m.id.clone()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|m| m.tail.clone()).collect::<Vec<_>>())
                .bind(chunk.iter().map(|m| m.body.clone()).collect::<Vec<_>>())
                .execute(&pg)
                .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let rate = events.len() as f64 / started.elapsed().as_secs_f64();
    sqlx::query("DROP TABLE public.bench_raw")
        .execute(&pg)
        .await?;
    pg.close().await;
    Ok(rate)
}
