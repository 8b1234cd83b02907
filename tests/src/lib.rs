//! The system-test harness: each test gets its own PostgreSQL database and its own
//! JetStream stream and subject prefix on the real servers, and starts the real
//! processes in-process through their `run(...)` functions on port 0.
//!
//! Servers: `DORA_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432`) and
//! `DORA_TEST_NATS_URL` (default `nats://127.0.0.1:4222`). Logs only with `TEST_LOG=1`.
//!
//! The fault-injection tests use none of that: [`children`] runs private servers and the
//! real binaries as child processes, and [`flow`] drives events through them.

pub mod binary;
pub mod children;
pub mod emit;
pub mod flow;
pub mod naive;
pub mod slack;
pub mod webhooks;

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use chrono::{DateTime, Utc};
use dora_event::settings::StreamSettings;
use dora_projector::decode::{Decoded, Stored};
use serde_json::Value;
use sqlx::postgres::PgPool;
use sqlx::{Connection, PgConnection};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The token the tests send with; its name, `ci`, becomes the events' source.
pub const CI_TOKEN: &str = "ci-secret-0123456789";
/// A second token, named `pager`.
pub const PAGER_TOKEN: &str = "pager-secret-0123456789";
/// The key the gateway signs sources with and the projector checks them with.
pub const SOURCE_KEY: &str = "test-source-key-0123456789abcdef-0123";

/// [`SOURCE_KEY`] (or a list of keys), as the processes hold it.
pub fn source_keys(value: &str) -> dora_event::signature::Sources {
    dora_event::signature::Sources::parse(value).expect("test source keys")
}

fn server_url() -> String {
    std::env::var("DORA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

fn nats_url() -> String {
    std::env::var("DORA_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "dora_ingest=debug,dora_projector=debug,dora_api=debug,warn",
            ))
            .with_test_writer()
            .try_init();
    }
}

/// One test's isolated world.
#[derive(Debug)]
pub struct TestEnv {
    /// This test's database.
    pub db_name: String,
    /// URL of this test's database.
    pub database_url: String,
    /// This test's stream.
    pub stream: String,
    /// This test's subject prefix.
    pub prefix: String,
    /// A NATS connection for publishing straight to the stream.
    pub nats: async_nats::Client,
    /// JetStream on that connection.
    pub js: jetstream::Context,
    /// A read-write pool on the live store, for assertions.
    pub pool: PgPool,
    next_seq: std::sync::atomic::AtomicI64,
}

/// A process started in-process; `stop` shuts it down as SIGTERM would.
#[derive(Debug)]
pub struct Running {
    /// `http://127.0.0.1:<port>` for the HTTP processes.
    pub url: String,
    shutdown: watch::Sender<bool>,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Graceful shutdown; returns what the process returned.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .context("process did not stop within 30 s")??
    }

    /// Waits for the process to stop by itself; returns what it returned.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.handle.await?
    }
}

impl TestEnv {
    /// A fresh database (migrated) and a fresh stream.
    pub async fn new() -> TestEnv {
        init_logs();
        let id = uuid::Uuid::now_v7().simple().to_string();
        let tag = &id[id.len() - 12..];
        let db_name = format!("dora_test_{tag}");
        let mut admin = PgConnection::connect(&format!("{}/postgres", server_url()))
            .await
            .expect("PostgreSQL at DORA_TEST_DATABASE_URL (start it with deploy/services.sh)");
        sqlx::query(&format!("CREATE DATABASE {db_name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let database_url = format!("{}/{db_name}", server_url());
        let pool = dora_projector::store::connect(&database_url, dora_event::STORE_SCHEMA, 4)
            .await
            .expect("connect to test database");
        dora_projector::store::migrate(&pool, dora_event::STORE_SCHEMA)
            .await
            .expect("migrate");
        let nats = async_nats::connect(nats_url())
            .await
            .expect("nats-server at DORA_TEST_NATS_URL (start it with deploy/services.sh)");
        let js = jetstream::new(nats.clone());
        static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
        SWEPT.get_or_init(|| sweep_old_streams(&js)).await;
        let stream = format!("DORA_TEST_{tag}");
        let prefix = format!("dora_test_{tag}.events");
        dora_event::stream::ensure(&js, &stream, &prefix, 1)
            .await
            .expect("create test stream");
        TestEnv {
            db_name,
            database_url,
            stream,
            prefix,
            nats,
            js,
            pool,
            next_seq: std::sync::atomic::AtomicI64::new(1),
        }
    }

    /// The stream settings the processes get.
    pub fn stream_settings(&self) -> StreamSettings {
        StreamSettings {
            nats_url: nats_url(),
            stream: self.stream.clone(),
            subject_prefix: self.prefix.clone(),
            replicas: 1,
        }
    }

    /// The gateway's config, with the two test tokens.
    pub fn ingest_config(&self) -> dora_ingest::Config {
        dora_ingest::Config {
            stream: self.stream_settings(),
            tokens: dora_ingest::auth::Tokens::parse(&format!("ci={CI_TOKEN},pager={PAGER_TOKEN}"))
                .expect("test tokens"),
            sources: Some(source_keys(SOURCE_KEY)),
            addr: "127.0.0.1:0".parse().expect("addr"),
            max_body_bytes: 2 * 1024 * 1024,
            publish_timeout: Duration::from_secs(10),
            webhooks: Default::default(),
            http: Default::default(),
            log: Default::default(),
        }
    }

    /// The projector's config; a short ack wait so redelivery tests are quick.
    pub fn projector_config(&self) -> dora_projector::Config {
        dora_projector::Config {
            command: None,
            stream: self.stream_settings(),
            database: dora_event::settings::DatabaseSettings {
                url: self.database_url.clone(),
            },
            sources: Some(source_keys(SOURCE_KEY)),
            consumer: Some("dora-projector".to_owned()),
            batch_size: 1000,
            bulk_from: 50_000,
            ack_wait: Duration::from_secs(2),
            addr: "127.0.0.1:0".parse().expect("addr"),
            log: Default::default(),
        }
    }

    /// The API's config.
    pub fn api_config(&self) -> dora_api::Config {
        dora_api::Config {
            database: dora_event::settings::DatabaseSettings {
                url: self.database_url.clone(),
            },
            addr: "127.0.0.1:0".parse().expect("addr"),
            db_connections: 4,
            statement_timeout: std::time::Duration::from_secs(30),
            http: Default::default(),
            tokens: None,
            log: Default::default(),
            alerts: dora_api::alerts::AlertSettings::default(),
        }
    }

    /// Starts the gateway on port 0.
    pub async fn spawn_ingest(&self, config: dora_ingest::Config) -> Running {
        spawn_http(|listener, rx| async move { Ok(dora_ingest::run(config, listener, rx).await?) })
            .await
    }

    /// Starts the gateway on a listener the test bound, e.g. to bring it back on the
    /// port a client is retrying.
    pub async fn spawn_ingest_on(
        &self,
        config: dora_ingest::Config,
        listener: TcpListener,
    ) -> Running {
        spawn_http_on(listener, |listener, rx| async move {
            Ok(dora_ingest::run(config, listener, rx).await?)
        })
        .await
    }

    /// The NATS server the tests use.
    pub fn nats_url(&self) -> String {
        nats_url()
    }

    /// Messages in this test's stream: what was published, whether or not projected.
    pub async fn stream_messages(&self) -> u64 {
        self.js
            .get_stream(&self.stream)
            .await
            .expect("stream")
            .info()
            .await
            .expect("stream info")
            .state
            .messages
    }

    /// Starts the projector, its health and metrics server on port 0.
    pub async fn spawn_projector(&self, config: dora_projector::Config) -> Running {
        spawn_http(
            |listener, rx| async move { Ok(dora_projector::run(config, listener, rx).await?) },
        )
        .await
    }

    /// Starts the API on port 0.
    pub async fn spawn_api(&self) -> Running {
        self.spawn_api_with(self.api_config()).await
    }

    /// Starts the API on port 0 with this config.
    pub async fn spawn_api_with(&self, config: dora_api::Config) -> Running {
        spawn_http(|listener, rx| async move { Ok(dora_api::run(config, listener, rx).await?) })
            .await
    }

    /// Publishes a raw message straight to NATS and waits for the JetStream ack.
    pub async fn publish_raw(
        &self,
        subject: &str,
        body: &[u8],
        msg_id: Option<&str>,
    ) -> jetstream::publish::PublishAck {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(id) = msg_id {
            headers.insert(dora_event::MSG_ID_HEADER, id);
        }
        self.js
            .publish_with_headers(subject.to_owned(), headers, body.to_vec().into())
            .await
            .expect("publish")
            .await
            .expect("JetStream ack")
    }

    /// Publishes valid deploys `e-<i>` straight to the stream, without `Nats-Msg-Id`.
    pub async fn publish_deploys(&self, ids: std::ops::Range<usize>) {
        for i in ids {
            let body = serde_json::json!({"id": format!("e-{i}"), "kind": "deploy",
                "service": "api", "git_sha": format!("{i:06x}")});
            self.publish_raw(
                &self.subject("prod", "api", "deploy"),
                body.to_string().as_bytes(),
                None,
            )
            .await;
        }
    }

    /// The durable projector consumer's state, fresh from the server.
    pub async fn consumer_info(&self) -> jetstream::consumer::Info {
        self.js
            .get_stream(&self.stream)
            .await
            .expect("stream")
            .consumer_info("dora-projector")
            .await
            .expect("consumer info")
    }

    /// Waits until the projector's consumer has nothing pending and nothing unacked.
    pub async fn wait_until_all_acked(&self) {
        eventually("every message acked", || async {
            let info = self.consumer_info().await;
            info.num_ack_pending == 0 && info.num_pending == 0
        })
        .await;
    }

    /// The subject an event of this kind belongs on.
    pub fn subject(&self, environment: &str, service: &str, kind: &str) -> String {
        format!("{}.{environment}.{service}.{kind}", self.prefix)
    }

    /// Rows in the log.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("count events")
    }

    /// Waits until the log holds `n` rows (or fails after 20 s).
    pub async fn wait_for_events(&self, n: i64) {
        eventually(&format!("{n} events in the log"), || async {
            self.event_count().await == n
        })
        .await;
    }

    /// Writes events straight into the store through the projector's batch code, in
    /// the order given and as one batch, as if they had arrived on the stream. For
    /// metric fixtures that do not need NATS.
    pub async fn seed(&self, events: &[Value]) {
        let received_at: DateTime<Utc> = Utc::now();
        let batch: Vec<Decoded> = events
            .iter()
            .map(|v| {
                let event = dora_event::validate(v, dora_event::Origin::Gateway, received_at)
                    .unwrap_or_else(|e| panic!("fixture {v}: {e}"));
                Decoded::Event(Stored {
                    event,
                    source: "fixture".to_owned(),
                    refused_source: None,
                    stream_seq: self
                        .next_seq
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst),
                    received_at,
                })
            })
            .collect();
        dora_projector::store::apply(&self.pool, &batch)
            .await
            .expect("seed");
    }

    /// Creates another empty database, `<db_name>_<suffix>`, dropped by
    /// [`TestEnv::cleanup`]; returns its URL.
    pub async fn another_database(&self, suffix: &str) -> String {
        let name = format!("{}_{suffix}", self.db_name);
        let mut admin = admin().await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create another database");
        format!("{}/{name}", server_url())
    }

    /// A URL of this test's database as a read replica would serve it: a role of its
    /// own, `<db_name>_reader`, that may only read schema `dora` and whose every
    /// transaction is read-only, so a write, `CREATE SCHEMA` included, is refused.
    /// The role is dropped by [`TestEnv::cleanup`].
    pub async fn read_only_url(&self) -> String {
        let role = format!("{}_reader", self.db_name);
        // A password too, for servers that do not trust loopback; a test value.
        let password = "reader-0123456789";
        for statement in [
            format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"),
            format!("ALTER ROLE {role} SET default_transaction_read_only = on"),
            format!(
                "GRANT USAGE ON SCHEMA {} TO {role}",
                dora_event::STORE_SCHEMA
            ),
            format!(
                "GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {role}",
                dora_event::STORE_SCHEMA
            ),
        ] {
            sqlx::query(&statement)
                .execute(&self.pool)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        let mut url = reqwest::Url::parse(&self.database_url).expect("database URL");
        url.set_username(&role).expect("a user name");
        url.set_password(Some(password)).expect("a password");
        url.to_string()
    }

    /// Replaces database `to` with a copy of `from`, as a backup or a restore would:
    /// whoever is connected to either is cut off. `to` is dropped by
    /// [`TestEnv::cleanup`] when it is named `<db_name>_<suffix>`.
    pub async fn copy_database(&self, from: &str, to: &str) {
        let mut admin = admin().await;
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(from)
            .execute(&mut admin)
            .await
            .expect("disconnect the source");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {to} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .expect("drop the target");
        sqlx::query(&format!("CREATE DATABASE {to} TEMPLATE {from}"))
            .execute(&mut admin)
            .await
            .expect("copy the database");
    }

    /// Deletes the stream and drops the database (and the others, and the roles, made
    /// for this test).
    pub async fn cleanup(self) {
        let _ = self.js.delete_stream(&self.stream).await;
        self.pool.close().await;
        if let Ok(mut admin) = PgConnection::connect(&format!("{}/postgres", server_url())).await {
            let mut names: Vec<String> = sqlx::query_scalar(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            )
            .bind(format!("{}_", self.db_name))
            .fetch_all(&mut admin)
            .await
            .unwrap_or_default();
            names.push(self.db_name.clone());
            for name in names {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
            // Roles outlive databases; with the databases gone they hold nothing.
            let roles: Vec<String> =
                sqlx::query_scalar("SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)")
                    .bind(format!("{}_", self.db_name))
                    .fetch_all(&mut admin)
                    .await
                    .unwrap_or_default();
            for role in roles {
                let _ = sqlx::query(&format!("DROP ROLE IF EXISTS {role}"))
                    .execute(&mut admin)
                    .await;
            }
        }
    }
}

/// A connection to the server's `postgres` database, for creating and dropping others.
async fn admin() -> PgConnection {
    PgConnection::connect(&format!("{}/postgres", server_url()))
        .await
        .expect("PostgreSQL at DORA_TEST_DATABASE_URL")
}

/// Deletes test streams left by runs that failed before their cleanup (older than an
/// hour, so a run going on beside this one keeps its own).
async fn sweep_old_streams(js: &jetstream::Context) {
    use futures::TryStreamExt;
    let Ok(infos) = js.streams().try_collect::<Vec<_>>().await else {
        return;
    };
    let cutoff = Utc::now() - chrono::TimeDelta::hours(1);
    for info in infos {
        if info.config.name.starts_with("DORA_TEST_") && info.created < cutoff {
            let _ = js.delete_stream(&info.config.name).await;
        }
    }
}

/// Polls `check` every 20 ms until it is true; panics with `what` after 20 s.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_until(what, Duration::from_secs(20), check).await;
}

/// Polls `check` every 20 ms until it is true; panics with `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {limit:?} waiting for: {what}");
}

/// Starts an HTTP process on port 0 and waits until it answers `/healthz`.
async fn spawn_http<F, Fut>(run: F) -> Running
where
    F: FnOnce(TcpListener, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    spawn_http_on(listener, run).await
}

/// Starts an HTTP process on `listener` and waits until it answers `/healthz`.
async fn spawn_http_on<F, Fut>(listener: TcpListener, run: F) -> Running
where
    F: FnOnce(TcpListener, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (shutdown, rx) = watch::channel(false);
    let handle = tokio::spawn(run(listener, rx));
    wait_for_http(&format!("{url}/healthz")).await;
    Running {
        url,
        shutdown,
        handle,
    }
}

async fn wait_for_http(url: &str) {
    let client = reqwest::Client::new();
    eventually(&format!("{url} to answer"), || async {
        client.get(url).send().await.is_ok()
    })
    .await;
}

/// `POST /events` with a bearer token; returns the status and the JSON body.
pub async fn post_events(base: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    post_raw(
        base,
        token,
        "application/json",
        serde_json::to_vec(body).expect("json"),
    )
    .await
}

/// `POST /events` with any content type and body.
pub async fn post_raw(
    base: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/events"))
        .header("content-type", content_type)
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("POST /events");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// `GET {base}{path}`; returns the status and the JSON body.
pub async fn get_json(base: &str, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}{path}")).await.expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// xorshift64*: a reproducible pseudo-random sequence for generated logs, without a
/// dependency. Not for anything secret.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A sequence from `seed` (any value but 0 works; 0 is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A log writer (`MakeWriter` through a closure) that keeps what is written, for
/// reading back. With a current-thread runtime the processes' tasks run on the test's
/// thread, so a subscriber set for that thread sees their logs and no other test's.
#[derive(Debug, Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Captures the JSON log lines that `filter` lets through, from this thread, until
    /// the guard is dropped: a process started in the test logs into it.
    pub fn json_logs(filter: &str) -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = dora_event::process::subscriber(
            filter,
            dora_event::settings::LogFormat::Json,
            false,
            move || writer.clone(),
        );
        (captured, tracing::subscriber::set_default(subscriber))
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut kept) = self.0.lock() {
            kept.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
