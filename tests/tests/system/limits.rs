//! The HTTP limits of the gateway and the API: a client that never finishes its headers
//! is disconnected while others are served, shutdown does not wait for it, a request
//! over the in-flight limit gets `503` with `Retry-After` at once, and a request that
//! runs too long is stopped. Short limits come through the config; every wait is on a
//! condition with a deadline.

use std::time::Duration;

use dora_system_tests::{eventually, get_json, TestEnv, CI_TOKEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Well past every limit the tests set: only a server that never closes gets there.
const DEADLINE: Duration = Duration::from_secs(20);

/// A connection that sent `bytes` and then stalls.
async fn stalled(url: &str, bytes: &str) -> TcpStream {
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

/// Everything the server sends until it closes the connection, or `None` if it is
/// still open at the deadline.
async fn read_until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut received = Vec::new();
    match tokio::time::timeout(DEADLINE, stream.read_to_end(&mut received)).await {
        Ok(_) => Some(String::from_utf8_lossy(&received).into_owned()),
        Err(_) => None,
    }
}

const HALF_HEADERS: &str = "POST /events HTTP/1.1\r\nHost: dora\r\nContent-Ty";

#[tokio::test]
async fn a_client_stalling_in_its_headers_is_disconnected_while_others_are_served() {
    let env = TestEnv::new().await;
    let mut config = env.ingest_config();
    config.http.header_timeout = Duration::from_secs(1);
    let ingest = env.spawn_ingest(config).await;
    let mut api_config = env.api_config();
    api_config.http.header_timeout = Duration::from_secs(1);
    let api = env.spawn_api_with(api_config).await;

    for url in [&ingest.url, &api.url] {
        let mut slow = stalled(url, HALF_HEADERS).await;
        let (status, _) = get_json(url, "/readyz").await;
        assert_eq!(status, 200, "{url}: served while a client stalls");
        let idle = stalled(url, "").await;
        assert!(
            read_until_closed(&mut slow).await.is_some(),
            "{url}: a connection stalled in its headers is still open after {DEADLINE:?}"
        );
        let mut idle = idle;
        assert!(
            read_until_closed(&mut idle).await.is_some(),
            "{url}: a connection that sends nothing is still open after {DEADLINE:?}"
        );
    }

    api.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn shutdown_completes_with_a_stalled_connection_open() {
    let env = TestEnv::new().await;
    let mut config = env.ingest_config();
    config.http.header_timeout = Duration::from_secs(2);
    config.http.request_timeout = Duration::from_secs(2);
    let ingest = env.spawn_ingest(config).await;
    let mut api_config = env.api_config();
    api_config.http.header_timeout = Duration::from_secs(2);
    api_config.http.request_timeout = Duration::from_secs(2);
    let api = env.spawn_api_with(api_config).await;

    let mut open = Vec::new();
    for url in [&ingest.url, &api.url] {
        // One stalled in its headers, one idle after an answer (keep-alive).
        open.push(stalled(url, HALF_HEADERS).await);
        let mut kept = stalled(url, "GET /healthz HTTP/1.1\r\nHost: dora\r\n\r\n").await;
        let mut first = [0u8; 12];
        kept.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        open.push(kept);
    }
    // `stop` fails if the process has not returned within its own deadline.
    ingest
        .stop()
        .await
        .expect("the gateway stops with slow connections open");
    api.stop()
        .await
        .expect("the API stops with slow connections open");
    drop(open);
    env.cleanup().await;
}

/// A `POST /events` whose body never arrives in full: it holds its slot in flight.
async fn slow_body(url: &str) -> TcpStream {
    stalled(
        url,
        &format!(
            "POST /events HTTP/1.1\r\nHost: dora\r\nAuthorization: Bearer {CI_TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n[{{\"kind\""
        ),
    )
    .await
}

#[tokio::test]
async fn over_the_in_flight_limit_a_request_gets_503_with_retry_after() {
    let env = TestEnv::new().await;
    let mut config = env.ingest_config();
    config.http.max_in_flight = 1;
    let ingest = env.spawn_ingest(config).await;
    let client = reqwest::Client::new();

    let holder = slow_body(&ingest.url).await;
    // Once the slow request holds the one slot, the next is refused.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let refused = loop {
        let response = client
            .get(format!("{}/readyz", ingest.url))
            .send()
            .await
            .unwrap();
        if response.status() == 503 {
            break response;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never refused with a request in flight and a limit of 1"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        refused.headers()["retry-after"].to_str().unwrap(),
        "1",
        "Retry-After"
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("DORA_HTTP_MAX_IN_FLIGHT"),
        "{body}"
    );
    let (status, _) = get_json(&ingest.url, "/healthz").await;
    assert_eq!(status, 200, "liveness is never refused");

    // The slot comes back when the slow request ends.
    drop(holder);
    eventually("served again once the slow request is gone", || async {
        get_json(&ingest.url, "/readyz").await.0 == 200
    })
    .await;

    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn a_request_past_the_request_timeout_gets_503_naming_it() {
    let env = TestEnv::new().await;
    let mut config = env.ingest_config();
    config.http.request_timeout = Duration::from_secs(1);
    let ingest = env.spawn_ingest(config).await;

    let mut slow = slow_body(&ingest.url).await;
    let answer = read_until_closed(&mut slow)
        .await
        .expect("a request whose body never comes is still open");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("DORA_HTTP_REQUEST_TIMEOUT"), "{answer}");

    ingest.stop().await.unwrap();
    env.cleanup().await;
}

/// A nats-server of this test's own, so that it can be frozen without disturbing the
/// shared one.
struct PrivateNats {
    child: tokio::process::Child,
    url: String,
    dir: std::path::PathBuf,
}

impl PrivateNats {
    async fn start() -> PrivateNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("dora-nats-{}", uuid::Uuid::now_v7()));
        let binary = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nats-server");
        let child = tokio::process::Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server (deploy/services.sh installs it)");
        let url = format!("nats://127.0.0.1:{port}");
        eventually("the private nats-server to accept connections", || async {
            TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
        PrivateNats { child, url, dir }
    }

    /// SIGSTOP or SIGCONT: a frozen server keeps its connections open and answers
    /// nothing, as a hung one would.
    fn signal(&self, signal: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_publish_never_acknowledged_gets_503_naming_the_publish_timeout() {
    let env = TestEnv::new().await;
    let nats = PrivateNats::start().await;
    let mut config = env.ingest_config();
    config.stream.nats_url = nats.url.clone();
    // Longer than async-nats' own 5 s ack timeout: the setting must be what fires.
    config.publish_timeout = Duration::from_secs(6);
    let ingest = env.spawn_ingest(config).await;
    let event = serde_json::json!({"id": "p-1", "kind": "deploy", "service": "checkout", "git_sha": "abc123"});
    let (status, body) = dora_system_tests::post_events(&ingest.url, Some(CI_TOKEN), &event).await;
    assert_eq!(status, 202, "{body}");

    nats.signal("-STOP");
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/events", ingest.url))
        .bearer_auth(CI_TOKEN)
        .json(&serde_json::json!({"id": "p-2", "kind": "deploy", "service": "checkout", "git_sha": "abc123"}))
        .timeout(DEADLINE)
        .send()
        .await
        .expect("an answer while JetStream is frozen");
    nats.signal("-CONT");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("DORA_INGEST_PUBLISH_TIMEOUT"), "{error}");
    assert!(error.contains("retry the same request"), "{error}");

    ingest.stop().await.unwrap();
    nats.stop().await;
    env.cleanup().await;
}
