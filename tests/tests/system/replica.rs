//! dora-api on a read replica: `DATABASE_URL` names a connection that cannot write (a
//! role that may only read schema `dora`, every transaction read-only, as a hot standby
//! has it), `DORA_ALERTS_DATABASE_URL` the writable database where the alert state
//! lives. Without the setting the alert state stays in `DATABASE_URL`'s database.

use std::time::Duration;

use chrono::{SubsecRound, Utc};
use dora_system_tests::{eventually, get_json, Captured, TestEnv};
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};

use crate::alerts::cfr_fixture;

/// The services whose change failure rate fires, as the alert state in `pool` says.
async fn firing(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT service FROM dora_alerts.scopes WHERE firing AND metric = 'change_failure_rate' ORDER BY service",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default()
}

/// Whether the database of `pool` holds schema `dora_alerts`.
async fn has_alert_schema(pool: &PgPool) -> bool {
    sqlx::query_scalar("SELECT to_regnamespace('dora_alerts') IS NOT NULL")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// JSON log lines at `level` from `target`.
fn lines_at(logs: &str, level: &str, target: &str) -> Vec<Value> {
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| {
            l["level"] == level && l["target"].as_str().is_some_and(|t| t.starts_with(target))
        })
        .collect()
}

// Current-thread runtime, so the API's log reaches this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn on_a_read_replica_the_api_reads_it_and_keeps_the_alert_state_on_the_primary() {
    let env = TestEnv::new().await;
    let now = Utc::now().trunc_subsecs(0);
    let events = cfr_fixture(now);
    env.seed(&events).await;
    let replica = env.read_only_url().await;

    // The stand-in replica reads the store and refuses what a standby refuses.
    let mut conn = PgConnection::connect(&replica).await.unwrap();
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM dora.events")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(held, events.len() as i64);
    let refused = sqlx::query("CREATE SCHEMA dora_alerts")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("read-only"), "{refused}");
    conn.close().await.unwrap();

    let primary_url = env.another_database("alerts").await;
    let primary = PgPool::connect(&primary_url).await.unwrap();
    let (captured, guard) = Captured::json_logs("dora_api=info");
    let mut config = env.api_config();
    config.database.url = replica;
    config.alerts.database_url = Some(primary_url);
    config.alerts.interval = Duration::from_secs(1);
    let api = env.spawn_api_with(config).await;

    // The loop's check reads the replica and writes the primary.
    eventually("checkout fires, recorded on the primary", || async {
        firing(&primary).await == ["checkout"]
    })
    .await;
    let (status, body) = get_json(&api.url, "/dora?service=checkout").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["change_failure_rate"]["failed"], 3, "{body}");
    assert_eq!(body["change_failure_rate"]["attempts"], 7, "{body}");
    let (status, body) = get_json(&api.url, "/readyz").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    assert!(body["last_event"]["received_at"].is_string(), "{body}");
    let (status, body) = get_json(&api.url, "/alerts").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scopes"][0]["service"], "checkout", "{body}");
    assert_eq!(body["messages"][0]["kind"], "firing", "{body}");
    let page = reqwest::get(format!("{}/dashboard", api.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Alerts firing (1)"), "{page}");
    api.stop().await.unwrap();
    drop(guard);

    // The message went to the primary's outbox; the store's database has no alert state.
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM dora_alerts.messages")
        .fetch_one(&primary)
        .await
        .unwrap();
    assert_eq!(messages, 1);
    assert!(
        !has_alert_schema(&env.pool).await,
        "alert state in the store"
    );
    // Nothing failed on the way: no write was tried through the replica. The one
    // warning is the alert itself, logged for want of a webhook.
    let logs = captured.text();
    assert!(lines_at(&logs, "ERROR", "dora_api").is_empty(), "{logs}");
    let warnings = lines_at(&logs, "WARN", "dora_api");
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0]["alert"].is_string(), "{logs}");
    primary.close().await;
    env.cleanup().await;
}

// Current-thread runtime, so the API's log reaches this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn without_the_setting_the_alert_state_lives_in_database_url() {
    let env = TestEnv::new().await;
    env.seed(&cfr_fixture(Utc::now().trunc_subsecs(0))).await;
    let mut config = env.api_config();
    config.alerts.interval = Duration::from_secs(1);
    assert_eq!(config.alerts.database_url, None);
    let api = env.spawn_api_with(config).await;
    eventually("checkout fires, recorded beside the store", || async {
        firing(&env.pool).await == ["checkout"]
    })
    .await;
    api.stop().await.unwrap();

    // So on a replica, without the setting, the alert state has nowhere to go: the
    // metrics answer, the alerts do not, and the log says which setting is missing.
    let (captured, guard) = Captured::json_logs("dora_api=info");
    let mut config = env.api_config();
    config.database.url = env.read_only_url().await;
    sqlx::query("DROP SCHEMA dora_alerts CASCADE")
        .execute(&env.pool)
        .await
        .unwrap();
    let api = env.spawn_api_with(config).await;
    let (status, body) = get_json(&api.url, "/dora?service=checkout").await;
    assert_eq!(status, 200, "{body}");
    eventually("the refusal is logged", || async {
        !lines_at(&captured.text(), "ERROR", "dora_api").is_empty()
    })
    .await;
    let (status, body) = get_json(&api.url, "/alerts").await;
    assert_eq!(status, 503, "{body}");
    api.stop().await.unwrap();
    drop(guard);
    let logs = captured.text();
    let refused = lines_at(&logs, "ERROR", "dora_api");
    assert!(
        refused[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("DORA_ALERTS_DATABASE_URL")),
        "{logs}"
    );
    assert!(!has_alert_schema(&env.pool).await);
    env.cleanup().await;
}
