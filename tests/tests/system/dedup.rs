//! Gap 3 of issue 11: a rejected message must not spend its `Nats-Msg-Id`. JetStream
//! drops a repeated `Nats-Msg-Id` for two minutes; if that key were the event id alone,
//! the corrected resend of a rejected event would be dropped and never stored.

use dora_system_tests::{post_events, TestEnv, CI_TOKEN};
use serde_json::{json, Value};

async fn rejected_count(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM rejected_events")
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

async fn stored(env: &TestEnv, id: &str) -> Option<(String, bool)> {
    sqlx::query_as("SELECT service, succeeded FROM events WHERE id = $1")
        .bind(id)
        .fetch_optional(&env.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_corrected_event_is_stored_after_its_rejected_first_version() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let projector = env.spawn_projector(env.projector_config()).await;
    let subject = env.subject("prod", "checkout", "deploy");

    // A NATS publisher's event with a typo, sent with the header the contract names.
    let typo = json!({"id": "n-1", "kind": "deploy", "service": "checkout",
                      "git_sha": "abcd", "succeded": false});
    let ack = env
        .publish_raw(&subject, &serde_json::to_vec(&typo).unwrap(), Some("n-1"))
        .await;
    assert!(!ack.duplicate);
    dora_system_tests::eventually("the typo rejected", || async {
        rejected_count(&env).await == 1
    })
    .await;

    // The corrected event, over HTTP with the same id, well inside the 2-minute window.
    let fixed = json!({"id": "n-1", "kind": "deploy", "service": "checkout",
                       "git_sha": "abcd", "succeeded": false});
    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &fixed).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["duplicates"], 0, "the corrected event is new: {body}");
    env.wait_for_events(1).await;
    assert_eq!(stored(&env, "n-1").await, Some(("checkout".into(), false)));

    // The same correction over NATS, with the header the README recommends
    // (`<id>:<digest of the body>`), after a typo sent the same way.
    let typo = json!({"id": "n-2", "kind": "rollback", "service": "checkout",
                      "git_sha": "abcd", "succeded": false});
    let fixed = json!({"id": "n-2", "kind": "rollback", "service": "checkout",
                       "git_sha": "abcd"});
    let subject = env.subject("prod", "checkout", "rollback");
    for body in [&typo, &fixed] {
        let bytes = serde_json::to_vec(body).unwrap();
        let header = format!("n-2:{}", dora_event::dedup::digest(&bytes));
        let ack = env.publish_raw(&subject, &bytes, Some(&header)).await;
        assert!(!ack.duplicate, "{header}");
    }
    env.wait_for_events(2).await;
    assert_eq!(rejected_count(&env).await, 2);
    assert!(stored(&env, "n-2").await.is_some());

    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn an_identical_retry_is_a_duplicate_and_another_body_with_the_id_is_not_stored() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let projector = env.spawn_projector(env.projector_config()).await;

    let first = json!({"id": "h-1", "kind": "deploy", "service": "checkout", "git_sha": "abcd",
                       "occurred_at": "2026-03-10T12:00:00Z"});
    let (_, b1) = post_events(&ingest.url, Some(CI_TOKEN), &first).await;
    // The same event, written differently (key order, offset, sha case): the same
    // canonical event, so JetStream drops it.
    let same: Value = serde_json::from_str(
        r#"{"occurred_at": "2026-03-10T13:00:00+01:00", "git_sha": "ABCD", "service": "checkout",
            "kind": "deploy", "id": "h-1"}"#,
    )
    .unwrap();
    let (_, b2) = post_events(&ingest.url, Some(CI_TOKEN), &same).await;
    assert_eq!(
        (b1["duplicates"].clone(), b2["duplicates"].clone()),
        (json!(0), json!(1))
    );
    assert_eq!(env.stream_messages().await, 1);

    // A request without `occurred_at` sent twice: the gateway fills in the arrival
    // time each time, and still the retry is the same message.
    let untimed =
        json!({"id": "h-2", "kind": "rollback", "service": "checkout", "git_sha": "abcd"});
    let (_, u1) = post_events(&ingest.url, Some(CI_TOKEN), &untimed).await;
    let (_, u2) = post_events(&ingest.url, Some(CI_TOKEN), &untimed).await;
    assert_eq!(
        (u1["duplicates"].clone(), u2["duplicates"].clone()),
        (json!(0), json!(1))
    );
    assert_eq!(env.stream_messages().await, 2);

    // Another valid body with the same id: the contract says one id is one event, and
    // the first stored wins. JetStream keeps the message; the store does not add it.
    let other = json!({"id": "h-1", "kind": "deploy", "service": "checkout", "git_sha": "abcd",
                       "succeeded": false, "occurred_at": "2026-03-10T12:00:00Z"});
    let (status, b3) = post_events(&ingest.url, Some(CI_TOKEN), &other).await;
    assert_eq!((status, b3["duplicates"].clone()), (202, json!(0)));
    post_events(
        &ingest.url,
        Some(CI_TOKEN),
        &json!({"id": "marker", "kind": "rollback",
        "service": "checkout", "git_sha": "abcd"}),
    )
    .await;
    env.wait_for_events(3).await;
    env.wait_until_all_acked().await;
    assert_eq!(
        stored(&env, "h-1").await,
        Some(("checkout".into(), true)),
        "the first wins"
    );
    assert_eq!(env.event_count().await, 3);

    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}
