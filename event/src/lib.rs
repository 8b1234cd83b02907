//! The dora lifecycle event, shared by the gateway, the projector and the API.
//!
//! # Layout
//!
//! - [`validate`]: turns one JSON value into an [`Event`] under the contract's rules, or a
//!   [`ValidationError`] naming the field. The gateway and the projector call the same
//!   function, so a message is accepted on one path exactly when it is on the other.
//! - [`subject`]: the NATS subject an event travels on, and the check that a message's
//!   subject agrees with its body.
//! - [`stream`]: the JetStream stream that is the source of truth.
//! - `serve` (feature `process`): the HTTP server with its timeouts and in-flight limit.
//! - [`tokens`]: named secrets, the gateway's ingest tokens and the API's read tokens.
//! - [`duration`]: the one grammar of duration settings (`500ms`, `30s`, `15m`, `1h`, `2d`).
//! - [`signature`]: the gateway's signature of an event's `source`, which the projector
//!   checks before it believes the `Dora-Source` header (feature `signature`).

pub mod duration;
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

/// Header that carries the event id, so JetStream drops a repeated publish.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// Header the gateway sets to the name of the token that sent the event, signed in
/// `Dora-Source-Signature` (see `signature`). Messages published straight to NATS have
/// none, or one without a valid signature, and their source is [`NATS_SOURCE`].
pub const SOURCE_HEADER: &str = "Dora-Source";

/// The `source` of events published straight to the stream.
pub const NATS_SOURCE: &str = "nats";

/// The PostgreSQL schema that holds the live store. Replay builds a fresh one beside it
/// and renames it into place, so every process finds the store under this name.
pub const STORE_SCHEMA: &str = "dora";
