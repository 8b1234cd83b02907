//! `/dora` latency on a reproducible log of 1M events.
//!
//! ```sh
//! cargo run --release -p dora-bench --bin metrics            # load, then measure
//! cargo run --release -p dora-bench --bin metrics -- --reuse # measure the last load
//! ```
//!
//! Loads 3 years of history for 200 services through the projector's own batch code
//! (so the per-attempt facts are derived exactly as in production), then asks the real
//! dora-api over HTTP and prints p50/p99 latency for 7 and 90 days, with and without a
//! `service`, next to the naive SQL reading of the contract measured in the same run;
//! then `/dora/trend` (12 windows of 7 and of 30 days) and `/dashboard`, and the time
//! one alert check (`dora_api::alerts::evaluate`: both windows of every service and of
//! all services, state and outbox written) takes on that log.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use clap::Parser;
use dora_bench::Rng;
use dora_event::{Event, Kind};
use dora_projector::decode::{Decoded, Stored};
use sqlx::{Connection, PgConnection, PgPool};

#[derive(Debug, Parser)]
struct Args {
    /// Events in the log.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Services.
    #[arg(long, default_value_t = 200)]
    services: u64,
    /// Seed of the generated history.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Requests measured per scenario.
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// Measure the database loaded by the previous run instead of loading again.
    #[arg(long)]
    reuse: bool,
    /// PostgreSQL server (the database `--db` is created on it).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    server: String,
    /// The database the log is loaded into (dropped and created unless `--reuse`).
    #[arg(long, default_value = "dora_bench_metrics")]
    db: String,
}
/// The last instant of the generated history.
const END: &str = "2026-11-01T00:00:00Z";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = args.db.as_str();
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
    let pool = dora_projector::store::connect(&database_url, dora_event::STORE_SCHEMA, 2).await?;
    dora_projector::store::migrate(&pool, dora_event::STORE_SCHEMA).await?;
    if !args.reuse {
        load(&pool, &args).await?;
    }
    print_log_shape(&pool).await?;

    // The real API process, on port 0.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let config = dora_api::Config {
        database: dora_event::settings::DatabaseSettings {
            url: database_url.clone(),
        },
        addr: listener.local_addr()?,
        db_connections: 4,
        statement_timeout: std::time::Duration::from_secs(30),
        tokens: None,
        log: Default::default(),
        alerts: dora_api::alerts::AlertSettings::default(),
    };
    let api = tokio::spawn(dora_api::run(config, listener, rx));
    let client = reqwest::Client::new();
    let service = busiest_service(&pool).await?;

    println!(
        "\n/dora over HTTP, {} requests per scenario, as_of = {END} minus 0-180 days",
        args.requests
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>12} {:>12}",
        "scenario", "p50 ms", "p99 ms", "max ms", "attempts", "incidents"
    );
    for days in [7, 90] {
        for svc in [None, Some(service.as_str())] {
            let mut rng = Rng::new(7);
            let mut times = Vec::with_capacity(args.requests);
            let (mut attempts, mut incidents) = (0i64, 0i64);
            for i in 0..args.requests + 20 {
                let offset = rng.below(180);
                let mut q = format!("{url}/dora?days={days}&offset={offset}&as_of={END}");
                if let Some(s) = svc {
                    q.push_str(&format!("&service={s}"));
                }
                let started = Instant::now();
                let body: serde_json::Value = client
                    .get(&q)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let elapsed = started.elapsed();
                if i >= 20 {
                    times.push(elapsed);
                    attempts += body["change_failure_rate"]["attempts"]
                        .as_i64()
                        .unwrap_or(0);
                    incidents += body["time_to_restore"]["samples"].as_i64().unwrap_or(0);
                }
            }
            let n = args.requests as i64;
            let label = format!(
                "days={days}{}",
                svc.map(|s| format!(" service={s}")).unwrap_or_default()
            );
            let (p50, p99, max) = percentiles(&mut times);
            println!(
                "{label:<34} {p50:>9.2} {p99:>9.2} {max:>9.2} {:>12} {:>12}",
                attempts / n,
                incidents / n
            );
        }
    }

    sqlx::query(dora_system_tests::naive::NAIVE_INDEX)
        .execute(&pool)
        .await?;
    // The API's pool settings (custom plans for the optional service), for a fair race.
    let api_pool = dora_api::connect(&database_url, 1)?;
    println!("\nnaive SQL reading of the contract (no facts), same log, 10 runs each");
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
        let (d50, _, _) = percentiles(&mut deploys);
        let (i50, _, _) = percentiles(&mut incidents);
        println!("{:<34} {d50:>16.2} {i50:>16.2}", format!("days={days}"));
    }

    println!(
        "\ntrend and dashboard over HTTP, {} requests per scenario, as_of = {END} minus 0-180 days",
        args.requests
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9}",
        "scenario", "p50 ms", "p99 ms", "max ms"
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
        let mut rng = Rng::new(11);
        let mut times = Vec::with_capacity(args.requests);
        for i in 0..args.requests + 20 {
            let as_of = END.parse::<DateTime<Utc>>()? - TimeDelta::days(rng.below(180) as i64);
            let mut q = format!(
                "{url}{path}?{params}&as_of={}",
                as_of.to_rfc3339().replace('+', "%2B")
            );
            if let Some(s) = svc {
                q.push_str(&format!("&service={s}"));
            }
            let started = Instant::now();
            let body = client
                .get(&q)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            let elapsed = started.elapsed();
            anyhow::ensure!(!body.is_empty(), "{q}: empty answer");
            if i >= 20 {
                times.push(elapsed);
            }
        }
        let label = format!(
            "{path}?{params}{}",
            svc.map(|s| format!("&service={s}")).unwrap_or_default()
        );
        let (p50, p99, max) = percentiles(&mut times);
        println!("{label:<44} {p50:>9.2} {p99:>9.2} {max:>9.2}");
    }

    let _ = stop.send(true);
    api.await??;
    measure_alerts(&database_url).await?;
    Ok(())
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
    let (p50, _, max) = percentiles(&mut steady);
    println!("{:<34} {p50:>9.1} (max {max:.1})", "steady, p50 of 10");
    Ok(())
}

fn percentiles(times: &mut [Duration]) -> (f64, f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |p: f64| ms(times[((times.len() as f64 * p) as usize).min(times.len() - 1)]);
    (at(0.50), at(0.99), ms(times[times.len() - 1]))
}

/// Generates the history and writes it through the projector's batch code, in time
/// order, 1000 events a transaction. Prints the write rate as a by-product.
async fn load(pool: &PgPool, args: &Args) -> anyhow::Result<()> {
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
