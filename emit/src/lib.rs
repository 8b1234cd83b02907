//! `dora-emit`: one lifecycle event from a CI job or an incident tool (CONTRACT.md
//! section 7).
//!
//! # Layout
//!
//! - [`cli`]: the subcommands, flags and settings (clap).
//! - [`compose`]: the event from the arguments and the defaults (the git checkout for
//!   the sha and commit time, [`ci`] for the id), validated by `dora_event::validate`
//!   before anything is sent.
//! - [`deliver`]: the HTTP or NATS path, retrying until `DORA_EMIT_TIMEOUT`.
//! - [`error`]: the failures and their exit codes.

pub mod ci;
pub mod cli;
pub mod compose;
pub mod deliver;
pub mod duration;
pub mod error;
pub mod git;

use chrono::Utc;

pub use error::{Error, Result};

/// The environment variable that holds the gateway token.
pub const TOKEN_VAR: &str = "DORA_TOKEN";

/// Does what the command line says; prints the outcome on stdout and warnings on stderr.
pub async fn run(cli: cli::Cli) -> Result<()> {
    let request = cli.command.into_request();
    let settings = cli.settings;
    let composed = compose::compose(&request, |name| std::env::var(name).ok(), Utc::now())?;
    for warning in &composed.warnings {
        eprintln!("dora-emit: warning: {warning}");
    }
    let event = composed.event;
    if request.dry_run {
        println!("{}", String::from_utf8_lossy(&event.to_json()));
        eprintln!("dora-emit: dry run: nothing sent");
        return Ok(());
    }
    let delivered = if request.nats {
        deliver::over_nats(
            &settings.nats_url,
            &settings.subject_prefix,
            &event,
            settings.timeout,
        )
        .await?
    } else {
        let token = std::env::var(TOKEN_VAR)
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::Usage(format!(
                    "{TOKEN_VAR} is not set: put the gateway token in the environment (a CI secret), never on the command line"
                ))
            })?;
        deliver::over_http(&settings.url, &token, &event, settings.timeout).await?
    };
    let how = match delivered {
        deliver::Delivered::Accepted => "accepted",
        deliver::Delivered::Duplicate => "already recorded (a repeat of the same event)",
    };
    println!("{} {} {how}", event.kind, event.id);
    Ok(())
}
