//! dora at the size of a large organisation's history, against the machine's own limits
//! measured in the same run: one table.
//!
//! ```sh
//! deploy/bench.sh                        # 1M events, a few minutes
//! deploy/bench.sh --events 10000000      # 10M events
//! ```
//!
//! The history is dora-demo's (its profiles over `--services` services: deploys with
//! commit times, failed attempts retried, rollbacks naming deployed shas, incidents
//! opened with the sha they blame and closed later), from `--seed`, arriving in a random
//! order as a backfill does. In one run, on a fresh database and stream:
//!
//! 1. live appends on an EMPTY store: `--live` recent events of other services'
//!    histories, posted to the real gateway in arrays and followed into the log by the
//!    real projector (production settings): events per second until the last is stored;
//! 2. raw JetStream: the backfill published straight to the stream, signed as the
//!    gateway signs, pipelined from `--clients` tasks (the stream the rest reads);
//! 3. raw PostgreSQL: the same rows as multi-row inserts into a bare table with a primary
//!    key from `--clients` connections;
//! 4. the backfill built by `dora-projector replay` (the real binary, bulk path), its
//!    rate against raw PostgreSQL, and its peak memory (`VmHWM`, read while it runs);
//! 5. live appends on the FULL store: the same shape of events as in 1, against it;
//! 6. `/dora`, `/dora/trend` and `/dashboard` latency over HTTP on the full store
//!    (`--samples` requests each, `as_of` spread over the last 180 days), and a
//!    whole-history question (`days=3650`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use dora_bench::raw::{self, Message};
use dora_bench::{drained, production_projector_config, shuffle, Rng, END};
use dora_system_tests::{TestEnv, SOURCE_KEY};

#[derive(Debug, Parser)]
struct Args {
    /// Events in the backfill.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Services in the demo mix; default: one per thousand events (at least 200), so
    /// the history spans about two and a half years whatever the size, and a larger
    /// organisation has more services, not a longer past.
    #[arg(long)]
    services: Option<usize>,
    /// Live events appended to the empty and to the full store.
    #[arg(long, default_value_t = 20_000)]
    live: usize,
    /// Requests per latency figure.
    #[arg(long, default_value_t = 60)]
    samples: usize,
    /// Events per request, publish window and insert.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent publishers, PostgreSQL connections and HTTP clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Seed of the histories, their arrival order and the requests.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the full store's database and stream afterwards, for EXPLAIN and friends.
    #[arg(long)]
    keep: bool,
}

/// One line of the table.
struct Row {
    figure: String,
    dora: String,
    limit: String,
    ratio: String,
    target: &'static str,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    let services = *args.services.get_or_insert((args.events / 1000).max(200));
    let end: DateTime<Utc> = END.parse()?;
    let mut rows = Vec::new();
    println!(
        "dora at scale: {} events of {} services, seed {}; {} cores, {}",
        args.events,
        services,
        args.seed,
        std::thread::available_parallelism().map_or(0, usize::from),
        dora_bench::load_average()
    );

    // 1. Live appends on an empty store.
    let live_empty = {
        let env = TestEnv::new().await;
        let rate = live_appends(&env, &args, args.seed + 1, end).await?;
        env.cleanup().await;
        rate
    };
    println!("  live appends, empty store: {live_empty:.0} events/s");

    let env = TestEnv::new().await;
    let started = Instant::now();
    let backfill = backfill(&args, end)?;
    println!(
        "  generated {} events in {:.1} s",
        backfill.len(),
        started.elapsed().as_secs_f64()
    );
    let backfill = Arc::new(backfill);

    // 2. Raw JetStream: this is the stream the replay reads.
    let raw_js = raw::publish(
        &env.js,
        &env.prefix,
        backfill.clone(),
        args.clients,
        args.batch,
    )
    .await?;
    println!("  raw JetStream publish: {raw_js:.0} events/s");

    // 3. Raw PostgreSQL.
    let raw_pg = raw::insert(
        &env.database_url,
        backfill.clone(),
        args.clients,
        args.batch,
    )
    .await?;
    println!("  raw PostgreSQL insert: {raw_pg:.0} events/s");
    drop(backfill);

    // 4. The backfill through replay's bulk path, the real binary.
    let (replay_rate, replay_peak) = replay(&env, args.events).await?;
    println!("  replay (bulk): {replay_rate:.0} events/s, peak {replay_peak:.1} MB");
    print_store(&env).await?;

    // 5. Live appends on the full store.
    let live_full = live_appends(&env, &args, args.seed + 2, end).await?;
    println!("  live appends, full store: {live_full:.0} events/s");

    rows.push(Row {
        figure: "backfill through `dora-projector replay` (bulk path), events/s".into(),
        dora: format!("{replay_rate:.0}"),
        limit: format!("{raw_pg:.0} (raw PostgreSQL batched insert)"),
        ratio: format!("{:.2}", replay_rate / raw_pg),
        target: ">= 0.5",
    });
    rows.push(Row {
        figure: format!(
            "live appends on the {}-event store, HTTP to the log, events/s",
            args.events
        ),
        dora: format!("{live_full:.0}"),
        limit: format!("{live_empty:.0} (the same on an empty store)"),
        ratio: format!("{:.2}", live_full / live_empty),
        target: ">= 0.5",
    });
    rows.push(Row {
        figure: "raw JetStream publish (the stream replay reads), events/s".into(),
        dora: String::new(),
        limit: format!("{raw_js:.0}"),
        ratio: String::new(),
        target: "",
    });
    rows.push(Row {
        figure: "`dora-projector replay` peak resident memory (VmHWM)".into(),
        dora: format!("{replay_peak:.1} MB"),
        limit: String::new(),
        ratio: String::new(),
        target: "< 64 MB",
    });

    // 6. Latency.
    let api = env.spawn_api().await;
    let names = dora_bench::latency::service_names(services);
    let mut rng = Rng::new(args.seed ^ 0x5CA1E);
    let client = reqwest::Client::new();
    for (path, target) in dora_bench::latency::PATHS {
        let requests = dora_bench::latency::requests(path, &names, args.samples, end, &mut rng);
        let mut times = dora_bench::latency::ask(&client, &api.url, &requests).await?;
        rows.push(Row {
            figure: format!("`{path}`, ms p50 / p95 / p99"),
            dora: dora_bench::latency::summary(&mut times),
            limit: String::new(),
            ratio: String::new(),
            target,
        });
    }
    let started = Instant::now();
    let response = client
        .get(format!("{}/dora?days=3650", api.url))
        .send()
        .await?;
    let status = response.status();
    response.bytes().await?;
    let whole = started.elapsed();
    let then = client
        .get(format!("{}/dora?days=7", api.url))
        .send()
        .await?
        .status();
    rows.push(Row {
        figure: "`/dora?days=3650` (the whole history), then `/dora?days=7`".into(),
        dora: format!(
            "{status} in {:.0} ms, then {then}",
            whole.as_secs_f64() * 1000.0
        ),
        limit: String::new(),
        ratio: String::new(),
        target: "answers or 503 within the statement timeout; the pool stays up",
    });
    api.stop().await?;
    if args.keep {
        println!(
            "  kept: database {} (DATABASE_URL {}), stream {}",
            env.db_name, env.database_url, env.stream
        );
    } else {
        env.cleanup().await;
    }

    println!();
    println!(
        "| {} events, {} services | dora | raw limit, same run | ratio | target |",
        args.events, services
    );
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.figure, r.dora, r.limit, r.ratio, r.target
        );
    }
    Ok(())
}

/// The backfill: the oldest `--events` events of a history long enough to hold them
/// (so every rollback and incident names a deploy in the set), in a seeded random order.
fn backfill(args: &Args, end: DateTime<Utc>) -> anyhow::Result<Vec<Message>> {
    let profiles = dora_demo::profile::demo_services(args.services.unwrap_or(200));
    let mut days = 30;
    loop {
        let history = dora_demo::generate(args.seed, days, end, &profiles);
        if history.events.len() >= args.events || days >= 40 * 365 {
            let mut events: Vec<Message> = history
                .events
                .iter()
                .take(args.events)
                .map(|e| Message::of(&serde_json::to_value(e)?))
                .collect::<anyhow::Result<_>>()?;
            shuffle(&mut events, args.seed);
            return Ok(events);
        }
        // The events per day of this mix, to jump to the length needed at once.
        let per_day = (history.events.len() / days as usize).max(1);
        days = ((args.events / per_day) as u32 + 30).max(days * 2);
    }
}

/// Posts the newest `--live` events of a history of seed `seed` (recent events of many
/// services, in time order, as pipelines report them) to a real gateway and projector
/// on `env`, and returns events per second until the last one is in the log.
async fn live_appends(
    env: &TestEnv,
    args: &Args,
    seed: u64,
    end: DateTime<Utc>,
) -> anyhow::Result<f64> {
    let profiles = dora_demo::profile::demo_services(args.services.unwrap_or(200));
    let mut days = 7;
    let events = loop {
        let history = dora_demo::generate(seed, days, end, &profiles);
        if history.events.len() >= args.live || days > 3650 {
            let skip = history.events.len().saturating_sub(args.live);
            break history.events[skip..]
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<Vec<_>, _>>()?;
        }
        days *= 2;
    };
    let before = env.event_count().await;
    let projector = env.spawn_projector(production_projector_config(env)).await;
    drained(env).await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let started = Instant::now();
    dora_bench::post_events(
        &ingest.url,
        Arc::new(events.clone()),
        args.clients,
        args.batch,
    )
    .await?;
    drained(env).await;
    let rate = events.len() as f64 / started.elapsed().as_secs_f64();
    let stored = env.event_count().await - before;
    let unique = events
        .iter()
        .map(|e| e["id"].as_str().unwrap_or_default())
        .collect::<HashSet<_>>()
        .len();
    anyhow::ensure!(
        stored == unique as i64,
        "every live event is in the log once: {stored} of {unique}"
    );
    ingest.stop().await?;
    projector.stop().await?;
    Ok(rate)
}

/// Runs `dora-projector replay` on `env`'s (empty) store and stream; returns events per
/// second and its peak resident memory in MB, read from `/proc` while it runs (the
/// peak is gone with the process). Its progress lines go to this terminal.
async fn replay(env: &TestEnv, events: usize) -> anyhow::Result<(f64, f64)> {
    let binary = dora_system_tests::binary::built("dora-projector");
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .arg("replay")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", &env.database_url)
        .env("NATS_URL", env.nats_url())
        .env("DORA_STREAM", &env.stream)
        .env("DORA_SUBJECT_PREFIX", &env.prefix)
        .env("DORA_SOURCE_KEY", SOURCE_KEY)
        // DORA_REPLAY_LOG=dora_projector=debug adds each index build's time.
        .env(
            "RUST_LOG",
            std::env::var("DORA_REPLAY_LOG").unwrap_or_else(|_| "dora_projector=info,warn".into()),
        )
        .kill_on_drop(true)
        .spawn()
        .context("start dora-projector replay")?;
    let pid = child.id().context("replay's pid")?;
    let mut peak = 0u64;
    let status = loop {
        if let Some(memory) = dora_bench::procs::memory(pid) {
            peak = peak.max(memory.peak);
        }
        tokio::select! {
            status = child.wait() => break status?,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    };
    anyhow::ensure!(status.success(), "dora-projector replay: {status}");
    let rate = events as f64 / started.elapsed().as_secs_f64();
    let stored = env.event_count().await;
    anyhow::ensure!(
        stored == events as i64,
        "the replay stored every event: {stored} of {events}"
    );
    Ok((rate, peak as f64 / (1024.0 * 1024.0)))
}

/// What the store holds after the replay: the facts were really derived.
async fn print_store(env: &TestEnv) -> anyhow::Result<()> {
    let (attempts, failed, incidents, closed, size): (i64, i64, i64, i64, String) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM deploy_facts),
                    (SELECT count(*) FROM deploy_facts WHERE failed_at IS NOT NULL),
                    (SELECT count(*) FROM incident_facts),
                    (SELECT count(*) FROM incident_facts WHERE closed_at IS NOT NULL),
                    pg_size_pretty(pg_database_size(current_database()))",
    )
    .fetch_one(&env.pool)
    .await?;
    println!(
        "  store: {attempts} attempts ({failed} failed), {incidents} incidents ({closed} closed), database {size}"
    );
    Ok(())
}
