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
