//! `scale`'s latency figures on dora-api processes that are already running, such as
//! two builds against the store `deploy/bench.sh --keep` left, measured in one run.
//!
//! ```sh
//! deploy/bench.sh --events 10000000 --keep        # prints the kept DATABASE_URL
//! DATABASE_URL=... DORA_API_ADDR=127.0.0.1:18080 old/dora-api &
//! DATABASE_URL=... DORA_API_ADDR=127.0.0.1:18081 target/release/dora-api &
//! target/release/latency --events 10000000 \
//!     --api before=http://127.0.0.1:18080 --api after=http://127.0.0.1:18081
//! ```
//!
//! Each round asks every API the same requests (`scale`'s: the same seed gives the
//! same `as_of`s and services), the APIs taking turns first, so a machine that gets
//! busier or quieter during the run weighs on both alike. The figures are over all
//! rounds, with each API's p50 as a ratio of the first one's.

use anyhow::Context;
use chrono::DateTime;
use clap::Parser;
use dora_bench::latency::{ask, requests, service_names, summary, PATHS};
use dora_bench::{load_average, percentiles, Rng, END};

#[derive(Debug, Parser)]
struct Args {
    /// A running dora-api, as `name=URL`; give it once per build compared.
    #[arg(long = "api", required = true)]
    apis: Vec<String>,
    /// Events in the store (`scale`'s `--events`): its services are named after them.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Services in the store, if `scale` was given `--services`.
    #[arg(long)]
    services: Option<usize>,
    /// Requests per figure, per API and round.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// Rounds: each asks every API every figure's requests once.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seed of the requests (`scale`'s `--seed`).
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let apis: Vec<(&str, &str)> = args
        .apis
        .iter()
        .map(|a| a.split_once('=').context("--api takes name=URL"))
        .collect::<anyhow::Result<_>>()?;
    let services = args.services.unwrap_or((args.events / 1000).max(200));
    let names = service_names(services);
    let end: DateTime<chrono::Utc> = END.parse()?;
    let client = reqwest::Client::new();
    println!(
        "latency on {} events' store ({services} services): {} rounds of {} requests per figure and API; {}",
        args.events,
        args.rounds,
        args.samples,
        load_average()
    );
    // One warm-up request of each figure per API: the first ones read cold pages.
    for (_, url) in &apis {
        let mut rng = Rng::new(args.seed);
        for (path, _) in PATHS {
            ask(&client, url, &requests(path, &names, 1, end, &mut rng)).await?;
        }
    }
    let mut times = vec![vec![Vec::new(); apis.len()]; PATHS.len()];
    let mut rng = Rng::new(args.seed ^ 0x5CA1E);
    for round in 0..args.rounds {
        for (figure, (path, _)) in PATHS.iter().enumerate() {
            let asked = requests(path, &names, args.samples, end, &mut rng);
            for turn in 0..apis.len() {
                let which = (turn + round) % apis.len();
                let took = ask(&client, apis[which].1, &asked).await?;
                times[figure][which].extend(took);
            }
        }
        println!("  round {} done; {}", round + 1, load_average());
    }

    println!();
    let names: Vec<&str> = apis.iter().map(|(name, _)| *name).collect();
    println!(
        "| figure, ms p50 / p95 / p99 | {} | p50 ratio | target |",
        names.join(" | ")
    );
    println!("|---|{}---|---|", "---|".repeat(apis.len()));
    for (figure, (path, target)) in PATHS.iter().enumerate() {
        let p50 = |t: &mut Vec<_>| percentiles(t)[0];
        let first = p50(&mut times[figure][0]);
        let cells: Vec<String> = times[figure].iter_mut().map(|t| summary(t)).collect();
        let ratios: Vec<String> = times[figure]
            .iter_mut()
            .map(|t| format!("{:.2}", p50(t) / first))
            .collect();
        println!(
            "| `{path}` | {} | {} | {target} |",
            cells.join(" | "),
            ratios.join(" / ")
        );
    }
    Ok(())
}
