//! The projector's one error type.

/// What can stop the projector or a replay.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// PostgreSQL refused or is unreachable.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A server unreachable at start.
    #[error("cannot reach {what} at {url} ({setting}): {source}")]
    Connect {
        /// `NATS` or `PostgreSQL`.
        what: &'static str,
        /// The server tried, without its password.
        url: String,
        /// The setting that names it.
        setting: &'static str,
        /// Why it failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database DATABASE_URL names does not exist and could not be created.
    #[error("the database `{name}` of DATABASE_URL ({url}) does not exist, and the projector could not create it: {reason}. Create it (psql: CREATE DATABASE \"{name}\"; or: createdb '{name}'), or give the projector's user the CREATEDB privilege")]
    NoDatabase {
        /// The database's name.
        name: String,
        /// The URL, without its password.
        url: String,
        /// Why the creation failed.
        reason: String,
    },
    /// A migration failed.
    #[error("migrating the store: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// NATS or JetStream refused or is unreachable.
    #[error("NATS: {0}")]
    Nats(#[from] async_nats::Error),
    /// The stream is missing or does not capture our subjects.
    #[error(transparent)]
    Stream(#[from] dora_event::stream::StreamError),
    /// The durable consumer's message stream ended: it, or the stream, was deleted.
    #[error("the durable consumer stopped delivering (deleted, or its stream was); restart to recreate it")]
    ConsumerGone,
    /// An existing consumer has a setting the projector cannot work with and could not
    /// be changed in place.
    #[error("consumer `{consumer}`: {setting} is {have}, the projector needs {want} ({reason}); delete the consumer to recreate it (the store's event ids make the redelivery harmless) or set DORA_PROJECTOR_CONSUMER to another name")]
    ConsumerSettings {
        /// The durable name.
        consumer: String,
        /// The setting that differs.
        setting: &'static str,
        /// Its value on the server.
        have: String,
        /// The value needed.
        want: String,
        /// Why it could not be changed.
        reason: String,
    },
    /// The store was made from another stream than the one configured.
    #[error("the store holds the events of stream `{recorded}`, but DORA_STREAM is `{configured}`: following `{configured}` would mix two streams in one store. Set DORA_STREAM back to `{recorded}`, or point DATABASE_URL at the store of `{configured}` (an empty database fills itself from the stream)")]
    OtherStream {
        /// The stream the store was made from.
        recorded: String,
        /// The stream configured now.
        configured: String,
    },
    /// The consumer named by `DORA_PROJECTOR_CONSUMER` belongs to another store.
    #[error("consumer `{consumer}` belongs to store {other}, not to this one ({ours}): two stores sharing a consumer each miss what the other acked. Unset DORA_PROJECTOR_CONSUMER to use this store's own consumer (dora-projector-{ours}), or name one no other store uses")]
    OtherStore {
        /// The durable name.
        consumer: String,
        /// The store its description names.
        other: String,
        /// This store's id.
        ours: String,
    },
    /// The HTTP server for health and metrics failed.
    #[error("serving DORA_PROJECTOR_ADDR: {0}")]
    Serve(std::io::Error),
    /// The bulk load's writer task stopped without saying why (it panicked).
    #[error("the bulk load's COPY writer stopped unexpectedly")]
    BulkWriter,
    /// Another replay holds the replay lock.
    #[error("another replay of this store is running")]
    ReplayRunning,
    /// The stream no longer holds the whole history.
    #[error("stream `{stream}` does not hold the whole history: {reason}. A store rebuilt from it would lack those events, so replay is refused; the live store is unchanged. Restore the stream from a backup to replay")]
    StreamIncomplete {
        /// The stream name.
        stream: String,
        /// What is missing.
        reason: String,
    },
    /// The rebuilt store holds fewer events than the live one.
    #[error("refusing to swap in the rebuilt store: it holds {rebuilt} events, the live store {live}. The stream lacks events the live store has (or the live store has events that never were on it); the live store is unchanged, and the rebuilt one is kept as schema `{kept}` to compare (drop it when done)")]
    SwapRefused {
        /// Events in the live store.
        live: u64,
        /// Events in the rebuilt store.
        rebuilt: u64,
        /// The schema the rebuilt store is kept in.
        kept: String,
    },
    /// The rebuilt store could not be swapped in.
    #[error("the rebuilt store could not be swapped in: {source}. The live store is unchanged; the rebuilt one is kept as schema `{kept}` (drop it when done, or run replay again)")]
    SwapFailed {
        /// The schema the rebuilt store is kept in.
        kept: String,
        /// Why the swap failed.
        source: Box<Error>,
    },
    /// The stream ended while we still expected messages.
    #[error("the stream ended at sequence {at} before reaching {wanted}")]
    StreamEnded {
        /// Last sequence seen.
        at: u64,
        /// Sequence we were waiting for.
        wanted: u64,
    },
}

/// Shorthand for the projector's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
