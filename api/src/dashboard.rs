//! The weekly delivery review: `GET /dashboard` (CONTRACT.md section 5.4), rendered on
//! the server from the same reports as the JSON routes.
//!
//! [`load`] asks the store (through [`crate::dora`]); [`Dashboard::build`] turns the
//! answers into what the page shows (human units, directions, levels, links), with no
//! I/O, so it is tested directly; the template `templates/dashboard.html` only lays it
//! out, and askama escapes everything it prints except the charts, which
//! [`crate::chart`] escapes itself.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::Html;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;

use crate::chart::{self, Chart, Point};
use crate::dora::failures::{self, Failures, OpenIncident};
use crate::dora::levels::Level;
use crate::dora::{self, MetricsQuery, Report};
use crate::error::Result;
use crate::http::{now, AppState};
use crate::params;

/// Windows in each trend chart: about three months of weeks.
pub const TREND_WINDOWS: u32 = 12;
/// Failed deploys and open incidents listed on the page; the JSON has them all.
const LISTED: u32 = 25;
/// Rows of the by-service table, busiest first: an organisation with 10k services
/// would otherwise get a 5 MB page. The others are a pick in the Service field away.
const SERVICES_LISTED: usize = 50;

/// The weekly delivery review, an HTML page (CONTRACT.md section 5.4).
#[utoipa::path(get, path = "/dashboard", tag = "metrics", params(params::DashboardQuery), responses(
    (status = 200, description = "The page", body = String, content_type = "text/html; charset=utf-8"),
    (status = 400, description = "A bad, unknown or repeated parameter, named in `param`", body = crate::ErrorBody),
    (status = 503, description = "The database is busy, slow or unreachable, or too many requests in flight: retry", body = crate::ErrorBody,
     headers(("Retry-After" = u32, description = "Seconds to wait"))),
))]
pub async fn get_dashboard(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Html<String>> {
    let raw = raw.unwrap_or_default();
    let p = params::parse_form(&raw, now(), params::DASHBOARD)?;
    // Links keep `as_of` only when the reader pinned it; otherwise they follow "now".
    let pinned = form_urlencoded::parse(raw.as_bytes()).any(|(name, _)| name == "as_of");
    let inputs = load(&state.pool, &p.query).await?;
    let mut page = Dashboard::build(&p.query, pinned, inputs);
    page.alerts = crate::alerts::firing_lines(
        &state.alerts,
        &p.query.environment,
        p.query.service.as_deref(),
    )
    .await
    .into_iter()
    .map(|l| {
        (
            l.service.unwrap_or_else(|| "all services".to_owned()),
            l.text,
        )
    })
    .collect();
    Ok(Html(page.render()?))
}

/// What the page is built from.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The last [`TREND_WINDOWS`] windows, oldest first; the last is the current one
    /// and the one before it the prior (`offset = days`).
    pub trend: Vec<Report>,
    /// The current window per service.
    pub by_service: Vec<Report>,
    /// The current window's failed attempts.
    pub failures: Failures,
    /// The incidents open at the end of the current window.
    pub open_incidents: Vec<OpenIncident>,
    /// The services with events in the environment, for the form.
    pub services: Vec<String>,
}

/// Everything the page needs, read concurrently from the pool.
pub async fn load(pool: &PgPool, query: &MetricsQuery) -> Result<Inputs, sqlx::Error> {
    let (trend, by_service, failures, open_incidents, services) = tokio::try_join!(
        dora::compute_grouped(pool, query, TREND_WINDOWS, false),
        dora::compute_grouped(pool, query, 1, true),
        failures::failures(pool, query, LISTED),
        failures::open_incidents(pool, query, LISTED),
        failures::services(pool, &query.environment),
    )?;
    Ok(Inputs {
        trend,
        by_service,
        failures,
        open_incidents,
        services,
    })
}

/// The page.
#[derive(Debug, Template)]
#[template(path = "dashboard.html")]
pub struct Dashboard {
    /// Alerts firing in this environment (scope, what), from `dora_alerts`.
    pub alerts: Vec<(String, String)>,
    /// `all services` or the service's name.
    pub scope: String,
    /// The environment shown.
    pub environment: String,
    /// The current window, in words.
    pub window_text: String,
    /// The prior window, in words.
    pub prior_text: String,
    /// One card per metric.
    pub cards: Vec<Card>,
    /// The current window per service, most attempts first, at most
    /// [`SERVICES_LISTED`].
    pub services: Vec<ServiceRow>,
    /// Services with events in the current window, listed or not.
    pub services_total: usize,
    /// The failed attempts listed.
    pub failures: Vec<FailureRow>,
    /// All failed attempts of the window.
    pub failures_total: i64,
    /// The open incidents listed.
    pub open_incidents: Vec<OpenRow>,
    /// All open incidents at the window's end.
    pub open_total: i64,
    /// The form's choices.
    pub form: Form,
    /// A service was asked for that has no event in the environment.
    pub unknown_service: bool,
    /// `/dora?...` for this page's window and scope.
    pub dora_url: String,
    /// `/dora/trend?...`.
    pub trend_url: String,
    /// `/dora/failures?...`.
    pub failures_url: String,
    /// `/dashboard` for all services, when one service is shown.
    pub all_services_url: Option<String>,
    /// The level table's name.
    pub levels: &'static str,
}

/// A metric's card.
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    /// The metric's name.
    pub name: &'static str,
    /// Which way is better, in words.
    pub polarity: &'static str,
    /// The current value (`no data` without one).
    pub value: String,
    /// Its unit (empty without a value).
    pub unit: String,
    /// What the value is made of.
    pub detail: String,
    /// The current level; `None` for a metric without levels (rework rate).
    pub level: Option<Badge>,
    /// The prior window's value with its unit, or `no data`.
    pub prior: String,
    /// What the prior value is made of.
    pub prior_detail: String,
    /// `better`, `worse`, `no change` or `no data to compare`.
    pub direction: &'static str,
    /// The direction as a symbol: `▲` rose, `▼` fell, `=` same, `–` nothing to compare.
    pub symbol: &'static str,
    /// The change in the card's unit (`+1.5 hours`), empty when there is none to show.
    pub change: String,
    /// The trend chart, SVG (escaped by [`chart`]).
    pub chart: String,
}

/// A level badge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Badge {
    /// `elite`, `high`, `medium`, `low` or `no level`.
    pub text: &'static str,
    /// The CSS class.
    pub class: &'static str,
}

/// A row of the per-service table.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRow {
    /// The service.
    pub name: String,
    /// Its own dashboard.
    pub url: String,
    /// Deploy attempts in the window.
    pub attempts: i64,
    /// Its metrics, in card order.
    pub cells: Vec<Cell>,
}

/// One metric of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// The value with its unit, or `no data`.
    pub value: String,
    /// Its level, for a metric with levels.
    pub level: Option<Badge>,
}

/// A failed deploy attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureRow {
    /// Its service.
    pub service: String,
    /// Its sha, shortened.
    pub short_sha: String,
    /// The full sha.
    pub git_sha: String,
    /// When it was attempted.
    pub when: String,
    /// What failed it, in words.
    pub failed_by: String,
    /// The id of the event that failed it.
    pub failed_by_id: String,
}

/// An open incident.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenRow {
    /// The pager's reference, as sent.
    pub ref_id: String,
    /// Its service.
    pub service: String,
    /// When it opened.
    pub opened: String,
    /// How long it has been open at the window's end.
    pub open_for: String,
}

/// The form's current values and choices.
#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    /// Window lengths offered: (days, label, selected).
    pub days: Vec<(u32, String, bool)>,
    /// Every service the environment has events of, suggested as the reader types:
    /// a drop-down of 10k services (the 10M-event benchmark) could not be read.
    pub services: Vec<String>,
    /// The service shown, empty for all.
    pub service: String,
    /// The environment.
    pub environment: String,
    /// `as_of`, when the reader pinned it.
    pub as_of: Option<String>,
}

/// The metrics, in card order: the four keys, then the rework rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    DeploymentFrequency,
    LeadTime,
    ChangeFailureRate,
    TimeToRestore,
    ReworkRate,
}

const METRICS: [Metric; 5] = [
    Metric::DeploymentFrequency,
    Metric::LeadTime,
    Metric::ChangeFailureRate,
    Metric::TimeToRestore,
    Metric::ReworkRate,
];

/// A display unit: its name and the factor from the metric's base unit.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Unit {
    name: &'static str,
    /// The name after exactly 1 (`hour`).
    one: &'static str,
    factor: f64,
    /// How a difference reads in this unit (`points` for percentages).
    change_name: &'static str,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::DeploymentFrequency => "Deployment frequency",
            Metric::LeadTime => "Lead time for changes",
            Metric::ChangeFailureRate => "Change failure rate",
            Metric::TimeToRestore => "Time to restore",
            Metric::ReworkRate => "Rework rate",
        }
    }

    fn higher_is_better(self) -> bool {
        self == Metric::DeploymentFrequency
    }

    /// The value in the base unit: per day, seconds, or a fraction.
    fn value(self, r: &Report) -> Option<f64> {
        match self {
            Metric::DeploymentFrequency => Some(r.deployment_frequency.per_day),
            Metric::LeadTime => r.lead_time.median_seconds,
            Metric::ChangeFailureRate => r.change_failure_rate.rate,
            Metric::TimeToRestore => r.time_to_restore.median_seconds,
            Metric::ReworkRate => r.rework_rate.rate,
        }
    }

    /// The level's badge, `None` for a metric DORA publishes no levels for.
    fn badge(self, r: &Report) -> Option<Badge> {
        let level = match self {
            Metric::DeploymentFrequency => r.deployment_frequency.level,
            Metric::LeadTime => r.lead_time.level,
            Metric::ChangeFailureRate => r.change_failure_rate.level,
            Metric::TimeToRestore => r.time_to_restore.level,
            Metric::ReworkRate => return None,
        };
        Some(badge(level))
    }

    /// The unit that reads best for values up to `max` (base unit).
    fn unit(self, max: f64) -> Unit {
        let unit = |name, one, factor, change_name| Unit {
            name,
            one,
            factor,
            change_name,
        };
        match self {
            Metric::DeploymentFrequency if max >= 1.0 => unit("per day", "per day", 1.0, "per day"),
            Metric::DeploymentFrequency => unit("per week", "per week", 7.0, "per week"),
            Metric::ChangeFailureRate | Metric::ReworkRate => unit("%", "%", 100.0, "points"),
            Metric::LeadTime | Metric::TimeToRestore => {
                if max < 3600.0 {
                    unit("minutes", "minute", 1.0 / 60.0, "minutes")
                } else if max < 48.0 * 3600.0 {
                    unit("hours", "hour", 1.0 / 3600.0, "hours")
                } else {
                    unit("days", "day", 1.0 / 86400.0, "days")
                }
            }
        }
    }

    /// What a report's value is made of.
    fn detail(self, r: &Report) -> String {
        match self {
            Metric::DeploymentFrequency => format!(
                "{} in {}",
                count(
                    r.deployment_frequency.deploys,
                    "successful deploy",
                    "successful deploys"
                ),
                count(i64::from(r.window.days), "day", "days")
            ),
            Metric::LeadTime if r.lead_time.samples == 0 => {
                "no successful deploy with a commit time".to_owned()
            }
            Metric::LeadTime => format!(
                "median of {}",
                count(r.lead_time.samples, "deploy", "deploys")
            ),
            Metric::ChangeFailureRate if r.change_failure_rate.attempts == 0 => {
                "no deploy attempts".to_owned()
            }
            Metric::ChangeFailureRate => format!(
                "{} of {} failed",
                r.change_failure_rate.failed,
                count(r.change_failure_rate.attempts, "attempt", "attempts")
            ),
            Metric::TimeToRestore => format!(
                "{} restored · {} open",
                count(r.time_to_restore.samples, "incident", "incidents"),
                r.time_to_restore.open_incidents
            ),
            Metric::ReworkRate if r.rework_rate.attempts == 0 => "no deploy attempts".to_owned(),
            Metric::ReworkRate => format!(
                "{} of {} during an incident",
                r.rework_rate.rework,
                count(r.rework_rate.attempts, "attempt", "attempts")
            ),
        }
    }
}

/// `1 day`, `2 days`: `plural` is used for every count but one.
fn count(n: i64, one: &str, plural: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {plural}")
    }
}

/// A number as people read it: one decimal below 100, none when it is whole.
fn number(x: f64) -> String {
    let one = (x * 10.0).round() / 10.0;
    if x.abs() >= 100.0 || one == one.trunc() {
        format!("{x:.0}")
    } else {
        format!("{one:.1}")
    }
}

impl Unit {
    /// The unit's name after the number `shown`.
    fn after(self, shown: &str) -> &'static str {
        if shown == "1" {
            self.one
        } else {
            self.name
        }
    }
}

fn with_unit(x: f64, unit: Unit) -> String {
    let v = number(x * unit.factor);
    if unit.name == "%" {
        format!("{v}%")
    } else {
        format!("{v} {}", unit.after(&v))
    }
}

fn badge(level: Option<Level>) -> Badge {
    match level {
        Some(level) => Badge {
            text: level.as_str(),
            class: level.as_str(),
        },
        None => Badge {
            text: "no level",
            class: "none",
        },
    }
}

/// The direction words of CONTRACT.md 5.4, with a symbol for the value's movement.
fn direction(
    metric: Metric,
    current: Option<f64>,
    prior: Option<f64>,
) -> (&'static str, &'static str) {
    match (current, prior) {
        (Some(c), Some(p)) if c == p => ("no change", "="),
        (Some(c), Some(p)) => {
            let rose = c > p;
            let symbol = if rose { "▲" } else { "▼" };
            if rose == metric.higher_is_better() {
                ("better", symbol)
            } else {
                ("worse", symbol)
            }
        }
        _ => ("no data to compare", "–"),
    }
}

/// A length of time for "open for": the two largest units.
fn span(d: TimeDelta) -> String {
    let minutes = d.num_minutes().max(0);
    let (days, hours, mins) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    if days > 0 {
        format!("{} {hours} h", count(days, "day", "days"))
    } else if hours > 0 && mins == 0 {
        format!("{hours} h")
    } else if hours > 0 {
        format!("{hours} h {mins} min")
    } else if minutes > 0 {
        format!("{mins} min")
    } else {
        "under a minute".to_owned()
    }
}

/// A window's bound: with the weekday, which the weekly review goes by.
fn date(t: DateTime<Utc>) -> String {
    t.format("%a %-d %b %Y %H:%M").to_string()
}

/// A time in a table row.
fn when(t: DateTime<Utc>) -> String {
    t.format("%-d %b %Y %H:%M").to_string()
}

fn short_date(t: DateTime<Utc>) -> String {
    t.format("%b %-d").to_string()
}

/// `/path?days=..&as_of=..&service=..&environment=..`, encoded.
fn link(path: &str, query: &MetricsQuery, pinned: bool, service: Option<&str>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.append_pair("days", &query.days.to_string());
    if pinned {
        s.append_pair(
            "as_of",
            &query
                .as_of
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        );
    }
    if let Some(service) = service {
        s.append_pair("service", service);
    }
    s.append_pair("environment", &query.environment);
    format!("{path}?{}", s.finish())
}

impl Dashboard {
    /// The page for `query` from what [`load`] read. `pinned`: the reader gave `as_of`.
    pub fn build(query: &MetricsQuery, pinned: bool, inputs: Inputs) -> Dashboard {
        let current = inputs.trend.last().cloned().unwrap_or_else(|| empty(query));
        let prior = inputs
            .trend
            .len()
            .checked_sub(2)
            .and_then(|k| inputs.trend.get(k))
            .cloned();
        let cards = METRICS
            .into_iter()
            .map(|m| card(m, &current, prior.as_ref(), &inputs.trend))
            .collect();

        let mut by_service = inputs.by_service;
        by_service.sort_by(|a, b| {
            b.change_failure_rate
                .attempts
                .cmp(&a.change_failure_rate.attempts)
                .then_with(|| a.service.cmp(&b.service))
        });
        let services_total = by_service.len();
        let services = by_service
            .iter()
            .take(SERVICES_LISTED)
            .map(|r| {
                let name = r.service.clone().unwrap_or_default();
                ServiceRow {
                    url: link("/dashboard", query, pinned, Some(&name)),
                    name,
                    attempts: r.change_failure_rate.attempts,
                    cells: METRICS
                        .into_iter()
                        .map(|m| Cell {
                            value: m
                                .value(r)
                                .map_or_else(|| "no data".to_owned(), |v| with_unit(v, m.unit(v))),
                            level: m.badge(r),
                        })
                        .collect(),
                }
            })
            .collect();

        let failures = inputs
            .failures
            .failures
            .iter()
            .map(|f| {
                let after = span(f.failed_by.occurred_at - f.occurred_at);
                let failed_by = match f.failed_by.kind.as_str() {
                    "deploy" => "the attempt itself failed".to_owned(),
                    "rollback" => format!("rolled back {after} later"),
                    "incident_opened" => format!("an incident opened {after} later"),
                    other => format!("{other} {after} later"),
                };
                FailureRow {
                    service: f.service.clone(),
                    short_sha: f.git_sha.chars().take(10).collect(),
                    git_sha: f.git_sha.clone(),
                    when: when(f.occurred_at),
                    failed_by,
                    failed_by_id: f.failed_by.id.clone(),
                }
            })
            .collect();

        let window_end = current.window.end;
        let open_incidents = inputs
            .open_incidents
            .iter()
            .map(|o| OpenRow {
                ref_id: o.ref_id.clone(),
                service: o.service.clone(),
                opened: when(o.opened_at),
                open_for: span(window_end - o.opened_at),
            })
            .collect();

        let mut day_choices = vec![1, 7, 14, 28, 30, 90];
        if !day_choices.contains(&query.days) {
            day_choices.push(query.days);
            day_choices.sort_unstable();
        }
        let service = query.service.as_deref();
        // A typed name the environment has no event of (a typo, another environment's
        // service) would otherwise show a page of zeros as if the service were idle.
        let unknown_service = service.is_some_and(|s| !inputs.services.iter().any(|k| k == s));
        let form = Form {
            days: day_choices
                .into_iter()
                .map(|d| (d, count(i64::from(d), "day", "days"), d == query.days))
                .collect(),
            services: inputs.services,
            service: service.unwrap_or_default().to_owned(),
            environment: query.environment.clone(),
            as_of: pinned.then(|| {
                query
                    .as_of
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            }),
        };

        let w = current.window;
        Dashboard {
            alerts: Vec::new(),
            scope: service.unwrap_or("all services").to_owned(),
            environment: query.environment.clone(),
            window_text: format!("{} days, {} to {} UTC", w.days, date(w.start), date(w.end)),
            prior_text: prior.as_ref().map_or_else(String::new, |p| {
                format!("{} to {}", date(p.window.start), date(p.window.end))
            }),
            cards,
            services,
            services_total,
            failures,
            failures_total: inputs.failures.total,
            open_incidents,
            open_total: current.time_to_restore.open_incidents,
            form,
            unknown_service,
            dora_url: link("/dora", query, pinned, service),
            trend_url: link("/dora/trend", query, pinned, service),
            failures_url: link("/dora/failures", query, pinned, service),
            all_services_url: service.map(|_| link("/dashboard", query, pinned, None)),
            levels: current.levels,
        }
    }
}

/// A report of nothing, should the trend come back empty (it never does: the trend
/// always holds its windows).
fn empty(query: &MetricsQuery) -> Report {
    Report::assemble(
        query.window(),
        query.service.clone(),
        query.environment.clone(),
        dora::Counts::default(),
    )
}

fn card(metric: Metric, current: &Report, prior: Option<&Report>, trend: &[Report]) -> Card {
    let now_value = metric.value(current);
    let prior_value = prior.and_then(|p| metric.value(p));
    // Each value reads in its own unit; the change in the larger one's.
    let unit = metric.unit(now_value.into_iter().chain(prior_value).fold(0.0, f64::max));
    let (direction, symbol) = direction(metric, now_value, prior_value);
    let change = match (now_value, prior_value) {
        (Some(c), Some(p)) if c != p => {
            let d = (c - p) * unit.factor;
            let sign = if d > 0.0 { "+" } else { "−" };
            let shown = number(d.abs());
            let name = if shown == "1" && unit.change_name == unit.name {
                unit.one
            } else {
                unit.change_name
            };
            format!("{sign}{shown} {name}")
        }
        _ => String::new(),
    };
    let chart_unit = metric.unit(
        trend
            .iter()
            .filter_map(|r| metric.value(r))
            .fold(0.0, f64::max),
    );
    let points: Vec<Point> = trend
        .iter()
        .map(|r| Point {
            label: short_date(r.window.start),
            title: format!(
                "{} to {}",
                short_date(r.window.start),
                short_date(r.window.end)
            ),
            value: metric.value(r).map(|v| v * chart_unit.factor),
        })
        .collect();
    Card {
        name: metric.name(),
        polarity: if metric.higher_is_better() {
            "higher is better"
        } else {
            "lower is better"
        },
        value: now_value.map_or_else(
            || "no data".to_owned(),
            |v| number(v * metric.unit(v).factor),
        ),
        unit: now_value.map_or_else(String::new, |v| {
            let unit = metric.unit(v);
            unit.after(&number(v * unit.factor)).to_owned()
        }),
        detail: metric.detail(current),
        level: metric.badge(current),
        prior: prior_value.map_or_else(|| "no data".to_owned(), |v| with_unit(v, metric.unit(v))),
        prior_detail: prior.map_or_else(String::new, |p| metric.detail(p)),
        direction,
        symbol,
        change,
        chart: chart::render(&Chart {
            name: metric.name(),
            unit: chart_unit.name,
            caption: &format!(
                "{} windows of {}",
                points.len(),
                count(i64::from(current.window.days), "day", "days")
            ),
            points: &points,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dora::failures::{FailedBy, Failure};
    use crate::dora::Counts;

    const EVIL: &str = r#"<script>alert('x')</script>"&"#;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// The week to March 16 2026 in prod, for one service or all.
    fn week(service: Option<&str>) -> MetricsQuery {
        MetricsQuery {
            days: 7,
            offset: 0,
            as_of: at("2026-03-16T00:00:00Z"),
            service: service.map(str::to_owned),
            environment: "prod".to_owned(),
        }
    }

    /// What [`load`] reads from a store with nothing in it, for `query`.
    fn quiet(query: &MetricsQuery) -> Inputs {
        let nothing = Report::assemble(
            query.window(),
            query.service.clone(),
            query.environment.clone(),
            Counts::default(),
        );
        Inputs {
            trend: vec![nothing; TREND_WINDOWS as usize],
            by_service: Vec::new(),
            failures: Failures {
                window: query.window(),
                service: query.service.clone(),
                environment: query.environment.clone(),
                total: 0,
                failures: Vec::new(),
            },
            open_incidents: Vec::new(),
            services: Vec::new(),
        }
    }

    /// Every string that could come from an event (or a parameter) holds markup; the
    /// template must print all of it as text, wherever it lands (text, attributes).
    #[test]
    fn the_template_escapes_everything_it_prints() {
        let query = MetricsQuery {
            days: 7,
            offset: 0,
            as_of: at("2026-03-16T00:00:00Z"),
            service: Some(EVIL.to_owned()),
            environment: EVIL.to_owned(),
        };
        let report = |offset: u32, service: Option<String>| {
            let counts = Counts {
                deploys: 3,
                attempts: 4,
                failed: 1,
                ..Counts::default()
            };
            let window = MetricsQuery {
                offset,
                ..query.clone()
            }
            .window();
            Report::assemble(window, service, EVIL.to_owned(), counts)
        };
        let trend = (0..TREND_WINDOWS)
            .map(|k| report((TREND_WINDOWS - 1 - k) * 7, query.service.clone()))
            .collect();
        let inputs = Inputs {
            trend,
            by_service: vec![report(0, Some(EVIL.to_owned()))],
            failures: Failures {
                window: query.window(),
                service: query.service.clone(),
                environment: EVIL.to_owned(),
                total: 2,
                failures: vec![Failure {
                    deploy_id: EVIL.to_owned(),
                    service: EVIL.to_owned(),
                    git_sha: EVIL.to_owned(),
                    occurred_at: at("2026-03-10T00:00:00Z"),
                    failed_by: FailedBy {
                        id: EVIL.to_owned(),
                        kind: EVIL.to_owned(),
                        occurred_at: at("2026-03-10T01:00:00Z"),
                    },
                }],
            },
            open_incidents: vec![OpenIncident {
                ref_id: EVIL.to_owned(),
                service: EVIL.to_owned(),
                opened_at: at("2026-03-12T00:00:00Z"),
            }],
            services: vec![EVIL.to_owned()],
        };
        let html = Dashboard::build(&query, true, inputs).render().unwrap();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("alert('x')"), "{html}");
        assert!(!html.contains("\"&\""), "{html}");
        // Shown as text: in the title, the heading, the form, the per-service table,
        // the failure (service, sha, event, kind) and the open incident (ref, service).
        let escaped = "&#60;script&#62;alert(&#39;x&#39;)&#60;/script&#62;&#34;&#38;";
        assert!(html.matches(escaped).count() >= 10, "{html}");
        // The links carry it URL-encoded.
        assert!(html.contains("service=%3Cscript%3Ealert%28%27x%27%29%3C%2Fscript%3E%22%26"));
    }

    /// Thousands of services: the busiest are listed, the page says how many there are.
    #[test]
    fn the_by_service_table_lists_the_busiest() {
        let query = week(None);
        let report = |service: Option<String>, attempts: i64| {
            let counts = Counts {
                attempts,
                ..Counts::default()
            };
            Report::assemble(query.window(), service, "prod".to_owned(), counts)
        };
        let by_service: Vec<Report> = (0..SERVICES_LISTED as i64 + 10)
            .map(|i| report(Some(format!("svc-{i:03}")), (i * 37) % 101))
            .collect();
        let busiest = (0..SERVICES_LISTED as i64 + 10).max_by_key(|i| ((i * 37) % 101, -i));
        let inputs = Inputs {
            by_service,
            ..quiet(&query)
        };
        let page = Dashboard::build(&query, false, inputs);
        assert_eq!(page.services.len(), SERVICES_LISTED);
        assert_eq!(page.services_total, SERVICES_LISTED + 10);
        assert_eq!(
            page.services[0].name,
            format!("svc-{:03}", busiest.unwrap())
        );
        assert!(page
            .services
            .windows(2)
            .all(|w| w[0].attempts >= w[1].attempts));
        let html = page.render().unwrap();
        assert!(html.contains("Showing the 50 with the most attempts of 60 services"));
    }

    /// The service field keeps the name shown, suggests every known service, and a
    /// name the environment has no event of is named as such.
    #[test]
    fn the_service_field_suggests_and_an_unknown_name_is_said() {
        let page = |service: Option<&str>| {
            let query = week(service);
            let inputs = Inputs {
                services: vec!["api".to_owned(), "web".to_owned()],
                ..quiet(&query)
            };
            Dashboard::build(&query, false, inputs).render().unwrap()
        };
        let notice = "No deploy or incident of";
        let all = page(None);
        assert!(all.contains("list=\"service-names\" value=\"\""), "{all}");
        assert!(all.contains("<option value=\"api\">") && all.contains("<option value=\"web\">"));
        assert!(!all.contains(notice));
        let known = page(Some("web"));
        assert!(
            known.contains("list=\"service-names\" value=\"web\""),
            "{known}"
        );
        assert!(!known.contains(notice));
        let unknown = page(Some("wbe"));
        assert!(
            unknown.contains("No deploy or incident of wbe is recorded in prod"),
            "{unknown}"
        );
    }

    /// The rework card: a share of the attempts like the failure rate, but no level
    /// (DORA publishes none), on the card and in the by-service table.
    #[test]
    fn the_rework_card_has_a_rate_and_no_level() {
        let query = week(None);
        let report = |offset: u32, rework: i64, attempts: i64| {
            let window = MetricsQuery {
                offset,
                ..query.clone()
            }
            .window();
            let counts = Counts {
                deploys: attempts,
                attempts,
                rework,
                ..Counts::default()
            };
            Report::assemble(window, None, "prod".to_owned(), counts)
        };
        let mut trend = quiet(&query).trend;
        let last = trend.len() - 1;
        trend[last - 1] = report(7, 1, 4);
        trend[last] = report(0, 2, 6);
        let by_service = vec![Report {
            service: Some("api".to_owned()),
            ..report(0, 2, 6)
        }];
        let inputs = Inputs {
            trend,
            by_service,
            ..quiet(&query)
        };
        let page = Dashboard::build(&query, false, inputs);
        let card = page.cards.last().unwrap();
        assert_eq!(card.name, "Rework rate");
        assert_eq!((card.value.as_str(), card.unit.as_str()), ("33.3", "%"));
        assert_eq!(card.detail, "2 of 6 attempts during an incident");
        assert_eq!(card.prior, "25%");
        assert_eq!((card.direction, card.symbol), ("worse", "▲"));
        assert_eq!(card.change, "+8.3 points");
        assert_eq!(card.level, None);
        assert!(page.cards[..4].iter().all(|c| c.level.is_some()));
        let cells = &page.services[0].cells;
        assert_eq!(cells.len(), 5);
        assert_eq!(cells[4].value, "33.3%");
        assert_eq!(cells[4].level, None);
        assert!(cells[..4].iter().all(|c| c.level.is_some()));
        let html = page.render().unwrap();
        assert!(html.contains("<h2>Rework rate </h2>"), "{html}");
    }

    /// What a card says its value is made of, with and without anything to make it of.
    #[test]
    fn details_of_a_window() {
        let query = week(None);
        let nothing = quiet(&query).trend.pop().unwrap();
        let something = Report::assemble(
            query.window(),
            None,
            "prod".to_owned(),
            Counts {
                deploys: 3,
                lead_samples: 2,
                failed: 1,
                attempts: 4,
                rework: 1,
                restore_samples: 1,
                open_incidents: 2,
                ..Counts::default()
            },
        );
        let details = |r: &Report| -> Vec<String> { METRICS.iter().map(|m| m.detail(r)).collect() };
        assert_eq!(
            details(&nothing),
            [
                "0 successful deploys in 7 days",
                "no successful deploy with a commit time",
                "no deploy attempts",
                "0 incidents restored · 0 open",
                "no deploy attempts",
            ]
        );
        assert_eq!(
            details(&something),
            [
                "3 successful deploys in 7 days",
                "median of 2 deploys",
                "1 of 4 attempts failed",
                "1 incident restored · 2 open",
                "1 of 4 attempts during an incident",
            ]
        );
    }

    #[test]
    fn directions_follow_each_metrics_polarity() {
        use Metric::*;
        assert_eq!(
            direction(DeploymentFrequency, Some(2.0), Some(1.0)),
            ("better", "▲")
        );
        assert_eq!(
            direction(DeploymentFrequency, Some(1.0), Some(2.0)),
            ("worse", "▼")
        );
        for m in [LeadTime, ChangeFailureRate, TimeToRestore, ReworkRate] {
            assert_eq!(direction(m, Some(2.0), Some(1.0)), ("worse", "▲"));
            assert_eq!(direction(m, Some(1.0), Some(2.0)), ("better", "▼"));
            assert_eq!(direction(m, Some(1.0), Some(1.0)), ("no change", "="));
            assert_eq!(direction(m, None, Some(1.0)), ("no data to compare", "–"));
            assert_eq!(direction(m, Some(1.0), None), ("no data to compare", "–"));
        }
    }

    #[test]
    fn human_units() {
        assert_eq!(with_unit(5400.0, lead_unit(5400.0)), "1.5 hours");
        assert_eq!(with_unit(3600.0, lead_unit(3600.0)), "1 hour");
        assert_eq!(with_unit(1800.0, lead_unit(1800.0)), "30 minutes");
        assert_eq!(with_unit(3.0 * 86400.0, lead_unit(3.0 * 86400.0)), "3 days");
        assert_eq!(
            with_unit(47.0 * 3600.0, lead_unit(47.0 * 3600.0)),
            "47 hours"
        );
        assert_eq!(with_unit(48.0 * 3600.0, lead_unit(48.0 * 3600.0)), "2 days");
        let df = Metric::DeploymentFrequency;
        assert_eq!(with_unit(0.286, df.unit(0.286)), "2 per week");
        assert_eq!(with_unit(2.5, df.unit(2.5)), "2.5 per day");
        let cfr = Metric::ChangeFailureRate;
        assert_eq!(with_unit(0.1667, cfr.unit(0.1667)), "16.7%");
        let rework = Metric::ReworkRate;
        assert_eq!(with_unit(0.3333, rework.unit(0.3333)), "33.3%");
        assert_eq!(span(TimeDelta::minutes(90)), "1 h 30 min");
        assert_eq!(span(TimeDelta::hours(50)), "2 days 2 h");
        assert_eq!(span(TimeDelta::seconds(20)), "under a minute");
    }

    fn lead_unit(seconds: f64) -> Unit {
        Metric::LeadTime.unit(seconds)
    }
}
