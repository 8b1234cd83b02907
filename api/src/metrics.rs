//! The API's Prometheus series, served on `GET /metrics`.
//!
//! - `dora_api_http_requests_total{method,route,status}` and
//!   `dora_api_http_request_duration_seconds{method,route}`: by matched route
//!   (`/dora`), never the raw URI.
//! - The DORA metrics over the last [`GAUGE_DAYS`] days, per `environment` and
//!   `service`, as gauges, so a team that lives in Prometheus can graph and alert on
//!   them: `dora_deployment_frequency_per_day`, `dora_deploys`,
//!   `dora_lead_time_median_seconds`, `dora_change_failure_rate`,
//!   `dora_deploy_attempts`, `dora_deploys_failed`,
//!   `dora_time_to_restore_median_seconds`, `dora_open_incidents`, `dora_rework_rate`. The series with an
//!   empty `service` (no `service` label, as Prometheus stores it) is all services
//!   together. A median or rate without samples is absent, never `0`, as `null` is on
//!   `/dora`. They are computed when scraped, from one grouped pass per environment,
//!   and reused for [`GAUGE_MAX_AGE`] so that several scrapers cost one computation.
//! - `dora_api_dora_refresh_failures_total`: scrapes whose computation failed (the
//!   gauges are then absent, not stale).
//! - The alert loop: `dora_api_alert_checks_total{outcome}` (`checked`, `skipped`
//!   while another replica checks, `failed`), `dora_api_alert_scopes_regressed` (scopes
//!   regressed at this replica's last check), `dora_api_alert_changes_total{kind}`
//!   (`firing`, `recovered`), and `dora_api_alert_deliveries_total{outcome}` (messages
//!   `delivered` to Slack, `logged` without a webhook, `postponed` for a retry, and
//!   delivery passes that `failed`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::{middleware, Router};
use chrono::{DateTime, TimeDelta, Utc};
use dora_event::observe::HttpMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use std::sync::atomic::AtomicU64;
use tokio::sync::Mutex;

use crate::alerts::{Delivery, Evaluation};
use crate::dora::{self, MetricsQuery, Report};

/// The window of the DORA gauges, in days.
pub const GAUGE_DAYS: u32 = 7;

/// How long computed DORA gauges are served before a scrape computes them again.
pub const GAUGE_MAX_AGE: Duration = Duration::from_secs(5);

/// Every environment the facts name (the projector keeps `services`, migration 0008).
const ENVIRONMENTS: &str = "SELECT DISTINCT environment FROM services ORDER BY 1";

/// Whether environment `$1` has something to measure since `$2`: deploy attempts,
/// incidents closed, or incidents still open. Asked per environment, with its value,
/// each part is a probe of one window index. (Asked for all environments at once, as
/// a filter on time alone, it was a scan of every attempt: 0.5 s at 10M events.)
const MEASURABLE: &str = r#"
SELECT EXISTS (SELECT 1 FROM deploy_facts WHERE environment = $1 AND occurred_at >= $2)
    OR EXISTS (SELECT 1 FROM incident_facts WHERE environment = $1 AND closed_at >= $2)
    OR EXISTS (SELECT 1 FROM incident_facts WHERE environment = $1 AND closed_at IS NULL)
"#;

/// Labels of a DORA gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabels {
    /// The environment measured.
    pub environment: String,
    /// The service, or empty for all services together.
    pub service: String,
}

/// Labels of an alert counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// What happened.
    pub outcome: &'static str,
}

/// Labels of an alert state change.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeLabels {
    /// `firing` or `recovered`.
    pub kind: &'static str,
}

type FloatGauge = Family<ScopeLabels, Gauge<f64, AtomicU64>>;
type CountGauge = Family<ScopeLabels, Gauge>;

/// The DORA gauges.
#[derive(Debug, Clone, Default)]
struct DoraGauges {
    per_day: FloatGauge,
    deploys: CountGauge,
    lead_time: FloatGauge,
    failure_rate: FloatGauge,
    attempts: CountGauge,
    failed: CountGauge,
    restore: FloatGauge,
    open_incidents: CountGauge,
    rework_rate: FloatGauge,
}

impl DoraGauges {
    fn register(&self, registry: &mut Registry) {
        let days = GAUGE_DAYS;
        registry.register(
            "dora_deployment_frequency_per_day",
            format!("Successful deploy attempts per day over the last {days} days"),
            self.per_day.clone(),
        );
        registry.register(
            "dora_deploys",
            format!("Successful deploy attempts in the last {days} days"),
            self.deploys.clone(),
        );
        registry.register(
            "dora_lead_time_median_seconds",
            format!("Median commit-to-production time of the last {days} days' deploys"),
            self.lead_time.clone(),
        );
        registry.register(
            "dora_change_failure_rate",
            format!("Share of the last {days} days' deploy attempts that failed (0-1)"),
            self.failure_rate.clone(),
        );
        registry.register(
            "dora_deploy_attempts",
            format!("Deploy attempts in the last {days} days"),
            self.attempts.clone(),
        );
        registry.register(
            "dora_deploys_failed",
            format!("Deploy attempts in the last {days} days that failed"),
            self.failed.clone(),
        );
        registry.register(
            "dora_time_to_restore_median_seconds",
            format!("Median open-to-close time of incidents closed in the last {days} days"),
            self.restore.clone(),
        );
        registry.register(
            "dora_open_incidents",
            "Incidents open now",
            self.open_incidents.clone(),
        );
        registry.register(
            "dora_rework_rate",
            format!(
                "Share of the last {days} days' deploy attempts made while an incident of their service ran (0-1)"
            ),
            self.rework_rate.clone(),
        );
    }

    fn clear(&self) {
        for family in [
            &self.per_day,
            &self.lead_time,
            &self.failure_rate,
            &self.restore,
            &self.rework_rate,
        ] {
            family.clear();
        }
        for family in [
            &self.deploys,
            &self.attempts,
            &self.failed,
            &self.open_incidents,
        ] {
            family.clear();
        }
    }

    fn set(&self, report: &Report) {
        let labels = ScopeLabels {
            environment: report.environment.clone(),
            service: report.service.clone().unwrap_or_default(),
        };
        let float = |family: &FloatGauge, value: Option<f64>| {
            if let Some(value) = value {
                family.get_or_create(&labels).set(value);
            }
        };
        let count = |family: &CountGauge, value: i64| {
            family.get_or_create(&labels).set(value);
        };
        float(&self.per_day, Some(report.deployment_frequency.per_day));
        count(&self.deploys, report.deployment_frequency.deploys);
        float(&self.lead_time, report.lead_time.median_seconds);
        float(&self.failure_rate, report.change_failure_rate.rate);
        count(&self.attempts, report.change_failure_rate.attempts);
        count(&self.failed, report.change_failure_rate.failed);
        float(&self.restore, report.time_to_restore.median_seconds);
        count(&self.open_incidents, report.time_to_restore.open_incidents);
        float(&self.rework_rate, report.rework_rate.rate);
    }
}

/// The API's series and the registry that serves them.
#[derive(Debug, Clone)]
pub struct ApiMetrics {
    registry: Arc<Registry>,
    http: HttpMetrics,
    pool: PgPool,
    dora: DoraGauges,
    /// When the DORA gauges were last computed; held while computing and encoding, so
    /// concurrent scrapes wait for one computation instead of each running their own.
    computed_at: Arc<Mutex<Option<Instant>>>,
    refresh_failures: Counter,
    alert_checks: Family<OutcomeLabels, Counter>,
    alert_regressed: Gauge,
    alert_changes: Family<ChangeLabels, Counter>,
    alert_deliveries: Family<OutcomeLabels, Counter>,
}

impl ApiMetrics {
    /// A fresh registry with the API's series; the DORA gauges read `pool`.
    pub fn new(pool: PgPool) -> ApiMetrics {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry, "dora_api");
        let dora = DoraGauges::default();
        dora.register(&mut registry);
        let metrics = ApiMetrics {
            registry: Arc::default(),
            http,
            pool,
            dora,
            computed_at: Arc::default(),
            refresh_failures: Counter::default(),
            alert_checks: Family::default(),
            alert_regressed: Gauge::default(),
            alert_changes: Family::default(),
            alert_deliveries: Family::default(),
        };
        let sub = registry.sub_registry_with_prefix("dora_api");
        sub.register(
            "dora_refresh_failures",
            "Scrapes whose DORA gauges could not be computed",
            metrics.refresh_failures.clone(),
        );
        sub.register(
            "alert_checks",
            "Alert checks, by outcome: checked, skipped (another replica checked), failed",
            metrics.alert_checks.clone(),
        );
        sub.register(
            "alert_scopes_regressed",
            "Scopes regressed at this replica's last alert check",
            metrics.alert_regressed.clone(),
        );
        sub.register(
            "alert_changes",
            "Scopes that started firing or recovered",
            metrics.alert_changes.clone(),
        );
        sub.register(
            "alert_deliveries",
            "Alert messages delivered, logged or postponed, and delivery passes that failed",
            metrics.alert_deliveries.clone(),
        );
        ApiMetrics {
            registry: Arc::new(registry),
            ..metrics
        }
    }

    /// Wraps the API's router: adds `GET /metrics`, passes both through `guard` (the
    /// read tokens), and counts and times every request, refused ones included.
    pub fn instrument(&self, app: Router, guard: impl FnOnce(Router) -> Router) -> Router {
        let metrics = Router::new()
            .route("/metrics", get(serve))
            .with_state(self.clone());
        guard(app.merge(metrics)).layer(middleware::from_fn_with_state(
            self.http.clone(),
            dora_event::observe::track,
        ))
    }

    /// Records one alert check.
    pub fn alert_checked<E>(&self, check: &Result<Evaluation, E>) {
        let outcome = match check {
            Ok(e) if e.checked => {
                self.alert_regressed
                    .set(i64::try_from(e.regressed).unwrap_or(i64::MAX));
                for (kind, n) in [("firing", e.fired()), ("recovered", e.recovered())] {
                    self.alert_changes
                        .get_or_create(&ChangeLabels { kind })
                        .inc_by(n as u64);
                }
                "checked"
            }
            Ok(_) => "skipped",
            Err(_) => "failed",
        };
        self.alert_checks
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Records one delivery pass.
    pub fn alert_delivered<E>(&self, pass: &Result<Delivery, E>) {
        let counts = match pass {
            Ok(d) => vec![
                ("delivered", d.delivered),
                ("logged", d.logged),
                ("postponed", d.postponed),
            ],
            Err(_) => vec![("failed", 1)],
        };
        for (outcome, n) in counts {
            self.alert_deliveries
                .get_or_create(&OutcomeLabels { outcome })
                .inc_by(n);
        }
    }

    /// Recomputes the DORA gauges if they are older than [`GAUGE_MAX_AGE`].
    async fn refresh(&self, computed_at: &mut Option<Instant>) {
        if computed_at.is_some_and(|at| at.elapsed() < GAUGE_MAX_AGE) {
            return;
        }
        // Not truncated to the second as `/dora`'s default is: an event of this very
        // second counts on the next scrape, not a second later.
        match compute(&self.pool, Utc::now()).await {
            Ok(reports) => {
                self.dora.clear();
                for report in &reports {
                    self.dora.set(report);
                }
                *computed_at = Some(Instant::now());
            }
            Err(e) => {
                tracing::warn!(error = %e, "DORA gauges not computed for /metrics");
                self.dora.clear();
                self.refresh_failures.inc();
                *computed_at = None;
            }
        }
    }
}

/// Every environment's reports for the last [`GAUGE_DAYS`] days up to `now`: all
/// services together and each service.
async fn compute(pool: &PgPool, now: DateTime<Utc>) -> Result<Vec<Report>, sqlx::Error> {
    let since = now - TimeDelta::days(i64::from(GAUGE_DAYS));
    let environments: Vec<String> = sqlx::query_scalar(ENVIRONMENTS).fetch_all(pool).await?;
    let mut reports = Vec::new();
    for environment in environments {
        let measurable: bool = sqlx::query_scalar(MEASURABLE)
            .bind(&environment)
            .bind(since)
            .fetch_one(pool)
            .await?;
        if !measurable {
            continue;
        }
        let query = MetricsQuery {
            days: GAUGE_DAYS,
            offset: 0,
            as_of: now,
            service: None,
            environment,
        };
        reports.extend(dora::compute_grouped(pool, &query, 1, false).await?);
        reports.extend(dora::compute_grouped(pool, &query, 1, true).await?);
    }
    Ok(reports)
}

/// The Prometheus series, in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "The series", body = String, content_type = dora_event::observe::CONTENT_TYPE),
    (status = 503, description = "Too many requests in flight", body = crate::ErrorBody,
     headers(("Retry-After" = u32, description = "Seconds to wait"))),
))]
pub(crate) async fn serve(State(metrics): State<ApiMetrics>) -> Response {
    // Held until the text is written: another scrape's recomputation must not clear
    // the gauges halfway through this one's.
    let mut computed_at = metrics.computed_at.lock().await;
    metrics.refresh(&mut computed_at).await;
    dora_event::observe::render(&metrics.registry)
}
