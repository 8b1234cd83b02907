//! dora-api: computes the DORA metrics (the four keys and the rework rate) from the event
//! log, on every request.
//!
//! # Layout
//!
//! - [`config`]: settings from flags or the environment.
//! - [`dashboard`]: the `/dashboard` page, its template in `templates/`.
//! - [`chart`]: trend charts as inline SVG.
//! - [`dora`]: the metrics over one window, in SQL.
//! - [`http`]: the routes.
//! - [`params`]: query-parameter checks, strict, per route.
//! - [`metrics`]: `GET /metrics`: request latency by route and the DORA gauges.
//! - [`openapi`]: the top of the document `/openapi.json` serves.
//! - [`alerts`]: regression alerts to Slack, and their state.
//! - [`auth`]: the optional read tokens.

pub mod alerts;
pub mod auth;
pub mod chart;
pub mod config;
pub mod dashboard;
pub mod dora;
mod error;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod params;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::Config;
pub use error::{Error, ErrorBody, Result};

/// A read-only pool on the live store. `lazy`: the API starts, and says so on
/// `/readyz`, even while the database is down.
pub fn connect(database_url: &str, max_connections: u32) -> Result<PgPool> {
    connect_with_timeout(database_url, max_connections, Duration::from_secs(30))
}

/// [`connect`], with queries cancelled after `statement_timeout`.
pub fn connect_with_timeout(
    database_url: &str,
    max_connections: u32,
    statement_timeout: Duration,
) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(database_url)?
        .options([
            ("search_path", dora_event::STORE_SCHEMA),
            // The API never writes; the database enforces it.
            ("default_transaction_read_only", "on"),
            // The metric queries take an optional `service`; a plan made for the actual
            // parameters uses the right index, a generic plan cannot.
            ("plan_cache_mode", "force_custom_plan"),
            // Per-service windows are grouped by hash, and a group too large to send
            // its values (dora::median) is sorted by PostgreSQL: with the server's
            // default 4 MB both went to temporary files at 10M events; 64 MB keeps them
            // in memory. Per sort or hash, and the pool is small (DORA_API_DB_CONNECTIONS).
            ("work_mem", "64MB"),
        ])
        .options([(
            "statement_timeout",
            format!("{}ms", statement_timeout.as_millis()),
        )])
        .application_name("dora-api");
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        // Two kept open: a metrics query reads its halves on two at once when the
        // second is idle (dora::grouped), and never waits to open one.
        .min_connections(2.min(max_connections))
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// Serves the API on `listener` until `shutdown` turns true.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    // Settings first: a malformed one stops the process before it serves anything.
    let slack = alerts::Slack::new(config.alerts.webhook()?)?;
    if !slack.has_webhook() {
        tracing::info!("DORA_SLACK_WEBHOOK_URL not set: alerts are only logged");
    }
    let mut alert_settings = config.alerts.clone();
    if alert_settings.public_url.is_none() {
        let base = format!("http://{}", listener.local_addr()?);
        alert_settings.public_url = Some(base.parse().map_err(|e| Error::Setting {
            name: "DORA_PUBLIC_URL",
            message: format!("the default from DORA_API_ADDR, {base}, is not a URL: {e}"),
        })?);
    }
    let pool = connect_with_timeout(
        &config.database.url,
        config.db_connections,
        config.statement_timeout,
    )?;
    let pools = alerts::Pools {
        store: pool.clone(),
        // Its own database when DATABASE_URL is a read replica: the store pool is
        // read-only, and this pool is the only one that writes.
        alerts: alerts::store::connect(config.alerts.database_url_or(&config.database.url), 2)?,
    };
    let metrics = metrics::ApiMetrics::new(pool.clone());
    let checker = tokio::spawn(alerts::run(
        pools.clone(),
        alert_settings,
        slack,
        metrics.clone(),
        shutdown.clone(),
    ));
    tracing::info!(addr = ?listener.local_addr().ok(), "dora api listening");
    let state = http::AppState {
        pool: pool.clone(),
        alerts: pools.alerts.clone(),
    };
    let app = metrics.instrument(http::app(state), |app| auth::guard(app, config.tokens));
    let limits = dora_event::serve::Limits {
        settings: config.http,
        on_timeout: "ask for a shorter window or one service, or retry shortly",
    };
    let served = dora_event::serve::serve(listener, app, limits, shutdown).await;
    // The loop sees the same shutdown; an undelivered message waits in the outbox.
    let _ = checker.await;
    pools.alerts.close().await;
    pool.close().await;
    served?;
    Ok(())
}
