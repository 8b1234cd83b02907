//! Events per second through the whole pipeline, against the raw limits measured in
//! the same run on the same machine, repeated and printed as min/median/max; with the
//! peak memory and the CPU of every process.
//!
//! ```sh
//! cargo run --release -p dora-bench --bin pipeline -- --events 100000 --runs 3
//! ```
//!
//! dora runs as a deployment runs it: the release executables `dora-ingest`,
//! `dora-projector` and `dora-api` as child processes (built first if needed; see
//! `dora_system_tests::binary`, `DORA_INGEST_BIN` and the like override them), on the
//! machine's nats-server and PostgreSQL. Each child's peak resident memory (`VmHWM`)
//! is read from `/proc` at the end of each run, against the 64 MB target.
//!
//! The workload is the demo generator's mix (`dora-demo`'s profiles over `--services`
//! services: deploys with commit times, failed attempts, rollbacks naming deployed
//! shas, incidents opened with the sha they blame and closed), shuffled with a seed, so
//! the projector derives real facts: attempts fail, rollbacks and incidents attribute
//! to deploys, incidents close. Each run has its own database and stream and measures:
//!
//! 1. raw JetStream: acked publishes of the same bodies, headers and signatures,
//!    pipelined in windows of `--batch`, from `--clients` concurrent tasks (no HTTP,
//!    no validation);
//! 2. raw PostgreSQL: multi-row inserts of the same rows into a bare table with a
//!    primary key (no facts, no triggers) from `--clients` concurrent connections;
//! 3. dora-projector draining the raw publishes as a backlog (production ack wait);
//! 4. dora, batched: `--clients` HTTP clients POST arrays of `--batch` other events to
//!    dora-ingest, measured at the last `202` and when the last row is in the log;
//! 5. dora, single events: `--single-events` more, each POSTed on its own from
//!    `--connections` kept-alive connections (the shape of many CI jobs reporting),
//!    measured at the last `202` and when the last row is in the log.
//!
//! dora-api answers `/dora?days=7` once a second during 3-5, as a dashboard would.
//! A warm-up run (a fifth of the size) comes first and is not counted. Ratios are
//! taken within each run, then spread over the runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use dora_bench::procs::{self, Cpu, Group, Memory, Usage};
use dora_bench::{demo_events, drained, post_bodies, post_events, shuffle, Spread};
use dora_system_tests::children::{Binary, Dora};
use dora_system_tests::{TestEnv, CI_TOKEN, PAGER_TOKEN, SOURCE_KEY};

/// What each process's peak resident memory should stay under.
const MEMORY_TARGET_MB: f64 = 64.0;

#[derive(Debug, Parser)]
struct Args {
    /// Events per measurement (each run sends twice this: raw publishes, then HTTP).
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// Events per request (and per publish window and insert).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent clients: publishers, PostgreSQL connections and HTTP clients alike.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Events sent one per request in the single-event measurement (0 skips it).
    #[arg(long, default_value_t = 20_000)]
    single_events: usize,
    /// Concurrent kept-alive HTTP connections of the single-event measurement.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Services in the demo mix.
    #[arg(long, default_value_t = 200)]
    services: usize,
    /// Measured runs (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seed of the histories and of their arrival order.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// One run's figures: rates in events per second, the children's memory, the CPU of
/// each phase.
#[derive(Debug, Clone)]
struct Run {
    raw_js: f64,
    raw_pg: f64,
    drain: f64,
    accepted: f64,
    end_to_end: f64,
    /// `NaN` when the single-event measurement was skipped.
    single_accepted: f64,
    single_end_to_end: f64,
    /// Each dora process and its memory at the end of the run.
    memory: Vec<(&'static str, Memory)>,
    /// Each phase and the cores each group kept busy during it.
    cpu: Vec<(&'static str, Usage)>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // On Ctrl-C the measurement is dropped, and with it the child processes, which are
    // killed on drop: none is left running. (An error or a panic drops them too.)
    tokio::select! {
        measured = measure(args) => measured,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the dora processes were stopped"),
    }
}

/// The warm-up, the runs, and the tables.
async fn measure(args: Args) -> anyhow::Result<()> {
    println!(
        "{} events per measurement, demo mix of {} services shuffled, {} per request or publish window or insert, {} concurrent clients on every side; {} single events from {} connections; {} cores, {} runs after a warm-up",
        args.events,
        args.services,
        args.batch,
        args.clients,
        args.single_events,
        args.connections,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        args.runs
    );
    println!("load before: {}", load_average());
    let warm_up = one_run(
        &args,
        (args.events / 5).max(args.batch),
        args.single_events / 5,
        0,
    )
    .await?;
    println!("warm-up run: {}", rates(&warm_up));
    let mut runs = Vec::new();
    for r in 1..=args.runs {
        let run = one_run(&args, args.events, args.single_events, r as u64).await?;
        println!("run {r}: {}", rates(&run));
        runs.push(run);
    }
    println!("load after: {}", load_average());

    // One line per figure: its min, median and max over the runs, to `decimals` places.
    let row = |label: &str, decimals: usize, target: &str, f: &dyn Fn(&Run) -> f64| {
        let s = Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
        let (min, median, max) = (s.min, s.median, s.max);
        println!(
            "{label:<50} {min:>10.decimals$} {median:>10.decimals$} {max:>10.decimals$}  {target}"
        );
    };
    let heading = |label: &str| {
        println!(
            "\n{label:<50} {:>10} {:>10} {:>10}  target",
            "min", "median", "max"
        )
    };
    heading("events/s");
    row("raw JetStream acked publishes (pipelined)", 0, "", &|r| {
        r.raw_js
    });
    row("raw PostgreSQL batched inserts", 0, "", &|r| r.raw_pg);
    row("dora-projector draining a backlog", 0, "", &|r| r.drain);
    row("dora-ingest 202s, batched (HTTP accepted)", 0, "", &|r| {
        r.accepted
    });
    row("dora end to end, batched (HTTP to the log)", 0, "", &|r| {
        r.end_to_end
    });
    row("dora-ingest 202s, single events", 0, "", &|r| {
        r.single_accepted
    });
    row("dora end to end, single events", 0, "", &|r| {
        r.single_end_to_end
    });
    heading("ratio, within each run");
    row("drain / raw PostgreSQL", 2, "", &|r| r.drain / r.raw_pg);
    row("batched 202s / raw JetStream", 2, "", &|r| {
        r.accepted / r.raw_js
    });
    row("batched end to end / raw JetStream", 2, "", &|r| {
        r.end_to_end / r.raw_js
    });
    row("batched end to end / raw PostgreSQL", 2, "", &|r| {
        r.end_to_end / r.raw_pg
    });
    row(
        "batched end to end / slower raw limit",
        2,
        ">= 0.50",
        &|r| r.end_to_end / r.raw_js.min(r.raw_pg),
    );
    row(
        "single-event 202s / raw JetStream (pipelined)",
        2,
        ">= 0.25",
        &|r| r.single_accepted / r.raw_js,
    );

    let mb = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let memory_of = |run: &Run, name: &str| -> Memory {
        run.memory
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| *m)
            .unwrap_or_default()
    };
    heading("MB, each process, read from /proc at the end of a run");
    for name in ["dora-ingest", "dora-projector", "dora-api"] {
        let target = format!("< {MEMORY_TARGET_MB:.0}");
        row(&format!("{name} peak resident (VmHWM)"), 1, &target, &|r| {
            mb(memory_of(r, name).peak)
        });
        row(
            &format!("{name} resident at the end (VmRSS)"),
            1,
            "",
            &|r| mb(memory_of(r, name).now),
        );
    }

    // The CPU of each phase, median over the runs: what was busy while a figure was taken.
    println!("\ncores busy per phase (median over the runs; 1.00 is one core all the time)");
    if let Some(first) = runs.first() {
        for (p, (phase, usage)) in first.cpu.iter().enumerate() {
            let median = |f: &dyn Fn(&Usage) -> f64| {
                Spread::of(
                    &runs
                        .iter()
                        .filter_map(|r| r.cpu.get(p).map(|(_, u)| f(u)))
                        .collect::<Vec<_>>(),
                )
                .median
            };
            let groups: Vec<String> = usage
                .groups
                .iter()
                .enumerate()
                .map(|(g, (name, _))| {
                    format!(
                        "{name} {:.2}",
                        median(&|u| u.groups.get(g).map_or(f64::NAN, |(_, c)| *c))
                    )
                })
                .collect();
            println!(
                "  {phase:<28} {}; machine {:.2}",
                groups.join(", "),
                median(&|u| u.machine)
            );
        }
    }
    Ok(())
}

/// The rates of one run, for its progress line.
fn rates(run: &Run) -> String {
    format!(
        "raw JS {:.0}, raw PG {:.0}, drain {:.0}, batched 202s {:.0}, batched end to end {:.0}, single 202s {:.0}, single end to end {:.0} events/s",
        run.raw_js,
        run.raw_pg,
        run.drain,
        run.accepted,
        run.end_to_end,
        run.single_accepted,
        run.single_end_to_end
    )
}

/// The load average, as this benchmark prints it.
fn load_average() -> String {
    format!(
        "load average {}",
        dora_bench::load_average().replace(' ', ", ")
    )
}

/// One run on a fresh database and stream, with fresh dora processes.
async fn one_run(args: &Args, events: usize, singles: usize, run: u64) -> anyhow::Result<Run> {
    let env = TestEnv::new().await;
    let clients = args.clients.max(1);
    let seed = args.seed.wrapping_mul(1000).wrapping_add(3 * run);
    let mut raw = demo_events(events, seed, args.services);
    shuffle(&mut raw, seed);
    let raw = Arc::new(raw);
    let mut dora = demo_events(events, seed + 1, args.services);
    shuffle(&mut dora, seed + 1);
    let dora = Arc::new(dora);
    let mut single = demo_events(singles, seed + 2, args.services);
    shuffle(&mut single, seed + 2);

    // The settings each binary needs: this run's stream, database and keys.
    let stream = [
        ("NATS_URL", env.nats_url()),
        ("DORA_STREAM", env.stream.clone()),
        ("DORA_SUBJECT_PREFIX", env.prefix.clone()),
        ("DORA_SOURCE_KEY", SOURCE_KEY.to_owned()),
    ];
    let database = ("DATABASE_URL", env.database_url.clone());
    // The API first and idle through the raw measurements: its start (migrations, the
    // first alert check) is not in any figure.
    let mut api = Dora::start(Binary::Api, std::slice::from_ref(&database)).await;
    api.wait_ready(Duration::from_secs(60)).await;

    // Every group from the start, so each phase has the same columns; the gateway and
    // the projector have no process yet.
    let mut cpu = Cpu::default();
    cpu.watch("ingest", Group::Pids(Vec::new()));
    cpu.watch("projector", Group::Pids(Vec::new()));
    cpu.watch("api", Group::Pids(api.pid().into_iter().collect()));
    cpu.watch("nats-server", Group::Named("nats-server".to_owned()));
    // The backends of this run's database (a backend's title names it), and every
    // PostgreSQL process with what the postmaster reaped: the server is shared.
    cpu.watch(
        "postgres (this db)",
        Group::Matching("postgres".to_owned(), format!(" {} ", env.db_name)),
    );
    cpu.watch("postgres (all)", Group::Named("postgres".to_owned()));
    cpu.watch("bench", Group::Pids(vec![std::process::id()]));
    let mut phases = Vec::new();

    // 1. Raw JetStream, into this run's stream, signed as the gateway signs.
    let messages = Arc::new(
        raw.iter()
            .map(dora_bench::raw::Message::of)
            .collect::<anyhow::Result<Vec<_>>>()?,
    );
    let from = cpu.sample();
    let raw_js =
        dora_bench::raw::publish(&env.js, &env.prefix, messages.clone(), clients, args.batch)
            .await?;
    phases.push(("raw JetStream", cpu.since(&from)));

    // 2. Raw PostgreSQL multi-row inserts, as many connections as clients.
    let from = cpu.sample();
    let raw_pg = dora_bench::raw::insert(&env.database_url, messages, clients, args.batch).await?;
    phases.push(("raw PostgreSQL", cpu.since(&from)));

    // A dashboard asking while dora works, from here on.
    let asking = Arc::new(AtomicBool::new(true));
    let dashboard = tokio::spawn(ask_dora(api.url(), asking.clone()));

    // 3. The projector starts after the raw publishes, so it first drains those (they
    // are valid, signed events too). Production settings but the consumer's name,
    // which `drained` watches.
    let from = cpu.sample();
    let started = Instant::now();
    let mut projector_env = stream.to_vec();
    projector_env.push(database.clone());
    projector_env.push(("DORA_PROJECTOR_CONSUMER", "dora-projector".to_owned()));
    let mut projector = Dora::start(Binary::Projector, &projector_env).await;
    cpu.watch(
        "projector",
        Group::Pids(projector.pid().into_iter().collect()),
    );
    drained(&env).await;
    let drain = events as f64 / started.elapsed().as_secs_f64();
    phases.push(("projector drains a backlog", cpu.since(&from)));

    // 4. dora end to end, batched.
    let mut ingest_env = stream.to_vec();
    ingest_env.push((
        "DORA_INGEST_TOKENS",
        format!("ci={CI_TOKEN},pager={PAGER_TOKEN}"),
    ));
    let mut ingest = Dora::start(Binary::Ingest, &ingest_env).await;
    ingest.wait_ready(Duration::from_secs(60)).await;
    cpu.watch("ingest", Group::Pids(ingest.pid().into_iter().collect()));
    let from = cpu.sample();
    let started = Instant::now();
    post_events(&ingest.url(), dora, clients, args.batch).await?;
    let accepted = events as f64 / started.elapsed().as_secs_f64();
    phases.push(("batched: until the last 202", cpu.since(&from)));
    let from = cpu.sample();
    drained(&env).await;
    let end_to_end = events as f64 / started.elapsed().as_secs_f64();
    phases.push(("batched: the rest of the drain", cpu.since(&from)));

    // 5. dora end to end, one event per request.
    let (single_accepted, single_end_to_end) = if singles == 0 {
        (f64::NAN, f64::NAN)
    } else {
        // Serialized beforehand: the client's JSON is not dora's cost.
        let bodies = single
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<Vec<_>, _>>()?;
        let from = cpu.sample();
        let started = Instant::now();
        post_bodies(&ingest.url(), Arc::new(bodies), args.connections).await?;
        let accepted = singles as f64 / started.elapsed().as_secs_f64();
        phases.push(("single: until the last 202", cpu.since(&from)));
        let from = cpu.sample();
        drained(&env).await;
        let end_to_end = singles as f64 / started.elapsed().as_secs_f64();
        phases.push(("single: the rest of the drain", cpu.since(&from)));
        (accepted, end_to_end)
    };

    asking.store(false, Ordering::SeqCst);
    let (answered, refused, mut latencies) = dashboard.await??;
    let memory: Vec<(&'static str, Memory)> = [
        ("dora-ingest", &ingest),
        ("dora-projector", &projector),
        ("dora-api", &api),
    ]
    .into_iter()
    .map(|(name, process)| {
        let memory = process
            .pid()
            .and_then(procs::memory)
            .ok_or_else(|| anyhow::anyhow!("{name} is gone: no /proc/<pid>/status to read"))?;
        anyhow::Ok((name, memory))
    })
    .collect::<anyhow::Result<_>>()?;

    let stored = env.event_count().await;
    let sent = (2 * events + singles) as i64;
    anyhow::ensure!(
        stored == sent,
        "every event is in the log: {stored} of {sent}"
    );
    // What the projector derived: the workload is meant to exercise every fact.
    let (failed, closed, unsigned, rejected): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM deploy_facts WHERE failed_at IS NOT NULL),
                (SELECT count(*) FROM incident_facts WHERE closed_at IS NOT NULL),
                (SELECT count(*) FROM events WHERE source <> 'ci'),
                (SELECT count(*) FROM rejected_events)",
    )
    .fetch_one(&env.pool)
    .await?;
    let p50 = if latencies.is_empty() {
        f64::NAN
    } else {
        dora_bench::percentiles(&mut latencies)[0]
    };
    println!(
        "  run {run}: {stored} events in the log, {failed} attempts failed (own outcome, rollback or incident), {closed} incidents closed, {unsigned} stored unsigned, {rejected} rejected; dora-api answered {answered} /dora?days=7 (p50 {p50:.1} ms), {refused} not 200"
    );
    for (name, m) in &memory {
        println!(
            "  run {run}: {name} peak {:.1} MB, now {:.1} MB",
            m.peak as f64 / 1048576.0,
            m.now as f64 / 1048576.0
        );
    }
    for (phase, usage) in &phases {
        println!("  run {run}: {phase}: {usage}");
    }
    // SIGTERM, as a service manager stops them; a panic or an error above kills them
    // on drop instead.
    ingest.stop().await;
    projector.stop().await;
    api.stop().await;
    env.cleanup().await;
    Ok(Run {
        raw_js,
        raw_pg,
        drain,
        accepted,
        end_to_end,
        single_accepted,
        single_end_to_end,
        memory,
        cpu: phases,
    })
}

/// Asks `/dora?days=7` once a second while `asking`; returns the answers with `200`,
/// the others, and the latencies of the `200`s.
async fn ask_dora(
    url: String,
    asking: Arc<AtomicBool>,
) -> anyhow::Result<(usize, usize, Vec<Duration>)> {
    let client = reqwest::Client::new();
    let (mut answered, mut refused, mut latencies) = (0, 0, Vec::new());
    while asking.load(Ordering::SeqCst) {
        let started = Instant::now();
        match client.get(format!("{url}/dora?days=7")).send().await {
            Ok(r) if r.status() == 200 => {
                let _ = r.bytes().await?;
                latencies.push(started.elapsed());
                answered += 1;
            }
            _ => refused += 1,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok((answered, refused, latencies))
}
