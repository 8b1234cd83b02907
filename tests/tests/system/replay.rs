//! Replay: the store rebuilt from the stream, swapped in without readers noticing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dora_system_tests::{post_events, TestEnv, CI_TOKEN};
use serde_json::{json, Value};

/// Every table of the store, as text, in a stable order.
async fn snapshot(env: &TestEnv) -> Vec<String> {
    let mut out = Vec::new();
    for q in [
        "SELECT row_to_json(e)::text FROM events e ORDER BY id",
        "SELECT row_to_json(d)::text FROM deploy_facts d ORDER BY event_id",
        "SELECT row_to_json(i)::text FROM incident_facts i ORDER BY open_event_id",
        "SELECT (stream_seq, subject, payload, reason, field, received_at)::text FROM rejected_events ORDER BY stream_seq",
    ] {
        out.extend(sqlx::query_scalar::<_, String>(q).fetch_all(&env.pool).await.unwrap());
    }
    out
}

fn history(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let at = format!("2026-03-{:02}T{:02}:00:00Z", 1 + i % 28, i % 24);
            match i % 10 {
                0..=5 => json!({"id": format!("d{i}"), "kind": "deploy", "service": format!("s{}", i % 5),
                    "git_sha": format!("{:04x}", i % 300), "succeeded": i % 13 != 0, "occurred_at": at,
                    "commit_at": "2026-02-27T00:00:00Z"}),
                6 | 7 => json!({"id": format!("r{i}"), "kind": "rollback", "service": format!("s{}", i % 5),
                    "git_sha": format!("{:04x}", (i + 5) % 300), "occurred_at": at}),
                8 => json!({"id": format!("o{i}"), "kind": "incident_opened", "service": format!("s{}", i % 5),
                    "ref_id": format!("INC-{}", i / 20), "git_sha": format!("{:04x}", i % 300), "occurred_at": at}),
                _ => json!({"id": format!("c{i}"), "kind": "incident_closed", "service": format!("s{}", i % 5),
                    "ref_id": format!("INC-{}", i / 20), "occurred_at": at}),
            }
        })
        .collect()
}

#[tokio::test]
async fn replay_rebuilds_the_same_store_and_readers_never_see_it_half_built() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let projector = env.spawn_projector(env.projector_config()).await;
    let events = history(3000);
    for chunk in events.chunks(500) {
        let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &json!(chunk)).await;
        assert_eq!(status, 202, "{body}");
    }
    env.publish_raw(&env.subject("prod", "s1", "deploy"), b"not json", None)
        .await;
    env.wait_for_events(3000).await;
    dora_system_tests::eventually("the rejection is kept", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM rejected_events")
            .fetch_one(&env.pool)
            .await
            .unwrap()
            == 1
    })
    .await;
    let before = snapshot(&env).await;
    let failed_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deploy_facts WHERE failed_at IS NOT NULL")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert!(
        failed_before > 100,
        "the fixture has failures to rebuild: {failed_before}"
    );
    let position_before = dora_projector::store::position(&env.pool).await.unwrap();
    let table_before: i64 = sqlx::query_scalar("SELECT 'events'::regclass::oid::int8")
        .fetch_one(&env.pool)
        .await
        .unwrap();

    // A reader that counts the log and the facts, in one statement, as fast as it can.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let pool = dora_api::connect(&env.database_url, 2).unwrap();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r: Result<(i64, i64), _> = sqlx::query_as(
                    "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM deploy_facts WHERE failed_at IS NOT NULL)",
                )
                .fetch_one(&pool)
                .await;
                seen.push(r.map_err(|e| e.to_string()));
            }
            seen
        })
    };

    let outcome = dora_projector::replay(&env.projector_config())
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let seen = reader.await.unwrap();

    assert_eq!(outcome.messages, 3001);
    assert_eq!(outcome.applied.inserted, 3000);
    assert_eq!(outcome.applied.rejected, 1);
    assert!(
        seen.len() > 10,
        "the reader ran during the replay ({} reads)",
        seen.len()
    );
    for r in &seen {
        assert_eq!(
            r.as_ref(),
            Ok(&(3000, failed_before)),
            "a reader saw a partial store"
        );
    }
    let table_after: i64 = sqlx::query_scalar("SELECT 'events'::regclass::oid::int8")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_ne!(
        table_before, table_after,
        "the log was rebuilt, not left in place"
    );
    assert_eq!(
        snapshot(&env).await,
        before,
        "the rebuilt store holds the same contents"
    );
    let position_after = dora_projector::store::position(&env.pool).await.unwrap();
    assert_eq!(
        (&position_after.store_id, &position_after.stream),
        (&position_before.store_id, &position_before.stream),
        "the rebuilt store is the same store, so the live projector's consumer is still its own"
    );
    assert_eq!(position_after.last_seq, 3001);

    // The live projector goes on writing into the new store.
    let (status, _) = post_events(
        &ingest.url,
        Some(CI_TOKEN),
        &json!({"id": "after", "kind": "deploy", "service": "s1", "git_sha": "beef"}),
    )
    .await;
    assert_eq!(status, 202);
    env.wait_for_events(3001).await;

    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn events_arriving_during_a_replay_are_all_in_the_new_store() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let projector = env.spawn_projector(env.projector_config()).await;
    for chunk in history(2000).chunks(500) {
        post_events(&ingest.url, Some(CI_TOKEN), &json!(chunk)).await;
    }
    env.wait_for_events(2000).await;

    // A pipeline that keeps sending while the replay runs.
    let sender = {
        let url = ingest.url.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                let batch: Vec<Value> = (0..25)
                    .map(|j| {
                        json!({"id": format!("live-{i}-{j}"), "kind": "deploy", "service": "live",
                                    "git_sha": format!("{:04x}", i * 25 + j)})
                    })
                    .collect();
                let (status, body) = post_events(&url, Some(CI_TOKEN), &json!(batch)).await;
                assert_eq!(status, 202, "{body}");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };
    let outcome = dora_projector::replay(&env.projector_config())
        .await
        .unwrap();
    sender.await.unwrap();
    assert!(outcome.applied.inserted >= 2000);

    env.wait_for_events(3000).await;
    env.wait_until_all_acked().await;
    let live: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT id) FROM events WHERE service = 'live'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    let facts: i64 = sqlx::query_scalar("SELECT count(*) FROM deploy_facts WHERE service = 'live'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(
        (live, facts),
        (1000, 1000),
        "every event sent during the replay is in the new store once"
    );
    assert_eq!(env.event_count().await, 3000);

    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

/// Replaces the test's stream with one made with `config`.
async fn remake_stream(
    env: &TestEnv,
    config: async_nats::jetstream::stream::Config,
) -> async_nats::jetstream::stream::Stream {
    env.js.delete_stream(&env.stream).await.unwrap();
    env.js.create_stream(config).await.unwrap()
}

#[tokio::test]
async fn a_stream_that_can_drop_events_is_refused() {
    let env = TestEnv::new().await;
    let mut config = dora_event::stream::config(&env.stream, &env.prefix);
    config.max_age = std::time::Duration::from_secs(86_400);
    remake_stream(&env, config).await;
    env.publish_deploys(0..3).await;

    let err = dora_projector::replay(&env.projector_config())
        .await
        .expect_err("a stream with an age limit is refused");
    let text = err.to_string();
    assert!(
        text.contains("max_age") && text.contains("can drop events"),
        "{text}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_stream_that_lost_its_first_messages_is_refused() {
    let env = TestEnv::new().await;
    let mut config = dora_event::stream::config(&env.stream, &env.prefix);
    config.deny_purge = false;
    let stream = remake_stream(&env, config.clone()).await;
    env.publish_deploys(0..5).await;
    // Messages 1 and 2 go; then the stream is made to refuse purges, so that only
    // the missing history is wrong with it.
    stream.purge().sequence(3).await.unwrap();
    config.deny_purge = true;
    env.js.update_stream(&config).await.unwrap();

    let err = dora_projector::replay(&env.projector_config())
        .await
        .expect_err("a stream without its first messages is refused");
    let text = err.to_string();
    assert!(text.contains("first message is sequence 3"), "{text}");
    assert_eq!(env.event_count().await, 0, "the live store is unchanged");
    env.cleanup().await;
}

#[tokio::test]
async fn a_rebuilt_store_with_fewer_events_is_kept_aside_not_swapped_in() {
    let env = TestEnv::new().await;
    let projector = env.spawn_projector(env.projector_config()).await;
    env.publish_deploys(0..3).await;
    env.wait_for_events(3).await;
    projector.stop().await.unwrap();
    // Two events the stream does not hold (a stream restored from an older backup).
    env.seed(&[
        json!({"id": "gone-1", "kind": "deploy", "service": "api", "git_sha": "abcd"}),
        json!({"id": "gone-2", "kind": "deploy", "service": "api", "git_sha": "abce"}),
    ])
    .await;

    let err = dora_projector::replay(&env.projector_config())
        .await
        .expect_err("a smaller store is not swapped in");
    let text = err.to_string();
    assert!(
        text.contains("3 events") && text.contains("live store 5"),
        "names both counts: {text}"
    );
    assert_eq!(env.event_count().await, 5, "the live store is unchanged");
    let kept: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, 'dora_rebuilt_')",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(text.contains(&kept[0]), "says where it is: {text}");
    let rebuilt: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}.events", kept[0]))
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(rebuilt, 3);
    env.cleanup().await;
}

#[tokio::test]
async fn a_batch_of_only_rejected_messages_during_the_swap_lands_in_the_new_store() {
    let env = TestEnv::new().await;
    let projector = env.spawn_projector(env.projector_config()).await;
    env.publish_deploys(0..3).await;
    env.wait_for_events(3).await;
    env.wait_until_all_acked().await;
    projector.stop().await.unwrap();

    // The test plays the live projector writing a batch of one rejected message,
    // sequence 4, exactly as store::apply does: the batch lock, the rejection, the
    // position; not committed yet.
    let mut batch = env.pool.begin().await.unwrap();
    dora_projector::store::lock_batches(&mut batch)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO rejected_events (stream_seq, subject, payload, reason, received_at) \
         VALUES (4, $1, 'not json', 'invalid JSON', now())",
    )
    .bind(env.subject("prod", "api", "deploy"))
    .execute(&mut *batch)
    .await
    .unwrap();
    sqlx::query("UPDATE store_position SET last_seq = 4")
        .execute(&mut *batch)
        .await
        .unwrap();

    let config = env.projector_config();
    let replay = tokio::spawn(async move { dora_projector::replay(&config).await });
    dora_system_tests::eventually("the replay waits for the batch in flight", || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
             WHERE NOT l.granted AND a.datname = current_database()",
        )
        .fetch_one(&env.pool)
        .await
        .unwrap()
            > 0
    })
    .await;
    // The message reaches the stream after replay read it, then the batch commits.
    env.publish_raw(&env.subject("prod", "api", "deploy"), b"not json", None)
        .await;
    batch.commit().await.unwrap();

    let outcome = replay.await.unwrap().unwrap();
    assert_eq!(outcome.last_seq, 4, "{outcome:?}");
    let rejected: Vec<i64> = sqlx::query_scalar("SELECT stream_seq FROM rejected_events")
        .fetch_all(&env.pool)
        .await
        .unwrap();
    assert_eq!(rejected, vec![4], "the rejection is in the new store");
    assert_eq!(env.event_count().await, 3);
    env.cleanup().await;
}
