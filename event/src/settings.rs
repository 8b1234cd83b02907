//! Settings every process that touches the stream shares (CONTRACT.md section 6).

/// Where the stream lives. Flattened into the gateway's and the projector's config.
#[derive(Debug, Clone, clap::Args)]
pub struct StreamSettings {
    /// NATS server with JetStream.
    #[arg(long, env = "NATS_URL", value_name = "NATS_URL", default_value = "nats://127.0.0.1:4222", value_parser = nats_url)]
    pub nats_url: String,
    /// Name of the JetStream stream that holds every event.
    #[arg(long, env = "DORA_STREAM", value_name = "DORA_STREAM", default_value = "DORA_EVENTS", value_parser = stream_name)]
    pub stream: String,
    /// Subject prefix; events travel on `<prefix>.<environment>.<service>.<kind>`.
    #[arg(long, env = "DORA_SUBJECT_PREFIX", value_name = "DORA_SUBJECT_PREFIX", default_value = "dora.events", value_parser = subject_prefix)]
    pub subject_prefix: String,
}

fn nats_url(value: &str) -> Result<String, String> {
    value
        .parse::<async_nats::ServerAddr>()
        .map(|_| value.to_owned())
        .map_err(|e| format!("not a NATS server address: {e}"))
}

fn stream_name(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err("a stream name is letters, digits, _ and -".to_owned())
    }
}

fn subject_prefix(value: &str) -> Result<String, String> {
    crate::subject::check_prefix(value).map(|()| value.to_owned())
}
