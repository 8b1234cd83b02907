//! Process plumbing the three binaries share: logging and graceful shutdown.

use std::io::IsTerminal;

use tokio::sync::watch;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

use crate::settings::LogFormat;

/// A receiver that turns `true` on the first SIGINT or SIGTERM. Tests make their own
/// `watch::channel(false)` and send `true` instead.
pub fn on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate => {}
        }
        tracing::info!("shutdown signal received; finishing in-flight work");
        let _ = tx.send(true);
    });
    rx
}

/// Parses the process's settings from flags and the environment, and exits with a
/// message naming the setting when one is missing or malformed. Unlike clap's own
/// message, it never repeats the refused value: a mistyped `DORA_INGEST_TOKENS` or
/// `DATABASE_URL` would otherwise print its secrets to the terminal or the log.
pub fn parse_settings<C: clap::Parser>() -> C {
    match C::try_parse() {
        Ok(config) => config,
        Err(e) => exit_on(e),
    }
}

fn exit_on(e: clap::Error) -> ! {
    use clap::error::{ContextKind, ErrorKind};
    if matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        let arg = e
            .get(ContextKind::InvalidArg)
            .map_or_else(|| "a setting".to_owned(), |a| a.to_string());
        let reason = std::error::Error::source(&e)
            .map_or_else(|| "not an accepted value".to_owned(), |s| s.to_string());
        eprintln!("error: invalid value for {arg}: {reason} (the value is not shown: it may hold a secret)");
        std::process::exit(2);
    }
    e.exit()
}

/// Resolves when `shutdown` turns true (or its sender is gone).
pub async fn requested(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Logs to stderr in `format`, filtered by `RUST_LOG`, else by `default_filter`
/// (e.g. `"dora_api=info,tower_http=info"`). Text gets colour only when stderr is a
/// terminal: a log file must not fill with escape codes.
pub fn init_tracing(default_filter: &str, format: LogFormat) {
    let ansi = std::io::stderr().is_terminal();
    // `init` also routes the `log` crate's records into the subscriber.
    subscriber(default_filter, format, ansi, std::io::stderr).init();
}

/// The subscriber [`init_tracing`] installs, writing to `writer`: tests capture it.
pub fn subscriber<W>(
    default_filter: &str,
    format: LogFormat,
    ansi: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // The shared crate logs the shutdown signal under its own name.
        .unwrap_or_else(|_| format!("{default_filter},dora_event=info").into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        // Fields at the top level, beside `message`, so a shipper indexes them as
        // they are; the current span's fields ride along.
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    }
}
