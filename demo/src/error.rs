//! What can go wrong while seeding.

/// The demo's one error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The batch size is outside what `POST /events` takes.
    #[error("batch size {0}: POST /events takes 1 to 1000 events per request")]
    BatchSize(usize),
    /// The gateway refused a request; retrying would not help.
    #[error("the gateway refused a batch with {status}: {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The gateway's JSON error, as text.
        body: String,
    },
    /// The gateway stayed unreachable or unavailable (503) through every retry.
    #[error("the gateway at {url} was not available after {attempts} attempts: {last}")]
    Unavailable {
        /// The URL posted to.
        url: String,
        /// How many times it was tried.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The store did not show the history within the time allowed.
    #[error("the API at {url} showed {seen} of the {expected} seeded production deploy attempts after {secs} s; is dora-projector running?")]
    NotInStore {
        /// The API's base URL.
        url: String,
        /// Attempts the history holds.
        expected: usize,
        /// Attempts the API last reported.
        seen: u64,
        /// Seconds waited.
        secs: u64,
    },
    /// The API answered something other than a `/dora` report.
    #[error("the API at {url} answered {status}: {body}")]
    Api {
        /// The URL asked.
        url: String,
        /// HTTP status.
        status: u16,
        /// What it said.
        body: String,
    },
}
