//! The live path's rate on histories whose shape is hard for it, each against the
//! demo mix measured in the same run: the projector's cost must not depend on ties,
//! re-triggers or late events.
//!
//! ```sh
//! cargo run --release -p dora-bench --bin shapes -- --events 60000
//! ```
//!
//! Each shape has `--events` events (every one valid and stored) and runs on a fresh
//! database and stream, with the release executables `dora-ingest` and
//! `dora-projector` as child processes (production settings):
//!
//! 1. stored: `--clients` HTTP clients POST the events in arrays of `--batch` while the
//!    projector follows, measured from the first request to the last row in the log;
//! 2. drain: a second projector (its own consumer, `DORA_PROJECTOR_BULK_FROM=0` so the
//!    live path does it) builds a second store from the same stream, which now holds
//!    the whole shape as a backlog: two batches of 1000 in flight, nothing else busy.
//!
//! Each rate is printed with its ratio to the demo mix's in the same run. The two
//! stores must agree on the facts (failed attempts, incidents, closed incidents). A
//! phase that has not finished after `--give-up` seconds is reported with the events
//! stored by then, and the shape's second phase is skipped.
//!
//! The shapes (`--shapes` picks some by name; the mix is always measured first):
//!
//! - `mix`: the demo generator's history over `--services` services, shuffled;
//! - `mix-cut-to-the-day`: the same with every time cut to its day (an import that kept
//!   dates only): thousands of attempts, markers and incidents share an instant;
//! - `one-instant-shas`: deploys of one service, each its own sha, all at one instant
//!   (a tool that stamps a release's every event with one time);
//! - `one-instant-one-sha`: attempts of one service/environment/sha at one instant, one
//!   in eight failed, with a rollback of that sha every ten events;
//! - `incidents-one-instant`: incidents of distinct ref_ids, every one opened at one
//!   instant and closed at another, shuffled;
//! - `one-ref-retriggered`: one ref_id opened over and over at one instant, one close an
//!   hour later: one incident re-triggered by every open;
//! - `late-into-chains`: one ref_id's chain of incidents and one sha's chain of attempts
//!   and rollbacks, arriving newest first, so every event lands before all the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use clap::Parser;
use dora_bench::{demo_events, drained_within, load_average, post_events, shuffle};
use dora_system_tests::children::{Binary, Dora};
use dora_system_tests::{TestEnv, CI_TOKEN, PAGER_TOKEN, SOURCE_KEY};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
struct Args {
    /// Events per shape.
    #[arg(long, default_value_t = 60_000)]
    events: usize,
    /// Events per request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Services in the demo mix.
    #[arg(long, default_value_t = 200)]
    services: usize,
    /// Seed of the demo mix and of the arrival orders.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Seconds a phase may take before it is reported unfinished.
    #[arg(long, default_value_t = 300)]
    give_up: u64,
    /// The shapes to measure besides the mix (comma-separated names); default: all.
    #[arg(long, value_delimiter = ',')]
    shapes: Vec<String>,
}

/// The shapes, by name, after the mix.
const SHAPES: [&str; 6] = [
    "mix-cut-to-the-day",
    "one-instant-shas",
    "one-instant-one-sha",
    "incidents-one-instant",
    "one-ref-retriggered",
    "late-into-chains",
];

/// The instant the tied shapes share.
const INSTANT: &str = "2026-10-01T12:00:00Z";

/// What one phase of one shape measured.
#[derive(Debug, Clone, Copy)]
struct Phase {
    /// Seconds until every event was stored, or until the phase gave up.
    seconds: f64,
    /// Events in the log at the end of the phase.
    stored: i64,
    /// Whether every event was stored.
    finished: bool,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.stored as f64 / self.seconds
    }
}

/// One shape's two phases.
struct Measured {
    name: String,
    events: usize,
    stored: Phase,
    drain: Option<Phase>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // On Ctrl-C the measurement is dropped, and with it the child processes.
    tokio::select! {
        measured = measure(args) => measured,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the dora processes were stopped"),
    }
}

async fn measure(args: Args) -> anyhow::Result<()> {
    let mut names = vec!["mix".to_owned()];
    if args.shapes.is_empty() {
        names.extend(SHAPES.iter().map(|s| s.to_string()));
    } else {
        for name in &args.shapes {
            anyhow::ensure!(
                SHAPES.contains(&name.as_str()),
                "unknown shape `{name}`; the shapes: {}",
                SHAPES.join(", ")
            );
            names.push(name.clone());
        }
    }
    println!(
        "{} events per shape, {} per request from {} clients; {} cores",
        args.events,
        args.batch,
        args.clients,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!("load before: {}", load_average());
    let mut results = Vec::new();
    for name in &names {
        let events = shape(name, args.events, args.seed, args.services);
        anyhow::ensure!(
            events.len() == args.events,
            "{name}: {} events",
            events.len()
        );
        let measured = one_shape(&args, name, events).await?;
        println!(
            "{name}: stored {}; drain {}",
            describe(&measured.stored),
            measured
                .drain
                .as_ref()
                .map_or("skipped".to_owned(), describe)
        );
        results.push(measured);
    }
    println!("load after: {}", load_average());

    let mix = &results[0];
    println!(
        "\n{:<24} {:>8} {:>10} {:>10} {:>7} {:>10} {:>10} {:>7}",
        "shape", "events", "stored s", "events/s", "x mix", "drain s", "events/s", "x mix"
    );
    for m in &results {
        let ratio = |p: &Phase, of: &Phase| p.rate() / of.rate();
        let drain = match (&m.drain, &mix.drain) {
            (Some(d), Some(of)) => format!(
                "{:>10.1} {:>10.0} {:>7.2}{}",
                d.seconds,
                d.rate(),
                ratio(d, of),
                if d.finished { "" } else { " unfinished" }
            ),
            _ => format!("{:>10} {:>10} {:>7}", "-", "-", "-"),
        };
        println!(
            "{:<24} {:>8} {:>10.1} {:>10.0} {:>7.2}{} {drain}",
            m.name,
            m.events,
            m.stored.seconds,
            m.stored.rate(),
            ratio(&m.stored, &mix.stored),
            if m.stored.finished { "" } else { " unfinished" },
        );
    }
    println!("target: every shape's drain >= 0.50 x mix; one-instant-shas stored in < 6 s");
    Ok(())
}

fn describe(p: &Phase) -> String {
    if p.finished {
        format!(
            "{} events in {:.1} s ({:.0}/s)",
            p.stored,
            p.seconds,
            p.rate()
        )
    } else {
        format!("only {} events after {:.0} s", p.stored, p.seconds)
    }
}

/// One shape on a fresh database and stream: stored while following, then drained as a
/// backlog into a second store.
async fn one_shape(args: &Args, name: &str, events: Vec<Value>) -> anyhow::Result<Measured> {
    let env = TestEnv::new().await;
    let give_up = Duration::from_secs(args.give_up);
    let stream = [
        ("NATS_URL", env.nats_url()),
        ("DORA_STREAM", env.stream.clone()),
        ("DORA_SUBJECT_PREFIX", env.prefix.clone()),
        ("DORA_SOURCE_KEY", SOURCE_KEY.to_owned()),
    ];
    let projector_env = |database: &str, consumer: &str| {
        let mut vars = stream.to_vec();
        vars.push(("DATABASE_URL", database.to_owned()));
        vars.push(("DORA_PROJECTOR_CONSUMER", consumer.to_owned()));
        vars.push(("DORA_PROJECTOR_BULK_FROM", "0".to_owned()));
        vars
    };
    let mut ingest_env = stream.to_vec();
    ingest_env.push((
        "DORA_INGEST_TOKENS",
        format!("ci={CI_TOKEN},pager={PAGER_TOKEN}"),
    ));
    let mut ingest = Dora::start(Binary::Ingest, &ingest_env).await;
    ingest.wait_ready(Duration::from_secs(60)).await;
    let mut projector = Dora::start(
        Binary::Projector,
        &projector_env(&env.database_url, "dora-projector"),
    )
    .await;

    let started = Instant::now();
    post_events(&ingest.url(), Arc::new(events), args.clients, args.batch).await?;
    let remaining = give_up.saturating_sub(started.elapsed());
    let finished = drained_within(&env, "dora-projector", remaining).await;
    let stored = Phase {
        seconds: started.elapsed().as_secs_f64(),
        stored: env.event_count().await,
        finished,
    };
    projector.stop().await;
    ingest.stop().await;

    let drain = if finished {
        let url = env.another_database("drain").await;
        let started = Instant::now();
        let mut second = Dora::start(
            Binary::Projector,
            &projector_env(&url, "dora-projector-drain"),
        )
        .await;
        let finished = drained_within(&env, "dora-projector-drain", give_up).await;
        let seconds = started.elapsed().as_secs_f64();
        second.stop().await;
        let pool = dora_projector::store::connect(&url, dora_event::STORE_SCHEMA, 1).await?;
        let drained = Phase {
            seconds,
            stored: count(&pool, "SELECT count(*) FROM events").await?,
            finished,
        };
        if finished {
            let (live, again) = (facts(&env.pool).await?, facts(&pool).await?);
            anyhow::ensure!(
                live == again,
                "{name}: the two stores' facts differ: {live:?} against {again:?}"
            );
            println!(
                "  {name}: {} attempts failed, {} incidents, {} closed",
                live.0, live.1, live.2
            );
        }
        pool.close().await;
        Some(drained)
    } else {
        None
    };
    env.cleanup().await;
    Ok(Measured {
        name: name.to_owned(),
        events: args.events,
        stored,
        drain,
    })
}

async fn count(pool: &sqlx::PgPool, sql: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql).fetch_one(pool).await?)
}

/// Failed attempts, incidents, closed incidents: what the two stores must agree on.
async fn facts(pool: &sqlx::PgPool) -> anyhow::Result<(i64, i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT (SELECT count(*) FROM deploy_facts WHERE failed_at IS NOT NULL),
                (SELECT count(*) FROM incident_facts),
                (SELECT count(*) FROM incident_facts WHERE closed_at IS NOT NULL)",
    )
    .fetch_one(pool)
    .await?)
}

/// The `n` events of shape `name`, in the order they are posted.
fn shape(name: &str, n: usize, seed: u64, services: usize) -> Vec<Value> {
    let instant: DateTime<Utc> = INSTANT.parse().unwrap_or_default();
    let id = |i: usize| format!("{name}-{seed}-{i}");
    let sha = |i: usize| format!("{:040x}", (seed << 32) ^ i as u64);
    match name {
        "mix" => {
            let mut events = demo_events(n, seed, services);
            shuffle(&mut events, seed);
            events
        }
        "mix-cut-to-the-day" => {
            let mut events = demo_events(n, seed, services);
            for e in &mut events {
                for field in ["occurred_at", "commit_at"] {
                    if let Some(at) = e[field].as_str() {
                        let at: DateTime<Utc> = at.parse().unwrap_or_default();
                        let day = at.duration_trunc(TimeDelta::days(1)).unwrap_or(at);
                        e[field] = json!(day);
                    }
                }
            }
            shuffle(&mut events, seed);
            events
        }
        "one-instant-shas" => (0..n)
            .map(|i| {
                json!({"id": id(i), "kind": "deploy", "service": "checkout", "git_sha": sha(i),
                       "commit_at": instant - TimeDelta::hours(1), "occurred_at": instant})
            })
            .collect(),
        "one-instant-one-sha" => (0..n)
            .map(|i| {
                if i % 10 == 9 {
                    json!({"id": id(i), "kind": "rollback", "service": "checkout",
                           "git_sha": sha(0), "occurred_at": instant})
                } else {
                    json!({"id": id(i), "kind": "deploy", "service": "checkout",
                           "git_sha": sha(0), "succeeded": i % 8 != 0, "occurred_at": instant})
                }
            })
            .collect(),
        "incidents-one-instant" => {
            let mut events: Vec<Value> = (0..n)
                .map(|i| {
                    let ref_id = format!("INC-{}", i / 2);
                    if i % 2 == 0 {
                        json!({"id": id(i), "kind": "incident_opened", "service": "checkout",
                               "ref_id": ref_id, "occurred_at": instant})
                    } else {
                        json!({"id": id(i), "kind": "incident_closed", "service": "checkout",
                               "ref_id": ref_id, "occurred_at": instant + TimeDelta::hours(1)})
                    }
                })
                .collect();
            shuffle(&mut events, seed);
            events
        }
        "one-ref-retriggered" => (0..n)
            .map(|i| {
                if i == n - 1 {
                    json!({"id": id(i), "kind": "incident_closed", "service": "checkout",
                           "ref_id": "INC-HOT", "occurred_at": instant + TimeDelta::hours(1)})
                } else {
                    json!({"id": id(i), "kind": "incident_opened", "service": "checkout",
                           "ref_id": "INC-HOT", "occurred_at": instant})
                }
            })
            .collect(),
        "late-into-chains" => {
            // Every minute one event of each chain, newest first.
            let mut events: Vec<Value> = (0..n)
                .map(|i| {
                    let at = instant - TimeDelta::minutes((n - i) as i64);
                    match i % 4 {
                        0 => json!({"id": id(i), "kind": "incident_opened", "service": "checkout",
                                    "ref_id": "INC-CHAIN", "occurred_at": at}),
                        1 => json!({"id": id(i), "kind": "incident_closed", "service": "checkout",
                                    "ref_id": "INC-CHAIN", "occurred_at": at}),
                        2 => json!({"id": id(i), "kind": "deploy", "service": "checkout",
                                    "git_sha": sha(0), "succeeded": i % 3 != 0, "occurred_at": at}),
                        _ => json!({"id": id(i), "kind": "rollback", "service": "checkout",
                                    "git_sha": sha(0), "occurred_at": at}),
                    }
                })
                .collect();
            events.reverse();
            events
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_has_the_events_asked_for_and_unique_ids() {
        for name in std::iter::once("mix").chain(SHAPES) {
            let events = shape(name, 2000, 7, 20);
            assert_eq!(events.len(), 2000, "{name}");
            let mut ids: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), 2000, "{name}: unique ids");
        }
    }

    #[test]
    fn the_day_cut_keeps_commits_before_deploys() {
        for e in shape("mix-cut-to-the-day", 5000, 7, 20) {
            let at = |f: &str| e[f].as_str().map(|s| s.parse::<DateTime<Utc>>().unwrap());
            let occurred = at("occurred_at").unwrap();
            assert_eq!(occurred.timestamp() % 86_400, 0);
            if let Some(commit) = at("commit_at") {
                assert!(commit <= occurred);
            }
        }
    }
}
