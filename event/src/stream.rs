//! The JetStream stream that is dora's source of truth.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// How long JetStream remembers a `Nats-Msg-Id` to drop a repeated publish. Repeats
/// after that still leave one row: the projector inserts by event id.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Why the stream could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// JetStream did not answer, or refused.
    #[error("JetStream stream `{name}`: {source}")]
    JetStream {
        /// The stream name.
        name: String,
        /// What JetStream said.
        source: async_nats::Error,
    },
    /// A stream of that name exists but does not capture our subjects.
    #[error("JetStream stream `{name}` exists but does not capture `{wanted}` (its subjects: {have:?}); fix DORA_STREAM or DORA_SUBJECT_PREFIX")]
    Subjects {
        /// The stream name.
        name: String,
        /// The wildcard we publish under.
        wanted: String,
        /// What the existing stream captures.
        have: Vec<String>,
    },
}

/// The configuration dora creates the stream with: file storage, no age or size limit
/// (it is the source of truth), and no deletes or purges of single messages.
pub fn config(name: &str, prefix: &str) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        description: Some("dora lifecycle events: the source of truth".to_owned()),
        subjects: vec![crate::subject::wildcard(prefix)],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: DUPLICATE_WINDOW,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    }
}

/// Gets the stream, creating it when it is missing. An existing stream keeps its
/// configuration (an operator may have tuned replicas or limits), but it must capture
/// our subjects or nothing would ever be stored.
pub async fn ensure(
    js: &jetstream::Context,
    name: &str,
    prefix: &str,
) -> Result<stream::Stream, StreamError> {
    let mut stream = js
        .get_or_create_stream(config(name, prefix))
        .await
        .map_err(|e| StreamError::JetStream {
            name: name.to_owned(),
            source: e.into(),
        })?;
    let wanted = crate::subject::wildcard(prefix);
    let have = stream
        .info()
        .await
        .map_err(|e| StreamError::JetStream {
            name: name.to_owned(),
            source: e.into(),
        })?
        .config
        .subjects
        .clone();
    if have.iter().any(|s| s == &wanted || s == ">") {
        Ok(stream)
    } else {
        Err(StreamError::Subjects {
            name: name.to_owned(),
            wanted,
            have,
        })
    }
}

/// Connects to NATS at `urls` (one URL, or several of one cluster, comma-separated),
/// logging in with the credentials the first URL carries: `nats://user:password@host`,
/// or a bare token, `nats://token@host`. async-nats ignores credentials in a URL, so
/// without this a server with `authorization` (deploy/nats/nats-server.conf) refuses
/// every dora process.
pub async fn connect(urls: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
    let addrs = parse_urls(urls).map_err(|e| {
        async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::ServerParse, e)
    })?;
    let options = match addrs.first().map(|a| (a.username(), a.password())) {
        Some((Some(user), Some(password))) => {
            async_nats::ConnectOptions::with_user_and_password(user.to_owned(), password.to_owned())
        }
        Some((Some(token), None)) => async_nats::ConnectOptions::with_token(token.to_owned()),
        _ => async_nats::ConnectOptions::new(),
    };
    options.connect(addrs).await
}

/// The server addresses of a comma-separated `NATS_URL`.
pub fn parse_urls(urls: &str) -> Result<Vec<async_nats::ServerAddr>, std::io::Error> {
    let addrs = urls
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no server address",
        ));
    }
    Ok(addrs)
}
