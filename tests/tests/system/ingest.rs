//! The HTTP gateway, end to end: HTTP -> JetStream -> projector -> the log.

use dora_system_tests::{get_json, post_events, post_raw, TestEnv, CI_TOKEN, PAGER_TOKEN};
use serde_json::{json, Value};

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
    post_events(&ingest.url, Some(CI_TOKEN), &deploy("marker")).await;
    env.wait_for_events(2).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE id = 'same'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    let facts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deploy_facts WHERE event_id = 'same'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(facts, 1, "one attempt, not two");

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

    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}
