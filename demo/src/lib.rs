//! dora-demo: a realistic, reproducible delivery history for dora, sent through the
//! public ingest API the way pipelines send theirs.
//!
//! The demo (`deploy/run.sh --demo`), the system tests and the benchmarks use it.
//!
//! # Layout
//!
//! - [`profile`]: delivery profiles (elite, struggling, regressing, ordinary) and the
//!   demo's services.
//! - [`generate`]: profiles to events, deterministic from a seed, with stable ids.
//! - [`send`]: `POST /events` in batches with retries; waiting until `/dora` shows it.
//! - [`config`]: the command's settings.
//! - [`rng`]: the reproducible random source.

pub mod config;
pub mod error;
pub mod generate;
pub mod profile;
pub mod rng;
pub mod send;

pub use config::Config;
pub use error::Error;
pub use generate::{generate, Event, History, Kind, ServiceSummary};
pub use send::{send, wait_for_store, Sent};

/// The printed summary of a history: one line per service.
pub fn describe(history: &History) -> String {
    let mut out = format!(
        "{} events from {} to {}:\n",
        history.events.len(),
        history
            .start
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        history
            .end
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    for s in &history.services {
        out.push_str(&format!(
            "  {:<14} {:<10} {:>4} prod attempts ({} failed), {} rollbacks, {} incidents ({} open, {} fixed forward), {} staging deploys\n",
            s.service, s.label, s.prod_attempts, s.failed_attempts, s.rollbacks,
            s.incidents, s.open_incidents, s.fix_deploys, s.staging_deploys
        ));
    }
    out
}
