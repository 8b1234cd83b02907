//! Private servers and the real dora binaries as child processes, for the tests that
//! break things on purpose: a nats-server and a PostgreSQL of the test's own (random
//! free ports, temporary directories), so killing or stopping them never disturbs the
//! machine's shared services, and `dora-ingest`, `dora-projector` and `dora-api` as the
//! executables a deployment runs, so a SIGKILL is a real one (and the benchmarks can
//! read each one's memory and CPU from `/proc`).
//!
//! Every child is killed and every directory removed on drop, panics included. A child's
//! stdout and stderr go to a log file in its directory; when a test fails, the drop
//! prints the end of each log, which is usually where the story is.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

/// The harness's polling loop, for the scenarios that wait on the servers.
pub use crate::wait_until;

/// nats-server as Debian installs it.
const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// Where PostgreSQL's server programs live: Debian's newest `/usr/lib/postgresql/<N>/bin`
/// (the version `deploy/services.sh` installs), or `pg_config --bindir` elsewhere.
pub fn pg_bin() -> PathBuf {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max();
    if let Some((_, bin)) = newest {
        return bin;
    }
    Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|bin| bin.join("initdb").exists())
        .expect("PostgreSQL's server programs (initdb, postgres): install postgresql")
}

/// A directory of its own under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A new empty directory whose name starts with `tag`.
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{tag}-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A port nobody listens on right now. Another process could take it before the
/// caller binds it; on a test machine that is rare enough.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`.
pub async fn wait_for_port(what: &str, port: u16) {
    wait_until(
        &format!("{what} on port {port}"),
        Duration::from_secs(30),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        },
    )
    .await;
}

/// Sends `signal` (`TERM`, `INT`, ...) to `pid` with kill(1): std can only SIGKILL.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {signal} {pid} failed");
}

/// The `(uid, gid)` to run PostgreSQL as: initdb and postgres refuse to run as root, so
/// a root test runs them as the `postgres` user; anyone else runs them as themselves.
fn postgres_user() -> Option<(u32, u32)> {
    let id = |args: &[&str]| -> Option<u32> {
        let out = Command::new("id").args(args).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id(&["-u"])? != 0 {
        return None;
    }
    match (id(&["-u", "postgres"]), id(&["-g", "postgres"])) {
        (Some(uid), Some(gid)) => Some((uid, gid)),
        _ => panic!("running as root, and there is no `postgres` user to run PostgreSQL as"),
    }
}

/// One child process that can be started again with the same command line, killed, or
/// stopped with a signal. Killed on drop.
#[derive(Debug)]
pub struct Proc {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(String, String)>,
    user: Option<(u32, u32)>,
    log: PathBuf,
    child: Option<std::process::Child>,
}

impl Proc {
    /// A process not started yet; its output goes to `log` (appended, over restarts).
    pub fn new(name: &str, program: impl Into<PathBuf>, log: PathBuf) -> Proc {
        Proc {
            name: name.to_owned(),
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            user: None,
            log,
            child: None,
        }
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Proc
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable (the environment is otherwise cleared, so nothing
    /// of the shell the tests run in, a `DATABASE_URL` say, leaks into the child).
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Proc {
        self.envs.push((name.to_owned(), value.into()));
        self
    }

    fn user(mut self, user: Option<(u32, u32)>) -> Proc {
        self.user = user;
        self
    }

    /// Starts it (again).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {} ({}): {e}", self.name, self.program.display()));
        self.child = Some(child);
    }

    /// SIGKILL, and waits until it is gone: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `sig` and waits until it exits (SIGKILL after 30 s).
    pub async fn stop(&mut self, sig: &str) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(child.id(), sig);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "{} did not stop on SIG{sig} within 30 s; killing it",
            self.name
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Its process id while it runs, for reading `/proc/<pid>`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Whether it is running (it may have exited by itself).
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The end of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- last lines of {} ({}) ----\n{}",
                self.name,
                self.log.display(),
                self.log_tail(30)
            );
        }
    }
}

/// A private nats-server with JetStream, its store in a temporary directory.
#[derive(Debug)]
pub struct Nats {
    proc: Proc,
    port: u16,
    // Last: the process is gone before its store directory is removed.
    _dir: TempDir,
}

impl Nats {
    /// Starts one on a free port and waits until it accepts connections.
    pub async fn start() -> Nats {
        let dir = TempDir::new("dora-faults-nats");
        let port = free_port();
        let store = dir.path().join("store");
        let mut proc = Proc::new("nats-server", NATS_SERVER, dir.path().join("nats.log")).args([
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string().into(),
            "-js".into(),
            "-sd".into(),
            OsString::from(store),
        ]);
        proc.start();
        wait_for_port("nats-server", port).await;
        Nats {
            proc,
            port,
            _dir: dir,
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops it as a service manager would (SIGTERM) and waits until it is gone.
    pub async fn stop(&mut self) {
        self.proc.stop("TERM").await;
    }

    /// SIGKILL, as a crash or the OOM killer would: nothing is flushed.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts it again on the same port with the same store; returns once it accepts
    /// connections.
    pub async fn start_again(&mut self) {
        self.proc.start();
        wait_for_port("nats-server", self.port).await;
    }
}

/// Three nats-servers routed into one JetStream cluster on loopback, each with its own
/// name and store: a stream with 3 replicas there survives the loss of any one.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<(Proc, u16)>,
    // Last: the processes are gone before their store directories are removed.
    _dir: TempDir,
}

impl NatsCluster {
    /// Starts the three and waits until JetStream has elected its leader and answers.
    pub async fn start() -> NatsCluster {
        let dir = TempDir::new("dora-faults-cluster");
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes = ports
            .iter()
            .map(|(_, route)| format!("nats://127.0.0.1:{route}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for (i, (port, route)) in ports.iter().enumerate() {
            let name = format!("n{i}");
            let mut proc = Proc::new(
                &format!("nats-server {name}"),
                NATS_SERVER,
                dir.path().join(format!("{name}.log")),
            )
            .args([
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string().into(),
                "-js".into(),
                "-sd".into(),
                OsString::from(dir.path().join(&name)),
                "--server_name".into(),
                name.clone().into(),
                "--cluster_name".into(),
                "dora".into(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{route}").into(),
                "--routes".into(),
                routes.clone().into(),
            ]);
            proc.start();
            nodes.push((proc, *port));
        }
        for (_, port) in &nodes {
            wait_for_port("nats-server", *port).await;
        }
        let cluster = NatsCluster { nodes, _dir: dir };
        let urls = cluster.urls();
        // The servers accept connections before the routes form and a JetStream leader
        // is elected; until then every JetStream request fails.
        wait_until(
            "the JetStream cluster has a leader",
            Duration::from_secs(60),
            || async {
                let Ok(client) = dora_event::stream::connect(&urls).await else {
                    return false;
                };
                // A leader answers "stream not found" for a stream nobody made; without
                // one the request times out or JetStream says it is unavailable.
                match async_nats::jetstream::new(client)
                    .get_stream("DORA_CLUSTER_PROBE")
                    .await
                {
                    Err(e) => matches!(
                        e.kind(),
                        async_nats::jetstream::context::GetStreamErrorKind::JetStream(j)
                            if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
                    ),
                    Ok(_) => true,
                }
            },
        )
        .await;
        cluster
    }

    /// Every node's URL, comma-separated, as `NATS_URL` takes them.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|(_, port)| format!("nats://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILLs node `i`, as a lost machine would.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].0.kill();
    }
}

/// A private PostgreSQL cluster in a temporary directory: trust authentication on
/// 127.0.0.1, superuser `postgres`, fsync off (the machine does not crash mid-test).
#[derive(Debug)]
pub struct Postgres {
    proc: Proc,
    port: u16,
    // Last: the server is gone before its data directory is removed.
    dir: TempDir,
}

impl Postgres {
    /// initdb, start, and create database `dora`; returns once it answers queries.
    pub async fn start() -> Postgres {
        let dir = TempDir::new("dora-faults-pg");
        let user = postgres_user();
        if user.is_some() {
            // The cluster's owner must be able to write here.
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(status.success(), "chown postgres {}", dir.path().display());
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(pg_bin().join("initdb"));
        initdb
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .arg("-D")
            .arg(&data)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        if let Some((uid, gid)) = user {
            use std::os::unix::process::CommandExt;
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut proc = Proc::new(
            "postgres",
            pg_bin().join("postgres"),
            dir.path().join("postgres.log"),
        )
        .args([OsString::from("-D"), data.into_os_string()])
        .args(["-p".to_owned(), port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .args(["-c", "max_connections=50"])
        .args([
            OsString::from("-c"),
            format!("unix_socket_directories={}", dir.path().display()).into(),
        ])
        .user(user);
        proc.start();
        let pg = Postgres { proc, port, dir };
        pg.wait_ready().await;
        let mut admin = PgConnection::connect(&pg.url("postgres"))
            .await
            .expect("connect to the private PostgreSQL");
        sqlx::query("CREATE DATABASE dora")
            .execute(&mut admin)
            .await
            .expect("create database dora");
        pg
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops it with a fast shutdown (SIGINT: open transactions roll back, clients are
    /// disconnected) and waits until it is gone.
    pub async fn stop(&mut self) {
        self.proc.stop("INT").await;
    }

    /// Starts it again on the same port and data; returns once it answers queries.
    pub async fn start_again(&mut self) {
        self.proc.start();
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let url = self.url("postgres");
        wait_until("PostgreSQL to answer", Duration::from_secs(60), || async {
            PgConnection::connect(&url).await.is_ok()
        })
        .await;
    }

    /// Its directory (data and log), for backups.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Which dora binary a [`Dora`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// `dora-ingest`, the HTTP gateway.
    Ingest,
    /// `dora-projector`.
    Projector,
    /// `dora-api`, the metrics API and dashboard.
    Api,
}

impl Binary {
    fn name(self) -> &'static str {
        match self {
            Binary::Ingest => "dora-ingest",
            Binary::Projector => "dora-projector",
            Binary::Api => "dora-api",
        }
    }
}

/// A dora process, the real executable, serving HTTP on a fixed port so it comes back
/// where its clients look for it after a restart.
#[derive(Debug)]
pub struct Dora {
    proc: Proc,
    port: u16,
    _dir: TempDir,
}

impl Dora {
    /// Starts `binary` with `envs` (plus its address setting on a free port) and waits
    /// until it answers `/healthz`.
    pub async fn start(binary: Binary, envs: &[(&str, String)]) -> Dora {
        let name = binary.name();
        let dir = TempDir::new(&format!("dora-faults-{name}"));
        let port = free_port();
        let addr_var = match binary {
            Binary::Ingest => "DORA_INGEST_ADDR",
            Binary::Projector => "DORA_PROJECTOR_ADDR",
            Binary::Api => "DORA_API_ADDR",
        };
        let mut proc = Proc::new(
            name,
            crate::binary::built(name),
            dir.path().join(format!("{name}.log")),
        )
        .env(addr_var, format!("127.0.0.1:{port}"))
        .env("RUST_LOG", format!("{}=info,warn", name.replace('-', "_")));
        for (k, v) in envs {
            proc = proc.env(k, v.clone());
        }
        proc.start();
        let mut dora = Dora {
            proc,
            port,
            _dir: dir,
        };
        dora.wait_healthy().await;
        dora
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no graceful shutdown, nothing flushed, requests in flight cut.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts it again with the same settings and waits until it answers `/healthz`.
    pub async fn start_again(&mut self) {
        self.proc.start();
        self.wait_healthy().await;
    }

    async fn wait_healthy(&mut self) {
        let url = format!("{}/healthz", self.url());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            assert!(
                self.proc.running(),
                "{} exited at start:\n{}",
                self.proc.name,
                self.proc.log_tail(30)
            );
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} did not answer {url} within 60 s", self.proc.name);
    }

    /// Waits until `/readyz` answers 200 (connected to what it needs).
    pub async fn wait_ready(&self, limit: Duration) {
        let url = format!("{}/readyz", self.url());
        wait_until(&format!("{} ready", self.proc.name), limit, || async {
            matches!(reqwest::get(&url).await, Ok(r) if r.status().is_success())
        })
        .await;
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.proc.running()
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Stops it as a service manager would (SIGTERM; SIGKILL after 30 s) and waits
    /// until it is gone.
    pub async fn stop(&mut self) {
        self.proc.stop("TERM").await;
    }

    /// The end of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }
}
