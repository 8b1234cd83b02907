use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use dora_demo::{profile::demo_services, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let end = config.as_of.unwrap_or_else(chrono::Utc::now);
    let profiles = demo_services(usize::from(config.services));
    let history = dora_demo::generate(config.seed, config.days, end, &profiles);
    if config.print {
        let mut out = std::io::stdout().lock();
        for event in &history.events {
            writeln!(out, "{}", serde_json::to_string(event)?)?;
        }
        return Ok(());
    }
    eprint!("{}", dora_demo::describe(&history));
    let token = config.token.as_deref().context("DORA_TOKEN is required")?;
    let client = reqwest::Client::new();
    let sent = dora_demo::send(
        &client,
        &config.url,
        token,
        &history.events,
        usize::from(config.batch),
    )
    .await
    .context("sending the demo history")?;
    println!(
        "sent {} events to {} in {} requests: accepted {}, duplicates {}",
        history.events.len(),
        config.url,
        sent.requests,
        sent.accepted,
        sent.duplicates
    );
    if let Some(api) = &config.api {
        dora_demo::wait_for_store(
            &client,
            api,
            &history,
            Duration::from_secs(config.wait_secs),
        )
        .await
        .context("waiting for the store")?;
        println!(
            "{api}/dora shows all {} production deploy attempts",
            history.prod_attempts()
        );
    }
    Ok(())
}
