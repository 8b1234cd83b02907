//! Events per second through the whole pipeline, against the raw limits measured in
//! the same run on the same machine, repeated and printed as min/median/max.
//!
//! ```sh
//! cargo run --release -p dora-bench --bin pipeline -- --events 100000 --runs 3
//! ```
//!
//! The workload is the demo generator's mix (`dora-demo`'s profiles over `--services`
//! services: deploys with commit times, failed attempts, rollbacks naming deployed
//! shas, incidents opened with the sha they blame and closed), shuffled with a seed, so
//! the projector derives real facts: attempts fail, rollbacks and incidents attribute
//! to deploys, incidents close. Each run has its own database and stream and measures:
//!
//! 1. raw JetStream: acked publishes of the same bodies, headers and signatures,
//!    pipelined in windows of `--batch`, from `--clients` concurrent tasks (no HTTP,
//!    no validation);
//! 2. raw PostgreSQL: multi-row inserts of the same rows into a bare table with a
//!    primary key (no facts, no triggers) from `--clients` concurrent connections;
//! 3. dora-projector draining the raw publishes as a backlog (production ack wait);
//! 4. dora: `--clients` HTTP clients POST arrays of `--batch` other events to
//!    dora-ingest, measured at the last `202` and when the last row is in the log.
//!
//! A warm-up run (a fifth of the size) comes first and is not counted. Ratios are
//! taken within each run, then spread over the runs.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use async_nats::HeaderMap;
use clap::Parser;
use dora_bench::{demo_events, drained, post_events, production_projector_config, shuffle, Spread};
use dora_system_tests::{source_keys, TestEnv, SOURCE_KEY};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;

#[derive(Debug, Parser)]
struct Args {
    /// Events per measurement (each run sends twice this: raw publishes, then HTTP).
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Events per request (and per publish window and insert).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent clients: publishers, PostgreSQL connections and HTTP clients alike.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Services in the demo mix.
    #[arg(long, default_value_t = 200)]
    services: usize,
    /// Measured runs (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seed of the histories and of their arrival order.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// One run's figures, in events per second.
#[derive(Debug, Clone, Copy)]
struct Run {
    raw_js: f64,
    raw_pg: f64,
    drain: f64,
    accepted: f64,
    end_to_end: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!(
        "{} events per measurement, demo mix of {} services shuffled, {} per request or publish window or insert, {} concurrent clients on every side, {} cores, {} runs after a warm-up",
        args.events,
        args.services,
        args.batch,
        args.clients,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        args.runs
    );
    let warm_up = one_run(&args, (args.events / 5).max(args.batch), 0).await?;
    println!("warm-up run: {warm_up:.0?}");
    let mut runs = Vec::new();
    for r in 1..=args.runs {
        let run = one_run(&args, args.events, r as u64).await?;
        println!("run {r}: {run:.0?}");
        runs.push(run);
    }

    // One line per figure: its min, median and max over the runs, to `decimals` places.
    let row = |label: &str, decimals: usize, f: &dyn Fn(&Run) -> f64| {
        let s = Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
        let (min, median, max) = (s.min, s.median, s.max);
        println!("{label:<44} {min:>10.decimals$} {median:>10.decimals$} {max:>10.decimals$}");
    };
    let heading =
        |label: &str| println!("\n{label:<44} {:>10} {:>10} {:>10}", "min", "median", "max");
    heading("events/s");
    row("raw JetStream acked publishes", 0, &|r| r.raw_js);
    row("raw PostgreSQL batched inserts", 0, &|r| r.raw_pg);
    row("dora-projector draining a backlog", 0, &|r| r.drain);
    row("dora-ingest 202s (HTTP accepted)", 0, &|r| r.accepted);
    row("dora end to end (HTTP to the log)", 0, &|r| r.end_to_end);
    heading("ratio, within each run");
    let ratio = |label: &str, f: &dyn Fn(&Run) -> f64| row(label, 2, f);
    ratio("drain / raw PostgreSQL", &|r| r.drain / r.raw_pg);
    ratio("202s / raw JetStream", &|r| r.accepted / r.raw_js);
    ratio("end to end / raw JetStream", &|r| r.end_to_end / r.raw_js);
    ratio("end to end / raw PostgreSQL", &|r| r.end_to_end / r.raw_pg);
    ratio("end to end / slower raw limit", &|r| {
        r.end_to_end / r.raw_js.min(r.raw_pg)
    });

    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(str::to_owned)
        })
        .context("reading peak memory")?;
    println!(
        "\npeak memory of this process (client, gateway and projector together): {}",
        rss.trim_start_matches("VmHWM:").trim()
    );
    Ok(())
}

/// One run on a fresh database and stream.
async fn one_run(args: &Args, events: usize, run: u64) -> anyhow::Result<Run> {
    let env = TestEnv::new().await;
    let clients = args.clients.max(1);
    let seed = args.seed.wrapping_mul(1000).wrapping_add(2 * run);
    let mut raw = demo_events(events, seed, args.services);
    shuffle(&mut raw, seed);
    let raw = Arc::new(raw);
    let mut dora = demo_events(events, seed + 1, args.services);
    shuffle(&mut dora, seed + 1);
    let dora = Arc::new(dora);

    // 1. Raw JetStream, into this run's stream, signed as the gateway signs.
    let keys = source_keys(SOURCE_KEY);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (js, raw, prefix, batch, keys) = (
            env.js.clone(),
            raw.clone(),
            env.prefix.clone(),
            args.batch,
            keys.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mine: Vec<&Value> = raw.iter().skip(c).step_by(clients).collect();
            for window in mine.chunks(batch) {
                let mut acks = Vec::with_capacity(window.len());
                for e in window {
                    let id = e["id"].as_str().unwrap_or_default();
                    let mut headers = HeaderMap::new();
                    headers.insert(dora_event::MSG_ID_HEADER, id);
                    headers.insert(dora_event::SOURCE_HEADER, "ci");
                    headers.insert(
                        dora_event::signature::SIGNATURE_HEADER,
                        keys.sign(id, "ci").as_str(),
                    );
                    let subject = format!(
                        "{prefix}.{}.{}.{}",
                        e["environment"].as_str().unwrap_or("prod"),
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
    let raw_js = events as f64 / started.elapsed().as_secs_f64();

    // 2. Raw PostgreSQL multi-row inserts, as many connections as clients.
    let pg = PgPoolOptions::new()
        .max_connections(clients as u32)
        .connect(&env.database_url)
        .await?;
    sqlx::query("CREATE TABLE public.bench_raw (id text PRIMARY KEY, kind text, service text, git_sha text, body jsonb)")
        .execute(&pg)
        .await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (pg, raw, batch) = (pg.clone(), raw.clone(), args.batch);
        tasks.push(tokio::spawn(async move {
            let mine: Vec<&Value> = raw.iter().skip(c).step_by(clients).collect();
            for chunk in mine.chunks(batch) {
                let col = |f: &str| {
                    chunk
                        .iter()
                        .map(|e| e[f].as_str().map(str::to_owned))
                        .collect::<Vec<_>>()
                };
                let bodies: Vec<Value> = chunk.iter().map(|e| (*e).clone()).collect();
                sqlx::query("INSERT INTO public.bench_raw SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[])")
                    .bind(col("id"))
                    .bind(col("kind"))
                    .bind(col("service"))
                    .bind(col("git_sha"))
                    .bind(bodies)
                    .execute(&pg)
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let raw_pg = events as f64 / started.elapsed().as_secs_f64();
    pg.close().await;

    // 3. The projector starts after the raw publishes, so it first drains those (they
    // are valid, signed events too).
    let started = Instant::now();
    let projector = env.spawn_projector(production_projector_config(&env)).await;
    drained(&env).await;
    let drain = events as f64 / started.elapsed().as_secs_f64();

    // 4. dora end to end.
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let started = Instant::now();
    post_events(&ingest.url, dora, clients, args.batch).await?;
    let accepted = events as f64 / started.elapsed().as_secs_f64();
    drained(&env).await;
    let end_to_end = events as f64 / started.elapsed().as_secs_f64();

    let stored = env.event_count().await;
    anyhow::ensure!(
        stored == 2 * events as i64,
        "every event is in the log: {stored} of {}",
        2 * events
    );
    // What the projector derived: the workload is meant to exercise every fact.
    let (failed, closed, unsigned, rejected): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM deploy_facts WHERE failed_at IS NOT NULL),
                (SELECT count(*) FROM incident_facts WHERE closed_at IS NOT NULL),
                (SELECT count(*) FROM events WHERE source <> 'ci'),
                (SELECT count(*) FROM rejected_events)",
    )
    .fetch_one(&env.pool)
    .await?;
    println!(
        "  run {run}: {stored} events in the log, {failed} attempts failed (own outcome, rollback or incident), {closed} incidents closed, {unsigned} stored unsigned, {rejected} rejected"
    );
    ingest.stop().await?;
    projector.stop().await?;
    env.cleanup().await;
    Ok(Run {
        raw_js,
        raw_pg,
        drain,
        accepted,
        end_to_end,
    })
}
