//! The API's settings, from flags or the environment.

use std::fmt;
use std::net::SocketAddr;

use clap::Parser;
use dora_event::settings::{DatabaseSettings, HttpSettings, LogSettings};
use dora_event::tokens::Tokens;

use crate::alerts::AlertSettings;

/// dora-api: the DORA metrics, computed from the event log on every request.
#[derive(Clone, Parser)]
#[command(name = "dora-api", version)]
pub struct Config {
    /// Where the store lives (read only; dora-projector owns the schema). It may be a
    /// read replica when `DORA_ALERTS_DATABASE_URL` names the writable primary.
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// Address to listen on.
    #[arg(
        long,
        env = "DORA_API_ADDR",
        value_name = "DORA_API_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub addr: SocketAddr,
    /// Most database connections the API holds, 1-1000 (0 would answer nothing).
    #[arg(
        long,
        env = "DORA_API_DB_CONNECTIONS",
        value_name = "DORA_API_DB_CONNECTIONS",
        default_value_t = 8,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub db_connections: u32,
    /// Longest one metrics query may run (`30s`, `2m`); PostgreSQL then cancels it and
    /// the caller gets a `503`, so a whole-history question cannot hold the pool.
    #[arg(
        long,
        env = "DORA_API_STATEMENT_TIMEOUT",
        value_name = "DORA_API_STATEMENT_TIMEOUT",
        default_value = "30s",
        value_parser = statement_timeout
    )]
    pub statement_timeout: std::time::Duration,
    /// Timeouts and the in-flight limit of the HTTP server.
    #[command(flatten)]
    pub http: HttpSettings,
    /// Read tokens as `name=secret` pairs, comma-separated (secrets at least 16
    /// characters). Unset, reads are open; set, every route but `/healthz` and `/readyz`
    /// needs one, as a bearer token or as the password of HTTP Basic.
    #[arg(long, env = "DORA_API_TOKENS", value_name = "DORA_API_TOKENS", value_parser = Tokens::parse, hide_env_values = true)]
    pub tokens: Option<Tokens>,
    /// How the API logs.
    #[command(flatten)]
    pub log: LogSettings,
    /// Regression alerts: when to check, what counts, where to send.
    #[command(flatten)]
    pub alerts: AlertSettings,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database", &self.database)
            .field("addr", &self.addr)
            .field("db_connections", &self.db_connections)
            .field("statement_timeout", &self.statement_timeout)
            .field("http", &self.http)
            .field("tokens", &self.tokens)
            .field("log", &self.log)
            .field("alerts", &self.alerts)
            .finish()
    }
}

fn statement_timeout(value: &str) -> Result<std::time::Duration, String> {
    match dora_event::duration::parse(value)? {
        d if d.is_zero() => Err("must be longer than 0s (0 would mean no limit)".to_owned()),
        d => Ok(d),
    }
}
