//! `/dora` latency on a reproducible log, loaded two ways, from 1 and 8 concurrent
//! HTTP clients.
//!
//! ```sh
//! cargo run --release -p dora-bench --bin metrics                      # 200k events, both loads
//! cargo run --release -p dora-bench --bin metrics -- --events 1000000  # the 1M log
//! cargo run --release -p dora-bench --bin metrics -- --reuse           # measure the last loads
//! ```
//!
//! Generates 3 years of history for 200 services and loads it twice:
//!
//! - `sorted`: in time order through the projector's own batch code (so the facts are
//!   derived exactly as in production), then `VACUUM ANALYZE`: the best case, where
//!   the out-of-order recompute never runs and index-only scans see an all-visible map;
//! - `random`: shuffled with the seed and sent through the real gateway, JetStream and
//!   projector, with no vacuum afterwards: a backfill as it really arrives.
//!
//! On each it asks the real dora-api over HTTP and prints p50/p95/p99/max and
//! requests per second for 7 and 90 days, with and without a `service`, from each
//! `--clients` count (each client its own random offsets), next to the naive SQL reading
//! of the contract measured in the same run; then `/dora/trend` (12 windows of 7 and of
//! 30 days) and `/dashboard`, and the time one alert check (`dora_api::alerts::evaluate`:
//! both windows of every service and of all services, state and outbox written) takes.

use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use clap::Parser;
use dora_bench::{
    drained, percentiles, post_events, production_projector_config, shuffle, Rng, END,
};
use dora_event::{Event, Kind};
use dora_projector::decode::{Decoded, Stored};
use dora_system_tests::TestEnv;
use sqlx::{Connection, PgConnection, PgPool};

#[derive(Debug, Parser)]
struct Args {
    /// Events in the log.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Services.
    #[arg(long, default_value_t = 200)]
    services: u64,
    /// Seed of the generated history (and of the random arrival order).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Requests measured per scenario and client count.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Concurrent HTTP clients, one measurement per count (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    clients: Vec<usize>,
    /// How the log is loaded: `sorted` (in time order through the projector's batch
    /// code, then `VACUUM ANALYZE`: the best case), `random` (shuffled, through the
    /// gateway, JetStream and the projector, no vacuum: a backfill as it arrives), or
    /// `both`, one after the other on two databases.
    #[arg(long, default_value = "both")]
    load: Load,
    /// Measure the databases loaded by the previous run instead of loading again.
    #[arg(long)]
    reuse: bool,
    /// PostgreSQL server (the databases `--db` and `<db>_random` are created on it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    server: String,
    /// The database the sorted log is loaded into (dropped and created unless
    /// `--reuse`); the random-order one is `<db>_random`.
    #[arg(long, default_value = "dora_bench_metrics")]
    db: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Load {
    Sorted,
    Random,
    Both,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let loads: &[Load] = match args.load {
        Load::Both => &[Load::Sorted, Load::Random],
        Load::Sorted => &[Load::Sorted],
        Load::Random => &[Load::Random],
    };
    for &load in loads {
        let db = match load {
            Load::Random => format!("{}_random", args.db),
            _ => args.db.clone(),
        };
        let database_url = format!("{}/{db}", args.server);
        if !args.reuse {
            let mut admin = PgConnection::connect(&format!("{}/postgres", args.server)).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .execute(&mut admin)
                .await?;
            sqlx::query(&format!("CREATE DATABASE {db}"))
                .execute(&mut admin)
                .await?;
        }
        let pool =
            dora_projector::store::connect(&database_url, dora_event::STORE_SCHEMA, 2).await?;
        dora_projector::store::migrate(&pool, dora_event::STORE_SCHEMA).await?;
        match load {
            Load::Random => {
                println!("\n=== random-order load through gateway, JetStream and projector, no vacuum ({db})");
                if !args.reuse {
                    load_through_pipeline(&database_url, &args).await?;
                }
            }
            _ => {
                println!(
                    "\n=== time-ordered load through store::apply, then VACUUM ANALYZE ({db})"
                );
                if !args.reuse {
                    load_sorted(&pool, &args).await?;
                }
            }
        }
        print_log_shape(&pool).await?;
        measure(&args, &database_url, &pool).await?;
        pool.close().await;
    }
    Ok(())
}

/// Latency of the real dora-api over HTTP on the database at `database_url`.
async fn measure(args: &Args, database_url: &str, pool: &PgPool) -> anyhow::Result<()> {
    // The real API process, on port 0.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let config = dora_api::Config {
        database: dora_event::settings::DatabaseSettings {
            url: database_url.to_owned(),
        },
        addr: listener.local_addr()?,
        db_connections: 4,
        statement_timeout: std::time::Duration::from_secs(30),
        http: Default::default(),
        tokens: None,
        log: Default::default(),
        alerts: dora_api::alerts::AlertSettings::default(),
    };
    let api = tokio::spawn(dora_api::run(config, listener, rx));
    let client = reqwest::Client::new();
    let service = busiest_service(pool).await?;

    println!(
        "\n/dora over HTTP, {} requests per scenario and client count, as_of = {END} minus 0-180 days (random per request)",
        args.requests
    );
    println!(
        "{:<34} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "scenario",
        "clients",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "req/s",
        "attempts",
        "incidents"
    );
    for days in [7, 90] {
        for svc in [None, Some(service.as_str())] {
            let label = format!(
                "days={days}{}",
                svc.map(|s| format!(" service={s}")).unwrap_or_default()
            );
            for &clients in &args.clients {
                let (url, svc) = (url.clone(), svc.map(str::to_owned));
                let s = scenario(&client, clients, args.requests, 7, true, move |rng| {
                    let offset = rng.below(180);
                    let mut q = format!("{url}/dora?days={days}&offset={offset}&as_of={END}");
                    if let Some(s) = &svc {
                        q.push_str(&format!("&service={s}"));
                    }
                    q
                })
                .await?;
                let [p50, p95, p99, max] = s.ms;
                println!(
                    "{label:<34} {clients:>7} {p50:>8.2} {p95:>8.2} {p99:>8.2} {max:>8.2} {:>8.0} {:>9} {:>9}",
                    s.per_second, s.attempts, s.incidents
                );
            }
        }
    }

    sqlx::query(dora_system_tests::naive::NAIVE_INDEX)
        .execute(pool)
        .await?;
    // The API's pool settings (custom plans for the optional service), for a fair race.
    let api_pool = dora_api::connect(database_url, 1)?;
    println!(
        "\nnaive SQL reading of the contract (no facts), same log, 10 runs each, one connection"
    );
    println!(
        "{:<34} {:>16} {:>16}",
        "scenario", "deploys p50 ms", "incidents p50 ms"
    );
    for days in [7, 90] {
        let end: DateTime<Utc> = END.parse()?;
        let start = end - TimeDelta::days(days);
        let (mut deploys, mut incidents) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            let started = Instant::now();
            let _: (i64, Option<f64>, i64, i64, i64) =
                sqlx::query_as(dora_system_tests::naive::NAIVE_DEPLOYS)
                    .bind("prod")
                    .bind(start)
                    .bind(end)
                    .bind(end)
                    .bind(None::<String>)
                    .fetch_one(&api_pool)
                    .await?;
            deploys.push(started.elapsed());
            let started = Instant::now();
            let _: (Option<f64>, i64, i64) =
                sqlx::query_as(dora_system_tests::naive::NAIVE_INCIDENTS)
                    .bind("prod")
                    .bind(start)
                    .bind(end)
                    .bind(None::<String>)
                    .fetch_one(&api_pool)
                    .await?;
            incidents.push(started.elapsed());
        }
        let [d50, ..] = percentiles(&mut deploys);
        let [i50, ..] = percentiles(&mut incidents);
        println!("{:<34} {d50:>16.2} {i50:>16.2}", format!("days={days}"));
    }
    api_pool.close().await;

    println!(
        "\ntrend and dashboard over HTTP, {} requests per scenario and client count, as_of = {END} minus 0-180 days",
        args.requests
    );
    println!(
        "{:<44} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "scenario", "clients", "p50 ms", "p95 ms", "p99 ms", "max ms", "req/s"
    );
    let scenarios = [
        ("/dora/trend", "days=7&windows=12", None),
        ("/dora/trend", "days=30&windows=12", None),
        ("/dora/trend", "days=7&windows=12", Some(service.as_str())),
        ("/dora/trend", "days=30&windows=12", Some(service.as_str())),
        ("/dashboard", "days=7", None),
        ("/dashboard", "days=30", None),
        ("/dashboard", "days=7", Some(service.as_str())),
    ];
    for (path, params, svc) in scenarios {
        let label = format!(
            "{path}?{params}{}",
            svc.map(|s| format!("&service={s}")).unwrap_or_default()
        );
        for &clients in &args.clients {
            let (url, svc) = (url.clone(), svc.map(str::to_owned));
            let s = scenario(&client, clients, args.requests, 11, false, move |rng| {
                let end: DateTime<Utc> = END.parse().unwrap_or_default();
                let as_of = end - TimeDelta::days(rng.below(180) as i64);
                let mut q = format!(
                    "{url}{path}?{params}&as_of={}",
                    as_of.to_rfc3339().replace('+', "%2B")
                );
                if let Some(s) = &svc {
                    q.push_str(&format!("&service={s}"));
                }
                q
            })
            .await?;
            let [p50, p95, p99, max] = s.ms;
            println!(
                "{label:<44} {clients:>7} {p50:>8.2} {p95:>8.2} {p99:>8.2} {max:>8.2} {:>8.0}",
                s.per_second
            );
        }
    }

    let _ = stop.send(true);
    api.await??;
    measure_alerts(database_url).await?;
    Ok(())
}

/// One scenario's figures.
struct Measured {
    /// p50, p95, p99 and max, in milliseconds.
    ms: [f64; 4],
    /// Requests answered per second over the measured part, all clients together.
    per_second: f64,
    /// Mean `attempts` and time-to-restore `samples` per answer (for `/dora`).
    attempts: i64,
    incidents: i64,
}

/// `requests` GETs of the URLs `next` makes, from `clients` concurrent clients (each
/// with its own seeded sequence), after 20 unmeasured ones per client.
async fn scenario<F>(
    client: &reqwest::Client,
    clients: usize,
    requests: usize,
    seed: u64,
    count: bool,
    next: F,
) -> anyhow::Result<Measured>
where
    F: Fn(&mut Rng) -> String + Clone + Send + 'static,
{
    let clients = clients.max(1);
    let per_client = requests.div_ceil(clients);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(clients + 1));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, next, barrier) = (client.clone(), next.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed + c as u64 * 1000);
            for _ in 0..20 {
                client
                    .get(next(&mut rng))
                    .send()
                    .await?
                    .error_for_status()?;
            }
            barrier.wait().await;
            let (mut times, mut attempts, mut incidents) = (Vec::new(), 0i64, 0i64);
            for _ in 0..per_client {
                let q = next(&mut rng);
                let started = Instant::now();
                let body = client
                    .get(&q)
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                times.push(started.elapsed());
                anyhow::ensure!(!body.is_empty(), "{q}: empty answer");
                if count {
                    let v: serde_json::Value = serde_json::from_slice(&body)?;
                    attempts += v["change_failure_rate"]["attempts"].as_i64().unwrap_or(0);
                    incidents += v["time_to_restore"]["samples"].as_i64().unwrap_or(0);
                }
            }
            anyhow::Ok((times, attempts, incidents))
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    let (mut times, mut attempts, mut incidents) = (Vec::new(), 0i64, 0i64);
    for t in tasks {
        let (t, a, i) = t.await??;
        times.extend(t);
        attempts += a;
        incidents += i;
    }
    let wall = started.elapsed().as_secs_f64();
    let n = times.len() as i64;
    Ok(Measured {
        ms: percentiles(&mut times),
        per_second: n as f64 / wall,
        attempts: attempts / n,
        incidents: incidents / n,
    })
}

/// One alert check at `END` over the whole log (7-day windows, prod and staging), from
/// an empty alert state (the check that writes every firing scope and its message) and
/// then steady (nothing changes, only the firing scopes' numbers are refreshed).
async fn measure_alerts(database_url: &str) -> anyhow::Result<()> {
    use dora_api::alerts::{self, settings::Environments, AlertSettings, Pools};
    let pools = Pools {
        store: dora_api::connect(database_url, 4)?,
        alerts: alerts::store::connect(database_url, 2)?,
    };
    sqlx::query("DROP SCHEMA IF EXISTS dora_alerts CASCADE")
        .execute(&pools.alerts)
        .await?;
    alerts::store::migrate(&pools.alerts).await?;
    let settings = AlertSettings {
        environments: Environments(vec!["prod".to_owned(), "staging".to_owned()]),
        ..AlertSettings::default()
    };
    let now: DateTime<Utc> = END.parse()?;
    println!(
        "
alert check (alerts::evaluate) at {END}, days=7, environments prod,staging"
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "run", "ms", "scopes", "regressed", "fired", "recovered"
    );
    let mut steady = Vec::new();
    for run in 0..11 {
        let started = Instant::now();
        let e = alerts::evaluate(&pools, &settings, now).await?;
        let elapsed = started.elapsed();
        if run == 0 || run == 10 {
            let label = if run == 0 {
                "first (empty state)"
            } else {
                "steady"
            };
            println!(
                "{label:<34} {:>9.1} {:>9} {:>9} {:>9} {:>9}",
                elapsed.as_secs_f64() * 1000.0,
                e.scopes,
                e.regressed,
                e.fired(),
                e.recovered()
            );
        }
        if run > 0 {
            steady.push(elapsed);
        }
    }
    let [p50, _, _, max] = percentiles(&mut steady);
    println!("{:<34} {p50:>9.1} (max {max:.1})", "steady, p50 of 10");
    Ok(())
}

/// Generates the history and writes it through the projector's batch code, in time
/// order, 1000 events a transaction. Prints the write rate as a by-product.
async fn load_sorted(pool: &PgPool, args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let events = history(args);
    println!(
        "generated {} events in {:.1} s",
        events.len(),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    for (i, chunk) in events.chunks(1000).enumerate() {
        let batch: Vec<Decoded> = chunk
            .iter()
            .enumerate()
            .map(|(j, e)| {
                Decoded::Event(Stored {
                    event: e.clone(),
                    source: "bench".to_owned(),
                    refused_source: None,
                    stream_seq: (i * 1000 + j + 1) as i64,
                    received_at: e.occurred_at,
                })
            })
            .collect();
        dora_projector::store::apply(pool, &batch)
            .await
            .context("loading")?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "loaded through store::apply in {secs:.1} s: {:.0} events/s (events, facts and indexes)",
        events.len() as f64 / secs
    );
    let started = Instant::now();
    sqlx::query("VACUUM ANALYZE").execute(pool).await?;
    println!("VACUUM ANALYZE in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Generates the same history, shuffles it with the seed and sends it the way a
/// backfill arrives: 4 HTTP clients POST arrays of 1000 events to the real gateway,
/// which publishes to JetStream, and the real projector (production ack wait) writes
/// them to the database at `database_url`, recomputing whatever arrives out of order.
/// No vacuum afterwards: the API is measured on the store as the projector left it.
async fn load_through_pipeline(database_url: &str, args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut events: Vec<serde_json::Value> = history(args)
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    shuffle(&mut events, args.seed);
    println!(
        "generated and shuffled {} events in {:.1} s",
        events.len(),
        started.elapsed().as_secs_f64()
    );
    let n = events.len();
    // The harness gives this load its own stream; its own database stays unused.
    let env = TestEnv::new().await;
    let mut config = production_projector_config(&env);
    config.database.url = database_url.to_owned();
    let projector = env.spawn_projector(config).await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let started = Instant::now();
    post_events(&ingest.url, std::sync::Arc::new(events), 4, 1000).await?;
    let accepted = started.elapsed().as_secs_f64();
    drained(&env).await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "loaded in random order through gateway, JetStream and projector in {secs:.1} s: {:.0} events/s end to end (all accepted after {accepted:.1} s); no vacuum",
        n as f64 / secs
    );
    ingest.stop().await?;
    projector.stop().await?;
    env.cleanup().await;
    Ok(())
}

/// 3 years for `services` services: deploys (8% failed, 90% with commit_at), some
/// redeploys of a sha, rollbacks and incidents soon after a deploy (most incidents
/// naming it), closes minutes to days later, a few never closed; 10% staging.
fn history(args: &Args) -> Vec<Event> {
    let mut rng = Rng::new(args.seed);
    let end: DateTime<Utc> = END.parse().unwrap_or_default();
    let span_minutes = 3 * 365 * 24 * 60;
    let mut events = Vec::with_capacity(args.events + 8);
    let mut n = 0u64;
    let mut next_id = |prefix: &str| {
        n += 1;
        format!("{prefix}-{n}")
    };
    let mut incident = 0u64;
    while events.len() < args.events {
        let service = format!("svc-{:03}", rng.below(args.services));
        let environment = if rng.below(10) == 0 {
            "staging"
        } else {
            "prod"
        }
        .to_owned();
        let at = (end - TimeDelta::minutes(rng.below(span_minutes) as i64)).trunc_subsecs(0);
        let sha = format!("{:016x}", rng.next_u64());
        let redeploys = if rng.below(20) == 0 { 2 } else { 1 };
        let mut last = at;
        for r in 0..redeploys {
            last = at + TimeDelta::minutes(30 * r);
            let commit_at = (rng.below(10) != 0)
                .then(|| last - TimeDelta::minutes(5 + rng.below(10_000) as i64));
            events.push(Event {
                id: next_id("d"),
                kind: Kind::Deploy,
                service: service.clone(),
                environment: environment.clone(),
                git_sha: Some(sha.clone()),
                succeeded: Some(rng.below(100) >= 8),
                commit_at,
                ref_id: None,
                occurred_at: last,
            });
        }
        let after = |rng: &mut Rng, max_minutes: u64| {
            last + TimeDelta::minutes(1 + rng.below(max_minutes) as i64)
        };
        if rng.below(100) < 4 {
            events.push(Event {
                id: next_id("r"),
                kind: Kind::Rollback,
                service: service.clone(),
                environment: environment.clone(),
                git_sha: Some(sha.clone()),
                succeeded: None,
                commit_at: None,
                ref_id: None,
                occurred_at: after(&mut rng, 120),
            });
        }
        if rng.below(100) < 5 {
            incident += 1;
            let ref_id = format!("INC-{incident}");
            let opened = after(&mut rng, 600);
            events.push(Event {
                id: next_id("o"),
                kind: Kind::IncidentOpened,
                service: service.clone(),
                environment: environment.clone(),
                git_sha: (rng.below(10) < 7).then(|| sha.clone()),
                succeeded: None,
                commit_at: None,
                ref_id: Some(ref_id.clone()),
                occurred_at: opened,
            });
            if rng.below(100) < 97 {
                events.push(Event {
                    id: next_id("c"),
                    kind: Kind::IncidentClosed,
                    service,
                    environment,
                    git_sha: None,
                    succeeded: None,
                    commit_at: None,
                    ref_id: Some(ref_id),
                    occurred_at: opened + TimeDelta::minutes(10 + rng.below(2 * 24 * 60) as i64),
                });
            }
        }
    }
    events.truncate(args.events);
    events.sort_by_key(|e| e.occurred_at);
    events
}

async fn print_log_shape(pool: &PgPool) -> anyhow::Result<()> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind")
            .fetch_all(pool)
            .await?;
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deploy_facts WHERE failed_at IS NOT NULL")
            .fetch_one(pool)
            .await?;
    let size: String =
        sqlx::query_scalar("SELECT pg_size_pretty(pg_database_size(current_database()))")
            .fetch_one(pool)
            .await?;
    println!("log: {rows:?}; failed attempts {failed}; database size {size}");
    Ok(())
}

async fn busiest_service(pool: &PgPool) -> anyhow::Result<String> {
    Ok(sqlx::query_scalar(
        "SELECT service FROM deploy_facts GROUP BY service ORDER BY count(*) DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await?)
}
