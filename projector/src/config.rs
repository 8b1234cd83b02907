//! The projector's settings, from flags or the environment.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use dora_event::settings::{DatabaseSettings, LogSettings, StreamSettings};
use dora_event::signature::Sources;

/// dora-projector: appends every event of the stream, once, to the PostgreSQL event log.
#[derive(Debug, Clone, Parser)]
#[command(name = "dora-projector", version)]
pub struct Config {
    /// What to do; without a command the projector runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Where the stream lives.
    #[command(flatten)]
    pub stream: StreamSettings,
    /// Where the store lives; the projector owns and migrates its schema.
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// Keys the gateways sign each event's `source` with, comma-separated, each at
    /// least 32 characters. A `Dora-Source` signed by any of them is kept; one missing,
    /// unsigned or wrongly signed is stored as `nats` and counted. List the new key
    /// beside the old one while rotating. Without it every claimed source is kept
    /// unverified, and the projector warns at start.
    #[arg(long = "source-key", env = "DORA_SOURCE_KEY", value_name = "DORA_SOURCE_KEY", value_parser = Sources::parse, hide_env_values = true)]
    pub sources: Option<Sources>,
    /// Name of the durable JetStream consumer; its position survives restarts. Default:
    /// `dora-projector-<store id>`, the store's own, so two stores never share one.
    #[arg(long, env = "DORA_PROJECTOR_CONSUMER")]
    pub consumer: Option<String>,
    /// Most messages written in one transaction.
    #[arg(long, env = "DORA_PROJECTOR_BATCH", value_name = "DORA_PROJECTOR_BATCH", default_value_t = 1000, value_parser = batch_size)]
    pub batch_size: usize,
    /// An empty store whose own consumer does not exist yet (a new database, a first
    /// start on a stream that already holds a backfill) is built by replay's bulk path
    /// before following, when the stream holds at least this many messages; 0: never.
    #[arg(
        long,
        env = "DORA_PROJECTOR_BULK_FROM",
        value_name = "DORA_PROJECTOR_BULK_FROM",
        default_value_t = 50_000
    )]
    pub bulk_from: u64,
    /// Seconds JetStream waits for an ack before it delivers a message again.
    #[arg(long, env = "DORA_PROJECTOR_ACK_WAIT_SECS", value_name = "DORA_PROJECTOR_ACK_WAIT_SECS", default_value = "30", value_parser = seconds)]
    pub ack_wait: Duration,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(
        long,
        env = "DORA_PROJECTOR_ADDR",
        value_name = "DORA_PROJECTOR_ADDR",
        default_value = "127.0.0.1:8082"
    )]
    pub addr: SocketAddr,
    /// How the projector logs.
    #[command(flatten)]
    pub log: LogSettings,
}

/// The projector's commands.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum Command {
    /// Follow the stream and append new events (the default).
    Run,
    /// Rebuild the store from the first message of the stream, then swap it in atomically.
    Replay,
}

fn batch_size(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (1..=10_000).contains(&n) => Ok(n),
        _ => Err("a whole number from 1 to 10000".to_owned()),
    }
}

fn seconds(value: &str) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(s) if s > 0 => Ok(Duration::from_secs(s)),
        _ => Err("a whole number of seconds, at least 1".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_setting_names_itself() {
        let err =
            Config::try_parse_from(["dora-projector", "--database-url", "mysql:/x"]).unwrap_err();
        assert!(err.to_string().contains("--database-url"), "{err}");
        let err =
            Config::try_parse_from(["dora-projector", "--subject-prefix", "a.>"]).unwrap_err();
        assert!(err.to_string().contains("--subject-prefix"), "{err}");
    }
}
