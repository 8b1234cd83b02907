//! Replay: the store rebuilt from the stream, swapped in without readers noticing.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dora_system_tests::{eventually, get_json, post_events, TestEnv, CI_TOKEN};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

/// Every table of the store, as text, in a stable order.
pub(crate) async fn snapshot(env: &TestEnv) -> Vec<String> {
    let mut out = Vec::new();
    for q in [
        "SELECT row_to_json(e)::text FROM events e ORDER BY id",
        "SELECT row_to_json(d)::text FROM deploy_facts d ORDER BY event_id",
        "SELECT row_to_json(i)::text FROM incident_facts i ORDER BY open_event_id",
        "SELECT row_to_json(p)::text FROM rework_pieces p ORDER BY environment, service, opened_at",
        "SELECT (stream_seq, subject, payload, reason, field, received_at)::text FROM rejected_events ORDER BY stream_seq",
    ] {
        out.extend(sqlx::query_scalar::<_, String>(q).fetch_all(&env.pool).await.unwrap());
    }
    out
}

pub(crate) fn history(n: usize) -> Vec<Value> {
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

/// The OID of the table `events` resolves to: it changes when a replay swaps a new
/// store in, so a reader can tell which store answered it.
async fn events_oid(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT 'events'::regclass::oid::int8")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The highest sequence in the stream.
async fn stream_last_seq(env: &TestEnv) -> u64 {
    env.js
        .get_stream(&env.stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .last_sequence
}

/// Holds the live log in SHARE mode from a connection of the test's own: readers go on,
/// but a replay's swap (which locks the log EXCLUSIVE) waits until it is dropped.
async fn hold_the_swap(env: &TestEnv) -> PgConnection {
    let mut conn = PgConnection::connect(&env.database_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE {}.events IN SHARE MODE",
        dora_event::STORE_SCHEMA
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

/// Waits until a backend of this database waits for a lock: the replay's swap stuck
/// behind [`hold_the_swap`]. Asked outside the holder's transaction, whose view of
/// `pg_stat_activity` is a snapshot.
async fn until_the_swap_waits(env: &TestEnv) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
             AND wait_event_type = 'Lock'",
        )
        .bind(&env.db_name)
        .fetch_one(&env.pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replay never reached its swap"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn schema_exists(env: &TestEnv, schema: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(schema)
        .fetch_one(&env.pool)
        .await
        .unwrap()
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
    let table_before = events_oid(&env.pool).await;

    // A reader that counts the log and the facts, in one statement, as fast as it can,
    // noting which store answered. It reads before the replay starts and goes on until
    // it has been answered by the new store: its reads cross the swap.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let pool = dora_api::connect(&env.database_url, 2).unwrap();
        let (stop, reads) = (stop.clone(), reads.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut crossed = false;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !(stop.load(Ordering::Relaxed) && crossed) && Instant::now() < deadline {
                let r: Result<(i64, i64, i64), _> = sqlx::query_as(
                    "SELECT 'events'::regclass::oid::int8, (SELECT count(*) FROM events), \
                     (SELECT count(*) FROM deploy_facts WHERE failed_at IS NOT NULL)",
                )
                .fetch_one(&pool)
                .await;
                crossed |= matches!(r, Ok((oid, _, _)) if oid != table_before);
                seen.push(r.map_err(|e| e.to_string()));
                reads.fetch_add(1, Ordering::Relaxed);
            }
            seen
        })
    };
    eventually("the reader has read the old store", || async {
        reads.load(Ordering::Relaxed) > 0
    })
    .await;

    let outcome = dora_projector::replay(&env.projector_config())
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let seen = reader.await.unwrap();

    assert_eq!(outcome.messages, 3001);
    assert_eq!(outcome.applied.inserted, 3000);
    assert_eq!(outcome.applied.rejected, 1);
    let table_after = events_oid(&env.pool).await;
    assert_ne!(
        table_before, table_after,
        "the log was rebuilt, not left in place"
    );
    let answered_by = |oid: i64| {
        seen.iter()
            .filter(|r| matches!(r, Ok((o, _, _)) if *o == oid))
            .count()
    };
    assert!(
        answered_by(table_before) > 0 && answered_by(table_after) > 0,
        "the reads crossed the swap: {} from the old store, {} from the new, of {}",
        answered_by(table_before),
        answered_by(table_after),
        seen.len()
    );
    for r in &seen {
        let counts = r.as_ref().map(|(_, events, failed)| (*events, *failed));
        assert_eq!(
            counts,
            Ok((3000, failed_before)),
            "a reader saw a partial store"
        );
    }
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

/// What the live writer sent while a replay ran.
#[derive(Debug, Default)]
struct Sent {
    /// Ids of the valid events.
    ids: BTreeSet<String>,
    /// Deploys among them.
    deploys: usize,
    /// Messages published straight to NATS that the projector must reject.
    invalid: usize,
    /// Requests made before the writer saw the new store, and after.
    before_swap: usize,
    after_swap: usize,
}

/// Request `i` of the live writer: new deploys (one failed), a rollback naming a deploy
/// of the history (an old attempt that becomes failed), a rollback naming one of its own
/// deploys, an incident opened against its own deploy and the previous one closed.
fn live_batch(i: usize) -> Vec<Value> {
    // A deploy of `history`: i % 10 in 0..=5 is a deploy of service s(i % 5), sha i % 300.
    let old = (i * 37) % 2000 / 10 * 10 + i % 6;
    let service = format!("s{}", i % 5);
    let sha = |j: usize| format!("{:08x}", 0x1000_0000 + i * 10 + j);
    vec![
        json!({"id": format!("l{i}-d0"), "kind": "deploy", "service": service, "git_sha": sha(0),
               "commit_at": "2026-03-01T00:00:00Z"}),
        json!({"id": format!("l{i}-d1"), "kind": "deploy", "service": service, "git_sha": sha(1)}),
        json!({"id": format!("l{i}-d2"), "kind": "deploy", "service": service, "git_sha": sha(2),
               "succeeded": false}),
        json!({"id": format!("l{i}-ro"), "kind": "rollback", "service": format!("s{}", old % 5),
               "git_sha": format!("{:04x}", old % 300)}),
        json!({"id": format!("l{i}-rl"), "kind": "rollback", "service": service, "git_sha": sha(1)}),
        json!({"id": format!("l{i}-io"), "kind": "incident_opened", "service": service,
               "ref_id": format!("LIVE-{i}"), "git_sha": sha(0)}),
        json!({"id": format!("l{i}-ic"), "kind": "incident_closed", "service": service,
               "ref_id": format!("LIVE-{}", i.saturating_sub(1))}),
    ]
}

#[tokio::test]
async fn events_arriving_during_a_replay_are_all_in_the_new_store() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let projector = env.spawn_projector(env.projector_config()).await;
    for chunk in history(2000).chunks(500) {
        let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &json!(chunk)).await;
        assert_eq!(status, 202, "{body}");
    }
    env.wait_for_events(2000).await;
    let table_before = events_oid(&env.pool).await;

    // A pipeline that keeps sending (valid events over HTTP, invalid ones straight to
    // NATS) until it has seen the new store answer, and a few requests more.
    let requests = Arc::new(AtomicU64::new(0));
    let writer = {
        let url = ingest.url.clone();
        let js = env.js.clone();
        let subject = env.subject("prod", "s1", "deploy");
        let pool = dora_api::connect(&env.database_url, 1).unwrap();
        let requests = requests.clone();
        tokio::spawn(async move {
            let mut sent = Sent::default();
            let deadline = Instant::now() + Duration::from_secs(120);
            for i in 0.. {
                assert!(
                    Instant::now() < deadline,
                    "the replay never swapped: {sent:?}"
                );
                let batch = live_batch(i);
                let (status, body) = post_events(&url, Some(CI_TOKEN), &json!(batch)).await;
                assert_eq!(status, 202, "{body}");
                assert_eq!(body["duplicates"], 0, "{body}");
                for e in &batch {
                    sent.ids.insert(e["id"].as_str().unwrap().to_owned());
                    sent.deploys += usize::from(e["kind"] == "deploy");
                }
                let invalid = if i % 2 == 0 {
                    b"{not json".to_vec()
                } else {
                    json!({"id": format!("bad-{i}"), "kind": "deploy", "service": "s1",
                           "git_sha": "abcd", "succeded": true})
                    .to_string()
                    .into_bytes()
                };
                js.publish(subject.clone(), invalid.into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
                sent.invalid += 1;
                requests.fetch_add(1, Ordering::Relaxed);
                if events_oid(&pool).await == table_before {
                    sent.before_swap += 1;
                } else {
                    sent.after_swap += 1;
                    if sent.after_swap == 5 {
                        break;
                    }
                }
            }
            sent
        })
    };
    eventually("the writer is writing", || async {
        requests.load(Ordering::Relaxed) >= 2
    })
    .await;
    let seq_at_start = stream_last_seq(&env).await;
    let outcome = dora_projector::replay(&env.projector_config())
        .await
        .unwrap();
    let sent = writer.await.unwrap();

    // The writes overlapped the replay: some arrived while it built (they are in what it
    // read, past the sequence where it started), some after its swap.
    assert!(
        outcome.last_seq > seq_at_start,
        "writes arrived during the replay: it started at {seq_at_start}, swapped at {}",
        outcome.last_seq
    );
    assert!(
        stream_last_seq(&env).await > outcome.last_seq,
        "and after its swap"
    );
    assert!(sent.before_swap >= 2 && sent.after_swap == 5, "{sent:?}");

    // Everything sent is in the new store once, exactly: the log, the rejections, the
    // attempts.
    let valid = 2000 + sent.ids.len() as i64;
    env.wait_for_events(valid).await;
    env.wait_until_all_acked().await;
    let live: Vec<String> =
        sqlx::query_scalar("SELECT id FROM events WHERE id LIKE 'l%' ORDER BY id")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    assert_eq!(live, sent.ids.iter().cloned().collect::<Vec<_>>());
    let counts: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM rejected_events), (SELECT count(*) FROM deploy_facts)",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(
        counts,
        (sent.invalid as i64, 1200 + sent.deploys as i64),
        "every rejection and every attempt once ({sent:?})"
    );
    assert_eq!(
        stream_last_seq(&env).await,
        2000 + (sent.ids.len() + sent.invalid) as u64,
        "the stream holds what was sent, once"
    );

    // And the store the live projector and the replay made together is the store a
    // clean rebuild of the whole stream makes: facts included.
    let together = snapshot(&env).await;
    let again = dora_projector::replay(&env.projector_config())
        .await
        .unwrap();
    assert_eq!(again.messages, stream_last_seq(&env).await);
    assert_eq!(snapshot(&env).await, together);

    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

/// The live projector keeps a rejection of a message past the replay's target in the
/// old store; the swap must bring it into the new one.
#[tokio::test]
async fn a_message_rejected_while_the_replay_builds_is_in_the_new_store() {
    let env = TestEnv::new().await;
    let projector = env.spawn_projector(env.projector_config()).await;
    let good = json!({"id": "g", "kind": "deploy", "service": "api", "git_sha": "abcd"});
    env.publish_raw(
        &env.subject("prod", "api", "deploy"),
        good.to_string().as_bytes(),
        None,
    )
    .await;
    env.wait_for_events(1).await;
    env.wait_until_all_acked().await;

    // The replay reads its target (sequence 1), builds, and waits at its swap.
    let mut holder = hold_the_swap(&env).await;
    let replay = tokio::spawn({
        let config = env.projector_config();
        async move { dora_projector::replay(&config).await }
    });
    until_the_swap_waits(&env).await;
    // Past the target, a message the live projector rejects (it touches no event).
    env.publish_raw(&env.subject("prod", "api", "deploy"), b"{not json", None)
        .await;
    // Either the live projector keeps it now, in the store being retired, or it waits
    // on a lock behind the swap (a replay that holds the store lock in its swap).
    eventually("the live projector handles the rejection", || async {
        let (kept, waiting): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM rejected_events), \
             (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
              AND wait_event_type = 'Lock')",
        )
        .fetch_one(&env.pool)
        .await
        .unwrap();
        kept == 1 || waiting >= 2
    })
    .await;
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    let outcome = replay.await.unwrap().unwrap();
    assert_eq!(outcome.last_seq, 1);

    // When the live projector's batch waited behind the swap, it commits into the new
    // store after the swap: a moment after the replay returned, on a busy machine.
    eventually("the rejection the live projector acked is kept", || async {
        let kept: Vec<i64> = sqlx::query_scalar("SELECT stream_seq FROM rejected_events")
            .fetch_all(&env.pool)
            .await
            .unwrap();
        assert!(kept.len() <= 1, "kept once: {kept:?}");
        kept == vec![2]
    })
    .await;
    projector.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn a_second_replay_is_refused_and_one_that_died_leaves_nothing_in_the_way() {
    let env = TestEnv::new().await;
    for i in 0..50 {
        let e = json!({"id": format!("x{i}"), "kind": "deploy", "service": "api", "git_sha": format!("{i:04x}")});
        env.publish_raw(
            &env.subject("prod", "api", "deploy"),
            e.to_string().as_bytes(),
            None,
        )
        .await;
    }
    let projector = env.spawn_projector(env.projector_config()).await;
    env.wait_for_events(50).await;
    env.wait_until_all_acked().await;
    let before = snapshot(&env).await;
    let table_before = events_oid(&env.pool).await;

    // One replay at its swap; another one meanwhile is refused, by name.
    let mut holder = hold_the_swap(&env).await;
    let first = tokio::spawn({
        let config = env.projector_config();
        async move { dora_projector::replay(&config).await }
    });
    until_the_swap_waits(&env).await;
    let second = dora_projector::replay(&env.projector_config()).await;
    assert!(
        matches!(second, Err(dora_projector::Error::ReplayRunning)),
        "{second:?}"
    );

    // The first dies there (its process killed): the half-way schema stays behind,
    // and the live store is untouched.
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    assert!(schema_exists(&env, dora_projector::replay::REPLAY_SCHEMA).await);
    assert_eq!(events_oid(&env.pool).await, table_before);
    assert_eq!(snapshot(&env).await, before);

    // The next replay starts clean (once the dead one's session is gone) and works.
    let deadline = Instant::now() + Duration::from_secs(20);
    let outcome = loop {
        match dora_projector::replay(&env.projector_config()).await {
            Err(dora_projector::Error::ReplayRunning) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!((outcome.messages, outcome.applied.inserted), (50, 50));
    assert_ne!(events_oid(&env.pool).await, table_before);
    assert!(!schema_exists(&env, dora_projector::replay::REPLAY_SCHEMA).await);
    assert_eq!(snapshot(&env).await, before);
    projector.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn dora_over_http_answers_the_same_across_a_replay() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let projector = env.spawn_projector(env.projector_config()).await;
    for chunk in history(3000).chunks(500) {
        let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &json!(chunk)).await;
        assert_eq!(status, 202, "{body}");
    }
    env.wait_for_events(3000).await;
    env.wait_until_all_acked().await;
    let api = env.spawn_api().await;
    let path = "/dora?days=30&as_of=2026-03-29T00:00:00Z&environment=prod";
    let (status, expected) = get_json(&api.url, path).await;
    assert_eq!(status, 200, "{expected}");
    assert!(
        expected["change_failure_rate"]["failed"].as_i64().unwrap() > 0
            && expected["time_to_restore"]["samples"].as_i64().unwrap() > 0,
        "{expected}"
    );
    let table_before = events_oid(&env.pool).await;

    // A client asking over and over, noting which store was in place before each ask;
    // it stops once it has asked with the new store in place.
    let stop = Arc::new(AtomicBool::new(false));
    let asked = Arc::new(AtomicU64::new(0));
    let client = {
        let (stop, asked) = (stop.clone(), asked.clone());
        let url = api.url.clone();
        let pool = dora_api::connect(&env.database_url, 1).unwrap();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let oid = events_oid(&pool).await;
                answers.push((oid, get_json(&url, path).await));
                asked.fetch_add(1, Ordering::Relaxed);
                if (stop.load(Ordering::Relaxed) && oid != table_before)
                    || Instant::now() > deadline
                {
                    break;
                }
            }
            answers
        })
    };
    eventually("the client has asked", || async {
        asked.load(Ordering::Relaxed) > 0
    })
    .await;
    dora_projector::replay(&env.projector_config())
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let answers = client.await.unwrap();
    let table_after = events_oid(&env.pool).await;
    assert_ne!(table_before, table_after);
    let asked_of = |store: i64| answers.iter().filter(|(oid, _)| *oid == store).count();
    assert!(
        asked_of(table_before) > 0 && asked_of(table_after) > 0,
        "the asks crossed the swap: {} before, {} after",
        asked_of(table_before),
        asked_of(table_after)
    );
    for (oid, (status, body)) in &answers {
        assert_eq!((*status, body), (200, &expected), "asked with store {oid}");
    }

    api.stop().await.unwrap();
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
    let mut config = dora_event::stream::config(&env.stream, &env.prefix, 1);
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
    let mut config = dora_event::stream::config(&env.stream, &env.prefix, 1);
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
    // sequence 4, exactly as store::apply does: the store lock (shared), the rejection,
    // the position; not committed yet.
    let mut batch = env.pool.begin().await.unwrap();
    dora_projector::store::enter_store(&mut batch)
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

/// A first start on a stream that already holds a history (a backfill published
/// straight to NATS, a new database) builds the empty store by the bulk path, then
/// follows from the built store's position: everything once, facts derived, and what
/// arrives afterwards appended as usual.
#[tokio::test]
async fn an_empty_store_on_a_long_stream_is_built_by_the_bulk_path_first() {
    let env = TestEnv::new().await;
    env.publish_deploys(0..600).await;
    // A rollback of deploy 7's sha, so the facts have something to derive.
    env.publish_raw(
        &env.subject("prod", "api", "rollback"),
        json!({"id": "r-7", "kind": "rollback", "service": "api", "git_sha": "000007"})
            .to_string()
            .as_bytes(),
        None,
    )
    .await;
    let projector = env
        .spawn_projector(dora_projector::Config {
            bulk_from: 500,
            ..env.projector_config()
        })
        .await;
    env.wait_for_events(601).await;
    // What arrives afterwards is appended as usual, by the consumer made next.
    env.publish_deploys(600..610).await;
    env.wait_for_events(611).await;
    env.wait_until_all_acked().await;
    assert_eq!(env.event_count().await, 611);
    // The consumer was made after the store was built: from the store's position, not
    // from the start of the stream as for an empty store.
    let info = env.consumer_info().await;
    assert!(
        matches!(
            info.config.deliver_policy,
            async_nats::jetstream::consumer::DeliverPolicy::ByStartSequence { .. }
        ),
        "{:?}",
        info.config.deliver_policy
    );
    let failed_by: Option<String> =
        sqlx::query_scalar("SELECT failed_by FROM deploy_facts WHERE event_id = 'e-7'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(failed_by.as_deref(), Some("r-7"));
    projector.stop().await.unwrap();
    env.cleanup().await;
}
