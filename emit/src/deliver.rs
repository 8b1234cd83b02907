//! Getting one event to dora: over HTTP to the gateway, or straight to JetStream, with
//! retries and backoff until the deadline.
//!
//! Retrying is safe because the event always carries its id: a request that reached
//! the gateway but whose answer was lost is stored once however often it is repeated.

use std::future::Future;
use std::time::{Duration, Instant};

use dora_event::Event;

use crate::error::{Error, Result};

/// First wait between attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest one attempt may take, so a hung connection does not eat the whole budget.
const MAX_ATTEMPT: Duration = Duration::from_secs(20);

/// How the event arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Stored now.
    Accepted,
    /// Stored before (the same id): a retried step.
    Duplicate,
}

/// What one attempt came to.
#[derive(Debug)]
enum Attempt {
    /// Delivered.
    Done(Delivered),
    /// Refused for good.
    Refused(String),
    /// Failed in a way that may pass: try again.
    Retry(String),
}

/// Runs `attempt` until it succeeds, is refused, or `timeout` has passed. Each try gets
/// the time left (at most [`MAX_ATTEMPT`]).
async fn with_retries<F, Fut>(timeout: Duration, mut attempt: F) -> Result<Delivered>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Attempt>,
{
    let deadline = Instant::now() + timeout;
    let mut backoff = FIRST_BACKOFF;
    for n in 1.. {
        let left = deadline.saturating_duration_since(Instant::now());
        match attempt(left.min(MAX_ATTEMPT)).await {
            Attempt::Done(delivered) => return Ok(delivered),
            Attempt::Refused(why) => return Err(Error::Refused(why)),
            Attempt::Retry(why) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::TimedOut {
                        waited: timeout,
                        last: why,
                    });
                }
                let wait = jitter(backoff).min(left);
                eprintln!(
                    "dora-emit: attempt {n} failed: {why}; retrying in {} ms",
                    wait.as_millis()
                );
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    unreachable!("the attempt loop only ends by returning")
}

/// 75-100% of `d`, so that many jobs failing together do not retry in step.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d.mul_f64(0.75 + f64::from(nanos % 1000) / 4000.0)
}

/// `POST <url>/events` with the bearer token.
pub async fn over_http(
    url: &reqwest::Url,
    token: &str,
    event: &Event,
    timeout: Duration,
) -> Result<Delivered> {
    let endpoint = format!("{}/events", url.as_str().trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .user_agent(concat!("dora-emit/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        // A redirected POST becomes a GET; better to say where the gateway moved.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::Usage(format!("cannot set up HTTP: {e}")))?;
    let body = event.to_json();
    with_retries(timeout, |left| {
        let request = client
            .post(&endpoint)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .timeout(left);
        let endpoint = &endpoint;
        async move {
            match request.send().await {
                Ok(response) => judge(endpoint, response).await,
                Err(e) if e.is_timeout() => {
                    Attempt::Retry(format!("{endpoint}: no answer in time"))
                }
                Err(e) => Attempt::Retry(format!("{endpoint}: {}", root_cause(&e))),
            }
        }
    })
    .await
}

/// Reads the gateway's answer: 202 done, 5xx/408/429 again, any other status refused.
async fn judge(endpoint: &str, response: reqwest::Response) -> Attempt {
    let status = response.status();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.unwrap_or_default();
    let json: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    if status.is_success() {
        // Only the gateway's own 202 means stored: a 200 from whatever else answers at
        // a wrong DORA_URL must not pass for a delivered event.
        let count = |field: &str| {
            json.as_ref()
                .and_then(|j| j.get(field))
                .and_then(serde_json::Value::as_u64)
        };
        return match (status, count("accepted"), count("duplicates")) {
            (reqwest::StatusCode::ACCEPTED, Some(1), Some(0)) => Attempt::Done(Delivered::Accepted),
            (reqwest::StatusCode::ACCEPTED, Some(1), Some(_)) => Attempt::Done(Delivered::Duplicate),
            _ => Attempt::Refused(format!(
                "{endpoint} answered {status} with {}, not dora-ingest's 202 {{\"accepted\": 1, ...}}: is DORA_URL the gateway?",
                text.chars().take(200).collect::<String>()
            )),
        };
    }
    // The gateway names the problem in `error` (and `field`); anything else in front
    // of it (a proxy) gets its first line quoted.
    let message = match json
        .as_ref()
        .and_then(|j| j.get("error"))
        .and_then(|e| e.as_str())
    {
        Some(error) => match json
            .as_ref()
            .and_then(|j| j.get("field"))
            .and_then(|f| f.as_str())
        {
            Some(field) => format!("{error} (field `{field}`)"),
            None => error.to_owned(),
        },
        None => text
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect(),
    };
    let said = format!("{endpoint} answered {status}: {message}");
    if status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
    {
        Attempt::Retry(said)
    } else if status.is_redirection() {
        Attempt::Refused(format!(
            "{said}; it redirects to {}: set DORA_URL to the gateway itself",
            location.as_deref().unwrap_or("elsewhere")
        ))
    } else if status == reqwest::StatusCode::UNAUTHORIZED {
        Attempt::Refused(format!("{said}; check DORA_TOKEN"))
    } else {
        Attempt::Refused(said)
    }
}

/// Publishes to `<prefix>.<environment>.<service>.<kind>` with `Nats-Msg-Id` (`<id>:<digest>`,
/// as the gateway sends it) and waits
/// for the JetStream ack.
pub async fn over_nats(
    nats_url: &str,
    prefix: &str,
    event: &Event,
    timeout: Duration,
) -> Result<Delivered> {
    let subject = dora_event::subject::for_event(prefix, event);
    let body = bytes::Bytes::from(event.to_json());
    with_retries(timeout, |left| {
        // A fresh connection per attempt: attempts are rare, and a failed one may have
        // left its connection in any state.
        let subject = subject.clone();
        let body = body.clone();
        // The gateway's key: a corrected event is not dropped as a repeat of the first.
        let id = dora_event::dedup::msg_id(event, true);
        async move {
            let left = left.max(Duration::from_millis(100));
            let nats = match async_nats::ConnectOptions::new()
                .connection_timeout(left)
                .connect(nats_url)
                .await
            {
                Ok(nats) => nats,
                Err(e) => return Attempt::Retry(format!("NATS at {nats_url}: {e}")),
            };
            let mut js = async_nats::jetstream::new(nats);
            js.set_timeout(left);
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(dora_event::MSG_ID_HEADER, id.as_str());
            let acked = match js.publish_with_headers(subject.clone(), headers, body).await {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match acked {
                Ok(ack) if ack.duplicate => Attempt::Done(Delivered::Duplicate),
                Ok(_) => Attempt::Done(Delivered::Accepted),
                Err(e) => Attempt::Retry(format!(
                    "JetStream did not acknowledge `{subject}`: {e} (does a stream capture DORA_SUBJECT_PREFIX `{prefix}`?)"
                )),
            }
        }
    })
    .await
}

/// The innermost cause, which is where reqwest says "Connection refused" or names the
/// certificate problem; the layers above it only repeat the URL.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}
