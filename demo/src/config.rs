//! The demo command's settings, from flags or the environment.

use std::fmt;

use chrono::{DateTime, Utc};
use clap::Parser;

/// dora-demo: sends a realistic, reproducible delivery history to dora-ingest.
///
/// The same seed, days, services and end time send the same events with the same
/// ids, so running it again adds nothing.
#[derive(Clone, Parser)]
#[command(name = "dora-demo", version)]
pub struct Config {
    /// The ingest gateway's base URL.
    #[arg(long, env = "DORA_URL", default_value = "http://127.0.0.1:8081")]
    pub url: String,
    /// An ingest token's secret (one of DORA_INGEST_TOKENS). Not needed with --print.
    #[arg(
        long,
        env = "DORA_TOKEN",
        hide_env_values = true,
        required_unless_present = "print"
    )]
    pub token: Option<String>,
    /// Seed of the history; part of every event id.
    #[arg(long, env = "DORA_DEMO_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Days of history.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Number of services: checkout (elite), billing (struggling), search (regressing
    /// in the last week), then ordinary ones.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub services: u16,
    /// Events per POST /events request (1-1000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch: u16,
    /// When the history ends (RFC 3339); default now. Pass the same value again to
    /// send byte-identical events.
    #[arg(long, value_parser = parse_time)]
    pub as_of: Option<DateTime<Utc>>,
    /// dora-api's base URL: when given, wait until /dora shows the whole history.
    #[arg(long)]
    pub api: Option<String>,
    /// Seconds to wait for the API with --api.
    #[arg(long, default_value_t = 120)]
    pub wait_secs: u64,
    /// Print the events as JSON lines instead of sending them.
    #[arg(long)]
    pub print: bool,
}

// By hand, so the token never reaches a log.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("seed", &self.seed)
            .field("days", &self.days)
            .field("services", &self.services)
            .field("batch", &self.batch)
            .field("as_of", &self.as_of)
            .field("api", &self.api)
            .field("wait_secs", &self.wait_secs)
            .field("print", &self.print)
            .finish()
    }
}

fn parse_time(value: &str) -> Result<DateTime<Utc>, String> {
    let t = DateTime::parse_from_rfc3339(value)
        .map_err(|e| format!("not an RFC 3339 time: {e}"))?
        .with_timezone(&Utc);
    // The gateway refuses events more than 5 minutes ahead; a history ending in the
    // future would fail half-way through.
    if t > Utc::now() {
        return Err("is in the future; the history must end now or earlier".to_owned());
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_refused_by_name_and_the_token_is_not_shown() {
        let err = Config::try_parse_from(["dora-demo", "--print", "--days", "0"]).unwrap_err();
        assert!(err.to_string().contains("--days"), "{err}");
        let err =
            Config::try_parse_from(["dora-demo", "--print", "--as-of", "2999-01-01T00:00:00Z"])
                .unwrap_err();
        assert!(err.to_string().contains("future"), "{err}");
        let config =
            Config::try_parse_from(["dora-demo", "--token", "s3cret-s3cret-s3cret"]).unwrap();
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
