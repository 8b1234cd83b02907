//! The store knows its own position: a store that goes back in time (a restore, a
//! failover, an empty database) gets back every event the consumer already acked, and
//! two stores never share one consumer by accident.

use dora_system_tests::{eventually, TestEnv};

/// Waits for a projector that should refuse to start; returns its error.
async fn refused(projector: dora_system_tests::Running) -> String {
    let result = tokio::time::timeout(std::time::Duration::from_secs(30), projector.wait())
        .await
        .expect("the projector stops by itself");
    format!("{:#}", result.expect_err("the projector refuses to start"))
}

async fn rejected_count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM rejected_events")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_store_restored_from_a_backup_gets_back_every_acked_event_once() {
    let env = TestEnv::new().await;
    let projector = env.spawn_projector(env.projector_config()).await;
    env.publish_deploys(0..20).await;
    env.publish_raw(&env.subject("prod", "api", "deploy"), b"{not json", None)
        .await;
    env.wait_for_events(20).await;
    env.wait_until_all_acked().await;
    projector.stop().await.unwrap();

    // The backup: a copy of the whole database, taken here.
    let backup = format!("{}_backup", env.db_name);
    env.copy_database(&env.db_name, &backup).await;

    // The projector goes on: 20 more events, written and acked.
    let projector = env.spawn_projector(env.projector_config()).await;
    env.publish_deploys(20..40).await;
    env.wait_for_events(40).await;
    env.wait_until_all_acked().await;
    projector.stop().await.unwrap();

    // The restore: the database goes back to the backup, behind the consumer.
    env.copy_database(&backup, &env.db_name).await;
    assert_eq!(env.event_count().await, 20, "the restore went back in time");

    let projector = env.spawn_projector(env.projector_config()).await;
    env.wait_for_events(40).await;
    env.wait_until_all_acked().await;
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT id) FROM events")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!((env.event_count().await, distinct), (40, 40));
    assert_eq!(
        rejected_count(&env.pool).await,
        1,
        "the redelivered rejection is kept once"
    );
    projector.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn a_second_empty_store_on_the_same_stream_gets_its_own_consumer() {
    let env = TestEnv::new().await;
    let mut first_config = env.projector_config();
    first_config.consumer = None;
    let first = env.spawn_projector(first_config).await;
    env.publish_deploys(0..30).await;
    env.wait_for_events(30).await;
    let consumers = || async {
        use futures::TryStreamExt;
        let mut infos: Vec<_> = env
            .js
            .get_stream(&env.stream)
            .await
            .unwrap()
            .consumers()
            .try_collect::<Vec<_>>()
            .await
            .unwrap();
        infos.sort_by_key(|i| i.created);
        infos
    };
    eventually("the first store's consumer acked everything", || async {
        let infos = consumers().await;
        infos.len() == 1 && infos[0].ack_floor.stream_sequence == 30
    })
    .await;
    let first_consumer = consumers().await.remove(0);

    // The same stream, another database that is empty.
    let second_url = env.another_database("second").await;
    let mut second_config = env.projector_config();
    second_config.consumer = None;
    second_config.database.url = second_url.clone();
    let second = env.spawn_projector(second_config).await;
    let second_pool = dora_projector::store::connect(&second_url, dora_event::STORE_SCHEMA, 2)
        .await
        .unwrap();
    eventually("the second store fills itself from the stream", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events")
            .fetch_one(&second_pool)
            .await
            .is_ok_and(|n| n == 30)
    })
    .await;

    let infos = consumers().await;
    assert_eq!(infos.len(), 2, "one consumer per store: {infos:?}");
    assert_eq!(infos[0].name, first_consumer.name);
    assert_ne!(infos[1].name, first_consumer.name);
    assert_eq!(
        (
            infos[0].delivered.stream_sequence,
            infos[0].ack_floor.stream_sequence
        ),
        (30, 30),
        "the first store's consumer is untouched"
    );
    second.stop().await.unwrap();
    first.stop().await.unwrap();
    second_pool.close().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_store_of_another_stream_is_refused_by_name() {
    let env = TestEnv::new().await;
    let projector = env.spawn_projector(env.projector_config()).await;
    env.publish_deploys(0..3).await;
    env.wait_for_events(3).await;
    projector.stop().await.unwrap();

    // DORA_STREAM now names another stream, DATABASE_URL the same store.
    let other = format!("{}_OTHER", env.stream);
    let other_prefix = env.prefix.replace(".events", "_other.events");
    dora_event::stream::ensure(&env.js, &other, &other_prefix, 1)
        .await
        .unwrap();
    let mut config = env.projector_config();
    config.stream.stream = other.clone();
    config.stream.subject_prefix = other_prefix;
    let err = refused(env.spawn_projector(config).await).await;
    assert!(
        err.contains(&env.stream) && err.contains(&other),
        "names both streams: {err}"
    );
    assert_eq!(env.event_count().await, 3);
    let _ = env.js.delete_stream(&other).await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_consumer_named_for_another_store_is_refused() {
    let env = TestEnv::new().await;
    let mut config = env.projector_config();
    config.consumer = Some("shared".to_owned());
    let projector = env.spawn_projector(config.clone()).await;
    env.publish_deploys(0..3).await;
    env.wait_for_events(3).await;
    projector.stop().await.unwrap();

    config.database.url = env.another_database("second").await;
    let err = refused(env.spawn_projector(config).await).await;
    assert!(err.contains("`shared`"), "names the consumer: {err}");
    assert!(
        err.contains("DORA_PROJECTOR_CONSUMER"),
        "says what to do: {err}"
    );
    env.cleanup().await;
}
