//! Hostile bodies through the running gateway, JetStream and the projector: no body
//! gets a 5xx, and nothing the gateway accepted is rejected by the projector or stored
//! in a form that breaks the contract's rules. (The property tests in
//! `event/tests/hostile.rs` and `ingest/tests/hostile.rs` and the fuzz target cover
//! many more bodies without servers; this checks the whole path with a few hundred.)

use chrono::{DateTime, Utc};
use dora_system_tests::{post_raw, Rng, TestEnv, CI_TOKEN};
use serde_json::{json, Value};

const INTERESTING: [&[u8]; 16] = [
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"\xff",
    b"1e999",
    b"null",
    b"\"succeeded\":true,",
    b"23:59:60",
    b"+23:59",
];

fn valid(rng: &mut Rng, n: u64) -> Value {
    let sha = format!("{:08x}", rng.next_u64() as u32);
    let at = "2026-03-10T12:00:00+01:00";
    match rng.below(4) {
        0 => json!({"id": format!("h-{n}"), "kind": "deploy", "service": "shop", "git_sha": sha,
                    "succeeded": rng.below(2) == 0, "commit_at": "2026-03-10T10:00:00Z", "occurred_at": at}),
        1 => {
            json!({"id": format!("h-{n}"), "kind": "rollback", "service": "shop", "git_sha": sha, "occurred_at": at})
        }
        2 => json!({"id": format!("h-{n}"), "kind": "incident_opened", "service": "shop",
                    "ref_id": format!("INC {n} \u{e9}"), "occurred_at": "2016-12-31T23:59:60Z"}),
        _ => json!({"id": format!("h-{n}"), "kind": "incident_closed", "service": "shop",
                    "ref_id": format!("INC {n}"), "occurred_at": at}),
    }
}

fn mutate(rng: &mut Rng, mut body: Vec<u8>) -> Vec<u8> {
    for _ in 0..=rng.below(4) {
        let at = rng.below(body.len() as u64 + 1) as usize;
        match rng.below(3) {
            0 if at < body.len() => body[at] = rng.next_u64() as u8,
            1 => {
                let token = INTERESTING[rng.below(INTERESTING.len() as u64) as usize];
                body.splice(at..at, token.iter().copied());
            }
            _ => {
                let end = (at + 1 + rng.below(6) as usize).min(body.len());
                body.drain(at.min(end)..end);
            }
        }
    }
    body
}

#[tokio::test]
async fn hostile_bodies_never_get_a_5xx_and_what_is_accepted_is_stored_sound() {
    let env = TestEnv::new().await;
    let mut config = env.ingest_config();
    config.max_body_bytes = 256 * 1024;
    let ingest = env.spawn_ingest(config).await;
    let projector = env.spawn_projector(env.projector_config()).await;
    let mut rng = Rng::new(0x5eed_0011);

    let mut bodies: Vec<Vec<u8>> = vec![
        "[".repeat(100_000).into_bytes(),
        format!("{}1{}", r#"{"id":"#.repeat(50_000), "}".repeat(50_000)).into_bytes(),
        serde_json::to_vec(&json!({"kind": "deploy", "service": "s".repeat(200_000), "git_sha": "abcd"})).unwrap(),
        vec![b'"'; 300 * 1024],
        br#"{"kind":"deploy","service":"shop","git_sha":"abcd","succeeded":false,"succeeded":true}"#.to_vec(),
        br#"{"kind":"deploy","service":7,"git_sha":"abcd"}"#.to_vec(),
        b"{\"kind\":\"deploy\",\"service\":\"sh\xffop\",\"git_sha\":\"abcd\"}".to_vec(),
        Vec::new(),
    ];
    for n in 0..300 {
        let one = valid(&mut rng, n);
        let body = if rng.below(3) == 0 {
            json!([one, valid(&mut rng, n + 10_000)])
        } else {
            one
        };
        let body = serde_json::to_vec(&body).unwrap();
        bodies.push(if rng.below(4) == 0 {
            body
        } else {
            mutate(&mut rng, body)
        });
    }

    let (mut accepted, mut statuses) = (0u64, std::collections::BTreeMap::new());
    for body in bodies {
        let content_type = if rng.below(20) == 0 {
            "text/plain"
        } else {
            "application/json"
        };
        let (status, answer) = post_raw(&ingest.url, Some(CI_TOKEN), content_type, body).await;
        *statuses.entry(status).or_insert(0u64) += 1;
        assert!([202, 400, 413, 415].contains(&status), "{status}: {answer}");
        if status == 202 {
            accepted +=
                answer["accepted"].as_u64().unwrap() - answer["duplicates"].as_u64().unwrap();
        }
        if status == 400 {
            assert!(answer["error"].is_string(), "{answer}");
        }
    }
    println!("hostile bodies: statuses {statuses:?}, events accepted {accepted}");
    assert!(
        statuses.get(&202).copied().unwrap_or(0) > 0
            && statuses.get(&400).copied().unwrap_or(0) > 0
    );

    env.wait_until_all_acked().await;
    let rejected: i64 = sqlx::query_scalar("SELECT count(*) FROM rejected_events")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(
        rejected, 0,
        "the projector refused what the gateway accepted"
    );
    type Row = (
        String,
        String,
        String,
        String,
        Option<String>,
        bool,
        Option<DateTime<Utc>>,
        Option<String>,
        DateTime<Utc>,
        DateTime<Utc>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, kind, service, environment, git_sha, succeeded, commit_at, ref_id, occurred_at, received_at FROM events",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert!(
        rows.len() as u64 <= accepted && !rows.is_empty(),
        "{} rows, {accepted} accepted",
        rows.len()
    );
    for (
        id,
        kind,
        service,
        environment,
        git_sha,
        succeeded,
        commit_at,
        ref_id,
        occurred_at,
        received_at,
    ) in rows
    {
        let mut value = json!({"id": id, "kind": kind, "service": service, "environment": environment,
                               "occurred_at": occurred_at.to_rfc3339()});
        if kind == "deploy" {
            value["succeeded"] = json!(succeeded);
        }
        for (name, field) in [("git_sha", git_sha), ("ref_id", ref_id)] {
            if let Some(v) = field {
                value[name] = json!(v);
            }
        }
        if let Some(c) = commit_at {
            value["commit_at"] = json!(c.to_rfc3339());
        }
        let event = dora_event::validate(&value, dora_event::Origin::Stream, received_at)
            .unwrap_or_else(|e| panic!("stored {value} breaks a rule: {e}"));
        dora_event::invariants::check(&event, received_at).unwrap();
        if kind == "incident_opened" && occurred_at.timestamp() < 1_500_000_000 {
            // Sent as the leap second 2016-12-31T23:59:60Z: kept in its minute.
            assert_eq!(occurred_at.to_rfc3339(), "2016-12-31T23:59:59.999999+00:00");
        }
    }

    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

/// The tools' published payloads, byte-mutated and then signed as each tool signs:
/// past the proof, through the running gateway. No answer is a 5xx, nothing refused
/// or ignored is published, and the projector refuses nothing the gateway accepted.
#[tokio::test]
async fn hostile_webhook_bodies_never_get_a_5xx_and_refusals_publish_nothing() {
    use dora_system_tests::webhooks::{
        deliver, fixture_bytes, github_signature, pagerduty_signature, webhook_config,
        GITHUB_SECRET, PAGERDUTY_SECRET,
    };
    let env = TestEnv::new().await;
    let mut config = webhook_config(&env, None);
    config.max_body_bytes = 256 * 1024;
    let ingest = env.spawn_ingest(config).await;
    let projector = env.spawn_projector(env.projector_config()).await;
    let mut rng = Rng::new(0x5eed_0012);
    let routes: [(&str, &str, &str); 6] = [
        (
            "github",
            "deployment_status",
            "github/deployment_status.payload.json",
        ),
        (
            "github",
            "workflow_run",
            "github/workflow_run.completed.payload.json",
        ),
        ("gitlab", "Deployment Hook", "gitlab/deployment_hook.json"),
        ("pagerduty", "", "pagerduty/zulip.incident.triggered.json"),
        ("opsgenie", "", "opsgenie/create.json"),
        ("alertmanager", "", "alertmanager/zulip.firing.json"),
    ];
    let bearer = format!("Bearer {CI_TOKEN}");
    let (mut published, mut statuses) = (0u64, std::collections::BTreeMap::new());
    for n in 0..240 {
        let (tool, event, file) = routes[n % routes.len()];
        let mut body = fixture_bytes(file);
        if rng.below(5) != 0 {
            body = mutate(&mut rng, body);
        }
        let signature = match tool {
            "github" => github_signature(GITHUB_SECRET, &body),
            "pagerduty" => pagerduty_signature(PAGERDUTY_SECRET, &body),
            _ => String::new(),
        };
        let headers = [
            ("content-type", "application/json"),
            ("x-github-event", event),
            ("x-gitlab-event", event),
            ("x-hub-signature-256", signature.as_str()),
            ("x-pagerduty-signature", signature.as_str()),
            ("x-gitlab-token", CI_TOKEN),
            ("authorization", bearer.as_str()),
        ];
        let before = env.stream_messages().await;
        let path = format!("/webhooks/{tool}?service=web");
        let (status, answer) = deliver(&ingest.url, &path, &headers, body).await;
        *statuses.entry((tool, status)).or_insert(0u32) += 1;
        assert!([202, 400].contains(&status), "{tool} {status}: {answer}");
        let fresh = if status == 202 {
            answer["accepted"].as_u64().unwrap() - answer["duplicates"].as_u64().unwrap()
        } else {
            assert!(answer["error"].is_string(), "{answer}");
            0
        };
        published += fresh;
        assert_eq!(
            env.stream_messages().await,
            before + fresh,
            "{tool} {status}: {answer}"
        );
    }
    println!("hostile webhook bodies: {statuses:?}, events published {published}");
    assert!(published > 0 && statuses.keys().any(|(_, s)| *s == 400));
    env.wait_until_all_acked().await;
    let rejected: i64 = sqlx::query_scalar("SELECT count(*) FROM rejected_events")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(
        rejected, 0,
        "the projector refused what the gateway accepted"
    );
    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}
