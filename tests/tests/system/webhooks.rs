//! The tools' webhooks, end to end (CONTRACT.md section 9): their published payloads,
//! signed as each tool signs them, through the gateway, JetStream and the projector to
//! the log and the metrics; redeliveries are duplicates, a bad proof publishes nothing,
//! and the commit-time lookups ask a stand-in for GitHub's and GitLab's APIs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use dora_system_tests::webhooks::{
    deliver, deliver_github, fixture, fixture_bytes, github_signature, pagerduty_signature,
    webhook_config, Asked, CommitApi, CommitReply, API_TOKEN, GITHUB_SECRET, PAGERDUTY_SECRET,
};
use dora_system_tests::{get_json, TestEnv, CI_TOKEN, PAGER_TOKEN};
use serde_json::json;

const SHA: &str = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e";

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// One stored event's source, commit time and outcome.
async fn stored(env: &TestEnv, id: &str) -> (String, Option<DateTime<Utc>>, Option<bool>) {
    sqlx::query_as("SELECT source, commit_at, succeeded FROM events WHERE id = $1")
        .bind(id)
        .fetch_one(&env.pool)
        .await
        .unwrap_or_else(|e| panic!("{id}: {e}"))
}

/// The value of one series of the gateway's `/metrics`; it must be there.
async fn series(base: &str, name_and_labels: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name_and_labels} in:\n{text}"))
}

/// A deployment_status delivery: the published payload, with a status id and state.
fn deployment_status(id: u64, state: &str) -> Vec<u8> {
    let mut body = fixture("github/deployment_status.payload.json");
    body["deployment_status"]["id"] = json!(id);
    body["deployment_status"]["state"] = json!(state);
    serde_json::to_vec(&body).unwrap()
}

#[tokio::test]
async fn a_github_deploy_lands_once_with_its_commit_time_and_a_redelivery_is_a_duplicate() {
    let env = TestEnv::new().await;
    let api = CommitApi::start(CommitReply::Json(fixture("github/commit.response.json"))).await;
    let ingest = env.spawn_ingest(webhook_config(&env, Some(&api))).await;
    let projector = env.spawn_projector(env.projector_config()).await;

    // The published payload, byte for byte, as GitHub sends it.
    let body = fixture_bytes("github/deployment_status.payload.json");
    let (status, answer) = deliver_github(
        &ingest.url,
        "",
        "deployment_status",
        GITHUB_SECRET,
        body.clone(),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer,
        json!({"accepted": 1, "ids": ["github-deployment-status-209916254"], "duplicates": 0})
    );
    assert_eq!(
        api.asked(),
        [Asked {
            path: format!("/repos/Codertocat/Hello-World/commits/{SHA}"),
            credential: Some(format!("Bearer {API_TOKEN}")),
        }]
    );
    env.wait_for_events(1).await;
    let (source, commit_at, succeeded) = stored(&env, "github-deployment-status-209916254").await;
    assert_eq!(source, "github");
    assert_eq!(
        commit_at,
        Some(utc("2011-04-14T16:00:49Z")),
        "commit.committer.date of GitHub's answer"
    );
    assert_eq!(succeeded, Some(true));
    let (service, environment, sha): (String, String, String) = sqlx::query_as(
        "SELECT service, environment, git_sha FROM events WHERE id = 'github-deployment-status-209916254'",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(
        (service.as_str(), environment.as_str(), sha.as_str()),
        ("Hello-World", "prod", SHA)
    );

    // GitHub's "Redeliver": the same bytes; and the same delivery form-encoded, which is
    // GitHub's default content type.
    let (status, answer) = deliver_github(
        &ingest.url,
        "",
        "deployment_status",
        GITHUB_SECRET,
        body.clone(),
    )
    .await;
    assert_eq!(
        (status, answer["duplicates"].clone()),
        (202, json!(1)),
        "{answer}"
    );
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&body).unwrap())
        .finish();
    let signature = github_signature(GITHUB_SECRET, form.as_bytes());
    let (status, answer) = deliver(
        &ingest.url,
        "/webhooks/github",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-github-event", "deployment_status"),
            ("x-hub-signature-256", &signature),
        ],
        form.into_bytes(),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["duplicates"], 1, "{answer}");
    assert_eq!(env.stream_messages().await, 1, "JetStream kept one message");
    env.wait_until_all_acked().await;
    assert_eq!(env.event_count().await, 1);
    assert_eq!(
        series(
            &ingest.url,
            r#"dora_ingest_commit_lookups_total{tool="github",outcome="found"}"#
        )
        .await,
        3.0
    );

    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn a_commit_lookup_that_fails_times_out_or_is_after_the_deploy_keeps_the_deploy() {
    let env = TestEnv::new().await;
    let api = CommitApi::start(CommitReply::Status(500)).await;
    let ingest = env.spawn_ingest(webhook_config(&env, Some(&api))).await;
    let projector = env.spawn_projector(env.projector_config()).await;
    let count = |outcome: &'static str| {
        let url = ingest.url.clone();
        async move {
            series(
                &url,
                &format!(
                    r#"dora_ingest_commit_lookups_total{{tool="github",outcome="{outcome}"}}"#
                ),
            )
            .await
        }
    };

    let cases = [
        (1, CommitReply::Status(500), "failed"),
        (2, CommitReply::Status(404), "not_found"),
        (3, CommitReply::Status(401), "refused"),
        (4, CommitReply::Json(json!({"commit": {}})), "failed"),
        (
            5,
            CommitReply::Slow(
                Duration::from_secs(7),
                fixture("github/commit.response.json"),
            ),
            "timeout",
        ),
    ];
    for (id, reply, outcome) in cases {
        api.reply(reply);
        let before = count(outcome).await;
        let (status, answer) = deliver_github(
            &ingest.url,
            "",
            "deployment_status",
            GITHUB_SECRET,
            deployment_status(id, "success"),
        )
        .await;
        assert_eq!(status, 202, "{outcome}: {answer}");
        assert_eq!(answer["accepted"], 1, "{outcome}: the deploy counts");
        assert_eq!(count(outcome).await, before + 1.0, "{outcome}");
    }
    env.wait_for_events(5).await;
    let without: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE kind = 'deploy' AND commit_at IS NULL",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(without, 5, "every deploy stored, none with a commit time");

    // GitLab's published commit answer is of September 2021, after the published
    // deployment of April: left out. The source is the token's name.
    api.reply(CommitReply::Json(fixture("gitlab/commit.response.json")));
    let (status, answer) = deliver(
        &ingest.url,
        "/webhooks/gitlab",
        &[
            ("content-type", "application/json"),
            ("x-gitlab-event", "Deployment Hook"),
            ("x-gitlab-token", CI_TOKEN),
        ],
        fixture_bytes("gitlab/deployment_hook.json"),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["ids"], json!(["gitlab-deployment-15-success"]));
    let last = api.asked().pop().unwrap();
    assert_eq!(
        last,
        Asked {
            path: "/projects/30/repository/commits/279484c09fbe69ededfced8c1bb6e6d24616b468"
                .to_owned(),
            credential: Some(API_TOKEN.to_owned()),
        }
    );
    env.wait_for_events(6).await;
    let (source, commit_at, _) = stored(&env, "gitlab-deployment-15-success").await;
    assert_eq!((source.as_str(), commit_at), ("ci", None));
    assert_eq!(
        series(
            &ingest.url,
            r#"dora_ingest_commit_lookups_total{tool="gitlab",outcome="after_deploy"}"#
        )
        .await,
        1.0
    );
    // A GitLab commit time before the deploy is kept.
    let mut earlier = fixture("gitlab/commit.response.json");
    earlier["committed_date"] = json!("2021-04-28T21:10:00.000+02:00");
    api.reply(CommitReply::Json(earlier));
    let mut failed = fixture("gitlab/deployment_hook.json");
    failed["status"] = json!("failed");
    let (status, answer) = deliver(
        &ingest.url,
        "/webhooks/gitlab",
        &[
            ("x-gitlab-event", "Deployment Hook"),
            ("x-gitlab-token", PAGER_TOKEN),
        ],
        serde_json::to_vec(&failed).unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    env.wait_for_events(7).await;
    let (source, commit_at, succeeded) = stored(&env, "gitlab-deployment-15-failed").await;
    assert_eq!(source, "pager");
    assert_eq!(commit_at, Some(utc("2021-04-28T19:10:00Z")));
    assert_eq!(succeeded, Some(false));

    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn without_a_token_no_lookup_is_made() {
    let env = TestEnv::new().await;
    let api = CommitApi::start(CommitReply::Json(fixture("github/commit.response.json"))).await;
    let ingest = env.spawn_ingest(webhook_config(&env, None)).await;
    let (status, answer) = deliver_github(
        &ingest.url,
        "",
        "deployment_status",
        GITHUB_SECRET,
        deployment_status(9, "failure"),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert!(api.asked().is_empty());
    for outcome in [
        "found",
        "after_deploy",
        "not_found",
        "refused",
        "failed",
        "timeout",
    ] {
        let labels =
            format!(r#"dora_ingest_commit_lookups_total{{tool="github",outcome="{outcome}"}}"#);
        assert_eq!(
            series(&ingest.url, &labels).await,
            0.0,
            "{outcome}: no lookup counted"
        );
    }
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn bad_proofs_get_401_and_unconfigured_routes_404_with_nothing_published() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(webhook_config(&env, None)).await;
    let body = fixture_bytes("github/deployment_status.payload.json");
    let other_body = fixture_bytes("github/ping.payload.json");
    let json = ("content-type", "application/json");

    let wrong = github_signature("another-secret-0123456789", &body);
    let of_other = github_signature(GITHUB_SECRET, &other_body);
    let unprefixed = github_signature(GITHUB_SECRET, &body).replace("sha256=", "");
    for (headers, why) in [
        (
            vec![json, ("x-github-event", "deployment_status")],
            "missing `X-Hub-Signature-256`",
        ),
        (
            vec![
                json,
                ("x-github-event", "deployment_status"),
                ("x-hub-signature-256", wrong.as_str()),
            ],
            "does not match",
        ),
        (
            vec![
                json,
                ("x-github-event", "deployment_status"),
                ("x-hub-signature-256", of_other.as_str()),
            ],
            "does not match",
        ),
        (
            vec![
                json,
                ("x-github-event", "deployment_status"),
                ("x-hub-signature-256", unprefixed.as_str()),
            ],
            "does not match",
        ),
    ] {
        let (status, answer) =
            deliver(&ingest.url, "/webhooks/github", &headers, body.clone()).await;
        assert_eq!(status, 401, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(why), "{answer}");
    }

    let pd = fixture_bytes("pagerduty/zulip.incident.triggered.json");
    let pd_wrong = pagerduty_signature("another-secret-0123456789", &pd);
    for headers in [
        vec![json],
        vec![json, ("x-pagerduty-signature", pd_wrong.as_str())],
    ] {
        let (status, answer) =
            deliver(&ingest.url, "/webhooks/pagerduty", &headers, pd.clone()).await;
        assert_eq!(status, 401, "{answer}");
    }
    let gl = fixture_bytes("gitlab/deployment_hook.json");
    for headers in [
        vec![json, ("x-gitlab-event", "Deployment Hook")],
        vec![
            json,
            ("x-gitlab-event", "Deployment Hook"),
            ("x-gitlab-token", "not-a-token-0123456789"),
        ],
        // The secret in the wrong header is no proof.
        vec![
            json,
            ("x-gitlab-event", "Deployment Hook"),
            ("authorization", "Bearer ci-secret-0123456789"),
        ],
    ] {
        let (status, answer) = deliver(&ingest.url, "/webhooks/gitlab", &headers, gl.clone()).await;
        assert_eq!(status, 401, "{answer}");
    }
    for route in [
        "/webhooks/opsgenie?service=x",
        "/webhooks/alertmanager?service=x",
    ] {
        for headers in [
            vec![json],
            vec![json, ("authorization", "Bearer not-a-token-0123456789")],
        ] {
            let response = reqwest::Client::new()
                .post(format!("{}{route}", ingest.url))
                .header(headers[0].0, headers[0].1)
                .headers(
                    headers[1..]
                        .iter()
                        .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
                        .collect(),
                )
                .body(fixture_bytes("opsgenie/create.json"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401, "{route}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer", "{route}");
        }
    }
    assert_eq!(
        env.stream_messages().await,
        0,
        "a bad proof publishes nothing"
    );
    assert_eq!(
        series(
            &ingest.url,
            r#"dora_ingest_requests_rejected_total{reason="unauthorized",field=""}"#
        )
        .await,
        13.0
    );
    ingest.stop().await.unwrap();

    // Without their secrets, the signed routes are not there, valid signature or not.
    let plain = env.spawn_ingest(env.ingest_config()).await;
    let signature = github_signature(GITHUB_SECRET, &body);
    let (status, answer) = deliver(
        &plain.url,
        "/webhooks/github",
        &[
            json,
            ("x-github-event", "deployment_status"),
            ("x-hub-signature-256", &signature),
        ],
        body,
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("DORA_GITHUB_WEBHOOK_SECRET"),
        "{answer}"
    );
    let signature = pagerduty_signature(PAGERDUTY_SECRET, &pd);
    let (status, answer) = deliver(
        &plain.url,
        "/webhooks/pagerduty",
        &[json, ("x-pagerduty-signature", &signature)],
        pd,
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("DORA_PAGERDUTY_WEBHOOK_SECRET"),
        "{answer}"
    );
    assert_eq!(env.stream_messages().await, 0);
    plain.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn payloads_that_map_to_nothing_are_202_ignored_and_bad_bodies_400() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(webhook_config(&env, None)).await;

    for (event, file, why) in [
        ("ping", "github/ping.payload.json", "ping"),
        ("push", "github/push.payload.json", "`push`"),
        (
            "deployment_status",
            "github/deployment_status.gh-pages.payload.json",
            "in_progress",
        ),
        (
            "workflow_run",
            "github/workflow_run.requested.payload.json",
            "requested",
        ),
    ] {
        let (status, answer) =
            deliver_github(&ingest.url, "", event, GITHUB_SECRET, fixture_bytes(file)).await;
        assert_eq!(status, 202, "{file}: {answer}");
        assert_eq!(answer["accepted"], 0, "{answer}");
        assert_eq!(answer["ids"], json!([]), "{answer}");
        assert!(
            answer["ignored"].as_str().unwrap().contains(why),
            "{answer}"
        );
    }
    // PagerDuty's own client's signed test body: verified under the second secret, and
    // an event type dora does not use.
    let (status, answer) = deliver(
        &ingest.url,
        "/webhooks/pagerduty",
        &[
            ("content-type", "application/json"),
            (
                "x-pagerduty-signature",
                "v1=0000,v1=0c0b9495b893a39e70d1fea2fe11fbe0a825f88b9f67846f6cc07dd2bc5476cd",
            ),
        ],
        fixture_bytes("pagerduty/signature-vector.go-pagerduty.body.json"),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert!(
        answer["ignored"]
            .as_str()
            .unwrap()
            .contains("incident.priority_updated"),
        "{answer}"
    );
    let (status, answer) = deliver(
        &ingest.url,
        "/webhooks/opsgenie",
        &[("authorization", &format!("Bearer {CI_TOKEN}"))],
        fixture_bytes("opsgenie/create.json"),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert!(
        answer["ignored"].as_str().unwrap().contains("no service"),
        "{answer}"
    );
    assert_eq!(
        series(
            &ingest.url,
            r#"dora_ingest_webhooks_ignored_total{tool="github"}"#
        )
        .await,
        4.0
    );

    // Refusals name the problem.
    let signed = |body: &[u8]| github_signature(GITHUB_SECRET, body);
    let mut no_sha = fixture("github/deployment_status.payload.json");
    no_sha["deployment"].as_object_mut().unwrap().remove("sha");
    let mut bad_sha = fixture("github/deployment_status.payload.json");
    bad_sha["deployment"]["sha"] = json!("not-hex");
    let cases: Vec<(Vec<u8>, &str, &str, u16, &str)> = vec![
        (
            b"not json".to_vec(),
            "deployment_status",
            "",
            400,
            "invalid JSON",
        ),
        (
            b"[1,2]".to_vec(),
            "deployment_status",
            "",
            400,
            "a github webhook body is a JSON object",
        ),
        (
            serde_json::to_vec(&no_sha).unwrap(),
            "deployment_status",
            "",
            400,
            "`deployment.sha` is missing",
        ),
        (
            serde_json::to_vec(&bad_sha).unwrap(),
            "deployment_status",
            "",
            400,
            "`git_sha` must be 4-64 hexadecimal",
        ),
        (
            fixture_bytes("github/ping.payload.json"),
            "ping",
            "?servce=x",
            400,
            "unknown query parameter `servce`",
        ),
        (
            fixture_bytes("github/ping.payload.json"),
            "ping",
            "?service=a%20b",
            400,
            "`service` must be 1-64",
        ),
    ];
    for (body, event, query, expected, why) in cases {
        let (status, answer) = deliver(
            &ingest.url,
            &format!("/webhooks/github{query}"),
            &[
                ("x-github-event", event),
                ("x-hub-signature-256", &signed(&body)),
            ],
            body,
        )
        .await;
        assert_eq!(status, expected, "{why}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(why),
            "{why}: {answer}"
        );
    }
    let (status, answer) = deliver(
        &ingest.url,
        "/webhooks/github",
        &[("x-hub-signature-256", &signed(b"{}"))],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("X-GitHub-Event"),
        "{answer}"
    );
    let big = vec![b' '; 3 * 1024 * 1024];
    let (status, _) = deliver(
        &ingest.url,
        "/webhooks/github",
        &[
            ("x-github-event", "ping"),
            ("x-hub-signature-256", &signed(&big)),
        ],
        big,
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(
        env.stream_messages().await,
        0,
        "nothing ignored or refused is published"
    );
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

/// PagerDuty, Opsgenie and Alertmanager incidents, and a GitHub Actions deploy, measured
/// by `/dora` the same day.
#[tokio::test]
async fn incident_tools_and_actions_deploys_reach_the_metrics() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(webhook_config(&env, None)).await;
    let projector = env.spawn_projector(env.projector_config()).await;
    let api = env.spawn_api().await;

    // PagerDuty: the published trigger, and its resolution 30 minutes later (the
    // published resolved payload, pointed at the same incident).
    let triggered = fixture_bytes("pagerduty/zulip.incident.triggered.json");
    let mut resolved = fixture("pagerduty/zulip.incident.resolved.json");
    resolved["event"]["data"]["id"] = json!("PFQZPSY");
    resolved["event"]["occurred_at"] = json!("2021-06-04T14:05:29.781Z");
    let resolved = serde_json::to_vec(&resolved).unwrap();
    for body in [triggered.clone(), resolved, triggered] {
        let signature = pagerduty_signature(PAGERDUTY_SECRET, &body);
        let (status, answer) = deliver(
            &ingest.url,
            "/webhooks/pagerduty",
            &[
                ("content-type", "application/json"),
                ("x-pagerduty-signature", &signature),
            ],
            body,
        )
        .await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["accepted"], 1, "{answer}");
    }
    // A GitHub Actions run of the deploy workflow, for the same service by the URL.
    let (status, answer) = deliver_github(
        &ingest.url,
        "?service=pig208",
        "workflow_run",
        GITHUB_SECRET,
        fixture_bytes("github/workflow_run.completed.payload.json"),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["ids"], json!(["github-workflow-run-289782451-1"]));
    // Opsgenie and Alertmanager through the bearer tokens; repeats are duplicates.
    let bearer = format!("Bearer {PAGER_TOKEN}");
    let (status, answer) = deliver(
        &ingest.url,
        "/webhooks/opsgenie?service=checkout",
        &[
            ("content-type", "application/json"),
            ("authorization", &bearer),
        ],
        fixture_bytes("opsgenie/create.json"),
    )
    .await;
    assert_eq!(
        (status, answer["accepted"].clone()),
        (202, json!(1)),
        "{answer}"
    );
    for duplicates in [0, 2] {
        let (status, answer) = deliver(
            &ingest.url,
            "/webhooks/alertmanager?service=andromeda&environment=lab",
            &[
                ("content-type", "application/json"),
                ("authorization", &bearer),
            ],
            fixture_bytes("alertmanager/zulip.firing.json"),
        )
        .await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(
            (answer["accepted"].clone(), answer["duplicates"].clone()),
            (json!(2), json!(duplicates))
        );
    }
    env.wait_for_events(6).await;
    env.wait_until_all_acked().await;
    let sources: Vec<(String, String)> =
        sqlx::query_as("SELECT id, source FROM events ORDER BY id")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    let sources: Vec<(&str, &str)> = sources
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        sources,
        [
            ("alertmanager-a1bc48475b20e73d-1580948278-firing", "pager"),
            ("alertmanager-c2ea85182f28cbd9-1580948278-firing", "pager"),
            ("github-workflow-run-289782451-1", "github"),
            (
                "opsgenie-052652ac-5d1c-464a-812a-7dd18bbfba8c-create",
                "pager"
            ),
            ("pagerduty-01BZYH1JJY09P9LEIST8HG2PMN", "pagerduty"),
            ("pagerduty-01BZYIL05THJDFF2Y08X9SVMTU", "pagerduty"),
        ]
    );

    let (status, pig) = get_json(
        &api.url,
        "/dora?service=pig208&days=3650&as_of=2021-06-05T00:00:00Z",
    )
    .await;
    assert_eq!(status, 200, "{pig}");
    assert_eq!(pig["time_to_restore"]["median_seconds"], 1800.0, "{pig}");
    assert_eq!(pig["time_to_restore"]["samples"], 1, "{pig}");
    assert_eq!(pig["deployment_frequency"]["deploys"], 1, "{pig}");
    assert_eq!(pig["lead_time"]["median_seconds"], 102.0, "{pig}");
    let (_, lab) = get_json(
        &api.url,
        "/dora?service=andromeda&environment=lab&as_of=2020-02-07T00:00:00Z",
    )
    .await;
    assert_eq!(lab["time_to_restore"]["open_incidents"], 2, "{lab}");

    api.stop().await.unwrap();
    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

/// The body read for each tool is exactly what was signed: one byte changed after
/// signing is refused, whatever the route.
#[tokio::test]
async fn a_body_changed_after_signing_is_refused() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(webhook_config(&env, None)).await;
    let body = fixture_bytes("pagerduty/zulip.incident.triggered.json");
    let signature = pagerduty_signature(PAGERDUTY_SECRET, &body);
    let mut changed = body.clone();
    let at = changed.iter().position(|b| *b == b'9').unwrap();
    changed[at] = b'8';
    let (status, _) = deliver(
        &ingest.url,
        "/webhooks/pagerduty",
        &[("x-pagerduty-signature", &signature)],
        changed,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = deliver(
        &ingest.url,
        "/webhooks/pagerduty",
        &[("x-pagerduty-signature", &signature)],
        body,
    )
    .await;
    assert_eq!(status, 202);
    ingest.stop().await.unwrap();
    env.cleanup().await;
}
