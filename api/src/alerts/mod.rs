//! Regression alerts (CONTRACT.md section 6): the push half of the weekly review.
//!
//! Every `DORA_ALERT_INTERVAL` the API compares, in each watched environment, the
//! current window with the one before it, for all services together and for each
//! service with attempts in the current window. A scope that regressed fires once and
//! recovers once; the state and the messages live in schema `dora_alerts`, outside
//! the store that replay rebuilds, so restarts, replays and replicas change nothing.
//!
//! Both steps are functions a test calls directly: [`evaluate`] with a fixed `now`,
//! then [`deliver`]. [`run`] only schedules them.
//!
//! # Layout
//!
//! - [`settings`]: the settings, checked at start.
//! - [`numbers`]: both windows of every scope, in one grouped query.
//! - [`rules`]: what counts as regressed, on numbers alone.
//! - [`store`]: the state and the outbox, the check lock, `GET /alerts`.
//! - [`slack`]: the message and its delivery.

pub mod numbers;
pub mod rules;
pub mod settings;
pub mod slack;
pub mod store;

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use reqwest::Url;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::watch;

pub use rules::Metric;
pub use settings::AlertSettings;
pub use slack::Slack;
pub use store::{Kind, ScopeKey};

use crate::error::Result;
use crate::metrics::ApiMetrics;
use rules::{judge, Verdict, WindowNumbers};

/// The two pools a check needs.
#[derive(Debug, Clone)]
pub struct Pools {
    /// The read-only pool on the live store (schema `dora`).
    pub store: PgPool,
    /// The small writable pool on schema `dora_alerts`.
    pub alerts: PgPool,
}

/// What one check decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    /// `false` when another replica was checking: this one did nothing.
    pub checked: bool,
    /// Scopes judged: (metric, environment, service-or-all) pairs with numbers.
    pub scopes: usize,
    /// Of which regressed now (newly or still).
    pub regressed: usize,
    /// The state changes, each with the message it put in the outbox.
    pub changes: Vec<Change>,
}

impl Evaluation {
    /// Scopes that started firing.
    pub fn fired(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| c.kind == Kind::Firing)
            .count()
    }

    /// Scopes that recovered.
    pub fn recovered(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| c.kind == Kind::Recovered)
            .count()
    }
}

/// One scope's state change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The scope.
    pub scope: ScopeKey,
    /// Started firing, or recovered.
    pub kind: Kind,
    /// The outbox message's id.
    pub message_id: i64,
    /// Its text.
    pub text: String,
    /// `true` when a recovery came before the firing message could be delivered:
    /// both are recorded, neither is sent.
    pub superseded: bool,
}

/// What one delivery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Messages Slack accepted.
    pub delivered: u64,
    /// Messages written to the log (no webhook).
    pub logged: u64,
    /// Messages left for a later pass.
    pub postponed: u64,
    /// Requests made to Slack, successful or not.
    pub requests: u64,
}

/// Checks every watched scope at `now` and records what changed, with its messages, in
/// one transaction. Returns without checking (`checked: false`) while another replica
/// checks.
pub async fn evaluate(
    pools: &Pools,
    settings: &AlertSettings,
    now: DateTime<Utc>,
) -> Result<Evaluation> {
    let public_url = public_url(settings);
    let mut tx = pools.alerts.begin().await?;
    if !store::try_lock(&mut tx).await? {
        return Ok(Evaluation::default());
    }
    let firing = store::firing(&mut tx).await?;
    let mut out = Evaluation {
        checked: true,
        ..Evaluation::default()
    };
    for environment in &settings.environments.0 {
        let scopes = numbers::scopes(&pools.store, environment, settings.days, now).await?;
        for scope in &scopes {
            for metric in Metric::ALL {
                out.scopes += 1;
                let key = ScopeKey {
                    metric,
                    environment: scope.environment.clone(),
                    service: scope.service.clone(),
                };
                let was_firing = firing.contains(&key);
                let verdict = judge(metric, scope, settings);
                if verdict == Verdict::Regressed {
                    out.regressed += 1;
                }
                let (prior, current) = (shown(metric, &scope.prior), shown(metric, &scope.current));
                let kind = match (verdict, was_firing) {
                    (Verdict::Regressed, false) => Kind::Firing,
                    (Verdict::WithinTolerance, true) => Kind::Recovered,
                    (_, true) => {
                        // Still firing, or not enough data to say it is back: the
                        // state stays, with the latest numbers for GET /alerts.
                        store::record(&mut tx, &key, true, false, now, &prior, &current).await?;
                        continue;
                    }
                    (_, false) => continue,
                };
                let superseded = kind == Kind::Recovered
                    && store::supersede_undelivered(&mut tx, &key).await? > 0;
                store::record(
                    &mut tx,
                    &key,
                    kind == Kind::Firing,
                    true,
                    now,
                    &prior,
                    &current,
                )
                .await?;
                let (text, body) = slack::render(kind, metric, scope, settings.days, &public_url);
                let message_id =
                    store::enqueue(&mut tx, &key, kind, now, &text, &body, superseded).await?;
                out.changes.push(Change {
                    scope: key,
                    kind,
                    message_id,
                    text,
                    superseded,
                });
            }
        }
    }
    tx.commit().await?;
    for change in &out.changes {
        tracing::info!(kind = ?change.kind, metric = change.scope.metric.as_str(),
            environment = %change.scope.environment, service = ?change.scope.service,
            superseded = change.superseded, "alert state changed");
    }
    Ok(out)
}

/// Delivers every due message in the outbox, oldest first, one transaction each.
pub async fn deliver(alerts: &PgPool, slack: &Slack) -> Result<Delivery> {
    let (_never, shutdown) = watch::channel(false);
    deliver_until(alerts, slack, shutdown).await
}

/// [`deliver`], stopping early once `shutdown` turns true: a request in flight is
/// finished and recorded, what is left waits in the outbox.
pub async fn deliver_until(
    alerts: &PgPool,
    slack: &Slack,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Delivery> {
    let mut out = Delivery::default();
    while !*shutdown.borrow() {
        let mut tx = alerts.begin().await?;
        let Some(message) = store::claim(&mut tx).await? else {
            break;
        };
        let settled = slack
            .send(&message.text, &message.body, &mut shutdown)
            .await;
        match &settled {
            store::Settled::Delivered { tries, .. } => {
                out.delivered += 1;
                out.requests += u64::from(*tries);
            }
            store::Settled::Logged => out.logged += 1,
            store::Settled::Later {
                tries,
                error,
                after,
            } => {
                out.postponed += 1;
                out.requests += u64::from(*tries);
                tracing::warn!(id = message.id, attempts = message.attempts + *tries as i32,
                    %error, retry_in = ?after, "alert not delivered yet; kept in the outbox");
            }
        }
        store::settle(&mut tx, message.id, &settled).await?;
        tx.commit().await?;
    }
    Ok(out)
}

/// A firing scope in words, for the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiringLine {
    /// The service, `None` for all services together.
    pub service: Option<String>,
    /// E.g. `Change failure rate: 0% → 42.9%, firing since 2026-03-16 00:00 UTC`.
    pub text: String,
}

/// The scopes firing in `environment` (only `service`'s and the all-services ones when
/// a service is given), in words. Empty when the alert state cannot be read: the page
/// that shows them must not fail for it (the error is logged).
pub async fn firing_lines(
    alerts: &PgPool,
    environment: &str,
    service: Option<&str>,
) -> Vec<FiringLine> {
    let overview = match store::overview(alerts, 1).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "the alert state could not be read for the dashboard");
            return Vec::new();
        }
    };
    overview
        .scopes
        .into_iter()
        .filter(|s| s.firing && s.environment == environment)
        .filter(|s| service.is_none() || s.service.is_none() || s.service.as_deref() == service)
        .map(|s| {
            let value = |w: &serde_json::Value| {
                match s.metric.as_str() {
                    "change_failure_rate" => w["rate"].as_f64().map(slack::percent),
                    _ => w["median_seconds"].as_f64().map(slack::duration),
                }
                .unwrap_or_else(|| "no data".to_owned())
            };
            let title = Metric::parse(&s.metric).map_or("?", Metric::title);
            FiringLine {
                text: format!(
                    "{title}: {} → {}, firing since {}",
                    value(&s.prior),
                    value(&s.current),
                    s.since.format("%Y-%m-%d %H:%M UTC")
                ),
                service: s.service,
            }
        })
        .collect()
}

/// What `GET /alerts` stores of a window: the numbers of the rule's metric.
fn shown(metric: Metric, w: &WindowNumbers) -> serde_json::Value {
    match metric {
        Metric::ChangeFailureRate => json!({
            "start": w.start, "end": w.end,
            "failed": w.failed, "attempts": w.attempts, "rate": w.rate(),
        }),
        Metric::LeadTime => json!({
            "start": w.start, "end": w.end,
            "median_seconds": w.lead_median_seconds, "samples": w.lead_samples,
        }),
    }
}

fn public_url(settings: &AlertSettings) -> Url {
    settings.public_url.clone().unwrap_or_else(|| {
        // `run` always sets it from the listener; a direct caller gets the default address.
        Url::parse("http://127.0.0.1:8080").unwrap_or_else(|_| unreachable!("a valid URL"))
    })
}

/// Migrates the alert schema (retrying while the database is down), then checks and
/// delivers every `settings.interval` until `shutdown` turns true, counting both in
/// `metrics`. An undelivered message stays in the outbox for the next pass, or the
/// next process.
pub async fn run(
    pools: Pools,
    settings: AlertSettings,
    slack: Slack,
    metrics: ApiMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut wait = Duration::from_secs(1);
    loop {
        match store::migrate(&pools.alerts).await {
            Ok(()) => break,
            // Retried all the same: a failed-over primary becomes writable.
            Err(e) if store::refuses_writes(&e) => tracing::error!(error = %e, retry_in = ?wait,
                "the alert state's database refuses writes (is it a read replica?): set DORA_ALERTS_DATABASE_URL to a writable primary; alerts wait"),
            Err(e) => tracing::warn!(error = %e, retry_in = ?wait,
                "alert schema not ready; alerts wait for the database"),
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(&mut shutdown) => return,
        }
        wait = (wait * 2).min(Duration::from_secs(60));
    }
    tracing::info!(interval = ?settings.interval, environments = ?settings.environments.0,
        slack = slack.has_webhook(), "alerts checking");
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped(&mut shutdown) => return,
        }
        // A step is not cut off by the shutdown: a check is one short transaction, and
        // a delivery cut off after Slack accepted it but before it was recorded would
        // be sent again by the next process. `deliver_until` stops between messages.
        let now = Utc::now().trunc_subsecs(0);
        let checked = evaluate(&pools, &settings, now).await;
        metrics.alert_checked(&checked);
        match checked {
            Ok(e) => tracing::debug!(
                checked = e.checked,
                scopes = e.scopes,
                regressed = e.regressed,
                fired = e.fired(),
                recovered = e.recovered(),
                "alerts checked"
            ),
            Err(e) => tracing::warn!(error = %e, "alert check failed; trying again next interval"),
        }
        let delivered = deliver_until(&pools.alerts, &slack, shutdown.clone()).await;
        metrics.alert_delivered(&delivered);
        match delivered {
            Ok(d) if d != Delivery::default() => tracing::debug!(?d, "alerts delivered"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "alert delivery failed; trying again next interval")
            }
        }
    }
}

/// Resolves when `shutdown` turns true; never when its sender is gone without it.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}
