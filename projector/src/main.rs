// jemalloc rather than glibc's malloc: replay's copy of the log is bounded by decoding,
// and this took its 10M-event copy from 90 to 72-75 s with less peak memory (Cargo.toml).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use anyhow::Context;
use dora_projector::{Command, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = dora_event::process::parse_settings();
    dora_event::process::init_tracing("dora_projector=info,tower_http=info", config.log.format);
    match config.command.unwrap_or(Command::Run) {
        Command::Run => {
            tracing::info!(?config, "starting");
            let listener = tokio::net::TcpListener::bind(config.addr)
                .await
                .with_context(|| format!("binding DORA_PROJECTOR_ADDR {}", config.addr))?;
            let shutdown = dora_event::process::on_signal();
            dora_projector::run(config, listener, shutdown)
                .await
                .context("projector stopped")
        }
        Command::Replay => {
            let outcome = dora_projector::replay(&config)
                .await
                .context("replay failed")?;
            println!(
                "replayed {} messages up to stream sequence {}: {} events, {} duplicates, {} rejected",
                outcome.messages, outcome.last_seq, outcome.applied.inserted,
                outcome.applied.duplicates, outcome.applied.rejected
            );
            Ok(())
        }
    }
}
