//! The one error type, and the exit status each kind of failure maps to (CONTRACT.md
//! section 7).

use std::time::Duration;

/// Why an event was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad argument or setting, or no git checkout to take a default from. Nothing
    /// was sent.
    #[error("{0}")]
    Usage(String),
    /// The gateway (or JetStream) answered and said no; retrying would not help.
    #[error("refused: {0}")]
    Refused(String),
    /// Every attempt failed for a reason that might have passed, until the deadline.
    #[error("not delivered within {} (DORA_EMIT_TIMEOUT); last error: {last}", crate::duration::show(*.waited))]
    TimedOut {
        /// How long it was allowed to try.
        waited: Duration,
        /// What the last attempt ran into.
        last: String,
    },
}

impl Error {
    /// The process exit status: 1 refused, 2 bad arguments, 3 not delivered in time.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Refused(_) => 1,
            Error::Usage(_) => 2,
            Error::TimedOut { .. } => 3,
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T> = std::result::Result<T, Error>;
