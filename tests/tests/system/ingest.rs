//! The HTTP gateway, end to end: HTTP -> JetStream -> projector -> the log.

use std::time::Duration;

use clap::Parser;
use dora_system_tests::{
    eventually, get_json, post_events, post_raw, TestEnv, CI_TOKEN, PAGER_TOKEN,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn deploy(id: &str) -> Value {
    json!({"id": id, "kind": "deploy", "service": "checkout", "git_sha": "abc123",
           "commit_at": "2026-03-10T10:00:00Z", "occurred_at": "2026-03-10T12:00:00+02:00"})
}

#[tokio::test]
async fn an_event_posted_over_http_lands_once_with_its_source() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let projector = env.spawn_projector(env.projector_config()).await;

    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &deploy("d-1")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body,
        json!({"accepted": 1, "ids": ["d-1"], "duplicates": 0})
    );
    env.wait_for_events(1).await;

    let (source, occurred, seq, sha): (String, chrono::DateTime<chrono::Utc>, i64, String) =
        sqlx::query_as(
            "SELECT source, occurred_at, stream_seq, git_sha FROM events WHERE id = 'd-1'",
        )
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(source, "ci");
    assert_eq!(
        occurred.to_rfc3339(),
        "2026-03-10T10:00:00+00:00",
        "stored as UTC"
    );
    assert_eq!(seq, 1);
    assert_eq!(sha, "abc123");

    // A second token's name is that event's source.
    let (status, body) = post_events(
        &ingest.url,
        Some(PAGER_TOKEN),
        &json!({"kind": "incident_opened", "service": "checkout", "ref_id": "INC-1"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let assigned = body["ids"][0].as_str().unwrap().to_owned();
    assert_eq!(assigned.len(), 36, "a UUIDv7 is assigned: {assigned}");
    env.wait_for_events(2).await;
    let source: String = sqlx::query_scalar("SELECT source FROM events WHERE id = $1")
        .bind(&assigned)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(source, "pager");

    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn the_same_id_twice_is_one_row_and_the_repeat_is_reported() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let projector = env.spawn_projector(env.projector_config()).await;

    let (s1, b1) = post_events(&ingest.url, Some(CI_TOKEN), &deploy("same")).await;
    // Stored before the repeats come: they meet it in the log, not in the same batch.
    env.wait_for_events(1).await;
    let (s2, b2) = post_events(&ingest.url, Some(CI_TOKEN), &deploy("same")).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(b1["duplicates"], 0);
    assert_eq!(b2["duplicates"], 1, "{b2}");
    assert_eq!(b2["ids"], json!(["same"]));

    // Over NATS with the key the gateway used (`<id>:<digest of the canonical event>`,
    // dora_event::dedup): JetStream drops it.
    let event = dora_event::validate(
        &deploy("same"),
        dora_event::Origin::Stream,
        chrono::Utc::now(),
    )
    .unwrap();
    let ack = env
        .publish_raw(
            &env.subject("prod", "checkout", "deploy"),
            &serde_json::to_vec(&deploy("same")).unwrap(),
            Some(&dora_event::dedup::msg_id(&event, true)),
        )
        .await;
    assert!(ack.duplicate);
    // Over NATS without the header (or after the duplicate window): JetStream stores
    // it again, and the projector's insert by id keeps one row.
    let ack = env
        .publish_raw(
            &env.subject("prod", "checkout", "deploy"),
            &serde_json::to_vec(&deploy("same")).unwrap(),
            None,
        )
        .await;
    assert!(!ack.duplicate);
    // A marker after it proves the projector got past the repeat.
    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &deploy("marker")).await;
    assert_eq!((status, &body["duplicates"]), (202, &json!(0)), "{body}");
    env.wait_for_events(2).await;
    env.wait_until_all_acked().await;

    // The primary key keeps one row whatever happens; what could go wrong is elsewhere.
    // The stream: the first post, the header-less NATS copy, the marker. The repeated
    // post and the NATS copy with the header were dropped by JetStream, not stored.
    assert_eq!(
        env.stream_messages().await,
        3,
        "JetStream kept no repeat with the id"
    );
    // The repeat is a duplicate, not a rejection.
    let rejected: i64 = sqlx::query_scalar("SELECT count(*) FROM rejected_events")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(rejected, 0, "a repeated id is not a rejected message");
    // The row is the first arrival's, untouched by the repeat (which says `nats`).
    let (rows, source, seq): (i64, String, i64) =
        sqlx::query_as("SELECT count(*) OVER (), source, stream_seq FROM events WHERE id = 'same'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!((rows, source.as_str(), seq), (1, "ci", 1));
    let facts: (i64, i64) = sqlx::query_as(
        "SELECT count(*), min(stream_seq) FROM deploy_facts WHERE event_id = 'same'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(facts, (1, 1), "one attempt, the first one");

    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn a_batch_with_one_invalid_element_is_rejected_whole() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;

    let batch = json!([deploy("b-0"), {"id": "b-1", "kind": "deploy", "service": "checkout",
        "git_sha": "abc123", "commit_at": "2026-03-10T12:00:00Z", "occurred_at": "2026-03-10T11:00:00Z"}, deploy("b-2")]);
    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &batch).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["index"], 1);
    assert_eq!(body["field"], "commit_at");
    assert!(
        body["error"].as_str().unwrap().contains("commit_at"),
        "{body}"
    );

    let info = env
        .js
        .get_stream(&env.stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.state.messages, 0, "nothing of the batch was published");

    // The same batch without the bad element goes through whole, ids in order.
    let good = json!([deploy("b-0"), deploy("b-2")]);
    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &good).await;
    assert_eq!(status, 202);
    assert_eq!(
        body,
        json!({"accepted": 2, "ids": ["b-0", "b-2"], "duplicates": 0})
    );

    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn every_rule_of_the_contract_gets_a_400_that_names_the_field() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let future = (chrono::Utc::now() + chrono::TimeDelta::minutes(10)).to_rfc3339();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"kind": "deploy", "service": "a", "git_sha": "abcd", "succeded": false}),
            "succeded",
        ),
        (
            json!({"kind": "deployment", "service": "a", "git_sha": "abcd"}),
            "kind",
        ),
        (json!({"service": "a", "git_sha": "abcd"}), "kind"),
        (json!({"kind": "deploy", "git_sha": "abcd"}), "service"),
        (
            json!({"kind": "deploy", "service": "a/b", "git_sha": "abcd"}),
            "service",
        ),
        (
            json!({"kind": "deploy", "service": "a", "environment": "pr od", "git_sha": "abcd"}),
            "environment",
        ),
        (json!({"kind": "deploy", "service": "a"}), "git_sha"),
        (
            json!({"kind": "deploy", "service": "a", "git_sha": "not-hex"}),
            "git_sha",
        ),
        (
            json!({"kind": "rollback", "service": "a", "git_sha": "abc"}),
            "git_sha",
        ),
        (
            json!({"kind": "deploy", "service": "a", "git_sha": "abcd", "succeeded": "no"}),
            "succeeded",
        ),
        (
            json!({"kind": "deploy", "service": "a", "git_sha": "abcd",
                "commit_at": "2026-03-10T12:00:01Z", "occurred_at": "2026-03-10T12:00:00Z"}),
            "commit_at",
        ),
        (
            json!({"kind": "deploy", "service": "a", "git_sha": "abcd", "commit_at": "last week"}),
            "commit_at",
        ),
        (json!({"kind": "incident_opened", "service": "a"}), "ref_id"),
        (json!({"kind": "incident_closed", "service": "a"}), "ref_id"),
        (
            json!({"kind": "deploy", "service": "a", "git_sha": "abcd", "occurred_at": future}),
            "occurred_at",
        ),
        (
            json!({"kind": "deploy", "service": "a", "git_sha": "abcd", "occurred_at": "2026-13-01T00:00:00Z"}),
            "occurred_at",
        ),
        (
            json!({"kind": "incident_opened", "service": "a", "ref_id": "r", "succeeded": true}),
            "succeeded",
        ),
        (
            json!({"kind": "rollback", "service": "a", "git_sha": "abcd", "commit_at": "2026-03-10T12:00:00Z"}),
            "commit_at",
        ),
        (
            json!({"kind": "deploy", "service": "a", "git_sha": "abcd", "ref_id": "r"}),
            "ref_id",
        ),
        (
            json!({"kind": "incident_closed", "service": "a", "ref_id": "r", "git_sha": "abcd"}),
            "git_sha",
        ),
        (
            json!({"id": "bad id", "kind": "deploy", "service": "a", "git_sha": "abcd"}),
            "id",
        ),
    ];
    for (event, field) in cases {
        let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &event).await;
        assert_eq!(status, 400, "{event} was accepted: {body}");
        assert_eq!(body["field"], field, "{event}: {body}");
        assert!(
            body.get("index").is_none(),
            "a single event has no index: {body}"
        );
        assert!(!body["error"].as_str().unwrap().is_empty());
    }

    for (raw, needle) in [
        (b"{\"kind\": ".to_vec(), "invalid JSON"),
        (b"[]".to_vec(), "1 to 1000"),
        (b"42".to_vec(), "JSON object"),
    ] {
        let (status, body) = post_raw(&ingest.url, Some(CI_TOKEN), "application/json", raw).await;
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().contains(needle), "{body}");
    }
    let too_many: Vec<Value> = (0..1001).map(|i| deploy(&format!("m-{i}"))).collect();
    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &json!(too_many)).await;
    assert_eq!(status, 400, "{body}");

    let info = env
        .js
        .get_stream(&env.stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.state.messages, 0, "no rejected event was published");
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn auth_content_type_and_size_are_checked() {
    let env = TestEnv::new().await;
    let mut config = env.ingest_config();
    config.max_body_bytes = 64 * 1024;
    let ingest = env.spawn_ingest(config).await;

    let (status, body) = post_events(&ingest.url, None, &deploy("x")).await;
    assert_eq!(status, 401);
    assert!(
        body["error"].as_str().unwrap().contains("Authorization"),
        "{body}"
    );
    let (status, _) =
        post_events(&ingest.url, Some("not-a-known-token-at-all"), &deploy("x")).await;
    assert_eq!(status, 401);
    let response = reqwest::Client::new()
        .post(format!("{}/events", ingest.url))
        .header("authorization", format!("Basic {CI_TOKEN}"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");

    let (status, body) = post_raw(&ingest.url, Some(CI_TOKEN), "text/plain", b"{}".to_vec()).await;
    assert_eq!(status, 415, "{body}");
    assert!(body["error"].as_str().unwrap().contains("application/json"));
    let (status, _) = post_raw(
        &ingest.url,
        Some(CI_TOKEN),
        "application/json; charset=utf-8",
        serde_json::to_vec(&deploy("charset")).unwrap(),
    )
    .await;
    assert_eq!(status, 202, "parameters on the content type are fine");

    let big: Vec<Value> = (0..1000).map(|i| deploy(&format!("big-{i:04}"))).collect();
    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &json!(big)).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("65536"), "{body}");

    let info = env
        .js
        .get_stream(&env.stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(
        info.state.messages, 1,
        "only the accepted event was published"
    );
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn a_full_batch_is_accepted_and_projected_once() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let projector = env.spawn_projector(env.projector_config()).await;

    let batch: Vec<Value> = (0..1000)
        .map(|i| json!({"kind": "deploy", "service": format!("svc-{}", i % 7), "git_sha": format!("{i:08x}")}))
        .collect();
    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &json!(batch)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 1000);
    let ids: Vec<&str> = body["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1000);
    env.wait_for_events(1000).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE id = ANY($1)")
        .bind(ids.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1000, "the returned ids are the stored ids");

    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn jetstream_unavailable_is_a_503_and_not_ready() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let (status, body) = get_json(&ingest.url, "/readyz").await;
    assert_eq!((status, &body["status"]), (200, &json!("ready")));

    env.js.delete_stream(&env.stream).await.unwrap();
    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &deploy("lost")).await;
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("some may be stored"), "{body}");
    assert!(error.contains("every event has an id"), "{body}");
    // Without ids or a key, the client is told a retry makes new events.
    let mut anonymous = deploy("x");
    anonymous.as_object_mut().unwrap().remove("id");
    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &anonymous).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("Idempotency-Key"),
        "{body}"
    );
    let (status, _) = get_json(&ingest.url, "/readyz").await;
    assert_eq!(status, 503);
    let (status, _) = get_json(&ingest.url, "/healthz").await;
    assert_eq!(status, 200, "the process itself is up");

    ingest.stop().await.unwrap();
    env.cleanup().await;
}

async fn post_with_key(base: &str, token: &str, key: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/events"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retried_request_without_ids_the_same_events() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let projector = env.spawn_projector(env.projector_config()).await;

    let mut anonymous = deploy("x");
    anonymous.as_object_mut().unwrap().remove("id");
    let batch = json!([anonymous, anonymous, deploy("given")]);

    let (s1, first) = post_with_key(&ingest.url, CI_TOKEN, "run-41:deploy", &batch).await;
    let (s2, retry) = post_with_key(&ingest.url, CI_TOKEN, "run-41:deploy", &batch).await;
    assert_eq!((s1, s2), (202, 202), "{first} {retry}");
    assert_eq!(first["ids"], retry["ids"], "the retry is the same events");
    assert_eq!(first["ids"][2], "given", "an id the sender gave is kept");
    assert_ne!(
        first["ids"][0], first["ids"][1],
        "the index is part of the id"
    );
    assert_eq!(
        retry["duplicates"], 3,
        "the retry is reported as duplicates: {retry}"
    );

    // Another key, or another sender with the same key, is other events.
    let (s3, other_key) = post_with_key(&ingest.url, CI_TOKEN, "run-42:deploy", &batch).await;
    let (s4, other_token) = post_with_key(&ingest.url, PAGER_TOKEN, "run-41:deploy", &batch).await;
    assert_eq!((s3, s4), (202, 202));
    assert_ne!(other_key["ids"][0], first["ids"][0]);
    assert_ne!(other_token["ids"][0], first["ids"][0]);
    assert_eq!(
        other_key["duplicates"], 1,
        "only `given` repeats: {other_key}"
    );

    // 2 from the first request, 2 from each of the others; `given` once.
    env.wait_for_events(7).await;
    let rejected: i64 = sqlx::query_scalar("SELECT count(*) FROM rejected_events")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(rejected, 0);
    let mut stream = env.js.get_stream(&env.stream).await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(
        info.state.messages, 7,
        "JetStream dropped the retried publishes"
    );

    // A malformed key is refused by name, and nothing is published.
    let (status, body) = post_with_key(&ingest.url, CI_TOKEN, "no spaces", &batch).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("Idempotency-Key"),
        "{body}"
    );
    assert_eq!(
        env.stream_messages().await,
        7,
        "the refused request published nothing"
    );
    env.wait_until_all_acked().await;
    assert_eq!(env.event_count().await, 7);

    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

/// The gateway's default body limit, as the process would parse it.
fn default_body_limit() -> usize {
    dora_ingest::Config::try_parse_from([
        "dora-ingest",
        "--tokens",
        "ci=0123456789abcdef",
        "--source-key",
        dora_system_tests::SOURCE_KEY,
    ])
    .unwrap()
    .max_body_bytes
}

#[tokio::test]
async fn a_chunked_body_with_no_length_is_cut_at_the_limit() {
    let env = TestEnv::new().await;
    let mut config = env.ingest_config();
    config.max_body_bytes = 64 * 1024;
    let ingest = env.spawn_ingest(config).await;

    // No Content-Length: the gateway learns the size only by reading. 200 KiB of valid
    // events in 8 KiB chunks.
    let events: Vec<Value> = (0..2000).map(|i| deploy(&format!("ch-{i:04}"))).collect();
    let body = serde_json::to_vec(&events).unwrap();
    assert!(body.len() > 3 * 64 * 1024);
    let addr = ingest.url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {CI_TOKEN}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let mut request = head.into_bytes();
    for chunk in body.chunks(8 * 1024) {
        request.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend(chunk);
        request.extend(b"\r\n");
    }
    request.extend(b"0\r\n\r\n");
    // The gateway may answer and close before it has read everything: a failed write
    // is fine, the answer is what counts.
    let _ = socket.write_all(&request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("65536"), "the limit is named: {answer}");
    assert_eq!(
        env.stream_messages().await,
        0,
        "nothing of it was published"
    );

    ingest.stop().await.unwrap();
    env.cleanup().await;
}

/// The largest event the contract allows, as a client's JSON encoder writes it: every
/// string at its longest (the ref_id in 4-byte characters), the longest time form.
fn maximal_event(i: usize) -> Value {
    let id = format!("{i:04}-{}", "x".repeat(123));
    let ref_id = format!("{i:04}{}", "\u{1F525}".repeat(124));
    json!({
        "id": id,
        "kind": "incident_opened",
        "service": "s".repeat(64),
        "environment": "e".repeat(64),
        "git_sha": "f".repeat(64),
        "ref_id": ref_id,
        "occurred_at": "2026-03-10T12:00:00.123456789+05:30",
    })
}

#[tokio::test]
async fn the_default_body_limit_fits_1000_of_the_largest_events() {
    let env = TestEnv::new().await;
    let mut config = env.ingest_config();
    config.max_body_bytes = default_body_limit();
    let limit = config.max_body_bytes;
    let ingest = env.spawn_ingest(config).await;

    let one = maximal_event(0);
    assert_eq!(one["id"].as_str().unwrap().len(), 128);
    assert_eq!(one["ref_id"].as_str().unwrap().chars().count(), 128);
    let batch: Vec<Value> = (0..1000).map(maximal_event).collect();
    // Compact and pretty-printed (as `jq` writes it), both.
    for (how, body) in [
        ("compact", serde_json::to_vec(&batch).unwrap()),
        ("pretty", serde_json::to_vec_pretty(&batch).unwrap()),
    ] {
        assert!(body.len() <= limit, "{how}: {} > {limit}", body.len());
        println!(
            "1000 maximal events, {how}: {} bytes of {limit}",
            body.len()
        );
        let (status, answer) =
            post_raw(&ingest.url, Some(CI_TOKEN), "application/json", body).await;
        assert_eq!(status, 202, "{how}: {answer}");
        assert_eq!(answer["accepted"], 1000);
    }
    assert_eq!(
        env.stream_messages().await,
        1000,
        "the second post was all duplicates"
    );

    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn the_stream_is_created_as_the_source_of_truth() {
    let env = TestEnv::new().await;
    // Created by the gateway, as in production (the harness made the test's own).
    env.js.delete_stream(&env.stream).await.unwrap();
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &deploy("kept")).await;
    assert_eq!(status, 202, "{body}");

    let mut stream = env.js.get_stream(&env.stream).await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    use async_nats::jetstream::stream::{DiscardPolicy, RetentionPolicy, StorageType};
    assert_eq!(config.storage, StorageType::File);
    assert_eq!(config.retention, RetentionPolicy::Limits);
    assert_eq!(config.subjects, vec![format!("{}.>", env.prefix)]);
    assert_eq!(
        (config.max_messages, config.max_bytes, config.max_age),
        (-1, -1, Duration::ZERO),
        "no limit: nothing ages out of the source of truth"
    );
    assert_eq!(config.max_messages_per_subject, -1);
    assert_eq!(config.discard, DiscardPolicy::Old);
    assert_eq!(config.duplicate_window, Duration::from_secs(120));
    assert!(config.deny_delete && config.deny_purge);
    // And the server holds it to that.
    assert!(
        stream.delete_message(1).await.is_err(),
        "a message was deleted"
    );
    assert!(stream.purge().await.is_err(), "the stream was purged");
    assert_eq!(env.stream_messages().await, 1);

    ingest.stop().await.unwrap();
    env.cleanup().await;
}

/// A nats-server of this test's own, on a free port with a store in a temporary
/// directory, so it can be stopped and started without touching the shared one.
struct PrivateNats {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<tokio::process::Child>,
}

impl PrivateNats {
    async fn start() -> PrivateNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("dora-nats-{}", uuid::Uuid::now_v7().simple()));
        let mut nats = PrivateNats {
            port,
            dir,
            child: None,
        };
        nats.restart().await;
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let binary = std::env::var("DORA_TEST_NATS_SERVER")
            .unwrap_or_else(|_| "/usr/sbin/nats-server".to_owned());
        let child = tokio::process::Command::new(binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server (set DORA_TEST_NATS_SERVER)");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        eventually("the private nats-server listens", || async {
            tokio::net::TcpStream::connect(&addr).await.is_ok()
        })
        .await;
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn nats_going_away_is_a_503_and_not_ready_until_it_is_back() {
    let env = TestEnv::new().await;
    let mut nats = PrivateNats::start().await;
    let mut config = env.ingest_config();
    config.stream.nats_url = nats.url();
    let ingest = env.spawn_ingest(config).await;
    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &deploy("before")).await;
    assert_eq!(status, 202, "{body}");
    let (status, _) = get_json(&ingest.url, "/readyz").await;
    assert_eq!(status, 200);

    nats.stop().await;
    eventually("readyz says NATS is not connected", || async {
        let (status, body) = get_json(&ingest.url, "/readyz").await;
        status == 503 && body["error"] == "not connected to NATS"
    })
    .await;
    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &deploy("during")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("retry the same request"),
        "{body}"
    );
    let (status, _) = get_json(&ingest.url, "/healthz").await;
    assert_eq!(status, 200, "the process stays up");

    // Back on the same port and store: the gateway reconnects by itself.
    nats.restart().await;
    eventually("readyz is ready again", || async {
        get_json(&ingest.url, "/readyz").await.0 == 200
    })
    .await;
    // The client retries what got a 503; its id keeps it to one message, whether or
    // not the first try was stored after all.
    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &deploy("during")).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &deploy("after")).await;
    assert_eq!((status, &body["duplicates"]), (202, &json!(0)), "{body}");
    let private = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let info = private
        .get_stream(&env.stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .clone();
    assert_eq!(
        info.messages, 3,
        "before, during (once) and after: {info:?}"
    );

    ingest.stop().await.unwrap();
    nats.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn no_token_no_start() {
    let binary = tokio::task::spawn_blocking(|| dora_system_tests::binary::built("dora-ingest"))
        .await
        .unwrap();
    // A port the gateway would serve on if it started.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    drop(held);
    let secret = "ci=short-secret";
    for (what, tokens) in [
        ("no setting", None),
        ("an empty one", Some("")),
        ("a short secret", Some(secret)),
    ] {
        let mut command = tokio::process::Command::new(&binary);
        command
            .env_clear()
            .env("DORA_INGEST_ADDR", &addr)
            .env("NATS_URL", "nats://127.0.0.1:1")
            .env("DORA_SOURCE_KEY", dora_system_tests::SOURCE_KEY)
            .kill_on_drop(true);
        if let Some(tokens) = tokens {
            command.env("DORA_INGEST_TOKENS", tokens);
        }
        let output = tokio::time::timeout(Duration::from_secs(30), command.output())
            .await
            .unwrap_or_else(|_| panic!("{what}: the gateway started and kept running"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{what}: {stderr}");
        assert!(stderr.contains("DORA_INGEST_TOKENS"), "{what}: {stderr}");
        assert!(
            !stderr.contains("short-secret"),
            "{what} leaks the secret: {stderr}"
        );
        assert!(
            std::net::TcpStream::connect(&addr).is_err(),
            "{what}: something listens on {addr}"
        );
    }
}

#[tokio::test]
async fn a_batch_jetstream_takes_only_in_part_is_a_503_and_a_retry_completes_it() {
    let env = TestEnv::new().await;
    // A stream that, once the gateway is up, holds three messages and refuses more (the
    // gateway refuses to start on such a stream, so the limit comes after): JetStream
    // acks the first three publishes of a batch and refuses the rest.
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let mut config = dora_event::stream::config(&env.stream, &env.prefix, 1);
    config.max_messages = 3;
    config.discard = async_nats::jetstream::stream::DiscardPolicy::New;
    env.js.update_stream(config.clone()).await.unwrap();

    let batch: Vec<Value> = (0..5).map(|i| deploy(&format!("part-{i}"))).collect();
    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &json!(batch)).await;
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("some may be stored"), "{body}");
    assert!(error.contains("retry the same request"), "{body}");
    assert_eq!(env.stream_messages().await, 3, "the part JetStream took");

    // The stream takes more again; the client retries the same request: the part
    // already stored is reported as duplicates, the rest is stored once.
    config.max_messages = -1;
    env.js.update_stream(config).await.unwrap();
    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &json!(batch)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (&body["accepted"], &body["duplicates"]),
        (&json!(5), &json!(3)),
        "{body}"
    );
    assert_eq!(env.stream_messages().await, 5);

    ingest.stop().await.unwrap();
    env.cleanup().await;
}
