//! `dora-emit`, the real binary as a subprocess, against the gateway, the projector and
//! the database: what a CI job runs.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use dora_system_tests::emit::{self, Checkout, Ran};
use dora_system_tests::{TestEnv, CI_TOKEN};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

/// A `dora-emit` in `dir` aimed at this test's gateway (HTTP) and stream (NATS).
fn emit_cmd(env: &TestEnv, gateway: &str, dir: &std::path::Path, args: &[&str]) -> Command {
    let mut command = emit::command(dir);
    command
        .env("DORA_URL", gateway)
        .env("DORA_TOKEN", CI_TOKEN)
        .env("NATS_URL", env.nats_url())
        .env("DORA_SUBJECT_PREFIX", &env.prefix)
        .env("DORA_EMIT_TIMEOUT", "30s")
        .args(args);
    command
}

fn github<'a>(command: &'a mut Command, attempt: &str) -> &'a mut Command {
    command
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_REPOSITORY", "acme/shop")
        .env("GITHUB_RUN_ID", "8123456789")
        .env("GITHUB_RUN_ATTEMPT", attempt)
        .env("GITHUB_JOB", "deploy")
}

fn assert_exit(ran: &Ran, code: i32) {
    assert_eq!(
        ran.code,
        Some(code),
        "exit status; stdout: {}; stderr: {}",
        ran.stdout,
        ran.stderr
    );
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    id: String,
    kind: String,
    service: String,
    environment: String,
    git_sha: Option<String>,
    succeeded: bool,
    commit_at: Option<DateTime<Utc>>,
    occurred_at: DateTime<Utc>,
    source: String,
}

async fn rows(env: &TestEnv) -> Vec<Row> {
    sqlx::query_as(
        "SELECT id, kind, service, environment, git_sha, succeeded, commit_at, occurred_at, source
         FROM events ORDER BY stream_seq",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap()
}

/// A commit from earlier today, at a whole second (git keeps seconds).
fn committed_at() -> DateTime<Utc> {
    let t = Utc::now() - TimeDelta::hours(3);
    DateTime::from_timestamp(t.timestamp(), 0).unwrap()
}

#[tokio::test]
async fn deploys_from_a_checkout_land_with_their_outcome_sha_and_commit_time() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let projector = env.spawn_projector(env.projector_config()).await;
    let checkout = Checkout::new(committed_at());

    let before = Utc::now();
    for outcome in ["success", "failure"] {
        let args = ["deploy", "--service", "shop", "--outcome", outcome];
        let ran = emit::run(&mut emit_cmd(&env, &ingest.url, &checkout.dir, &args)).await;
        assert_exit(&ran, 0);
        assert!(ran.stdout.contains("accepted"), "{}", ran.stdout);
    }
    env.wait_for_events(2).await;

    let rows = rows(&env).await;
    assert_eq!(
        rows.iter().map(|r| r.succeeded).collect::<Vec<_>>(),
        [true, false]
    );
    for row in &rows {
        assert_eq!(row.kind, "deploy");
        assert_eq!(row.service, "shop");
        assert_eq!(row.environment, "prod");
        assert_eq!(row.git_sha.as_deref(), Some(checkout.sha.as_str()), "HEAD");
        assert_eq!(
            row.commit_at,
            Some(checkout.committed_at),
            "HEAD's commit time"
        );
        assert_eq!(row.source, "ci");
        assert!(
            row.occurred_at >= before - TimeDelta::seconds(1) && row.occurred_at <= Utc::now(),
            "occurred_at is the time of the call: {}",
            row.occurred_at
        );
        // Outside CI the id is a fresh UUIDv7 per call.
        assert_eq!(
            uuid::Uuid::parse_str(&row.id).unwrap().get_version_num(),
            7,
            "{}",
            row.id
        );
    }
    assert_ne!(rows[0].id, rows[1].id);
    let lead: Option<f64> =
        sqlx::query_scalar("SELECT lead_seconds FROM deploy_facts WHERE event_id = $1")
            .bind(&rows[0].id)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert!(
        lead.unwrap() >= 3.0 * 3600.0,
        "lead time from the commit: {lead:?}"
    );

    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn the_same_ci_attempt_is_one_event_and_a_new_attempt_another() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let projector = env.spawn_projector(env.projector_config()).await;
    let checkout = Checkout::new(committed_at());
    // A fixed `--at`: a retried step then sends the same event, which JetStream drops
    // (without it each call sends its own time, and the store alone keeps one row).
    let at = (checkout.committed_at + TimeDelta::hours(1)).to_rfc3339();
    let args = [
        "deploy",
        "--service",
        "shop",
        "--outcome",
        "failure",
        "--at",
        &at,
    ];

    // GitHub Actions: a retried step repeats the call with the same run variables.
    let first = emit::run(github(
        &mut emit_cmd(&env, &ingest.url, &checkout.dir, &args),
        "1",
    ))
    .await;
    assert_exit(&first, 0);
    assert!(first.stdout.contains("accepted"), "{}", first.stdout);
    let again = emit::run(github(
        &mut emit_cmd(&env, &ingest.url, &checkout.dir, &args),
        "1",
    ))
    .await;
    assert_exit(&again, 0);
    assert!(
        again.stdout.contains("already recorded"),
        "{}",
        again.stdout
    );
    env.wait_for_events(1).await;
    env.wait_until_all_acked().await;
    assert_eq!(env.event_count().await, 1, "a retried step is one event");
    let id = rows(&env).await.remove(0).id;
    assert!(id.starts_with("gh-8123456789-1-"), "{id}");

    // Re-running the job is a new attempt.
    let rerun = emit::run(github(
        &mut emit_cmd(&env, &ingest.url, &checkout.dir, &args),
        "2",
    ))
    .await;
    assert_exit(&rerun, 0);
    assert!(rerun.stdout.contains("accepted"), "{}", rerun.stdout);
    env.wait_for_events(2).await;

    // GitLab CI: a retried job gets a new CI_JOB_ID.
    let gitlab = |job: &str| {
        let mut command = emit_cmd(&env, &ingest.url, &checkout.dir, &args);
        command
            .env("GITLAB_CI", "true")
            .env("CI_PIPELINE_ID", "4711")
            .env("CI_JOB_ID", job);
        command
    };
    assert_exit(&emit::run(&mut gitlab("90001")).await, 0);
    let repeat = emit::run(&mut gitlab("90001")).await;
    assert_exit(&repeat, 0);
    assert!(
        repeat.stdout.contains("already recorded"),
        "{}",
        repeat.stdout
    );
    assert_exit(&emit::run(&mut gitlab("90002")).await, 0);
    env.wait_for_events(4).await;
    env.wait_until_all_acked().await;
    assert_eq!(env.event_count().await, 4);
    let ids: Vec<String> = rows(&env).await.into_iter().map(|r| r.id).collect();
    assert!(ids[1].starts_with("gh-8123456789-2-"), "{ids:?}");
    assert!(ids[2].starts_with("gl-4711-90001-"), "{ids:?}");
    assert!(ids[3].starts_with("gl-4711-90002-"), "{ids:?}");

    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn emit_retries_until_the_gateway_is_back_on_its_port() {
    let env = TestEnv::new().await;
    let projector = env.spawn_projector(env.projector_config()).await;
    let checkout = Checkout::new(committed_at());
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let url = ingest.url.clone();
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    ingest.stop().await.unwrap();
    let stopped = Instant::now();

    let mut child = emit_cmd(&env, &url, &checkout.dir, &["deploy", "--service", "shop"])
        .env("DORA_EMIT_TIMEOUT", "60s")
        .spawn()
        .unwrap();
    // Wait until it has failed and said it retries, rather than for a fixed time.
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            let retrying = line.contains("retrying");
            said.push(line);
            if retrying {
                break;
            }
        }
    })
    .await
    .expect("dora-emit reports a retry");
    assert!(said.iter().any(|l| l.contains("retrying")), "{said:?}");

    // The gateway comes back on the same port 3 s after it stopped.
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(stopped.elapsed())).await;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let ingest = env.spawn_ingest_on(env.ingest_config(), listener).await;

    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("dora-emit finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {stdout}; stderr: {said:?}"
    );
    assert!(stdout.contains("accepted"), "{stdout}");
    env.wait_for_events(1).await;
    let row = rows(&env).await.remove(0);
    assert_eq!(row.git_sha.as_deref(), Some(checkout.sha.as_str()));

    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn a_wrong_token_is_refused_at_once_with_the_gateways_message() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let checkout = Checkout::new(committed_at());
    let wrong = "not-the-right-token-0123456789";

    let ran = emit::run(
        emit_cmd(
            &env,
            &ingest.url,
            &checkout.dir,
            &["deploy", "--service", "shop"],
        )
        .env("DORA_TOKEN", wrong)
        .env("DORA_EMIT_TIMEOUT", "60s"),
    )
    .await;
    assert_exit(&ran, 1);
    assert!(ran.stderr.contains("401"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("unknown token"),
        "the gateway's message: {}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("retrying"), "no retry: {}", ran.stderr);
    assert!(
        !ran.stderr.contains(wrong) && !ran.stdout.contains(wrong),
        "the token is never printed"
    );

    // No token at all is a bad argument: nothing is sent.
    let ran = emit::run(
        emit_cmd(
            &env,
            &ingest.url,
            &checkout.dir,
            &["deploy", "--service", "shop"],
        )
        .env_remove("DORA_TOKEN"),
    )
    .await;
    assert_exit(&ran, 2);
    assert!(ran.stderr.contains("DORA_TOKEN"), "{}", ran.stderr);
    assert_eq!(env.stream_messages().await, 0);

    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn bad_arguments_exit_2_and_send_nothing() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let checkout = Checkout::new(committed_at());
    let future = (Utc::now() + TimeDelta::hours(1)).to_rfc3339();

    let cases: [(&[&str], &str); 7] = [
        (
            &["deploy", "--service", "shop", "--sha", "not-a-sha"],
            "--sha",
        ),
        (
            &["deploy", "--service", "shop", "--at", "yesterday"],
            "--at",
        ),
        (&["deploy", "--service", "shop", "--at", &future], "--at"),
        (
            &[
                "deploy",
                "--service",
                "shop",
                "--at",
                "2026-01-01T00:00:00Z",
                "--commit-at",
                "2026-01-02T00:00:00Z",
            ],
            "--commit-at",
        ),
        (&["deploy", "--service", "shop/eu"], "--service"),
        (
            &["deploy", "--service", "shop", "--outcome", "maybe"],
            "--outcome",
        ),
        (&["incident-opened", "--service", "shop"], "--ref"),
    ];
    for (args, named) in cases {
        let ran = emit::run(&mut emit_cmd(&env, &ingest.url, &checkout.dir, args)).await;
        assert_exit(&ran, 2);
        assert!(
            ran.stderr.contains(named),
            "{args:?} names {named}: {}",
            ran.stderr
        );
    }

    // Outside a git checkout, a deploy without --sha has no change to name.
    let outside = std::env::temp_dir().join(format!("dora-emit-nogit-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&outside).unwrap();
    let ran = emit::run(&mut emit_cmd(
        &env,
        &ingest.url,
        &outside,
        &["deploy", "--service", "shop"],
    ))
    .await;
    std::fs::remove_dir_all(&outside).unwrap();
    assert_exit(&ran, 2);
    assert!(ran.stderr.contains("git checkout"), "{}", ran.stderr);

    // The gateway was up the whole time: had anything been sent, it would be here.
    assert_eq!(env.stream_messages().await, 0, "nothing was sent");
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn over_nats_the_same_event_lands_and_http_then_finds_it_there() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let projector = env.spawn_projector(env.projector_config()).await;
    let checkout = Checkout::new(committed_at());
    // A fixed `--at`, so the HTTP call sends the very event published over NATS.
    let at = (checkout.committed_at + TimeDelta::hours(1)).to_rfc3339();
    let args = [
        "deploy",
        "--service",
        "shop",
        "--environment",
        "staging",
        "--outcome",
        "failure",
        "--at",
        &at,
    ];

    let mut nats = emit_cmd(&env, &ingest.url, &checkout.dir, &args);
    nats.arg("--nats").env_remove("DORA_TOKEN");
    let ran = emit::run(github(&mut nats, "1")).await;
    assert_exit(&ran, 0);
    assert!(ran.stdout.contains("accepted"), "{}", ran.stdout);
    env.wait_for_events(1).await;
    let row = rows(&env).await.remove(0);
    assert_eq!(row.source, "nats");
    assert_eq!(row.environment, "staging");
    assert!(!row.succeeded);
    assert_eq!(row.git_sha.as_deref(), Some(checkout.sha.as_str()));
    assert_eq!(row.commit_at, Some(checkout.committed_at));

    // The same step over HTTP is the same event: one id, whichever path.
    let ran = emit::run(github(
        &mut emit_cmd(&env, &ingest.url, &checkout.dir, &args),
        "1",
    ))
    .await;
    assert_exit(&ran, 0);
    assert!(ran.stdout.contains("already recorded"), "{}", ran.stdout);
    env.wait_until_all_acked().await;
    assert_eq!(env.event_count().await, 1);

    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn dry_run_prints_an_event_that_passes_the_contracts_validation() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let checkout = Checkout::new(committed_at());

    let cases: [(&[&str], &str); 4] = [
        (
            &["deploy", "--service", "shop", "--outcome", "cancelled"],
            "deploy",
        ),
        (&["rollback", "--service", "shop"], "rollback"),
        (
            &[
                "incident-opened",
                "--service",
                "shop",
                "--ref",
                "INC 7",
                "--sha",
                "abc123",
            ],
            "incident_opened",
        ),
        (
            &["incident-closed", "--service", "shop", "--ref", "INC 7"],
            "incident_closed",
        ),
    ];
    for (args, kind) in cases {
        let mut command = emit_cmd(&env, &ingest.url, &checkout.dir, args);
        command.arg("--dry-run");
        let ran = emit::run(&mut command).await;
        assert_exit(&ran, 0);
        let value: Value = serde_json::from_str(ran.stdout.trim()).unwrap();
        // Over NATS the id is required: the strictest reading.
        let event = dora_event::validate(&value, dora_event::Origin::Stream, Utc::now())
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {value}"));
        assert_eq!(event.kind.as_str(), kind);
        match kind {
            "deploy" => {
                assert_eq!(event.succeeded, Some(false), "cancelled is a failure");
                assert_eq!(event.git_sha.as_deref(), Some(checkout.sha.as_str()));
            }
            "rollback" => assert_eq!(event.git_sha.as_deref(), Some(checkout.sha.as_str())),
            "incident_opened" => assert_eq!(event.git_sha.as_deref(), Some("abc123")),
            _ => assert_eq!(event.git_sha, None),
        }
    }
    assert_eq!(env.stream_messages().await, 0, "a dry run sends nothing");
    ingest.stop().await.unwrap();
    env.cleanup().await;
}
