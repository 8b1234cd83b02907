//! The real `dora-api` binary: it checks and delivers on its own, and refuses to start
//! on a malformed setting, naming it.

// A panic in a test is a failed assertion with a line number.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};

use chrono::{SubsecRound, TimeDelta, Utc};
use dora_system_tests::slack::SlackStandIn;
use dora_system_tests::{eventually, TestEnv};
use serde_json::{json, Value};

const BINARY: &str = env!("CARGO_BIN_EXE_dora-api");

fn dora_api() -> Command {
    let mut command = Command::new(BINARY);
    command
        .env("DORA_API_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "dora_api=info")
        .stdin(Stdio::null());
    command
}

/// Stops the child as a service manager would (SIGTERM); kills it if it lingers.
struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_checks_and_delivers_on_its_own() {
    let env = TestEnv::new().await;
    let now = Utc::now().trunc_subsecs(0);
    // checkout: no failure in 4 attempts last week, 3 of 6 this week.
    let mut events: Vec<Value> = Vec::new();
    for i in 0..4 {
        let at = now - TimeDelta::days(8) - TimeDelta::hours(i);
        events.push(
            json!({"id": format!("p{i}"), "kind": "deploy", "service": "checkout",
            "git_sha": format!("{:04x}", 0x1000 + i), "occurred_at": at.to_rfc3339()}),
        );
    }
    for i in 0..6 {
        let at = now - TimeDelta::days(1) - TimeDelta::hours(i);
        events.push(
            json!({"id": format!("c{i}"), "kind": "deploy", "service": "checkout",
            "git_sha": format!("{:04x}", 0x2000 + i), "succeeded": i >= 3,
            "occurred_at": at.to_rfc3339()}),
        );
    }
    env.seed(&events).await;
    let stand_in = SlackStandIn::start().await;

    let mut command = dora_api();
    command
        .env("DATABASE_URL", &env.database_url)
        .env("DORA_ALERT_INTERVAL", "1s")
        .env("DORA_SLACK_WEBHOOK_URL", &stand_in.url)
        .env("DORA_PUBLIC_URL", "https://dora.example.com")
        .stdout(Stdio::null());
    if std::env::var_os("TEST_LOG").is_none() {
        command.stderr(Stdio::null());
    }
    let child = Stop(command.spawn().unwrap());

    eventually("both alerts arrive", || async {
        stand_in.delivered().len() >= 2
    })
    .await;
    let texts = stand_in.texts();
    // Both checkout and all services together (checkout is the only service).
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("checkout") && t.contains("50% (3 of 6")),
        "{texts:#?}"
    );
    assert!(texts
        .iter()
        .all(|t| t.contains("https://dora.example.com/dashboard?")));

    // SIGTERM: a clean stop.
    let pid = child.0.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let mut child = child;
    let mut exited = None;
    eventually("dora-api exits on SIGTERM", || {
        let done = child.0.try_wait().unwrap();
        exited = exited.or(done);
        async move { done.is_some() }
    })
    .await;
    assert!(exited.unwrap().success(), "{exited:?}");
    assert_eq!(stand_in.received().len(), 2);
    env.cleanup().await;
}

#[test]
fn a_malformed_setting_stops_the_binary_and_is_named() {
    for (name, value) in [
        ("DORA_ALERT_INTERVAL", "soon"),
        ("DORA_ALERT_DAYS", "0"),
        ("DORA_ALERT_ENVIRONMENTS", "prod,"),
        ("DORA_ALERT_MIN_ATTEMPTS", "-1"),
        ("DORA_ALERT_CFR_POINTS", "ten"),
        ("DORA_ALERT_LEAD_TIME_RISE", "-1"),
        ("DORA_ALERT_LEAD_TIME_MIN", "1 hour"),
        ("DORA_PUBLIC_URL", "dora.example.com"),
        (
            "DORA_SLACK_WEBHOOK_URL",
            "hooks.slack.com/services/T0/B0/s3cr3t",
        ),
        ("DORA_API_TOKENS", "team=s3cr3t"),
        (
            "DORA_API_TOKENS",
            "team=s3cr3t-long-enough,team=s3cr3t-long-enough2",
        ),
    ] {
        let out = dora_api()
            .env(name, value)
            // Nowhere: the settings are refused before any connection is tried.
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nowhere")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}={value} was accepted");
        assert!(stderr.contains(name), "{name}={value}: {stderr}");
        if matches!(name, "DORA_SLACK_WEBHOOK_URL" | "DORA_API_TOKENS") {
            assert!(
                !stderr.contains("s3cr3t"),
                "the secret is printed: {stderr}"
            );
        }
    }
}

/// Starts the binary on a free port with `DATABASE_URL`; returns it and its base URL.
fn spawn_on_free_port(database_url: &str) -> (Stop, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = dora_api();
    command
        .env("DATABASE_URL", database_url)
        .env("DORA_API_ADDR", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    (
        Stop(command.spawn().unwrap()),
        format!("http://127.0.0.1:{port}"),
    )
}

#[tokio::test]
async fn on_a_missing_database_readyz_and_dora_say_why() {
    let missing = format!("dora_test_absent_{}", std::process::id());
    let url = std::env::var("DORA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    let (_child, base) = spawn_on_free_port(&format!("{url}/{missing}"));
    eventually("dora-api answers /healthz", || async {
        reqwest::get(format!("{base}/healthz")).await.is_ok()
    })
    .await;

    let (status, body) = dora_system_tests::get_json(&base, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains(&missing), "names the database: {body}");
    assert!(error.contains("dora-projector"), "says what to do: {body}");

    for path in ["/dora", "/dora/trend", "/dora/failures"] {
        let (status, body) = dora_system_tests::get_json(&base, path).await;
        assert_eq!(status, 503, "{path}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(&missing), "{path}: {body}");
    }
    let page = reqwest::get(format!("{base}/dashboard")).await.unwrap();
    assert_eq!(page.status(), 503);
}

#[tokio::test]
async fn on_a_database_without_the_store_readyz_and_dora_say_why() {
    // A database that exists but was never migrated: the projector has not run.
    let env = TestEnv::new().await;
    sqlx::query("DROP SCHEMA dora CASCADE")
        .execute(&env.pool)
        .await
        .unwrap();
    let (_child, base) = spawn_on_free_port(&env.database_url);
    eventually("dora-api answers /healthz", || async {
        reqwest::get(format!("{base}/healthz")).await.is_ok()
    })
    .await;
    let (status, body) = dora_system_tests::get_json(&base, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("dora-projector"),
        "{body}"
    );
    let (status, body) = dora_system_tests::get_json(&base, "/dora").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not migrated"),
        "{body}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn readyz_tells_how_old_the_newest_event_is_and_stays_ready_without_events() {
    let env = TestEnv::new().await;
    let (_child, base) = spawn_on_free_port(&env.database_url);
    eventually("dora-api answers /healthz", || async {
        reqwest::get(format!("{base}/healthz")).await.is_ok()
    })
    .await;
    let (status, body) = dora_system_tests::get_json(&base, "/readyz").await;
    assert_eq!(status, 200, "an empty store is ready: {body}");
    assert_eq!(body["last_event"], Value::Null, "{body}");

    env.seed(&[json!({"id": "e1", "kind": "rollback", "service": "api", "git_sha": "abcd"})])
        .await;
    let (status, body) = dora_system_tests::get_json(&base, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let age = body["last_event"]["age_seconds"].as_f64().unwrap();
    assert!((0.0..60.0).contains(&age), "{body}");
    assert!(body["last_event"]["received_at"].is_string(), "{body}");
    env.cleanup().await;
}
