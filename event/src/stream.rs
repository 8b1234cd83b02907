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
    /// An existing stream has a setting that lets it drop messages: acknowledged events
    /// would disappear from the source of truth, and a replay would rebuild a store
    /// without them.
    #[error("JetStream stream `{name}` can drop events: {setting} is {value}. It is dora's source of truth and must keep every message: {fix}")]
    DropsEvents {
        /// The stream name.
        name: String,
        /// The setting, as `nats stream info` names it.
        setting: &'static str,
        /// Its value on the server.
        value: String,
        /// What to do about it.
        fix: &'static str,
    },
}

/// How to fix a limit that `nats stream edit` can change.
const EDIT: &str = "as the admin user, `nats stream edit <stream>` with the setting unlimited (-1, or 0 for max_age)";

/// Whether a stream's configuration keeps every message for good: no age, count, size
/// or per-subject limit, limits retention (interest and work-queue retention delete
/// acked messages), no rollups, and deletes and purges refused. Replicas, placement and
/// the rest may differ. `Err` names the first setting that does not, its value, and
/// what to do.
pub fn keeps_everything(
    config: &stream::Config,
) -> Result<(), (&'static str, String, &'static str)> {
    let limited = |n: i64| n > 0;
    if config.retention != stream::RetentionPolicy::Limits {
        return Err((
            "retention",
            format!("{:?}", config.retention),
            "retention cannot change on an existing stream; make a new stream with limits retention and move the messages (or let dora create it)",
        ));
    }
    if !config.max_age.is_zero() {
        return Err(("max_age", format!("{:?}", config.max_age), EDIT));
    }
    if limited(config.max_messages) {
        return Err(("max_msgs", config.max_messages.to_string(), EDIT));
    }
    if limited(config.max_bytes) {
        return Err(("max_bytes", config.max_bytes.to_string(), EDIT));
    }
    if limited(config.max_messages_per_subject) {
        return Err((
            "max_msgs_per_subject",
            config.max_messages_per_subject.to_string(),
            EDIT,
        ));
    }
    if config.allow_rollup {
        return Err((
            "allow_rollup",
            "true".to_owned(),
            "a rollup message deletes a subject's history; `nats stream edit <stream> --no-allow-rollup`",
        ));
    }
    if !config.deny_delete {
        return Err((
            "deny_delete",
            "false".to_owned(),
            "`nats stream edit <stream> --deny-delete` (once set it cannot be unset)",
        ));
    }
    if !config.deny_purge {
        return Err((
            "deny_purge",
            "false".to_owned(),
            "`nats stream edit <stream> --deny-purge` (once set it cannot be unset)",
        ));
    }
    Ok(())
}

/// The configuration dora creates the stream with: file storage, no age or size limit
/// (it is the source of truth), and no deletes or purges.
pub fn config(name: &str, prefix: &str, replicas: usize) -> stream::Config {
    stream::Config {
        num_replicas: replicas,
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
/// configuration (an operator may have tuned replicas or placement), but it must
/// capture our subjects or nothing would ever be stored, and it must keep every message
/// ([`keeps_everything`]) or acknowledged events could silently disappear.
pub async fn ensure(
    js: &jetstream::Context,
    name: &str,
    prefix: &str,
    replicas: usize,
) -> Result<stream::Stream, StreamError> {
    let mut stream = js
        .get_or_create_stream(config(name, prefix, replicas))
        .await
        .map_err(|e| StreamError::JetStream {
            name: name.to_owned(),
            source: e.into(),
        })?;
    let wanted = crate::subject::wildcard(prefix);
    let config = stream
        .info()
        .await
        .map_err(|e| StreamError::JetStream {
            name: name.to_owned(),
            source: e.into(),
        })?
        .config
        .clone();
    if !config.subjects.iter().any(|s| s == &wanted || s == ">") {
        return Err(StreamError::Subjects {
            name: name.to_owned(),
            wanted,
            have: config.subjects,
        });
    }
    keeps_everything(&config).map_err(|(setting, value, fix)| StreamError::DropsEvents {
        name: name.to_owned(),
        setting,
        value,
        fix,
    })?;
    if config.num_replicas < replicas {
        // More copies is only safer, and JetStream copies the messages itself. Fewer
        // is left alone: an operator may have had a reason, and it loses nothing now.
        let raised = stream::Config {
            num_replicas: replicas,
            ..config.clone()
        };
        match js.update_stream(raised).await {
            Ok(_) => tracing::info!(
                stream = name,
                from = config.num_replicas,
                to = replicas,
                "raised the stream's replicas"
            ),
            Err(e) => {
                tracing::warn!(stream = name, have = config.num_replicas, want = replicas, error = %e,
                "the stream keeps fewer copies than DORA_STREAM_REPLICAS asks, and JetStream would not raise it")
            }
        }
    }
    Ok(stream)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_stream_that_keeps_everything_is_accepted() {
        let dora = config("DORA_EVENTS", "dora.events", 1);
        assert_eq!(keeps_everything(&dora), Ok(()));
        let mut replicated = dora.clone();
        replicated.num_replicas = 3;
        assert_eq!(keeps_everything(&replicated), Ok(()), "replicas may differ");

        type Change = fn(&mut stream::Config);
        let cases: [(&str, Change); 8] = [
            ("max_age", |c| c.max_age = Duration::from_secs(3600)),
            ("max_msgs", |c| c.max_messages = 1000),
            ("max_bytes", |c| c.max_bytes = 1 << 30),
            ("max_msgs_per_subject", |c| c.max_messages_per_subject = 1),
            ("retention", |c| {
                c.retention = stream::RetentionPolicy::Interest;
            }),
            ("allow_rollup", |c| c.allow_rollup = true),
            ("deny_delete", |c| c.deny_delete = false),
            ("deny_purge", |c| c.deny_purge = false),
        ];
        for (setting, change) in cases {
            let mut c = dora.clone();
            change(&mut c);
            assert_eq!(keeps_everything(&c).map_err(|e| e.0), Err(setting));
        }
    }
}
