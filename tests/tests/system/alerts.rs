//! Regression alerts: the rules against fixture logs in the real PostgreSQL, the
//! outbox and its delivery to a real HTTP server standing in for Slack, and the loop
//! inside running dora-api processes (restarts, replay, two replicas).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use dora_api::alerts::{self, deliver, evaluate, AlertSettings, Delivery, Pools, Slack};
use dora_system_tests::slack::{Reply, SlackStandIn};
use dora_system_tests::{eventually, get_json, post_events, TestEnv, CI_TOKEN};
use serde_json::{json, Value};

const AS_OF: &str = "2026-03-16T00:00:00Z";

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A deploy attempt; the sha is derived from the id, so every attempt is its own.
fn attempt(id: &str, service: &str, at: DateTime<Utc>, succeeded: bool) -> Value {
    json!({"id": id, "kind": "deploy", "service": service, "git_sha": sha(id),
           "succeeded": succeeded, "occurred_at": at.to_rfc3339()})
}

/// A successful deploy whose change was committed `lead_hours` before it.
fn shipped(id: &str, service: &str, at: DateTime<Utc>, lead_hours: f64) -> Value {
    let commit = at - TimeDelta::seconds((lead_hours * 3600.0) as i64);
    json!({"id": id, "kind": "deploy", "service": service, "git_sha": sha(id),
           "occurred_at": at.to_rfc3339(), "commit_at": commit.to_rfc3339()})
}

fn sha(id: &str) -> String {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{h:016x}")
}

/// `n` attempts of `service` spread over the 7 days before `end`, `failed` of them failed.
fn attempts(tag: &str, service: &str, end: DateTime<Utc>, n: usize, failed: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let at = end - TimeDelta::hours(1 + (i as i64 * 160) / n as i64);
            attempt(&format!("{tag}-{service}-{i}"), service, at, i >= failed)
        })
        .collect()
}

/// checkout: 0 of 4 attempts failed in the prior week, 3 of 7 in the current one.
/// search: 40 clean attempts in each, so all services together stay within tolerance
/// (0/44 to 3/47 = 6.4%) and the one regression is checkout's.
pub(crate) fn cfr_fixture(now: DateTime<Utc>) -> Vec<Value> {
    let week = TimeDelta::days(7);
    let mut events = attempts("prior", "checkout", now - week, 4, 0);
    events.extend(attempts("current", "checkout", now, 7, 3));
    events.extend(attempts("prior", "search", now - week, 40, 0));
    events.extend(attempts("current", "search", now, 40, 0));
    events
}

fn settings() -> AlertSettings {
    AlertSettings {
        public_url: Some("https://dora.example.com".parse().unwrap()),
        ..AlertSettings::default()
    }
}

async fn pools(env: &TestEnv) -> Pools {
    let pools = Pools {
        store: dora_api::connect(&env.database_url, 2).unwrap(),
        alerts: alerts::store::connect(&env.database_url, 2).unwrap(),
    };
    alerts::store::migrate(&pools.alerts).await.unwrap();
    pools
}

fn slack(stand_in: &SlackStandIn) -> Slack {
    Slack::new(Some(stand_in.url.parse().unwrap())).unwrap()
}

fn changes(e: &alerts::Evaluation) -> BTreeSet<(String, &'static str, Option<String>)> {
    e.changes
        .iter()
        .map(|c| {
            (
                format!("{:?}", c.kind),
                c.scope.metric.as_str(),
                c.scope.service.clone(),
            )
        })
        .collect()
}

/// Messages in the outbox, by status.
async fn statuses(env: &TestEnv) -> Vec<(i64, String, i32)> {
    sqlx::query_as("SELECT id, status, attempts FROM dora_alerts.messages ORDER BY id")
        .fetch_all(&env.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn change_failure_rate_from_0_to_3_of_7_fires_once_then_recovers_once() {
    let env = TestEnv::new().await;
    let now = t(AS_OF);
    env.seed(&cfr_fixture(now)).await;
    let pools = pools(&env).await;
    let stand_in = SlackStandIn::start().await;

    let e = evaluate(&pools, &settings(), now).await.unwrap();
    assert!(e.checked);
    assert_eq!(
        changes(&e),
        BTreeSet::from([(
            "Firing".into(),
            "change_failure_rate",
            Some("checkout".into())
        )]),
        "{e:#?}"
    );
    let d = deliver(&pools.alerts, &slack(&stand_in)).await.unwrap();
    assert_eq!((d.delivered, d.requests, d.postponed), (1, 1, 0));
    let texts = stand_in.texts();
    assert_eq!(texts.len(), 1);
    let text = &texts[0];
    for part in [
        "checkout",
        "0% (0 of 4 attempts failed)",
        "42.9% (3 of 7 attempts failed)",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
    let body = &stand_in.delivered()[0];
    let blocks = body["blocks"].as_array().unwrap();
    assert!(!blocks.is_empty());
    let mrkdwn = blocks.iter().all(|b| {
        b["type"] == "section"
            && (b["text"]["type"] == "mrkdwn"
                || b["fields"]
                    .as_array()
                    .is_some_and(|f| f.iter().all(|f| f["type"] == "mrkdwn")))
    });
    assert!(mrkdwn, "{body:#}");
    let all = body.to_string();
    for part in [
        "https://dora.example.com/dashboard?service=checkout&environment=prod&days=7",
        "2026-03-02 00:00 to 2026-03-09 00:00 UTC",
        "2026-03-09 00:00 to 2026-03-16 00:00 UTC",
    ] {
        assert!(all.contains(part), "{part:?} in {body:#}");
    }

    // The same data again: still firing, nothing new to say.
    let e = evaluate(&pools, &settings(), now).await.unwrap();
    assert!(e.checked && e.changes.is_empty(), "{e:#?}");
    assert_eq!(e.regressed, 1);
    assert_eq!(
        deliver(&pools.alerts, &slack(&stand_in)).await.unwrap(),
        Delivery::default()
    );
    assert_eq!(stand_in.received().len(), 1);

    // 30 clean attempts later in the week: 3 of 37 (8.1%) is within 10 points of 0%.
    env.seed(&attempts("late", "checkout", now, 30, 0)).await;
    let e = evaluate(&pools, &settings(), now).await.unwrap();
    assert_eq!(
        changes(&e),
        BTreeSet::from([(
            "Recovered".into(),
            "change_failure_rate",
            Some("checkout".into())
        )]),
        "{e:#?}"
    );
    deliver(&pools.alerts, &slack(&stand_in)).await.unwrap();
    let texts = stand_in.texts();
    assert_eq!(texts.len(), 2);
    assert!(
        texts[1].contains("recovered")
            && texts[1].contains("checkout")
            && texts[1].contains("8.1% (3 of 37"),
        "{}",
        texts[1]
    );
    let e = evaluate(&pools, &settings(), now).await.unwrap();
    assert!(e.changes.is_empty() && e.regressed == 0, "{e:#?}");
    deliver(&pools.alerts, &slack(&stand_in)).await.unwrap();
    assert_eq!(stand_in.received().len(), 2);
    env.cleanup().await;
}

#[tokio::test]
async fn lead_time_fires_on_a_real_rise_only() {
    let env = TestEnv::new().await;
    let now = t(AS_OF);
    let (prior, current) = (now - TimeDelta::days(10), now - TimeDelta::days(3));
    let mut events = Vec::new();
    let mut add = |service: &str, at: DateTime<Utc>, n: usize, hours: f64| {
        for i in 0..n {
            let when = at + TimeDelta::hours(i as i64);
            events.push(shipped(
                &format!("{service}-{}", when.timestamp()),
                service,
                when,
                hours,
            ));
        }
    };
    // api doubles: 1.75 h to 3.5 h.
    add("api", prior, 4, 1.75);
    add("api", current, 4, 3.5);
    // calm rises 14%, within the 25% tolerance.
    add("calm", prior, 4, 1.75);
    add("calm", current, 4, 2.0);
    // few has only 2 samples now, under DORA_ALERT_MIN_ATTEMPTS = 3.
    add("few", prior, 4, 1.0);
    add("few", current, 2, 9.0);
    // new had nothing in the prior window.
    add("new", current, 4, 9.0);
    env.seed(&events).await;
    let pools = pools(&env).await;

    let e = evaluate(&pools, &settings(), now).await.unwrap();
    // All services together: 1.75 h (12 samples) to 3.5 h (14 samples) also regressed.
    assert_eq!(
        changes(&e),
        BTreeSet::from([
            ("Firing".into(), "lead_time", Some("api".into())),
            ("Firing".into(), "lead_time", None),
        ]),
        "{e:#?}"
    );
    let api = e
        .changes
        .iter()
        .find(|c| c.scope.service.as_deref() == Some("api"))
        .unwrap();
    assert!(
        api.text.contains("1.75 h")
            && api.text.contains("3.5 h")
            && api.text.contains("api in prod"),
        "{}",
        api.text
    );
    // 5 scopes (all, api, calm, few, new) times 2 metrics.
    assert_eq!(e.scopes, 10);
    env.cleanup().await;
}

#[tokio::test]
async fn slack_failing_twice_with_500_gets_the_message_once() {
    let env = TestEnv::new().await;
    let now = t(AS_OF);
    env.seed(&cfr_fixture(now)).await;
    let pools = pools(&env).await;
    let stand_in = SlackStandIn::start().await;
    stand_in.script([Reply::Status(500, "oops"), Reply::Status(500, "oops")]);

    evaluate(&pools, &settings(), now).await.unwrap();
    let d = deliver(&pools.alerts, &slack(&stand_in)).await.unwrap();
    assert_eq!((d.delivered, d.requests, d.postponed), (1, 3, 0));
    let received = stand_in.received();
    assert_eq!(
        received.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    assert!(
        received.iter().all(|r| r.body == received[0].body),
        "the same message each time"
    );
    assert_eq!(stand_in.delivered().len(), 1);
    assert_eq!(
        deliver(&pools.alerts, &slack(&stand_in)).await.unwrap(),
        Delivery::default()
    );
    assert_eq!(stand_in.received().len(), 3);
    let (_, status, tries) = statuses(&env).await.remove(0);
    assert_eq!((status.as_str(), tries), ("delivered", 3));
    env.cleanup().await;
}

#[tokio::test]
async fn slack_429_is_retried_after_its_retry_after() {
    let env = TestEnv::new().await;
    let now = t(AS_OF);
    env.seed(&cfr_fixture(now)).await;
    let pools = pools(&env).await;
    let stand_in = SlackStandIn::start().await;
    stand_in.script([Reply::TooMany {
        retry_after_secs: 1,
    }]);

    evaluate(&pools, &settings(), now).await.unwrap();
    let d = deliver(&pools.alerts, &slack(&stand_in)).await.unwrap();
    assert_eq!((d.delivered, d.requests), (1, 2));
    let received = stand_in.received();
    assert_eq!(
        received.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 200]
    );
    let waited = received[1].at - received[0].at;
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert_eq!(stand_in.delivered().len(), 1);
    env.cleanup().await;
}

#[tokio::test]
async fn a_4xx_is_kept_with_slacks_answer_and_delivered_later() {
    let env = TestEnv::new().await;
    let now = t(AS_OF);
    env.seed(&cfr_fixture(now)).await;
    let pools = pools(&env).await;
    let stand_in = SlackStandIn::start().await;
    stand_in.script([Reply::Status(404, "no_service")]);

    evaluate(&pools, &settings(), now).await.unwrap();
    let d = deliver(&pools.alerts, &slack(&stand_in)).await.unwrap();
    assert_eq!(
        (d.delivered, d.postponed, d.requests),
        (0, 1, 1),
        "a 4xx is not hammered"
    );
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, last_error FROM dora_alerts.messages")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(status, "pending");
    assert!(
        error.as_deref().unwrap_or_default().contains("no_service"),
        "{error:?}"
    );
    // Not due yet: the next pass leaves it.
    assert_eq!(
        deliver(&pools.alerts, &slack(&stand_in)).await.unwrap(),
        Delivery::default()
    );
    // Its time comes (the webhook was fixed, say): delivered.
    sqlx::query("UPDATE dora_alerts.messages SET next_attempt_at = now()")
        .execute(&env.pool)
        .await
        .unwrap();
    let d = deliver(&pools.alerts, &slack(&stand_in)).await.unwrap();
    assert_eq!(d.delivered, 1);
    assert_eq!(stand_in.delivered().len(), 1);
    assert_eq!(statuses(&env).await[0].2, 2);
    env.cleanup().await;
}

#[tokio::test]
async fn without_a_webhook_messages_are_logged_and_recorded() {
    let env = TestEnv::new().await;
    let now = t(AS_OF);
    env.seed(&cfr_fixture(now)).await;
    let pools = pools(&env).await;
    evaluate(&pools, &settings(), now).await.unwrap();
    let d = deliver(&pools.alerts, &Slack::new(None).unwrap())
        .await
        .unwrap();
    assert_eq!((d.logged, d.delivered, d.requests), (1, 0, 0));
    let statuses = statuses(&env).await;
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].1, "logged");
    env.cleanup().await;
}

#[tokio::test]
async fn a_regression_over_before_it_was_delivered_is_not_sent() {
    let env = TestEnv::new().await;
    let now = t(AS_OF);
    env.seed(&cfr_fixture(now)).await;
    let pools = pools(&env).await;
    let stand_in = SlackStandIn::start().await;
    let e = evaluate(&pools, &settings(), now).await.unwrap();
    assert_eq!(e.fired(), 1);
    // Slack is unreachable until the scope is back within tolerance.
    env.seed(&attempts("late", "checkout", now, 30, 0)).await;
    let e = evaluate(&pools, &settings(), now).await.unwrap();
    assert_eq!(e.recovered(), 1);
    assert!(e.changes[0].superseded);
    assert_eq!(
        deliver(&pools.alerts, &slack(&stand_in)).await.unwrap(),
        Delivery::default()
    );
    assert!(stand_in.received().is_empty());
    let statuses: Vec<String> = statuses(&env).await.into_iter().map(|s| s.1).collect();
    assert_eq!(statuses, ["superseded", "superseded"]);
    env.cleanup().await;
}

#[tokio::test]
async fn get_alerts_shows_the_scopes_that_fired_and_the_messages() {
    let env = TestEnv::new().await;
    let now = t(AS_OF);
    env.seed(&cfr_fixture(now)).await;
    let pools = pools(&env).await;
    let stand_in = SlackStandIn::start().await;
    stand_in.script([Reply::Status(500, "down"), Reply::Status(500, "down")]);
    evaluate(&pools, &settings(), now).await.unwrap();
    deliver(&pools.alerts, &slack(&stand_in)).await.unwrap();

    let api = env.spawn_api().await;
    let (status, body) = get_json(&api.url, "/alerts").await;
    assert_eq!(status, 200, "{body}");
    let scopes = body["scopes"].as_array().unwrap();
    assert_eq!(scopes.len(), 1, "{body:#}");
    assert_eq!(scopes[0]["metric"], "change_failure_rate");
    assert_eq!(scopes[0]["service"], "checkout");
    assert_eq!(scopes[0]["environment"], "prod");
    assert_eq!(scopes[0]["firing"], true);
    assert_eq!(scopes[0]["current"]["failed"], 3);
    assert_eq!(scopes[0]["current"]["attempts"], 7);
    assert_eq!(scopes[0]["prior"]["rate"], 0.0);
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["kind"], "firing");
    assert_eq!(messages[0]["status"], "delivered");
    assert_eq!(messages[0]["attempts"], 3);
    assert!(messages[0]["last_error"].as_str().unwrap().contains("500"));
    assert!(messages[0]["delivered_at"].is_string());

    // The dashboard shows the firing scopes of its environment.
    let page = |query: &'static str| {
        let url = format!("{}/dashboard?{query}", api.url);
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    let prod = page("environment=prod").await;
    assert!(
        prod.contains("Alerts firing (1)") && prod.contains("Change failure rate: 0% → 42.9%"),
        "{prod}"
    );
    assert!(!page("environment=staging").await.contains("Alerts firing"));
    assert!(!page("service=search").await.contains("Alerts firing"));

    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=5&limit=6", "limit"),
        ("days=7", "days"),
    ] {
        let (status, body) = get_json(&api.url, &format!("/alerts?{query}")).await;
        assert_eq!(
            (status, body["param"].as_str()),
            (400, Some(param)),
            "{query}: {body}"
        );
    }
    api.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn the_api_serves_while_the_database_is_down() {
    let env = TestEnv::new().await;
    let mut config = env.api_config();
    config.database.url = "postgres://postgres@127.0.0.1:1/nowhere".to_owned();
    config.alerts.interval = Duration::from_secs(1);
    let api = env.spawn_api_with(config).await;
    let (status, _) = get_json(&api.url, "/healthz").await;
    assert_eq!(status, 200);
    let (status, body) = get_json(&api.url, "/alerts").await;
    assert_eq!(status, 503, "{body}");
    let (status, _) = get_json(&api.url, "/dora").await;
    assert_eq!(status, 503);
    api.stop().await.unwrap();
    env.cleanup().await;
}

/// The newest check that judged a firing scope, as the loop recorded it.
async fn last_check(env: &TestEnv) -> Option<DateTime<Utc>> {
    sqlx::query_scalar("SELECT max(checked_at) FROM dora_alerts.scopes WHERE firing")
        .fetch_one(&env.pool)
        .await
        .ok()
        .flatten()
}

/// Waits until a running loop has checked again after `after`.
async fn wait_for_a_check_after(env: &TestEnv, after: Option<DateTime<Utc>>) {
    eventually("another check by the loop", || async {
        last_check(env).await > after
    })
    .await;
}

fn looping_config(env: &TestEnv, stand_in: &SlackStandIn) -> dora_api::Config {
    let mut config = env.api_config();
    config.alerts = AlertSettings {
        slack_webhook_url: Some(stand_in.url.clone()),
        interval: Duration::from_secs(1),
        ..settings()
    };
    config
}

#[tokio::test]
async fn restarts_and_a_replay_send_nothing_again() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let projector = env.spawn_projector(env.projector_config()).await;
    let events = cfr_fixture(Utc::now().trunc_subsecs(0));
    let (status, body) = post_events(&ingest.url, Some(CI_TOKEN), &json!(events)).await;
    assert_eq!(status, 202, "{body}");
    env.wait_for_events(events.len() as i64).await;
    let stand_in = SlackStandIn::start().await;

    let api = env.spawn_api_with(looping_config(&env, &stand_in)).await;
    eventually("the alert arrives", || async {
        !stand_in.delivered().is_empty()
    })
    .await;
    api.stop().await.unwrap();
    let before = last_check(&env).await;

    let api = env.spawn_api_with(looping_config(&env, &stand_in)).await;
    wait_for_a_check_after(&env, before).await;
    assert_eq!(
        stand_in.received().len(),
        1,
        "a restart sends nothing: {:#?}",
        stand_in.texts()
    );

    let outcome = dora_projector::replay(&env.projector_config())
        .await
        .unwrap();
    assert_eq!(outcome.applied.inserted, events.len() as u64);
    let before = last_check(&env).await;
    wait_for_a_check_after(&env, before).await;
    wait_for_a_check_after(&env, last_check(&env).await).await;
    assert_eq!(stand_in.received().len(), 1, "a replay sends nothing");
    assert!(stand_in.texts()[0].contains("checkout"));

    api.stop().await.unwrap();
    projector.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn two_api_processes_send_each_message_once() {
    let env = TestEnv::new().await;
    let now = Utc::now().trunc_subsecs(0);
    // Two regressions: checkout's failure rate, and lead time for shop and for all.
    let mut events = cfr_fixture(now);
    for i in 0..4 {
        let prior = now - TimeDelta::days(10) + TimeDelta::hours(i);
        let current = now - TimeDelta::days(3) + TimeDelta::hours(i);
        events.push(shipped(&format!("shop-p{i}"), "shop", prior, 1.0));
        events.push(shipped(&format!("shop-c{i}"), "shop", current, 5.0));
    }
    env.seed(&events).await;
    let stand_in = SlackStandIn::start().await;

    let (a, b) = tokio::join!(
        env.spawn_api_with(looping_config(&env, &stand_in)),
        env.spawn_api_with(looping_config(&env, &stand_in)),
    );
    eventually("three alerts arrive", || async {
        stand_in.delivered().len() >= 3
    })
    .await;
    // Both keep checking for a few more rounds.
    for _ in 0..3 {
        wait_for_a_check_after(&env, last_check(&env).await).await;
    }
    let texts = stand_in.texts();
    assert_eq!(texts.len(), 3, "{texts:#?}");
    assert_eq!(
        texts.iter().collect::<BTreeSet<_>>().len(),
        3,
        "each message once"
    );
    assert_eq!(stand_in.received().len(), 3);
    assert_eq!(statuses(&env).await.len(), 3);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    env.cleanup().await;
}
