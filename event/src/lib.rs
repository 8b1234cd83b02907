//! The dora lifecycle event, shared by the gateway, the projector and the API.
//!
//! # Layout
//!
//! - [`validate`]: turns one JSON value into an [`Event`] under the contract's rules, or a
//!   [`ValidationError`] naming the field. The gateway and the projector call the same
//!   function, so a message is accepted on one path exactly when it is on the other.
//! - [`json`]: reads a body as JSON, refusing a key given twice (serde_json keeps the
//!   last one, so `"succeeded"` twice would be ambiguous).
//! - [`subject`]: the NATS subject an event travels on, and the check that a message's
//!   subject agrees with its body.
//! - [`stream`]: the JetStream stream that is the source of truth.
//! - `serve` (feature `process`): the HTTP server with its timeouts and in-flight limit.
//! - [`tokens`]: named secrets, the gateway's ingest tokens and the API's read tokens.
//! - [`duration`]: the one grammar of duration settings (`500ms`, `30s`, `15m`, `1h`, `2d`).
//! - [`signature`]: the gateway's signature of an event's `source`, which the projector
//!   checks before it believes the `Dora-Source` header (feature `signature`).

pub mod dedup;
pub mod duration;
pub mod invariants;
pub mod json;
mod model;
#[cfg(feature = "process")]
pub mod observe;
#[cfg(feature = "process")]
pub mod process;
#[cfg(feature = "process")]
pub mod serve;
pub mod settings;
#[cfg(feature = "signature")]
pub mod signature;
pub mod stream;
pub mod subject;
#[cfg(feature = "process")]
pub mod tokens;
mod validate;

pub use model::{Event, Kind};
pub use validate::{subject_token, validate, Origin, ValidationError, FIELDS, MAX_FUTURE};

/// Header that carries the event id and a digest of its content ([`dedup::msg_id`]), so
/// JetStream drops an identical repeated publish but not a corrected one.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// Header the gateway sets to the name of the token that sent the event, signed in
/// `Dora-Source-Signature` (see `signature`). Messages published straight to NATS have
/// none, or one without a valid signature, and their source is [`NATS_SOURCE`].
pub const SOURCE_HEADER: &str = "Dora-Source";

/// Header the gateway sets to the time it published the event (RFC 3339, UTC, in
/// microseconds): the clock it judged "not in the future" by. The projector judges by
/// the later of it and JetStream's time (see [`gateway_clock`]), so an event the
/// gateway accepted near the 5-minute edge is not rejected because the NATS server's
/// clock is behind the gateway's.
pub const RECEIVED_AT_HEADER: &str = "Dora-Received-At";

/// The time the future limit is judged against for a message JetStream stored at
/// `stream_time` that carries [`RECEIVED_AT_HEADER`] `header`: the later of the two,
/// the header counting for at most [`MAX_FUTURE`] past `stream_time`. Anyone who may
/// publish on the stream can set the header (as with `Dora-Source`), so a forged one
/// widens the limit to 10 minutes at most. Both inputs are stored with the message, so
/// a replay decides the same way.
pub fn gateway_clock(
    stream_time: chrono::DateTime<chrono::Utc>,
    header: Option<&str>,
) -> chrono::DateTime<chrono::Utc> {
    let Some(gateway) = header.and_then(|h| chrono::DateTime::parse_from_rfc3339(h).ok()) else {
        return stream_time;
    };
    let gateway = gateway.with_timezone(&chrono::Utc);
    gateway.clamp(stream_time, stream_time + MAX_FUTURE)
}

/// The value of [`RECEIVED_AT_HEADER`] for now.
pub fn received_at_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The `source` of events published straight to the stream.
pub const NATS_SOURCE: &str = "nats";

/// The PostgreSQL schema that holds the live store. Replay builds a fresh one beside it
/// and renames it into place, so every process finds the store under this name.
pub const STORE_SCHEMA: &str = "dora";
