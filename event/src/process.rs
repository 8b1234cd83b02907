//! Process plumbing the three binaries share: logging and graceful shutdown.

use tokio::sync::watch;

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

/// Resolves when `shutdown` turns true (or its sender is gone).
pub async fn requested(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Logs to stderr, filtered by `RUST_LOG`, else by `default_filter`
/// (e.g. `"dora_api=info,tower_http=info"`).
pub fn init_tracing(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // The shared crate logs the shutdown signal under its own name.
                .unwrap_or_else(|_| format!("{default_filter},dora_event=info").into()),
        )
        .init();
}
