//! `GET /dora` over HTTP: the contract's JSON and its 400s.

use dora_system_tests::{get_json, TestEnv};
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
            "change_failure_rate": {"failed": 2, "attempts": 2, "rate": 1.0, "level": "low"},
            "time_to_restore": {"median_seconds": 5400.0, "samples": 1, "open_incidents": 0, "level": "high"},
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
