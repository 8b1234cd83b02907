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

pub mod dedup;
pub mod invariants;
pub mod json;
mod model;
#[cfg(feature = "process")]
pub mod observe;
#[cfg(feature = "process")]
pub mod process;
pub mod settings;
pub mod stream;
pub mod subject;
mod validate;

pub use model::{Event, Kind};
pub use validate::{subject_token, validate, Origin, ValidationError, FIELDS, MAX_FUTURE};

/// Header that carries the event id and a digest of its content ([`dedup::msg_id`]), so
/// JetStream drops an identical repeated publish but not a corrected one.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// Header the gateway sets to the name of the token that sent the event. Messages
/// published straight to NATS have none, and their source is [`NATS_SOURCE`].
pub const SOURCE_HEADER: &str = "Dora-Source";

/// The `source` of events published straight to the stream.
pub const NATS_SOURCE: &str = "nats";

/// The PostgreSQL schema that holds the live store. Replay builds a fresh one beside it
/// and renames it into place, so every process finds the store under this name.
pub const STORE_SCHEMA: &str = "dora";
