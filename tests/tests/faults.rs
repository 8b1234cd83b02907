//! Fault injection: a steady flow of events through the real `dora-ingest` and
//! `dora-projector` binaries, while one scenario after another kills or stops a part.
//! After each, every event that got a `202` is in the log exactly once, nothing is in
//! the log that was never sent, and the projector has caught up.
//!
//! Each scenario runs its own nats-server and PostgreSQL (random ports, temporary
//! directories; see `dora_system_tests::children`), so the machine's shared services are
//! never touched. The scenarios take turns: each one loads both cores of a small machine
//! on its own. Every fault is triggered by a condition of the flow (so many events in the
//! log and more pending, a request in flight), never after a fixed sleep. The counts are
//! printed; `cargo test --test faults -- --nocapture` shows them.

// A panic in a test is a failed assertion with a line number.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use dora_system_tests::children::{pg_bin, wait_until, Binary, Dora, Nats, NatsCluster, Postgres};
use dora_system_tests::flow::{self, Audit, Ledger, Plan};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use tokio::task::JoinSet;

/// One scenario at a time (see the module's comment).
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Tens of thousands of events, spread over long enough that a fault and the recovery
/// from it both happen while events are still coming.
const PLAN: Plan = Plan {
    events: 20_000,
    batch: 100,
    clients: 4,
    over: Duration::from_secs(20),
};

/// Events in the log before a fault strikes: a quarter of the flow.
const STRIKE_AT: usize = 5_000;

/// The stream the binaries use by default.
const STREAM: &str = "DORA_EVENTS";

/// A 40-character source key (`DORA_SOURCE_KEY`): the binaries run as recommended, signed.
const SOURCE_KEY: &str = "faults-source-key-0123456789abcdef012345";

/// The private NATS of a scenario: one server, or a three-node cluster.
enum Servers {
    One(Nats),
    Three(NatsCluster),
}

impl Servers {
    /// `NATS_URL` for the dora processes: every node, comma-separated.
    fn urls(&self) -> String {
        match self {
            Servers::One(nats) => nats.url(),
            Servers::Three(cluster) => cluster.urls(),
        }
    }

    /// The single server of a one-server scenario.
    fn one(&mut self) -> &mut Nats {
        match self {
            Servers::One(nats) => nats,
            Servers::Three(_) => panic!("this scenario runs on one nats-server"),
        }
    }
}

/// A private nats-server (or cluster) and PostgreSQL, and the two dora binaries on them.
struct World {
    // Fields drop in order: the dora processes go before the servers they use.
    ingest: Dora,
    projector: Dora,
    pool: PgPool,
    postgres: Postgres,
    nats: Servers,
}

impl World {
    /// On one private nats-server.
    async fn start() -> World {
        World::start_on(Servers::One(Nats::start().await), 1).await
    }

    /// On `nats`, with the stream kept in `replicas` copies.
    async fn start_on(nats: Servers, replicas: usize) -> World {
        let postgres = Postgres::start().await;
        let projector = Dora::start(
            Binary::Projector,
            &[
                ("NATS_URL", nats.urls()),
                ("DORA_STREAM_REPLICAS", replicas.to_string()),
                ("DATABASE_URL", postgres.url("dora")),
                ("DORA_SOURCE_KEY", SOURCE_KEY.to_owned()),
                // A killed projector's unacked batch comes again after this; the default
                // (30 s) would only make the test slower.
                ("DORA_PROJECTOR_ACK_WAIT_SECS", "5".to_owned()),
            ],
        )
        .await;
        projector.wait_ready(Duration::from_secs(60)).await;
        let ingest = Dora::start(
            Binary::Ingest,
            &[
                ("NATS_URL", nats.urls()),
                ("DORA_STREAM_REPLICAS", replicas.to_string()),
                ("DORA_INGEST_TOKENS", flow::TOKENS.to_owned()),
                ("DORA_SOURCE_KEY", SOURCE_KEY.to_owned()),
            ],
        )
        .await;
        ingest.wait_ready(Duration::from_secs(60)).await;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy(&postgres.url("dora"))
            .unwrap();
        World {
            ingest,
            projector,
            pool,
            postgres,
            nats,
        }
    }

    /// Starts the flow through the gateway.
    fn flow(&self, run: &str) -> (Arc<Ledger>, JoinSet<()>) {
        flow::start(self.ingest.url(), run, PLAN)
    }

    /// Rows in the log; `None` while the database does not answer.
    async fn stored(&self) -> Option<usize> {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM dora.events")
            .fetch_one(&self.pool)
            .await
            .ok()
            .map(|n| n as usize)
    }

    /// Waits until `ready` says the fault may strike. Panics if the flow ends first: a
    /// fault after the flow would prove nothing about one in the middle of it.
    async fn strike_when(&self, ledger: &Ledger, flow: &JoinSet<()>, ready: Mid) {
        let what = ready.what();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            assert!(
                !flow.is_empty() && ledger.sent_count() < PLAN.events,
                "the flow ended before {what}: the fault would not be mid-stream"
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            let accepted = ledger.accepted_count();
            let now = match ready {
                Mid::Projection => matches!(
                    self.stored().await,
                    Some(stored) if stored >= STRIKE_AT && stored < accepted
                ),
                Mid::Request => {
                    accepted >= STRIKE_AT && ledger.in_flight.load(Ordering::SeqCst) > 0
                }
            };
            if now {
                println!(
                    "fault strikes: {what} (sent {}, accepted {accepted}, stored {:?})",
                    ledger.sent_count(),
                    self.stored().await
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Keeps nats-server down until a client got an error for a request (the gateway's
    /// publishes waited for acks that could not come, then gave up): a blip shorter
    /// than the client library's reconnect buffer would test nothing.
    async fn nats_down_until_clients_feel_it(&self, ledger: &Ledger) {
        let stopped = std::time::Instant::now();
        let retries = ledger.retries.load(Ordering::SeqCst);
        wait_until(
            "a request to fail while nats-server is down",
            Duration::from_secs(60),
            || async { ledger.retries.load(Ordering::SeqCst) > retries },
        )
        .await;
        println!("nats-server down for {:?}", stopped.elapsed());
    }

    /// Lets the flow finish, waits for the projector to catch up, and checks the log:
    /// see [`assert_recovered`].
    async fn finish(
        mut self,
        scenario: &str,
        ledger: Arc<Ledger>,
        mut flow: JoinSet<()>,
    ) -> (World, Audit) {
        while let Some(done) = flow.join_next().await {
            done.unwrap();
        }
        flow::wait_caught_up(&self.nats.urls(), STREAM, Duration::from_secs(120)).await;
        let audit = Audit::take(&ledger, &self.pool).await;
        println!("{scenario}: {audit}");
        assert!(
            self.ingest.running() && self.projector.running(),
            "{scenario}: a process exited ({audit})\ningest:\n{}\nprojector:\n{}",
            self.ingest.log_tail(20),
            self.projector.log_tail(20)
        );
        assert_recovered(scenario, &audit);
        (self, audit)
    }
}

/// When a fault may strike.
#[derive(Debug, Clone, Copy)]
enum Mid {
    /// STRIKE_AT events in the log and more accepted than stored: the projector is
    /// working through a backlog.
    Projection,
    /// STRIKE_AT events accepted and a request on the wire.
    Request,
}

impl Mid {
    fn what(self) -> &'static str {
        match self {
            Mid::Projection => "the projector is mid-stream",
            Mid::Request => "a request is in flight",
        }
    }
}

/// Every request was accepted in the end (the clients retried through the fault) and
/// the log holds each accepted event once and nothing else.
fn assert_recovered(scenario: &str, audit: &Audit) {
    audit.assert_nothing_lost_or_leaked(scenario);
    assert!(
        audit.given_up == 0 && audit.accepted == audit.sent,
        "{scenario}: not every request was accepted in the end, though the clients \
         retried for minutes ({audit})"
    );
    assert_eq!(
        audit.stored as usize, audit.accepted,
        "{scenario}: the log does not hold exactly what was accepted ({audit})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_mid_stream_loses_and_repeats_nothing() {
    let _turn = TURN.lock().await;
    let mut world = World::start().await;
    let (ledger, flow) = world.flow("kill-projector");

    world.strike_when(&ledger, &flow, Mid::Projection).await;
    world.projector.kill();
    world.projector.start_again().await;

    world.finish("projector SIGKILL", ledger, flow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_mid_ingest_loses_and_repeats_nothing() {
    let _turn = TURN.lock().await;
    let mut world = World::start().await;
    let (ledger, flow) = world.flow("restart-nats");

    world.strike_when(&ledger, &flow, Mid::Request).await;
    world.nats.one().stop().await;
    world.nats_down_until_clients_feel_it(&ledger).await;
    world.nats.one().start_again().await;

    world.finish("nats-server restart", ledger, flow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_crash_mid_ingest_loses_and_repeats_nothing() {
    let _turn = TURN.lock().await;
    let mut world = World::start().await;
    let (ledger, flow) = world.flow("crash-nats");

    world.strike_when(&ledger, &flow, Mid::Request).await;
    world.nats.one().kill();
    world.nats_down_until_clients_feel_it(&ledger).await;
    world.nats.one().start_again().await;

    world.finish("nats-server SIGKILL", ledger, flow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_mid_projection_loses_and_repeats_nothing() {
    let _turn = TURN.lock().await;
    let mut world = World::start().await;
    let (ledger, flow) = world.flow("stop-postgres");

    world.strike_when(&ledger, &flow, Mid::Projection).await;
    world.postgres.stop().await;
    let stopped = std::time::Instant::now();
    // Down for a few seconds, with events still arriving: the outage is measured in
    // events accepted meanwhile, not in a sleep.
    let down_from = ledger.accepted_count();
    wait_until(
        "events accepted while PostgreSQL is down",
        Duration::from_secs(60),
        || async { ledger.accepted_count() >= down_from + 4_000 },
    )
    .await;
    world.postgres.start_again().await;
    println!("PostgreSQL was down for {:?}", stopped.elapsed());

    world.finish("PostgreSQL stop", ledger, flow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_batch_loses_and_repeats_nothing() {
    let _turn = TURN.lock().await;
    let mut world = World::start().await;
    let (ledger, flow) = world.flow("kill-gateway");

    // A kill can land just after the gateway answered, while the client has not yet
    // read the answer; then it cut nothing. So strike again, each time a request is on
    // the wire, until one kill cut a request (a client saw its connection fail).
    let mut kills = 0;
    while ledger.cut.load(Ordering::SeqCst) == 0 && kills < 10 {
        world.strike_when(&ledger, &flow, Mid::Request).await;
        world.ingest.kill();
        kills += 1;
        world.ingest.start_again().await;
        // Once a few more requests got through, a request the kill cut has failed at
        // its client (the connection was reset at the kill) and is being retried.
        let accepted = ledger.requests_accepted.load(Ordering::SeqCst);
        wait_until(
            "requests accepted after the restart",
            Duration::from_secs(60),
            || async { ledger.requests_accepted.load(Ordering::SeqCst) >= accepted + 4 },
        )
        .await;
    }

    let (_world, audit) = world.finish("gateway SIGKILL", ledger, flow).await;
    println!("gateway SIGKILL: {kills} kills");
    assert!(
        audit.cut > 0,
        "gateway SIGKILL: {kills} kills cut no request ({audit})"
    );
}

/// Past one machine: the stream in 3 replicas on a three-node cluster, the gateway and
/// the projector given every node's URL; the stream's leader is killed mid-ingest and
/// stays down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_lost_mid_ingest_loses_and_repeats_nothing() {
    let _turn = TURN.lock().await;
    let mut world = World::start_on(Servers::Three(NatsCluster::start().await), 3).await;
    let client = dora_event::stream::connect(&world.nats.urls())
        .await
        .unwrap();
    let mut stream = async_nats::jetstream::new(client)
        .get_stream(STREAM)
        .await
        .unwrap();
    let replicas = stream.info().await.unwrap().config.num_replicas;
    assert_eq!(
        replicas, 3,
        "the stream is created with DORA_STREAM_REPLICAS"
    );
    let (ledger, flow) = world.flow("cluster-node");

    world.strike_when(&ledger, &flow, Mid::Request).await;
    // The node that leads the stream: every publish and every consumer ack goes through
    // it, and the other two must elect a new leader holding every acked message.
    let leader = stream
        .info()
        .await
        .unwrap()
        .cluster
        .clone()
        .and_then(|c| c.leader)
        .expect("a replicated stream has a leader");
    let node: usize = leader
        .trim_start_matches('n')
        .parse()
        .expect("nodes are named n0, n1, n2");
    println!("killing the stream's leader, {leader}");
    let Servers::Three(cluster) = &mut world.nats else {
        unreachable!()
    };
    cluster.kill(node);
    world.finish("cluster leader SIGKILL", ledger, flow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_restored_from_a_backup_is_refilled() {
    let _turn = TURN.lock().await;
    let world = World::start().await;
    let (ledger, flow) = world.flow("restore-backup");

    world.strike_when(&ledger, &flow, Mid::Projection).await;
    let backup = world.postgres.dir().join("mid-run.dump");
    pg_tool(
        "pg_dump",
        &[
            "-Fc",
            "-f",
            &backup.to_string_lossy(),
            "-d",
            &world.postgres.url("dora"),
        ],
    );

    let (mut world, audit) = world
        .finish("before the restore", ledger.clone(), flow)
        .await;

    // The database is lost and restored from the backup; the projector comes back to it.
    world.projector.kill();
    world.pool.close().await;
    let mut admin = PgConnection::connect(&world.postgres.url("postgres"))
        .await
        .unwrap();
    for sql in ["DROP DATABASE dora WITH (FORCE)", "CREATE DATABASE dora"] {
        sqlx::query(sql).execute(&mut admin).await.unwrap();
    }
    pg_tool(
        "pg_restore",
        &["-d", &world.postgres.url("dora"), &backup.to_string_lossy()],
    );
    world.pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&world.postgres.url("dora"))
        .await
        .unwrap();
    println!(
        "restored a backup holding {:?} of {} events",
        world.stored().await,
        audit.stored
    );
    world.projector.start_again().await;
    world.projector.wait_ready(Duration::from_secs(60)).await;

    world
        .finish("restore from backup", ledger, JoinSet::new())
        .await;
}

/// Runs one of PostgreSQL's client programs (the server's version) to the end.
fn pg_tool(program: &str, args: &[&str]) {
    let out = std::process::Command::new(pg_bin().join(program))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
