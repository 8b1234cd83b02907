//! Events per second through the whole pipeline, against the raw limits measured in
//! the same run on the same machine.
//!
//! ```sh
//! cargo run --release -p dora-bench --bin pipeline -- --events 100000
//! ```
//!
//! 1. raw JetStream: acked publishes of the same bodies and headers, pipelined in
//!    windows of `--batch`, from `--clients` concurrent tasks (no HTTP, no validation);
//! 2. raw PostgreSQL: multi-row inserts of the same rows into a bare table with a
//!    primary key (no facts, no triggers);
//! 3. dora: `--clients` HTTP clients POST arrays of `--batch` events to dora-ingest,
//!    dora-projector writes them to the log; measured until the last row is in.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use async_nats::HeaderMap;
use clap::Parser;
use dora_bench::Rng;
use dora_system_tests::{TestEnv, CI_TOKEN};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
struct Args {
    /// Events per measurement.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Events per request (and per publish window).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
}

fn events(n: usize, seed: u64) -> Vec<Value> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let at = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap_or_default()
                + chrono::TimeDelta::seconds(rng.below(300 * 86_400) as i64);
            match rng.below(10) {
                0..=7 => json!({"id": format!("s{seed}-{i}"), "kind": "deploy", "service": format!("svc-{:03}", rng.below(200)),
                    "git_sha": format!("{:016x}", rng.next_u64()), "succeeded": rng.below(10) != 0,
                    "commit_at": (at - chrono::TimeDelta::minutes(90)).to_rfc3339(), "occurred_at": at.to_rfc3339()}),
                8 => json!({"id": format!("s{seed}-{i}"), "kind": "rollback", "service": format!("svc-{:03}", rng.below(200)),
                    "git_sha": format!("{:016x}", rng.next_u64()), "occurred_at": at.to_rfc3339()}),
                _ => json!({"id": format!("s{seed}-{i}"), "kind": "incident_opened", "service": format!("svc-{:03}", rng.below(200)),
                    "ref_id": format!("INC-{}", rng.below(5000)), "occurred_at": at.to_rfc3339()}),
            }
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let env = TestEnv::new().await;
    println!(
        "{} events, {} per request or publish window, {} concurrent clients, {} cores",
        args.events,
        args.batch,
        args.clients,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // 1. Raw JetStream, into this run's stream but on its own subjects' ids.
    let raw = Arc::new(events(args.events, 1));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (js, raw, prefix, batch, clients) = (
            env.js.clone(),
            raw.clone(),
            env.prefix.clone(),
            args.batch,
            args.clients,
        );
        tasks.push(tokio::spawn(async move {
            let mine: Vec<&Value> = raw.iter().skip(c).step_by(clients).collect();
            for window in mine.chunks(batch) {
                let mut acks = Vec::with_capacity(window.len());
                for e in window {
                    let id = e["id"].as_str().unwrap_or_default();
                    let mut headers = HeaderMap::new();
                    headers.insert(dora_event::MSG_ID_HEADER, id);
                    headers.insert(dora_event::SOURCE_HEADER, "bench");
                    let subject = format!(
                        "{prefix}.prod.{}.{}",
                        e["service"].as_str().unwrap_or("x"),
                        e["kind"].as_str().unwrap_or("x")
                    );
                    acks.push(
                        js.publish_with_headers(subject, headers, serde_json::to_vec(e)?.into())
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
    let raw_js = args.events as f64 / started.elapsed().as_secs_f64();
    println!("raw JetStream acked publishes:     {raw_js:>10.0} events/s");

    // 2. Raw PostgreSQL multi-row inserts.
    sqlx::query("CREATE TABLE public.bench_raw (id text PRIMARY KEY, kind text, service text, git_sha text, body jsonb)")
        .execute(&env.pool)
        .await?;
    let started = Instant::now();
    for chunk in raw.chunks(args.batch) {
        let col = |f: &str| {
            chunk
                .iter()
                .map(|e| e[f].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        };
        sqlx::query("INSERT INTO public.bench_raw SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[])")
            .bind(col("id"))
            .bind(col("kind"))
            .bind(col("service"))
            .bind(col("git_sha"))
            .bind(chunk.to_vec())
            .execute(&env.pool)
            .await?;
    }
    let raw_pg = args.events as f64 / started.elapsed().as_secs_f64();
    println!("raw PostgreSQL batched inserts:    {raw_pg:>10.0} events/s");

    // 3. dora end to end. The projector starts after the raw publishes, so it first
    // drains those (they are valid events too); count what it writes after that.
    let started = Instant::now();
    let projector = env.spawn_projector(env.projector_config()).await;
    drained(&env).await;
    let drain = args.events as f64 / started.elapsed().as_secs_f64();
    println!(
        "dora-projector draining a backlog: {drain:>10.0} events/s  = {:.2} x raw PostgreSQL",
        drain / raw_pg
    );
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let dora = Arc::new(events(args.events, 2));
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (client, dora, url, batch, clients) = (
            client.clone(),
            dora.clone(),
            ingest.url.clone(),
            args.batch,
            args.clients,
        );
        tasks.push(tokio::spawn(async move {
            let mine: Vec<&Value> = dora.iter().skip(c).step_by(clients).collect();
            for request in mine.chunks(batch) {
                let response = client
                    .post(format!("{url}/events"))
                    .bearer_auth(CI_TOKEN)
                    .json(&request)
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status() == 202,
                    "POST /events: {}",
                    response.status()
                );
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let accepted = args.events as f64 / started.elapsed().as_secs_f64();
    drained(&env).await;
    let end_to_end = args.events as f64 / started.elapsed().as_secs_f64();
    println!(
        "dora-ingest 202s (HTTP accepted):  {accepted:>10.0} events/s  = {:.2} x raw JetStream",
        accepted / raw_js
    );
    println!("dora end to end (HTTP to the log): {end_to_end:>10.0} events/s  = {:.2} x raw JetStream, {:.2} x raw PostgreSQL",
        end_to_end / raw_js, end_to_end / raw_pg);
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(str::to_owned)
        })
        .context("reading peak memory")?;
    println!(
        "peak memory of this process (client, gateway and projector together): {}",
        rss.trim_start_matches("VmHWM:").trim()
    );

    anyhow::ensure!(
        env.event_count().await == 2 * args.events as i64,
        "every event is in the log"
    );
    ingest.stop().await?;
    projector.stop().await?;
    env.cleanup().await;
    Ok(())
}

/// Waits until the projector has written and acked every message of the stream. Polls
/// the consumer (cheap) rather than counting rows (which would compete for the CPU).
async fn drained(env: &TestEnv) {
    loop {
        if let Ok(stream) = env.js.get_stream(&env.stream).await {
            let last = stream.cached_info().state.last_sequence;
            if let Ok(info) = stream.consumer_info("dora-projector").await {
                if info.num_pending == 0
                    && info.num_ack_pending == 0
                    && info.ack_floor.stream_sequence >= last
                {
                    return;
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
