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
