//! The projector: exactly once into the log, whatever happens between commit and ack.

use std::time::Duration;

use dora_projector::consume::Projector;
use dora_system_tests::{eventually, TestEnv};
use serde_json::json;
use tokio::sync::watch;

async fn publish_deploys(env: &TestEnv, n: usize) {
    for i in 0..n {
        let body = json!({"id": format!("e-{i}"), "kind": "deploy", "service": "api", "git_sha": format!("{i:06x}")});
        env.publish_raw(
            &env.subject("prod", "api", "deploy"),
            body.to_string().as_bytes(),
            Some(&format!("e-{i}")),
        )
        .await;
    }
}

#[tokio::test]
async fn a_projector_stopped_after_commit_but_before_ack_leaves_each_event_once() {
    let env = TestEnv::new().await;
    publish_deploys(&env, 50).await;
    let config = env.projector_config();
    let stream = env.js.get_stream(&env.stream).await.unwrap();
    let pool = dora_projector::store::connect(&env.database_url, dora_event::STORE_SCHEMA, 2)
        .await
        .unwrap();

    // First life: write a batch, then "crash" before acking it.
    let mut first = Projector::new(
        pool.clone(),
        &stream,
        &env.prefix,
        config.sources.clone(),
        config.consumer.as_deref(),
        config.ack_wait,
        20,
    )
    .await
    .unwrap();
    let batch = first.next_batch().await.unwrap();
    let (_tx, mut rx) = watch::channel(false);
    let outcome = first.apply(&batch, &mut rx).await.unwrap();
    assert!(outcome.applied.inserted > 0);
    let written_before_crash = env.event_count().await;
    drop(batch);
    drop(first);

    // Second life, same durable consumer: the unacked messages come again after the
    // ack wait, and the store recognises every one of them as a duplicate.
    let mut second = Projector::new(
        pool.clone(),
        &stream,
        &env.prefix,
        config.sources.clone(),
        config.consumer.as_deref(),
        config.ack_wait,
        1000,
    )
    .await
    .unwrap();
    let (mut inserted, mut duplicates) = (written_before_crash as u64, 0);
    tokio::time::timeout(Duration::from_secs(20), async {
        while inserted < 50 || duplicates < written_before_crash as u64 {
            let outcome = second.step(&mut rx).await.unwrap().unwrap();
            inserted += outcome.applied.inserted;
            duplicates += outcome.applied.duplicates;
        }
    })
    .await
    .expect("the second life catches up");
    assert_eq!(
        duplicates, written_before_crash as u64,
        "each redelivered message was a duplicate"
    );
    drop(second);
    let running = env.spawn_projector(config).await;
    env.wait_until_all_acked().await;
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT id) FROM events")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!((env.event_count().await, distinct), (50, 50));
    let facts: i64 = sqlx::query_scalar("SELECT count(*) FROM deploy_facts")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(facts, 50);

    running.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn the_log_refuses_update_delete_and_truncate() {
    let env = TestEnv::new().await;
    env.seed(&[json!({"id": "x", "kind": "deploy", "service": "api", "git_sha": "abcd"})])
        .await;
    for statement in [
        "UPDATE events SET service = 'other'",
        "DELETE FROM events WHERE id = 'x'",
        "DELETE FROM events WHERE false",
        "TRUNCATE events",
    ] {
        let err = sqlx::query(statement).execute(&env.pool).await.unwrap_err();
        assert!(
            err.to_string().contains("append-only"),
            "{statement}: {err}"
        );
    }
    assert_eq!(env.event_count().await, 1);
    env.cleanup().await;
}

#[tokio::test]
async fn invalid_messages_on_nats_are_kept_with_their_reason() {
    let env = TestEnv::new().await;
    let projector = env.spawn_projector(env.projector_config()).await;
    let good = json!({"id": "ok", "kind": "rollback", "service": "api", "git_sha": "abcd"});
    let subject = env.subject("prod", "api", "rollback");
    env.publish_raw(&subject, b"{not json", None).await;
    // Without the header: with it, JetStream would take the id as used and drop the
    // good copy below as a duplicate.
    env.publish_raw(
        &env.subject("staging", "api", "rollback"),
        good.to_string().as_bytes(),
        None,
    )
    .await;
    env.publish_raw(
        &subject,
        json!({"kind": "rollback", "service": "api", "git_sha": "abcd"})
            .to_string()
            .as_bytes(),
        None,
    )
    .await;
    env.publish_raw(&subject, json!({"id": "typo", "kind": "rollback", "service": "api", "git_sha": "abcd", "succeded": true}).to_string().as_bytes(), None).await;
    // A NUL in a field name: PostgreSQL text cannot hold it, the rejection must still land.
    env.publish_raw(
        &subject,
        br#"{"id": "nul", "kind": "rollback", "service": "api", "git_sha": "abcd", "a\u0000b": 1}"#,
        None,
    )
    .await;
    env.publish_raw(&subject, good.to_string().as_bytes(), Some("ok"))
        .await;

    eventually("five rejections kept", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM rejected_events")
            .fetch_one(&env.pool)
            .await
            .unwrap()
            == 5
    })
    .await;
    env.wait_for_events(1).await;
    let rows: Vec<(i64, Option<String>, String, Vec<u8>)> = sqlx::query_as(
        "SELECT stream_seq, field, reason, payload FROM rejected_events ORDER BY stream_seq",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(rows[0].1, None);
    assert!(rows[0].2.contains("invalid JSON"), "{}", rows[0].2);
    assert_eq!(rows[0].3, b"{not json", "the raw payload is kept");
    assert_eq!(rows[1].1.as_deref(), Some("subject"));
    assert_eq!(rows[2].1.as_deref(), Some("id"));
    assert_eq!(rows[3].1.as_deref(), Some("succeded"));
    assert_eq!(rows[4].1.as_deref(), Some("a\\u0000b"));
    let source: String = sqlx::query_scalar("SELECT source FROM events WHERE id = 'ok'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(source, "nats");

    // Terminated, not left to be redelivered forever.
    env.wait_until_all_acked().await;
    projector.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn a_message_the_store_refuses_is_kept_and_does_not_block_the_stream() {
    let env = TestEnv::new().await;
    // Stands in for any future mismatch between validation and the schema.
    sqlx::query("ALTER TABLE events ADD CONSTRAINT no_poison CHECK (service <> 'poison')")
        .execute(&env.pool)
        .await
        .unwrap();
    for (i, service) in ["api", "poison", "api"].iter().enumerate() {
        let body = json!({"id": format!("p-{i}"), "kind": "deploy", "service": service, "git_sha": "abcd"});
        env.publish_raw(
            &env.subject("prod", service, "deploy"),
            body.to_string().as_bytes(),
            None,
        )
        .await;
    }
    let projector = env.spawn_projector(env.projector_config()).await;
    env.wait_for_events(2).await;
    env.wait_until_all_acked().await;
    let (seq, reason): (i64, String) =
        sqlx::query_as("SELECT stream_seq, reason FROM rejected_events")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(seq, 2);
    assert!(reason.contains("no_poison"), "{reason}");
    projector.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn a_database_outage_means_no_ack_and_a_retry_not_a_loss() {
    let env = TestEnv::new().await;
    let projector = env.spawn_projector(env.projector_config()).await;
    publish_deploys(&env, 5).await;
    env.wait_for_events(5).await;

    // The outage: no new connections to this database, and the projector's cut.
    let mut admin = sqlx::PgConnection::connect(
        env.database_url
            .rsplit_once('/')
            .map(|(base, _)| format!("{base}/postgres"))
            .unwrap()
            .as_str(),
    )
    .await
    .unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS false",
        env.db_name
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'dora-projector'")
        .bind(&env.db_name).execute(&mut admin).await.unwrap();
    for i in 5..10 {
        let body = json!({"id": format!("e-{i}"), "kind": "deploy", "service": "api", "git_sha": format!("{i:06x}")});
        env.publish_raw(
            &env.subject("prod", "api", "deploy"),
            body.to_string().as_bytes(),
            None,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let info = env.consumer_info().await;
    assert_eq!(
        info.num_ack_pending + info.num_pending as usize,
        5,
        "nothing acked during the outage: {info:?}"
    );

    sqlx::query(&format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS true",
        env.db_name
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    env.wait_for_events(10).await;
    env.wait_until_all_acked().await;
    projector.stop().await.unwrap();
    env.cleanup().await;
}

use sqlx::Connection;

#[tokio::test]
async fn an_existing_consumer_with_other_settings_is_updated_or_refused_by_name() {
    let env = TestEnv::new().await;
    let stream = env.js.get_stream(&env.stream).await.unwrap();
    let config = env.projector_config();

    // Made earlier with another ack wait: that can change in place.
    let name = config.consumer.clone().unwrap();
    let pool = dora_projector::store::connect(&env.database_url, dora_event::STORE_SCHEMA, 2)
        .await
        .unwrap();
    let store_id = dora_projector::store::position(&pool)
        .await
        .unwrap()
        .store_id;
    let mut old =
        dora_projector::consume::consumer_config(&name, &store_id, Duration::from_secs(90), 1000);
    // Made by a release before stores had ids: no store in its description.
    old.description = Some("dora-projector: appends events to the PostgreSQL log".to_owned());
    stream.create_consumer(old.clone()).await.unwrap();
    Projector::new(
        pool.clone(),
        &stream,
        &env.prefix,
        config.sources.clone(),
        config.consumer.as_deref(),
        config.ack_wait,
        1000,
    )
    .await
    .unwrap();
    let info = env.consumer_info().await;
    assert_eq!(info.config.ack_wait, config.ack_wait);
    assert!(
        info.config.description.unwrap().ends_with(&store_id),
        "adopted by this store"
    );

    // A deliver policy cannot change in place: the projector stops and names it.
    stream.delete_consumer(&name).await.unwrap();
    old.deliver_policy = async_nats::jetstream::consumer::DeliverPolicy::New;
    stream.create_consumer(old).await.unwrap();
    let err = Projector::new(
        pool,
        &stream,
        &env.prefix,
        config.sources.clone(),
        config.consumer.as_deref(),
        config.ack_wait,
        1000,
    )
    .await
    .expect_err("a consumer that skips history is refused");
    let text = err.to_string();
    assert!(text.contains("deliver_policy"), "{text}");
    assert!(text.contains("DORA_PROJECTOR_CONSUMER"), "{text}");
    env.cleanup().await;
}

#[tokio::test]
async fn a_deleted_consumer_stops_the_projector_with_an_error() {
    let env = TestEnv::new().await;
    let projector = env.spawn_projector(env.projector_config()).await;
    eventually("the consumer exists", || async {
        env.js
            .get_stream(&env.stream)
            .await
            .unwrap()
            .consumer_info("dora-projector")
            .await
            .is_ok()
    })
    .await;
    env.js
        .get_stream(&env.stream)
        .await
        .unwrap()
        .delete_consumer("dora-projector")
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), projector.wait())
        .await
        .expect("the projector stops by itself");
    let err = result.expect_err("a supervisor must see a failure, not a clean exit");
    assert!(err.to_string().contains("consumer"), "{err:#}");
    env.cleanup().await;
}
