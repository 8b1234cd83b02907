//! Sending a history through the public ingest API, and waiting until the store shows
//! it. Never the database: the demo goes the way a pipeline's events go.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::error::Error;
use crate::generate::{Event, History};

/// What the gateway reported over all requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Requests that got a `202`.
    pub requests: usize,
    /// Events the gateway accepted (JetStream acknowledged them).
    pub accepted: usize,
    /// Of those, events JetStream dropped as repeats of an id it had seen within its
    /// duplicate window. Repeats after the window are accepted again and still leave
    /// one row in the store: it keys on the event id.
    pub duplicates: usize,
}

#[derive(Debug, Deserialize)]
struct Accepted {
    accepted: usize,
    duplicates: usize,
}

/// Attempts per request before giving up on a gateway that is down or answers `503`.
const ATTEMPTS: u32 = 8;

/// Posts `events` to `{ingest_url}/events` in arrays of `batch`, with `token`. A
/// request that fails to connect or gets `503` is retried with backoff: the events
/// carry their ids, so a retry cannot double anything.
pub async fn send(
    client: &reqwest::Client,
    ingest_url: &str,
    token: &str,
    events: &[Event],
    batch: usize,
) -> Result<Sent, Error> {
    if !(1..=1000).contains(&batch) {
        return Err(Error::BatchSize(batch));
    }
    let url = format!("{}/events", ingest_url.trim_end_matches('/'));
    let mut sent = Sent::default();
    for chunk in events.chunks(batch) {
        let answer = post(client, &url, token, chunk).await?;
        sent.requests += 1;
        sent.accepted += answer.accepted;
        sent.duplicates += answer.duplicates;
    }
    Ok(sent)
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    chunk: &[Event],
) -> Result<Accepted, Error> {
    let mut backoff = Duration::from_millis(250);
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match client.post(url).bearer_auth(token).json(chunk).send().await {
            Ok(response) if response.status().is_success() => {
                return response
                    .json::<Accepted>()
                    .await
                    .map_err(|e| Error::Refused {
                        status: 202,
                        body: format!("not the gateway's answer: {e}"),
                    });
            }
            Ok(response) if response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                last = format!("503: {}", response.text().await.unwrap_or_default());
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                return Err(Error::Refused { status, body });
            }
            Err(e) => last = e.to_string(),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
    Err(Error::Unavailable {
        url: url.to_owned(),
        attempts: ATTEMPTS,
        last,
    })
}

/// Waits until `{api_url}/dora` over the history's window counts at least the
/// history's production deploy attempts, i.e. the projector has written it all (more
/// when the store also holds other events). Gives up after `timeout`.
pub async fn wait_for_store(
    client: &reqwest::Client,
    api_url: &str,
    history: &History,
    timeout: Duration,
) -> Result<(), Error> {
    let days = (history.end - history.start).num_days().max(1);
    let url = format!("{}/dora", api_url.trim_end_matches('/'));
    let as_of = history
        .end
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let expected = history.prod_attempts();
    let started = Instant::now();
    let mut seen = 0;
    loop {
        let response = client
            .get(&url)
            .query(&[("days", days.to_string()), ("as_of", as_of.clone())])
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() => {
                let report: serde_json::Value = r.json().await.unwrap_or_default();
                seen = report["change_failure_rate"]["attempts"]
                    .as_u64()
                    .unwrap_or(0);
                if seen >= expected as u64 {
                    return Ok(());
                }
            }
            // 503: the store is not migrated yet; wait like for a lagging projector.
            Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {}
            Ok(r) => {
                return Err(Error::Api {
                    url,
                    status: r.status().as_u16(),
                    body: r.text().await.unwrap_or_default(),
                })
            }
            Err(_) => {}
        }
        if started.elapsed() >= timeout {
            return Err(Error::NotInStore {
                url: api_url.to_owned(),
                expected,
                seen,
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
