//! `GET /dora` over HTTP: the contract's JSON and its 400s.

use dora_system_tests::{eventually, get_json, TestEnv};
use serde_json::json;

#[tokio::test]
async fn get_dora_answers_the_contract_json() {
    let env = TestEnv::new().await;
    env.seed(&[
        json!({"id": "d1", "kind": "deploy", "service": "api", "git_sha": "aaaa",
               "commit_at": "2026-03-10T08:00:00Z", "occurred_at": "2026-03-10T10:00:00Z"}),
        json!({"id": "d2", "kind": "deploy", "service": "api", "git_sha": "bbbb", "succeeded": false,
               "occurred_at": "2026-03-11T10:00:00Z"}),
        json!({"id": "o1", "kind": "incident_opened", "service": "api", "ref_id": "INC-1",
               "git_sha": "aaaa", "occurred_at": "2026-03-12T10:00:00Z"}),
        json!({"id": "c1", "kind": "incident_closed", "service": "api", "ref_id": "INC-1",
               "occurred_at": "2026-03-12T11:30:00Z"}),
        // A fix attempted while INC-1 runs: rework.
        json!({"id": "d3", "kind": "deploy", "service": "api", "git_sha": "cccc", "succeeded": false,
               "occurred_at": "2026-03-12T11:00:00Z"}),
    ])
    .await;
    let api = env.spawn_api().await;
    let (status, body) = get_json(&api.url, "/dora?as_of=2026-03-16T00:00:00Z").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "window": {"start": "2026-03-09T00:00:00Z", "end": "2026-03-16T00:00:00Z", "days": 7, "offset": 0},
            "service": null,
            "environment": "prod",
            "deployment_frequency": {"deploys": 1, "per_day": 0.143, "level": "high"},
            "lead_time": {"median_seconds": 7200.0, "samples": 1, "level": "elite"},
            "change_failure_rate": {"failed": 3, "attempts": 3, "rate": 1.0, "level": "low"},
            "time_to_restore": {"median_seconds": 5400.0, "samples": 1, "open_incidents": 0, "level": "high"},
            "rework_rate": {"rework": 1, "attempts": 3, "rate": 0.3333},
            "levels": "dora-2023"
        })
    );

    let (status, body) = get_json(
        &api.url,
        "/dora?as_of=2026-03-16T00:00:00Z&offset=7&service=api",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["window"]["end"], "2026-03-09T00:00:00Z");
    assert_eq!(body["service"], "api");
    assert_eq!(body["deployment_frequency"]["deploys"], 0);
    assert_eq!(body["lead_time"]["median_seconds"], serde_json::Value::Null);

    for (query, param) in [
        ("days=0", "days"),
        ("days=3651", "days"),
        ("offset=x", "offset"),
        ("as_of=monday", "as_of"),
        ("service=a%2Fb", "service"),
        ("environment=pr%20od", "environment"),
        ("dayz=7", "dayz"),
    ] {
        let (status, body) = get_json(&api.url, &format!("/dora?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["param"], param, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(param),
            "{query}: {body}"
        );
    }

    let (status, _) = get_json(&api.url, "/readyz").await;
    assert_eq!(status, 200);
    api.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn readyz_says_when_the_store_is_not_there() {
    let env = TestEnv::new().await;
    sqlx::query("DROP SCHEMA dora CASCADE")
        .execute(&env.pool)
        .await
        .unwrap();
    let api = env.spawn_api().await;
    let (status, body) = get_json(&api.url, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("dora-projector"),
        "{body}"
    );
    api.stop().await.unwrap();
    env.cleanup().await;
}

/// A question that cannot be answered in time, or that finds every connection busy,
/// gets a `503` saying which and when to ask again, and the pool recovers.
#[tokio::test]
async fn an_overloaded_api_answers_503_with_retry_after_and_recovers() {
    use std::time::Duration;
    let env = TestEnv::new().await;
    env.seed(&[
        json!({"id": "d1", "kind": "deploy", "service": "api", "git_sha": "aaaa",
                      "occurred_at": "2026-03-10T10:00:00Z"}),
    ])
    .await;
    let mut config = env.api_config();
    config.db_connections = 1;
    config.statement_timeout = Duration::from_secs(1);
    let quick = env.spawn_api_with(config.clone()).await;
    config.statement_timeout = Duration::from_secs(60);
    let patient = env.spawn_api_with(config).await;
    let path = "/dora?as_of=2026-03-16T00:00:00Z";
    // The alert loop checks once at start, on the same one-connection pool; once both
    // processes have done so, the next check is an interval (15 minutes) away and every
    // query below is the test's own.
    for api in [&quick, &patient] {
        dora_system_tests::eventually("the alert loop's first check", || async {
            let text = reqwest::get(format!("{}/metrics", api.url))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .any(|l| l.starts_with("dora_api_alert_checks_total{") && !l.ends_with(" 0"))
        })
        .await;
    }

    // Hold the facts table: every metrics query waits on the lock.
    let mut lock = env.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE deploy_facts IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();

    let response = reqwest::get(format!("{}{path}", quick.url)).await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("DORA_API_STATEMENT_TIMEOUT"),
        "{body}"
    );

    // One request holds the only connection while it waits; the next finds none.
    let url = patient.url.clone();
    let waiting = tokio::spawn(async move { get_json(&url, path).await });
    dora_system_tests::eventually("a metrics query waits on the lock", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
               AND application_name = 'dora-api' AND wait_event_type = 'Lock'",
        )
        .fetch_one(&env.pool)
        .await
        .unwrap();
        n > 0
    })
    .await;
    let response = reqwest::get(format!("{}{path}", patient.url))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("in use"), "{body}");

    lock.rollback().await.unwrap();
    let (status, body) = waiting.await.unwrap();
    assert_eq!(
        status, 200,
        "the waiting request is answered once the lock goes: {body}"
    );
    assert_eq!(body["deployment_frequency"]["deploys"], 1);
    let (status, _) = get_json(&quick.url, path).await;
    assert_eq!(status, 200, "the pool recovered");
    quick.stop().await.unwrap();
    patient.stop().await.unwrap();
    env.cleanup().await;
}

/// With `DORA_API_TOKENS` set, reads need a token (bearer or HTTP Basic, as a browser
/// sends it); the probes stay open; every refusal says what to send.
#[tokio::test]
async fn read_tokens_guard_every_route_but_the_probes() {
    use base64::Engine;
    let env = TestEnv::new().await;
    env.seed(&[
        json!({"id": "d1", "kind": "deploy", "service": "api", "git_sha": "aaaa",
               "occurred_at": "2026-03-10T10:00:00Z"}),
    ])
    .await;
    let mut config = env.api_config();
    config.tokens = Some(dora_event::tokens::Tokens::parse("team=team-secret-0123456789").unwrap());
    let api = env.spawn_api_with(config).await;
    let client = reqwest::Client::new();
    // /alerts answers 503 until the alert loop has created its schema, a moment after
    // start (a race a loaded CI machine lost once): wait for it, with a token.
    eventually("the alert state is ready", || async {
        client
            .get(format!("{}/alerts", api.url))
            .bearer_auth("team-secret-0123456789")
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:team-secret-0123456789")
    );
    let guarded = [
        "/dora?as_of=2026-03-16T00:00:00Z",
        "/dora/trend?as_of=2026-03-16T00:00:00Z",
        "/dora/failures?as_of=2026-03-16T00:00:00Z",
        "/dashboard?as_of=2026-03-16T00:00:00Z",
        "/alerts",
        "/metrics",
    ];
    for path in guarded {
        let url = format!("{}{path}", api.url);
        for authorization in [None, Some("Bearer wrong-secret-0123456789")] {
            let mut request = client.get(&url);
            if let Some(a) = authorization {
                request = request.header("authorization", a);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 401, "{path} {authorization:?}");
            let offered: Vec<_> = response
                .headers()
                .get_all("www-authenticate")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            assert!(
                offered.iter().any(|v| v.starts_with("Basic")),
                "{path}: {offered:?}"
            );
            let body: serde_json::Value = response.json().await.unwrap();
            let error = body["error"].as_str().unwrap();
            assert!(
                error.contains(if authorization.is_none() {
                    "DORA_API_TOKENS"
                } else {
                    "unknown token"
                }),
                "{path}: {error}"
            );
        }
        for authorization in ["Bearer team-secret-0123456789", basic.as_str()] {
            let response = client
                .get(&url)
                .header("authorization", authorization)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200, "{path} with a token");
        }
    }
    let response = client
        .get(format!("{}/dora?as_of=2026-03-16T00:00:00Z", api.url))
        .bearer_auth("team-secret-0123456789")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["deployment_frequency"]["deploys"], 1);
    for probe in ["/healthz", "/readyz"] {
        let (status, body) = get_json(&api.url, probe).await;
        assert_eq!(status, 200, "{probe} needs no token: {body}");
    }
    api.stop().await.unwrap();
    env.cleanup().await;
}
