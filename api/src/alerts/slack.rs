//! Slack: what a message says (incoming-webhook JSON with `text` and mrkdwn `blocks`),
//! and delivering it with retries.
//!
//! A request that fails on the network or with a 5xx is retried a few times with
//! backoff; a 429 waits for its `Retry-After`. What is still not delivered after that
//! (including a 4xx, whose body is logged: Slack says there what is wrong) stays in the
//! outbox and is tried again later, also after a restart. The webhook URL is a
//! secret: errors are logged without it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::rules::{Metric, ScopeNumbers, WindowNumbers};
use super::store::{Kind, Settled};

/// One request's limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests per delivery pass for one message.
const TRIES: u32 = 4;
/// The first wait after a failed request; doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest `Retry-After` waited for within a pass; a longer one postpones the
/// message to a later pass.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(30);
/// Most of Slack's error body kept in the log and in `GET /alerts`.
const BODY_LIMIT: usize = 500;

/// The webhook client; `webhook` is `None` when alerts are only logged.
#[derive(Clone)]
pub struct Slack {
    client: reqwest::Client,
    webhook: Option<Url>,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slack")
            .field("webhook", &self.webhook.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Slack {
    /// A client for `webhook` (or one that only logs).
    pub fn new(webhook: Option<Url>) -> Result<Slack, crate::Error> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("dora-api/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| crate::Error::Setting {
                name: "DORA_SLACK_WEBHOOK_URL",
                message: format!("the HTTP client could not be built: {}", e.without_url()),
            })?;
        Ok(Slack { client, webhook })
    }

    /// Whether messages go anywhere but the log.
    pub fn has_webhook(&self) -> bool {
        self.webhook.is_some()
    }

    /// Delivers one message: several requests if needed, within one pass. A request
    /// in flight is finished when `shutdown` turns true (so its answer is recorded and
    /// the message is not sent twice), but no retry is waited for.
    pub async fn send(
        &self,
        text: &str,
        body: &Value,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Settled {
        let Some(url) = &self.webhook else {
            tracing::warn!(alert = %text, "alert (DORA_SLACK_WEBHOOK_URL is not set: logged only)");
            return Settled::Logged;
        };
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        let mut last_error = None;
        loop {
            tries += 1;
            let (error, wait) = match self.client.post(url.clone()).json(body).send().await {
                Ok(response) if response.status().is_success() => {
                    return Settled::Delivered {
                        tries,
                        error: last_error,
                    };
                }
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(&response);
                    let answer = response.text().await.unwrap_or_default();
                    let answer: String = answer.chars().take(BODY_LIMIT).collect();
                    let error = format!("Slack answered {status}: {answer}");
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        let wait = retry_after.unwrap_or(backoff);
                        tracing::info!(%status, ?wait, "Slack is rate limiting alerts");
                        if wait > MAX_INLINE_WAIT {
                            return Settled::Later {
                                tries,
                                error,
                                after: wait,
                            };
                        }
                        (error, wait)
                    } else if status.is_server_error() {
                        tracing::warn!(%status, body = %answer, "Slack failed; retrying");
                        (error, backoff)
                    } else {
                        // A 4xx means the request or the webhook is wrong (revoked, say):
                        // repeating it now would fail the same way. Kept for later.
                        tracing::error!(%status, body = %answer, "Slack refused an alert; it is kept and retried later");
                        return Settled::Later {
                            tries,
                            error,
                            after: later(tries),
                        };
                    }
                }
                Err(e) => {
                    let e = e.without_url();
                    tracing::warn!(error = %e, "sending an alert to Slack failed; retrying");
                    (format!("network: {e}"), backoff)
                }
            };
            if tries >= TRIES {
                return Settled::Later {
                    tries,
                    error,
                    after: later(tries),
                };
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = super::stopped(shutdown) => {
                    return Settled::Later { tries, error, after: Duration::ZERO };
                }
            }
            last_error = Some(error);
            backoff *= 2;
        }
    }
}

/// The wait before the next pass: grows with the failures, at most an hour.
fn later(tries: u32) -> Duration {
    Duration::from_secs(30u64.saturating_mul(1 << tries.min(7))).min(Duration::from_secs(3600))
}

/// `Retry-After` in seconds (Slack sends seconds, never a date).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// What a message says: the plain `text` and the whole webhook body.
pub fn render(
    kind: Kind,
    metric: Metric,
    scope: &ScopeNumbers,
    days: u32,
    public_url: &Url,
) -> (String, Value) {
    let who = match &scope.service {
        Some(s) => format!("{s} in {}", scope.environment),
        None => format!("all services in {}", scope.environment),
    };
    let (icon, verb) = match kind {
        Kind::Firing => (":rotating_light:", "regressed"),
        Kind::Recovered => (":white_check_mark:", "recovered"),
    };
    let prior = value(metric, &scope.prior);
    let current = value(metric, &scope.current);
    let link = dashboard_link(public_url, scope, days);
    let text = format!(
        "{icon} {} {verb} for {who}: {prior} → {current} (prior window {}, current window {}). <{link}|Open the dashboard>",
        metric.title(),
        dates(&scope.prior),
        dates(&scope.current),
    );
    let body = json!({
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn",
                "text": format!("{icon} *{} {verb}* for *{who}*", metric.title())}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": format!("*Prior window*\n{}\n{prior}", dates(&scope.prior))},
                {"type": "mrkdwn", "text": format!("*Current window*\n{}\n{current}", dates(&scope.current))},
            ]},
            {"type": "section", "text": {"type": "mrkdwn",
                "text": format!("<{link}|Open the dashboard for {who}>")}},
        ],
    });
    (text, body)
}

/// The metric's value in one window, in units people read.
fn value(metric: Metric, w: &WindowNumbers) -> String {
    match metric {
        Metric::ChangeFailureRate => match w.rate() {
            Some(rate) => format!(
                "{} ({} of {} attempts failed)",
                percent(rate),
                w.failed,
                w.attempts
            ),
            None => "no attempts".to_owned(),
        },
        Metric::LeadTime => match w.lead_median_seconds {
            Some(secs) => format!("{} (median of {} deploys)", duration(secs), w.lead_samples),
            None => "no samples".to_owned(),
        },
    }
}

/// `0%`, `40%`, `42.9%`.
pub fn percent(rate: f64) -> String {
    trim(format!("{:.1}", rate * 100.0)) + "%"
}

/// `45 min`, `1.75 h`, `3.5 h`, `4.2 d`.
pub fn duration(secs: f64) -> String {
    if secs < 3600.0 {
        format!("{} min", (secs / 60.0).round())
    } else if secs < 72.0 * 3600.0 {
        trim(format!("{:.2}", secs / 3600.0)) + " h"
    } else {
        trim(format!("{:.1}", secs / 86_400.0)) + " d"
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

fn dates(w: &WindowNumbers) -> String {
    let f = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M").to_string();
    format!("{} to {} UTC", f(w.start), f(w.end))
}

/// `{DORA_PUBLIC_URL}/dashboard?service=..&environment=..&days=..`.
pub fn dashboard_link(public_url: &Url, scope: &ScopeNumbers, days: u32) -> String {
    let mut url = public_url.clone();
    let path = format!("{}/dashboard", url.path().trim_end_matches('/'));
    url.set_path(&path);
    {
        let mut q = url.query_pairs_mut();
        q.clear();
        if let Some(s) = &scope.service {
            q.append_pair("service", s);
        }
        q.append_pair("environment", &scope.environment);
        q.append_pair("days", &days.to_string());
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(3.0 / 7.0), "42.9%");
        assert_eq!(percent(0.4), "40%");
        assert_eq!(duration(1.75 * 3600.0), "1.75 h");
        assert_eq!(duration(3.5 * 3600.0), "3.5 h");
        assert_eq!(duration(2700.0), "45 min");
        assert_eq!(duration(4.2 * 86_400.0), "4.2 d");
    }

    #[test]
    fn the_link_names_the_scope() {
        let w = WindowNumbers {
            start: "2026-03-09T00:00:00Z".parse().unwrap(),
            end: "2026-03-16T00:00:00Z".parse().unwrap(),
            attempts: 0,
            failed: 0,
            lead_median_seconds: None,
            lead_samples: 0,
        };
        let mut scope = ScopeNumbers {
            environment: "prod".into(),
            service: Some("checkout".into()),
            prior: w.clone(),
            current: w,
        };
        let base = Url::parse("https://dora.example.com/base/").unwrap();
        assert_eq!(
            dashboard_link(&base, &scope, 7),
            "https://dora.example.com/base/dashboard?service=checkout&environment=prod&days=7"
        );
        scope.service = None;
        assert_eq!(
            dashboard_link(&Url::parse("http://127.0.0.1:8080").unwrap(), &scope, 14),
            "http://127.0.0.1:8080/dashboard?environment=prod&days=14"
        );
    }
}
