//! Benchmark programs for dora; each binary prints its figures. Run with `--release`.
//!
//! - `metrics`: `/dora` latency on a reproducible log, loaded two ways (sorted through
//!   the projector's batch code then vacuumed, and shuffled through the real pipeline
//!   with no vacuum), from 1 and 8 concurrent HTTP clients.
//! - `pipeline`: end-to-end events per second on the demo generator's mix, against the
//!   raw JetStream and PostgreSQL rates measured in the same run, repeated `--runs`
//!   times with min/median/max, with each dora process's peak memory and the CPU of
//!   every process per phase ([`procs`]).
//! - `shapes`: the live path's rate on histories full of ties, re-triggers and late
//!   events, each against the demo mix measured in the same run.
//! - `scale`: dora at 1M-10M events against the machine's raw limits, one table
//!   (`deploy/bench.sh`).
//! - `latency`: the latency figures of `scale` ([`latency`]) on running dora-api
//!   processes, interleaved, so two builds are compared on one kept store.

pub mod latency;
pub mod procs;
pub mod raw;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dora_system_tests::{TestEnv, CI_TOKEN};
use serde_json::Value;

pub use dora_system_tests::Rng;

/// The instant the generated histories end.
pub const END: &str = "2026-11-01T00:00:00Z";

/// `n` events of the demo generator's history for `services` services (its profiles:
/// deploys with commit times, failed attempts retried, rollbacks naming deployed shas,
/// incidents opened with the sha they blame and closed later), oldest first, as
/// `POST /events` takes them. Ids carry the seed, so two seeds never collide. The
/// history is made long enough to hold `n` events and its oldest `n` are kept, so
/// every rollback and incident names a deploy that is in the set.
pub fn demo_events(n: usize, seed: u64, services: usize) -> Vec<Value> {
    let end: DateTime<Utc> = END.parse().unwrap_or_default();
    let profiles = dora_demo::profile::demo_services(services);
    let mut days = 30;
    loop {
        let history = dora_demo::generate(seed, days, end, &profiles);
        if history.events.len() >= n || days >= 20 * 365 {
            return history
                .events
                .iter()
                .take(n)
                .map(|e| serde_json::to_value(e).unwrap_or_default())
                .collect();
        }
        days *= 2;
    }
}

/// Fisher-Yates with a seeded source: the arrival order of a backfill or of many
/// pipelines reporting at once, the same for the same seed.
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = dora_demo::rng::Rng::new(seed, 0xB_E7C4);
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// `/proc/loadavg`'s first three fields, to print beside figures taken on a shared
/// machine.
pub fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let fields: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("load average {}", fields.join(", "))
}

/// Smallest, median and largest of the runs of one figure.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    /// Smallest.
    pub min: f64,
    /// Median (the lower one of an even count).
    pub median: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (at least one).
    pub fn of(values: &[f64]) -> Spread {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Spread {
            min: v.first().copied().unwrap_or(f64::NAN),
            median: v.get((v.len().max(1) - 1) / 2).copied().unwrap_or(f64::NAN),
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// Latency percentiles in milliseconds: p50, p95, p99, max.
pub fn percentiles(times: &mut [Duration]) -> [f64; 4] {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |p: f64| ms(times[((times.len() as f64 * p) as usize).min(times.len() - 1)]);
    [at(0.50), at(0.95), at(0.99), ms(times[times.len() - 1])]
}

/// Posts `events` to the gateway at `url` from `clients` concurrent HTTP clients, in
/// arrays of `batch`; returns when every request has had its `202`.
pub async fn post_events(
    url: &str,
    events: Arc<Vec<Value>>,
    clients: usize,
    batch: usize,
) -> anyhow::Result<()> {
    let bodies = events
        .chunks(batch.max(1))
        .map(serde_json::to_vec)
        .collect::<Result<Vec<_>, _>>()?;
    post_bodies(url, Arc::new(bodies), clients).await
}

/// Posts each of `bodies` (JSON, serialized beforehand: the client's JSON is not dora's
/// cost) as one request to the gateway at `url` from `connections` concurrent clients on
/// kept-alive connections; returns when every request has had its `202`.
pub async fn post_bodies(
    url: &str,
    bodies: Arc<Vec<Vec<u8>>>,
    connections: usize,
) -> anyhow::Result<()> {
    let connections = connections.max(1);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (client, bodies, url) = (client.clone(), bodies.clone(), format!("{url}/events"));
        tasks.push(tokio::spawn(async move {
            for body in bodies.iter().skip(c).step_by(connections) {
                let response = client
                    .post(&url)
                    .bearer_auth(CI_TOKEN)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                let status = response.status();
                anyhow::ensure!(
                    status == 202,
                    "POST /events: {status}: {}",
                    response.text().await.unwrap_or_default()
                );
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Waits until the projector has written and acked every message of the stream. Polls
/// the consumer (cheap) rather than counting rows (which would compete for the CPU).
pub async fn drained(env: &TestEnv) {
    while !drained_by(env, "dora-projector").await {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits at most `limit` until the projector whose consumer is `consumer` has written
/// and acked every message of the stream; false if it has not by then.
pub async fn drained_within(env: &TestEnv, consumer: &str, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if drained_by(env, consumer).await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// True when the consumer `consumer` has acked every message of the stream.
async fn drained_by(env: &TestEnv, consumer: &str) -> bool {
    let Ok(stream) = env.js.get_stream(&env.stream).await else {
        return false;
    };
    let last = stream.cached_info().state.last_sequence;
    matches!(stream.consumer_info(consumer).await, Ok(info)
        if info.num_pending == 0
            && info.num_ack_pending == 0
            && info.ack_floor.stream_sequence >= last)
}

/// The projector's config as production runs it: the harness's (this run's stream,
/// the test source key) with the default ack wait instead of the tests' short one.
pub fn production_projector_config(env: &TestEnv) -> dora_projector::Config {
    dora_projector::Config {
        ack_wait: Duration::from_secs(30),
        ..env.projector_config()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_mix_is_complete_and_reproducible() {
        let a = demo_events(5000, 3, 20);
        assert_eq!(a.len(), 5000);
        assert_eq!(a, demo_events(5000, 3, 20));
        let kinds = |k: &str| a.iter().filter(|e| e["kind"] == k).count();
        assert!(kinds("deploy") > 0 && kinds("rollback") > 0);
        assert!(kinds("incident_opened") > 0 && kinds("incident_closed") > 0);
        let mut shuffled = a.clone();
        shuffle(&mut shuffled, 1);
        assert_ne!(shuffled, a);
        assert_eq!(shuffled.len(), a.len());
    }

    #[test]
    fn spread_orders_its_runs() {
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.min, s.median, s.max), (1.0, 2.0, 3.0));
    }
}
