//! Settings the processes share (CONTRACT.md section 6).

use std::fmt;
use std::time::Duration;

/// Where the stream lives. Flattened into the gateway's and the projector's config; its
/// `Debug` hides credentials in `NATS_URL`.
#[derive(Clone, clap::Args)]
pub struct StreamSettings {
    /// NATS server with JetStream.
    #[arg(long, env = "NATS_URL", value_name = "NATS_URL", default_value = "nats://127.0.0.1:4222", value_parser = nats_url, hide_env_values = true)]
    pub nats_url: String,
    /// Name of the JetStream stream that holds every event.
    #[arg(long, env = "DORA_STREAM", value_name = "DORA_STREAM", default_value = "DORA_EVENTS", value_parser = stream_name)]
    pub stream: String,
    /// Subject prefix; events travel on `<prefix>.<environment>.<service>.<kind>`.
    #[arg(long, env = "DORA_SUBJECT_PREFIX", value_name = "DORA_SUBJECT_PREFIX", default_value = "dora.events", value_parser = subject_prefix)]
    pub subject_prefix: String,
    /// Copies of the stream JetStream keeps, 1-5: 3 on a three-node cluster survives the
    /// loss of a node. Used when dora creates the stream, and to raise an existing
    /// stream's count; a single server takes only 1.
    #[arg(long = "stream-replicas", env = "DORA_STREAM_REPLICAS", value_name = "DORA_STREAM_REPLICAS", default_value_t = 1, value_parser = replicas)]
    pub replicas: usize,
}

/// How a process logs. Flattened into every process's config.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct LogSettings {
    /// `text` for people (colour only when stderr is a terminal), `json` for log
    /// shippers: one JSON object per line.
    #[arg(long = "log-format", env = "DORA_LOG_FORMAT", value_name = "DORA_LOG_FORMAT", default_value = "text", value_parser = log_format)]
    pub format: LogFormat,
}

/// Limits on the HTTP server of the gateway and the API, so that no client can hold a
/// connection, or the process's shutdown, for ever. Flattened into both configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct HttpSettings {
    /// Longest a client may take to send a request's headers (`10s`); a connection that
    /// sends nothing for as long after its last answer is closed too.
    #[arg(long = "http-header-timeout", env = "DORA_HTTP_HEADER_TIMEOUT", value_name = "DORA_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub header_timeout: Duration,
    /// Longest one request may take, its body included (`60s`); past it the request is
    /// stopped and answered `503` with `Retry-After`.
    #[arg(long = "http-request-timeout", env = "DORA_HTTP_REQUEST_TIMEOUT", value_name = "DORA_HTTP_REQUEST_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub request_timeout: Duration,
    /// Most requests served at once, 1-100000; one more is answered `503` with
    /// `Retry-After` at once rather than queued. `/healthz` is never refused.
    #[arg(long = "http-max-in-flight", env = "DORA_HTTP_MAX_IN_FLIGHT", value_name = "DORA_HTTP_MAX_IN_FLIGHT", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_in_flight: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_in_flight: 256,
        }
    }
}

/// A duration longer than zero: a limit of `0s` would refuse everything.
pub fn positive_duration(value: &str) -> Result<Duration, String> {
    match crate::duration::parse(value)? {
        d if d.is_zero() => Err("must be longer than 0s".to_owned()),
        d => Ok(d),
    }
}

/// The shape of log lines on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the store lives. Flattened into the projector's and the API's config; its
/// `Debug` hides the password, so a config can be logged whole.
#[cfg(feature = "database")]
#[derive(Clone, clap::Args)]
pub struct DatabaseSettings {
    /// PostgreSQL holding the store; dora-projector owns and migrates its schema,
    /// dora-api reads it (and keeps its alert state there unless
    /// DORA_ALERTS_DATABASE_URL names another database).
    #[arg(
        long = "database-url",
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/dora",
        value_parser = database_url,
        hide_env_values = true
    )]
    pub url: String,
}

impl fmt::Debug for StreamSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSettings")
            .field("nats_url", &redact_nats_url(&self.nats_url))
            .field("stream", &self.stream)
            .field("subject_prefix", &self.subject_prefix)
            .field("replicas", &self.replicas)
            .finish()
    }
}

/// `NATS_URL` fit for logs: a NATS URL's user part may be a bare token
/// (`nats://s3cret@host`), so all of it goes, not only a password. It may list several
/// servers, comma-separated.
pub fn redact_nats_url(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let url = url.trim();
            match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    format!("{}***{}", &url[..scheme + 3], &url[at..])
                }
                (None, Some(at)) => format!("***{}", &url[at..]),
                _ => url.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(feature = "database")]
impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

/// The URL without its password, fit for logs. The query string goes too: it can
/// carry a password as well.
pub fn redact_url(url: &str) -> String {
    let url = url.split_once('?').map_or(url, |(base, _)| base);
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Checks a PostgreSQL URL (`DATABASE_URL`, and any other database setting a process
/// adds); the message never quotes it, since it may hold a password.
#[cfg(feature = "database")]
pub fn database_url(value: &str) -> Result<String, String> {
    if !(value.starts_with("postgres://") || value.starts_with("postgresql://")) {
        return Err("must start with postgres:// or postgresql://".to_owned());
    }
    value
        .parse::<sqlx::postgres::PgConnectOptions>()
        .map(|_| value.to_owned())
        .map_err(|e| format!("not a PostgreSQL URL: {e}"))
}

// A parser of our own rather than clap's value enum: its message says what is accepted
// even where the process hides refused values (they may be secrets elsewhere).
fn log_format(value: &str) -> Result<LogFormat, String> {
    match value {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("must be `text` or `json`".to_owned()),
    }
}

fn nats_url(value: &str) -> Result<String, String> {
    crate::stream::parse_urls(value)
        .map(|_| value.to_owned())
        .map_err(|e| format!("not a NATS server address (or comma-separated list of them): {e}"))
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

/// `DORA_STREAM_REPLICAS`: JetStream keeps 1 to 5 copies of a stream.
fn replicas(value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(n @ 1..=5) => Ok(n),
        _ => Err(format!("`{value}` is not a replica count: JetStream keeps 1 to 5 copies (3 on a three-node cluster)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Http {
        #[command(flatten)]
        http: HttpSettings,
    }

    fn http(args: &[&str]) -> Result<HttpSettings, clap::Error> {
        use clap::Parser;
        Http::try_parse_from(std::iter::once("test").chain(args.iter().copied())).map(|h| h.http)
    }

    #[test]
    fn http_limits_default_as_documented_and_refuse_zero() {
        assert_eq!(http(&[]).unwrap(), HttpSettings::default());
        let set = http(&[
            "--http-header-timeout=2s",
            "--http-request-timeout=1m",
            "--http-max-in-flight=7",
        ])
        .unwrap();
        assert_eq!(
            (set.header_timeout, set.request_timeout, set.max_in_flight),
            (Duration::from_secs(2), Duration::from_secs(60), 7)
        );
        for zero in [
            "--http-header-timeout=0s",
            "--http-request-timeout=0s",
            "--http-max-in-flight=0",
        ] {
            assert!(http(&[zero]).is_err(), "{zero} accepted");
        }
    }

    #[test]
    #[cfg(feature = "database")]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            redact_url("postgres://dora:s3cret@db:5432/dora"),
            "postgres://dora:***@db:5432/dora"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/dora"),
            "postgres://postgres@127.0.0.1/dora"
        );
        assert_eq!(
            redact_url("postgres://dora@db/dora?password=s3cret"),
            "postgres://dora@db/dora"
        );
        let settings = DatabaseSettings {
            url: "postgres://dora:s3cret@db/dora".to_owned(),
        };
        assert!(!format!("{settings:?}").contains("s3cret"));
        let stream = StreamSettings {
            nats_url: "nats://dora-ingest:s3cret@nats:4222".to_owned(),
            stream: "DORA_EVENTS".to_owned(),
            subject_prefix: "dora.events".to_owned(),
            replicas: 1,
        };
        assert!(!format!("{stream:?}").contains("s3cret"));
    }

    #[test]
    fn replica_counts() {
        assert_eq!(replicas("3"), Ok(3));
        for bad in ["0", "6", "three", "-1", ""] {
            assert!(replicas(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nats_credentials_stay_out_of_logs() {
        assert_eq!(
            redact_nats_url("nats://user:pw@a:4222, nats://tok3n@b:4222,nats://c:4222"),
            "nats://***@a:4222,nats://***@b:4222,nats://c:4222"
        );
        assert_eq!(redact_nats_url("tok3n@b:4222"), "***@b:4222");
        let settings = StreamSettings {
            nats_url: "nats://dora:s3cret@n:4222".to_owned(),
            stream: "S".to_owned(),
            subject_prefix: "p".to_owned(),
            replicas: 3,
        };
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    #[test]
    #[cfg(feature = "database")]
    fn only_postgres_urls() {
        assert!(database_url("postgres://u@h/db").is_ok());
        assert!(database_url("postgresql://u@h/db").is_ok());
        assert!(database_url("mysql://u@h/db").is_err());
    }
}
