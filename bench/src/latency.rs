//! The latency of `/dora`, the trend and the dashboard over HTTP on a store of the demo
//! history: what `scale` measures on the store it built, and what `latency` measures on
//! running dora-api processes (an older build and a newer one against one kept store).

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

use crate::{percentiles, Rng};

/// The requests measured, `{service}` filled per request, and each one's target.
pub const PATHS: [(&str, &str); 6] = [
    ("/dora?days=7", "p50 < 20 ms"),
    ("/dora?days=7&service={service}", "p50 < 5 ms"),
    ("/dora?days=90", "p50 < 100 ms"),
    ("/dora?days=90&service={service}", "p50 < 5 ms"),
    ("/dora/trend?days=7&windows=12", "p50 < 50 ms"),
    ("/dashboard?days=7", "p50 < 200 ms"),
];

/// `samples` requests of `path` (a [`PATHS`] entry) with `as_of` spread over the 180
/// days before `end` and a random service of `services`: the same list for the same
/// `rng` state.
pub fn requests(
    path: &str,
    services: &[String],
    samples: usize,
    end: DateTime<Utc>,
    rng: &mut Rng,
) -> Vec<String> {
    (0..samples)
        .map(|_| {
            let as_of = end - TimeDelta::hours(rng.below(180 * 24) as i64);
            let service = &services[rng.below(services.len() as u64) as usize];
            format!(
                "{}&as_of={}",
                path.replace("{service}", service),
                as_of.format("%Y-%m-%dT%H:%M:%SZ")
            )
        })
        .collect()
}

/// Asks `base` (a dora-api's URL) for each of `requests` in turn; the time of each.
pub async fn ask(
    client: &reqwest::Client,
    base: &str,
    requests: &[String],
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(requests.len());
    for request in requests {
        let url = format!("{base}{request}");
        let started = Instant::now();
        let response = client.get(&url).send().await?;
        let status = response.status();
        response.bytes().await?;
        times.push(started.elapsed());
        anyhow::ensure!(status.is_success(), "{url}: {status}");
    }
    Ok(times)
}

/// `p50 / p95 / p99` in milliseconds, as the tables print them.
pub fn summary(times: &mut [Duration]) -> String {
    let [p50, p95, p99, _] = percentiles(times);
    format!("{p50:.1} / {p95:.1} / {p99:.1}")
}

/// The services of the demo mix of `services` services, in its order: what the
/// service-filtered requests pick from.
pub fn service_names(services: usize) -> Vec<String> {
    dora_demo::profile::demo_services(services)
        .into_iter()
        .map(|p| p.service)
        .collect()
}
