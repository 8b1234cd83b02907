use anyhow::Context;
use dora_api::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = dora_event::process::parse_settings();
    dora_event::process::init_tracing("dora_api=info,tower_http=info", config.log.format);
    tracing::info!(?config, "starting");
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding DORA_API_ADDR {}", config.addr))?;
    let shutdown = dora_event::process::on_signal();
    dora_api::run(config, listener, shutdown)
        .await
        .context("dora api stopped")
}
