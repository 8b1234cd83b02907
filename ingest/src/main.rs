use anyhow::Context;
use dora_ingest::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = dora_event::process::parse_settings();
    dora_event::process::init_tracing("dora_ingest=info,tower_http=info", config.log.format);
    tracing::info!(?config, "starting");
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding DORA_INGEST_ADDR {}", config.addr))?;
    let shutdown = dora_event::process::on_signal();
    dora_ingest::run(config, listener, shutdown)
        .await
        .context("ingest gateway stopped")
}
