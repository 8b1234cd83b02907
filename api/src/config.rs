//! The API's settings, from flags or the environment.

use std::fmt;
use std::net::SocketAddr;

use clap::Parser;

/// dora-api: the four DORA metrics, computed from the event log on every request.
#[derive(Clone, Parser)]
#[command(name = "dora-api", version)]
pub struct Config {
    /// PostgreSQL holding the event log (read only; dora-projector owns the schema).
    #[arg(long, env = "DATABASE_URL", value_name = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/dora", value_parser = database_url)]
    pub database_url: String,
    /// Address to listen on.
    #[arg(
        long,
        env = "DORA_API_ADDR",
        value_name = "DORA_API_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub addr: SocketAddr,
    /// Slack incoming-webhook URL for alerts; without it alerts are only logged.
    #[arg(
        long,
        env = "DORA_SLACK_WEBHOOK_URL",
        value_name = "DORA_SLACK_WEBHOOK_URL",
        hide_env_values = true
    )]
    pub slack_webhook_url: Option<String>,
    /// Most database connections the API holds.
    #[arg(
        long,
        env = "DORA_API_DB_CONNECTIONS",
        value_name = "DORA_API_DB_CONNECTIONS",
        default_value_t = 8
    )]
    pub db_connections: u32,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact(&self.database_url))
            .field("addr", &self.addr)
            .field(
                "slack_webhook_url",
                &self.slack_webhook_url.as_ref().map(|_| "***"),
            )
            .field("db_connections", &self.db_connections)
            .finish()
    }
}

fn redact(url: &str) -> String {
    match url.parse::<sqlx::postgres::PgConnectOptions>() {
        Ok(o) => format!(
            "postgres://{}@{}:{}/{}",
            o.get_username(),
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or("")
        ),
        Err(_) => "<unparseable>".to_owned(),
    }
}

fn database_url(value: &str) -> Result<String, String> {
    if !(value.starts_with("postgres://") || value.starts_with("postgresql://")) {
        return Err("must start with postgres:// or postgresql://".to_owned());
    }
    value
        .parse::<sqlx::postgres::PgConnectOptions>()
        .map(|_| value.to_owned())
        .map_err(|e| format!("not a PostgreSQL URL: {e}"))
}
