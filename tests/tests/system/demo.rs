//! The demo history (`dora-demo`, what `deploy/run.sh --demo` sends) through the real
//! gateway, projector and API: its delivery profiles show in `/dora`, and sending it
//! a second time adds nothing.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use dora_demo::profile::demo_services;
use dora_system_tests::{get_json, TestEnv, CI_TOKEN};
use serde_json::Value;

async fn dora(api: &str, query: &str) -> Value {
    let (status, body) = get_json(api, &format!("/dora?{query}")).await;
    assert_eq!(status, 200, "/dora?{query}: {body}");
    body
}

#[tokio::test]
async fn the_demo_profiles_show_through_dora_and_a_second_run_adds_nothing() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let projector = env.spawn_projector(env.projector_config()).await;
    let api = env.spawn_api().await;

    // Ending now, as the demo does, so "this week" is the regressing one.
    let history = dora_demo::generate(42, 90, Utc::now(), &demo_services(6));
    let client = reqwest::Client::new();
    let first = dora_demo::send(&client, &ingest.url, CI_TOKEN, &history.events, 500)
        .await
        .unwrap();
    assert_eq!(first.accepted, history.events.len());
    assert_eq!(first.duplicates, 0);
    assert_eq!(first.requests, history.events.len().div_ceil(500));
    env.wait_for_events(history.events.len() as i64).await;
    dora_demo::wait_for_store(&client, &api.url, &history, Duration::from_secs(20))
        .await
        .unwrap();

    let as_of = history.end.to_rfc3339_opts(SecondsFormat::Secs, true);
    let elite = dora(&api.url, &format!("days=90&service=checkout&as_of={as_of}")).await;
    let struggling = dora(&api.url, &format!("days=90&service=billing&as_of={as_of}")).await;
    let rate = |r: &Value| r["change_failure_rate"]["rate"].as_f64().unwrap();
    assert!(
        rate(&struggling) > rate(&elite),
        "struggling {struggling} elite {elite}"
    );
    assert!(
        elite["deployment_frequency"]["per_day"].as_f64().unwrap()
            > struggling["deployment_frequency"]["per_day"]
                .as_f64()
                .unwrap()
    );

    let this_week = dora(&api.url, &format!("days=7&service=search&as_of={as_of}")).await;
    let last_week = dora(
        &api.url,
        &format!("days=7&offset=7&service=search&as_of={as_of}"),
    )
    .await;
    assert!(
        rate(&this_week) > rate(&last_week),
        "this week {this_week} last week {last_week}"
    );
    let lead = |r: &Value| r["lead_time"]["median_seconds"].as_f64().unwrap();
    assert!(lead(&this_week) > lead(&last_week));
    // It fixes this week's incidents forward: deploys made while one runs, rework.
    let search = &history.services[2];
    assert_eq!(search.service, "search");
    assert!(search.fix_deploys > 0, "{search:?}");
    assert!(
        this_week["rework_rate"]["rework"].as_u64().unwrap() > 0,
        "{this_week}"
    );
    // Enough attempts for the alert rules (DORA_ALERT_MIN_ATTEMPTS defaults to 3).
    assert!(
        this_week["change_failure_rate"]["attempts"]
            .as_u64()
            .unwrap()
            >= 3
    );

    // The second run: the same ids, so the store gains no row.
    let second = dora_demo::send(&client, &ingest.url, CI_TOKEN, &history.events, 500)
        .await
        .unwrap();
    assert_eq!(second.accepted, history.events.len());
    env.wait_until_all_acked().await;
    assert_eq!(env.event_count().await, history.events.len() as i64);
    let staging: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE environment = 'staging'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert!(staging > 0);

    api.stop().await.unwrap();
    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}
