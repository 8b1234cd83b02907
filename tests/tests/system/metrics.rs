//! The metrics against fixture logs in the real PostgreSQL, with exact numbers,
//! and against a naive SQL transcription of the contract on random logs that arrive
//! out of order.

use chrono::{DateTime, TimeDelta, Utc};
use dora_api::dora::{
    compute, compute_grouped, compute_grouped_sending, median, MetricsQuery, Report,
};
use dora_system_tests::naive::{
    Facts, Numbers, Oracle, NAIVE_DEPLOYS, NAIVE_INCIDENTS, NAIVE_PIECES, NAIVE_REWORK,
};
use dora_system_tests::{Rng, TestEnv};
use serde_json::{json, Value};

const AS_OF: &str = "2026-03-16T00:00:00Z";

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn query(days: u32, offset: u32, service: Option<&str>, environment: &str) -> MetricsQuery {
    MetricsQuery {
        days,
        offset,
        as_of: t(AS_OF),
        service: service.map(str::to_owned),
        environment: environment.to_owned(),
    }
}

async fn report(env: &TestEnv, q: &MetricsQuery) -> Report {
    let pool = dora_api::connect(&env.database_url, 1).unwrap();
    let r = compute(&pool, q).await.unwrap();
    pool.close().await;
    r
}

fn deploy(id: &str, sha: &str, at: &str) -> Value {
    json!({"id": id, "kind": "deploy", "service": "api", "git_sha": sha, "occurred_at": at})
}

fn deploy_with_commit(id: &str, at: &str, lead_hours: i64) -> Value {
    let at = t(at);
    json!({"id": id, "kind": "deploy", "service": "api", "git_sha": "abcd", "occurred_at": at.to_rfc3339(),
           "commit_at": (at - TimeDelta::hours(lead_hours)).to_rfc3339()})
}

fn rollback(id: &str, sha: &str, at: &str) -> Value {
    json!({"id": id, "kind": "rollback", "service": "api", "git_sha": sha, "occurred_at": at})
}

fn opened(id: &str, ref_id: &str, at: &str) -> Value {
    json!({"id": id, "kind": "incident_opened", "service": "api", "ref_id": ref_id, "occurred_at": at})
}

fn closed(id: &str, ref_id: &str, at: &str) -> Value {
    json!({"id": id, "kind": "incident_closed", "service": "api", "ref_id": ref_id, "occurred_at": at})
}

#[tokio::test]
async fn a_failed_attempt_counts_in_the_failure_rate_only() {
    let env = TestEnv::new().await;
    let mut failed = deploy_with_commit("d2", "2026-03-11T10:00:00Z", 1);
    failed["succeeded"] = json!(false);
    env.seed(&[
        deploy_with_commit("d1", "2026-03-10T10:00:00Z", 2),
        failed,
        deploy_with_commit("d3", "2026-03-12T10:00:00Z", 4),
    ])
    .await;
    let r = report(&env, &query(7, 0, None, "prod")).await;
    assert_eq!(r.deployment_frequency.deploys, 2);
    assert_eq!(r.deployment_frequency.per_day, 0.286);
    assert_eq!(r.lead_time.samples, 2);
    assert_eq!(
        r.lead_time.median_seconds,
        Some(3.0 * 3600.0),
        "mean of the two middle values"
    );
    assert_eq!(
        (r.change_failure_rate.failed, r.change_failure_rate.attempts),
        (1, 3)
    );
    assert_eq!(r.change_failure_rate.rate, Some(0.3333));
    env.cleanup().await;
}

/// Rollbacks and incidents of every shape, and the report they must give.
fn failure_fixture() -> Vec<Value> {
    let mut failed_b = deploy("d3", "bbbb", "2026-03-12T00:00:00Z");
    failed_b["succeeded"] = json!(false);
    let mut incident_c = opened("i-c", "INC-C", "2026-03-13T05:00:00Z");
    incident_c["git_sha"] = json!("cccc");
    vec![
        // aaaa deployed twice; the rollback marks the later attempt only.
        deploy("d1", "aaaa", "2026-03-10T00:00:00Z"),
        deploy("d2", "aaaa", "2026-03-11T00:00:00Z"),
        rollback("r-a", "aaaa", "2026-03-11T12:00:00Z"),
        // A failed attempt that is also rolled back (twice) counts once.
        failed_b,
        rollback("r-b1", "bbbb", "2026-03-12T01:00:00Z"),
        rollback("r-b2", "bbbb", "2026-03-12T02:00:00Z"),
        // An incident naming the sha marks its deploy.
        deploy("d4", "cccc", "2026-03-13T00:00:00Z"),
        incident_c,
        // An incident without a sha marks nothing.
        deploy("d5", "dddd", "2026-03-14T00:00:00Z"),
        opened("i-d", "INC-D", "2026-03-14T05:00:00Z"),
        // A rollback before the deploy marks nothing.
        rollback("r-e", "eeee", "2026-03-09T01:00:00Z"),
        deploy("d6", "eeee", "2026-03-09T02:00:00Z"),
        // Same sha in another service or environment: not this attempt's failure.
        json!({"id": "r-x", "kind": "rollback", "service": "web", "git_sha": "dddd", "occurred_at": "2026-03-14T06:00:00Z"}),
        json!({"id": "r-y", "kind": "rollback", "service": "api", "environment": "staging", "git_sha": "dddd", "occurred_at": "2026-03-14T06:00:00Z"}),
        // A rollback after as_of = 2026-03-15T00:00:00Z, but before 2026-03-16.
        deploy("d7", "ffff", "2026-03-14T12:00:00Z"),
        rollback("r-f", "ffff", "2026-03-15T12:00:00Z"),
    ]
}

#[tokio::test]
async fn rollbacks_and_incidents_mark_the_latest_attempt_once() {
    let env = TestEnv::new().await;
    env.seed(&failure_fixture()).await;
    let r = report(&env, &query(7, 0, None, "prod")).await;
    // Attempts d1..d7; failed: d2 (rollback), d3 (itself), d4 (incident), d7 (rollback).
    assert_eq!(r.change_failure_rate.attempts, 7);
    assert_eq!(r.change_failure_rate.failed, 4);
    assert_eq!(r.change_failure_rate.rate, Some(0.5714));
    assert_eq!(
        r.deployment_frequency.deploys, 6,
        "a rolled-back deploy still shipped"
    );

    let facts: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT event_id, failed_by FROM deploy_facts ORDER BY event_id")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    let by: Vec<(&str, Option<&str>)> = facts
        .iter()
        .map(|(e, b)| (e.as_str(), b.as_deref()))
        .collect();
    assert_eq!(
        by,
        vec![
            ("d1", None),
            ("d2", Some("r-a")),
            ("d3", Some("d3")),
            ("d4", Some("i-c")),
            ("d5", None),
            ("d6", None),
            ("d7", Some("r-f"))
        ],
        "each failure is explained by the event that caused it"
    );

    // Asked before the last rollback happened, d7 had not failed yet.
    let mut earlier = query(7, 0, None, "prod");
    earlier.as_of = t("2026-03-15T00:00:00Z");
    let r = report(&env, &earlier).await;
    assert_eq!(
        (r.change_failure_rate.failed, r.change_failure_rate.attempts),
        (3, 7)
    );
    env.cleanup().await;
}

#[tokio::test]
async fn late_and_out_of_order_arrivals_give_the_same_answer() {
    // The failure fixture, plus what it lacks for the other metrics: deploys with
    // commit times, and incidents (a re-triggered one, one with two closes).
    let mut log = failure_fixture();
    log.extend([
        deploy_with_commit("lt1", "2026-03-10T06:00:00Z", 2),
        deploy_with_commit("lt2", "2026-03-12T06:00:00Z", 5),
        deploy_with_commit("lt3", "2026-03-14T06:00:00Z", 9),
        opened("io1", "INC-L", "2026-03-10T01:00:00Z"),
        opened("io2", "INC-L", "2026-03-10T02:00:00Z"),
        closed("ic1", "INC-L", "2026-03-10T05:00:00Z"),
        opened("io3", "INC-M", "2026-03-13T00:00:00Z"),
        closed("ic3", "INC-M", "2026-03-13T06:00:00Z"),
        closed("ic4", "INC-M", "2026-03-13T07:00:00Z"),
    ]);
    let at_once = TestEnv::new().await;
    at_once.seed(&log).await;
    // One event per batch, first first: each close arrives after its open.
    let in_order = TestEnv::new().await;
    for e in &log {
        in_order.seed(std::slice::from_ref(e)).await;
    }
    // One event per batch, last first: every rollback arrives before its deploy, every
    // close before its open.
    let reversed = TestEnv::new().await;
    for e in log.iter().rev() {
        reversed.seed(std::slice::from_ref(e)).await;
    }
    for q in [
        query(7, 0, None, "prod"),
        query(3, 2, Some("api"), "prod"),
        query(30, 0, Some("api"), "prod"),
    ] {
        let expected = report(&at_once, &q).await;
        // Each compared window holds data in every metric, so equal answers say something.
        assert!(
            expected.deployment_frequency.deploys > 0
                && expected.lead_time.samples > 0
                && expected.change_failure_rate.failed > 0
                && expected.change_failure_rate.attempts > expected.change_failure_rate.failed
                && expected.time_to_restore.samples > 0,
            "{q:?}: {expected:?}"
        );
        assert_eq!(expected, report(&in_order, &q).await, "in order: {q:?}");
        assert_eq!(expected, report(&reversed, &q).await, "reversed: {q:?}");
    }
    let whole = report(&at_once, &query(7, 0, None, "prod")).await;
    assert_eq!(
        (
            whole.time_to_restore.samples,
            whole.time_to_restore.median_seconds,
            whole.time_to_restore.open_incidents
        ),
        (2, Some(5.0 * 3600.0), 2),
        "INC-L 4 h (re-triggered), INC-M 6 h (first close); INC-C and INC-D open"
    );
    at_once.cleanup().await;
    // An earlier deploy of the same sha arriving late does not steal a marker...
    reversed
        .seed(&[deploy("d0", "aaaa", "2026-03-09T12:00:00Z")])
        .await;
    let failed_by: Option<String> =
        sqlx::query_scalar("SELECT failed_by FROM deploy_facts WHERE event_id = 'd2'")
            .fetch_one(&reversed.pool)
            .await
            .unwrap();
    assert_eq!(failed_by.as_deref(), Some("r-a"));
    // ...but a later one, still before the rollback, does: it is now the latest attempt.
    reversed
        .seed(&[deploy("d2b", "aaaa", "2026-03-11T06:00:00Z")])
        .await;
    let marked: Vec<String> =
        sqlx::query_scalar("SELECT event_id FROM deploy_facts WHERE failed_by = 'r-a'")
            .fetch_all(&reversed.pool)
            .await
            .unwrap();
    assert_eq!(marked, vec!["d2b".to_owned()]);
    in_order.cleanup().await;
    reversed.cleanup().await;
}

#[tokio::test]
async fn time_to_restore_pairs_opens_with_their_first_close() {
    let env = TestEnv::new().await;
    env.seed(&[
        // Closed in the prior window.
        opened("o0", "INC-0", "2026-03-01T00:00:00Z"),
        closed("c0", "INC-0", "2026-03-02T12:00:00Z"),
        // Opened in the prior window, closed in this one: 48 h.
        opened("o1", "INC-1", "2026-03-07T10:00:00Z"),
        closed("c1", "INC-1", "2026-03-09T10:00:00Z"),
        // Two closes: the first one counts, 1 h.
        opened("o2", "INC-2", "2026-03-10T00:00:00Z"),
        closed("c2a", "INC-2", "2026-03-10T01:00:00Z"),
        closed("c2b", "INC-2", "2026-03-10T05:00:00Z"),
        // Never closed: open.
        opened("o3", "INC-3", "2026-03-12T00:00:00Z"),
        // Closed after the window's end: open at the end.
        opened("o4", "INC-4", "2026-03-15T00:00:00Z"),
        closed("c4", "INC-4", "2026-03-16T01:00:00Z"),
        // A close before the open does not close it.
        closed("c5", "INC-5", "2026-03-11T00:00:00Z"),
        opened("o5", "INC-5", "2026-03-11T01:00:00Z"),
    ])
    .await;
    let r = report(&env, &query(7, 0, None, "prod")).await;
    assert_eq!(r.time_to_restore.samples, 2);
    assert_eq!(
        r.time_to_restore.median_seconds,
        Some((48.0 * 3600.0 + 3600.0) / 2.0)
    );
    assert_eq!(
        r.time_to_restore.open_incidents, 3,
        "INC-3, INC-4 and INC-5"
    );

    let prior = report(&env, &query(7, 7, None, "prod")).await;
    assert_eq!(prior.window.end, t("2026-03-09T00:00:00Z"));
    assert_eq!(prior.time_to_restore.samples, 1);
    assert_eq!(prior.time_to_restore.median_seconds, Some(36.0 * 3600.0));
    assert_eq!(
        prior.time_to_restore.open_incidents, 1,
        "INC-1 was still open on 03-09"
    );
    env.cleanup().await;
}

/// CONTRACT.md section 5: an open while an incident runs re-triggers it (one sample,
/// one open incident); after the close, an open starts a new one. The same log sent
/// in reverse order must give the same incidents.
#[tokio::test]
async fn a_reopened_incident_is_one_incident_until_it_closes() {
    let log = vec![
        opened("ra", "INC-R", "2026-03-10T00:00:00Z"),
        opened("rb", "INC-R", "2026-03-10T02:00:00Z"), // re-trigger
        closed("rc", "INC-R", "2026-03-10T04:00:00Z"), // 4 h
        opened("rd", "INC-R", "2026-03-10T04:00:00Z"), // at the close's instant: re-trigger
        opened("re", "INC-R", "2026-03-11T00:00:00Z"), // a new incident
        closed("rf", "INC-R", "2026-03-11T03:00:00Z"), // 3 h
        closed("rg", "INC-R", "2026-03-11T05:00:00Z"), // nothing running: ignored
        opened("rh", "INC-R", "2026-03-12T00:00:00Z"), // a third, never closed
        opened("ri", "INC-R", "2026-03-13T00:00:00Z"), // re-trigger of the third
    ];
    for order in ["in order", "reversed"] {
        let env = TestEnv::new().await;
        let mut events = log.clone();
        if order == "reversed" {
            events.reverse();
        }
        for event in &events {
            env.seed(std::slice::from_ref(event)).await;
        }
        let r = report(&env, &query(7, 0, None, "prod")).await;
        assert_eq!(r.time_to_restore.samples, 2, "{order}");
        assert_eq!(
            r.time_to_restore.median_seconds,
            Some(3.5 * 3600.0),
            "{order}"
        );
        assert_eq!(r.time_to_restore.open_incidents, 1, "{order}");
        let starts: Vec<String> =
            sqlx::query_scalar("SELECT open_event_id FROM incident_facts ORDER BY opened_at")
                .fetch_all(&env.pool)
                .await
                .unwrap();
        assert_eq!(starts, ["ra", "re", "rh"], "{order}");
        // Before the third incident's re-trigger it is open as well.
        let mid = report(&env, &query(7, 4, None, "prod")).await;
        assert_eq!(mid.window.end, t("2026-03-12T00:00:00Z"));
        assert_eq!(mid.time_to_restore.samples, 2, "{order}");
        assert_eq!(mid.time_to_restore.open_incidents, 0, "{order}");
        env.cleanup().await;
    }
}

#[tokio::test]
async fn windows_are_start_inclusive_end_exclusive_and_offset_moves_them() {
    let env = TestEnv::new().await;
    env.seed(&[
        deploy("start", "a001", "2026-03-09T00:00:00Z"),
        deploy("inside", "a002", "2026-03-15T23:59:59.999999Z"),
        deploy("end", "a003", "2026-03-16T00:00:00Z"),
        deploy("prior-1", "a004", "2026-03-02T00:00:00Z"),
        deploy("prior-2", "a005", "2026-03-05T00:00:00Z"),
        deploy("prior-3", "a006", "2026-03-08T23:59:59Z"),
        deploy("too-old", "a007", "2026-03-01T23:59:59Z"),
    ])
    .await;
    let this_week = report(&env, &query(7, 0, None, "prod")).await;
    assert_eq!(this_week.deployment_frequency.deploys, 2);
    assert_eq!(this_week.window.start, t("2026-03-09T00:00:00Z"));
    let last_week = report(&env, &query(7, 7, None, "prod")).await;
    assert_eq!(last_week.deployment_frequency.deploys, 3);
    assert_eq!(last_week.window.start, t("2026-03-02T00:00:00Z"));
    assert_ne!(this_week, last_week);
    let one_day = report(&env, &query(1, 0, None, "prod")).await;
    assert_eq!(one_day.deployment_frequency.deploys, 1);
    assert_eq!(one_day.deployment_frequency.per_day, 1.0);
    env.cleanup().await;
}

#[tokio::test]
async fn service_and_environment_filters() {
    let env = TestEnv::new().await;
    env.seed(&[
        deploy("api-1", "b001", "2026-03-10T00:00:00Z"),
        deploy("api-2", "b002", "2026-03-11T00:00:00Z"),
        json!({"id": "web-1", "kind": "deploy", "service": "web", "git_sha": "b003", "occurred_at": "2026-03-10T00:00:00Z"}),
        json!({"id": "stg-1", "kind": "deploy", "service": "api", "environment": "staging", "git_sha": "b004",
               "occurred_at": "2026-03-10T00:00:00Z", "succeeded": false}),
        json!({"id": "stg-i", "kind": "incident_opened", "service": "api", "environment": "staging",
               "ref_id": "S-1", "occurred_at": "2026-03-10T00:00:00Z"}),
    ])
    .await;
    let all = report(&env, &query(7, 0, None, "prod")).await;
    assert_eq!(
        (
            all.deployment_frequency.deploys,
            all.change_failure_rate.attempts
        ),
        (3, 3)
    );
    assert_eq!(
        all.change_failure_rate.failed, 0,
        "a staging failure never counts in prod"
    );
    assert_eq!(all.time_to_restore.open_incidents, 0);
    let api = report(&env, &query(7, 0, Some("api"), "prod")).await;
    assert_eq!(api.deployment_frequency.deploys, 2);
    assert_eq!(api.service.as_deref(), Some("api"));
    let staging = report(&env, &query(7, 0, None, "staging")).await;
    assert_eq!(
        (
            staging.deployment_frequency.deploys,
            staging.change_failure_rate.failed
        ),
        (0, 1)
    );
    assert_eq!(staging.change_failure_rate.rate, Some(1.0));
    assert_eq!(staging.time_to_restore.open_incidents, 1);
    let nobody = report(&env, &query(7, 0, Some("nobody"), "prod")).await;
    assert_eq!(nobody.deployment_frequency.deploys, 0);
    env.cleanup().await;
}

#[tokio::test]
async fn times_with_an_offset_land_in_the_right_window() {
    let env = TestEnv::new().await;
    env.seed(&[
        // 2026-03-16T01:30Z: after the window.
        deploy("late", "c001", "2026-03-15T23:30:00-02:00"),
        // 2026-03-15T23:00Z: inside.
        deploy("in", "c002", "2026-03-16T01:00:00+02:00"),
        // 2026-03-08T23:00Z: before it.
        deploy("early", "c003", "2026-03-09T04:30:00+05:30"),
    ])
    .await;
    let r = report(&env, &query(7, 0, None, "prod")).await;
    assert_eq!(r.deployment_frequency.deploys, 1);
    env.cleanup().await;
}

#[tokio::test]
async fn medians_of_odd_and_even_counts_and_empty_windows() {
    let env = TestEnv::new().await;
    let r = report(&env, &query(7, 0, None, "prod")).await;
    assert_eq!(r.lead_time.median_seconds, None);
    assert_eq!(r.change_failure_rate.rate, None);
    assert_eq!(r.time_to_restore.median_seconds, None);
    assert_eq!(
        (
            r.lead_time.samples,
            r.change_failure_rate.attempts,
            r.deployment_frequency.deploys
        ),
        (0, 0, 0)
    );
    let body = serde_json::to_value(&r).unwrap();
    assert_eq!(
        body["lead_time"]["median_seconds"],
        Value::Null,
        "null, never 0"
    );
    assert_eq!(body["change_failure_rate"]["rate"], Value::Null);
    assert_eq!(
        body["rework_rate"],
        json!({"rework": 0, "attempts": 0, "rate": null}),
        "no level: DORA has no clusters for it"
    );

    env.seed(&[
        deploy_with_commit("l1", "2026-03-10T00:00:00Z", 1),
        deploy_with_commit("l2", "2026-03-11T00:00:00Z", 10),
        deploy_with_commit("l3", "2026-03-12T00:00:00Z", 3),
        deploy("no-commit", "dddd", "2026-03-12T00:00:00Z"),
    ])
    .await;
    let odd = report(&env, &query(7, 0, None, "prod")).await;
    assert_eq!(
        (odd.lead_time.median_seconds, odd.lead_time.samples),
        (Some(3.0 * 3600.0), 3)
    );
    env.seed(&[deploy_with_commit("l4", "2026-03-13T00:00:00Z", 6)])
        .await;
    let even = report(&env, &query(7, 0, None, "prod")).await;
    assert_eq!(
        (even.lead_time.median_seconds, even.lead_time.samples),
        (Some(4.5 * 3600.0), 4)
    );
    env.cleanup().await;
}

/// The numbers of a report, as the oracle gives them.
fn numbers(r: &Report) -> Numbers {
    Numbers {
        deploys: r.deployment_frequency.deploys,
        lead: (r.lead_time.median_seconds, r.lead_time.samples),
        failures: (r.change_failure_rate.failed, r.change_failure_rate.attempts),
        restore: (
            r.time_to_restore.median_seconds,
            r.time_to_restore.samples,
            r.time_to_restore.open_incidents,
        ),
        rework: r.rework_rate.rework,
    }
}

/// The median selected in the process is PostgreSQL's `percentile_cont(0.5)` to the
/// bit, on values with fractions where `(lo + hi) / 2` and PostgreSQL's interpolation
/// can differ in the last place.
#[tokio::test]
async fn the_selected_median_is_percentile_cont_to_the_bit() {
    let env = TestEnv::new().await;
    let mut rng = Rng::new(7);
    // Pairs most often: two far-apart middle values are where the formulas part.
    for n in (0..40).chain([2; 200]).chain([999, 1000, 4096, 4097]) {
        let values: Vec<f64> = (0..n)
            .map(|_| {
                let v = rng.below(1 << 40) as f64 / 997.0;
                // Repeats and negatives (a clock skewed commit) as well.
                match rng.below(8) {
                    0 => 3.0,
                    1 => -v,
                    _ => v,
                }
            })
            .collect();
        let want: Option<f64> = sqlx::query_scalar(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) FROM unnest($1::float8[]) v",
        )
        .bind(&values)
        .fetch_one(&env.pool)
        .await
        .unwrap();
        let got = median::interpolated(&mut values.clone());
        assert_eq!(
            got.map(f64::to_bits),
            want.map(f64::to_bits),
            "{n} values: {got:?} vs {want:?}"
        );
    }
    env.cleanup().await;
}

/// Seeds `log` one event per batch in the order given, and checks dora and the oracle
/// give `want` for a week ending at `AS_OF` in prod (optionally one service).
async fn pinned(log: &[Value], service: Option<&str>, want: Numbers, what: &str) {
    let env = TestEnv::new().await;
    for e in log {
        env.seed(std::slice::from_ref(e)).await;
    }
    let oracle = Oracle::new(log).numbers("prod", service, t(AS_OF), 7, 0);
    assert_eq!(oracle, want, "the oracle: {what}");
    let got = numbers(&report(&env, &query(7, 0, service, "prod")).await);
    assert_eq!(got, want, "dora: {what}");
    env.cleanup().await;
}

#[tokio::test]
async fn tie_rules_and_incident_pairing_are_pinned() {
    let at = "2026-03-10T00:00:00Z";
    let mut failed = deploy("d-failed", "aaaa", at);
    failed["succeeded"] = json!(false);
    let ok = deploy("d-ok", "aaaa", at);
    let marker = rollback("r", "aaaa", at);
    let week = |deploys, failed, attempts, restore| Numbers {
        deploys,
        lead: (None, 0),
        failures: (failed, attempts),
        restore,
        rework: 0,
    };
    // Two attempts at one instant: the later in the stream is the latest, and a
    // rollback at that instant marks it. Later = the successful one: two failures.
    pinned(
        &[failed.clone(), ok.clone(), marker.clone()],
        None,
        week(1, 2, 2, (None, 0, 0)),
        "the rollback marks the attempt later in the stream",
    )
    .await;
    // Later = the one that failed by itself: the attempt counts once, one failure.
    pinned(
        &[ok.clone(), failed.clone(), marker.clone()],
        None,
        week(1, 1, 2, (None, 0, 0)),
        "the rollback marks the already failed attempt",
    )
    .await;
    // The rollback arriving first changes nothing: order in time, then in the stream.
    pinned(
        &[marker.clone(), failed.clone(), ok.clone()],
        None,
        week(1, 2, 2, (None, 0, 0)),
        "a rollback that arrived before both",
    )
    .await;
    // A rollback exactly at as_of counts; one a microsecond after does not.
    let mut d7 = deploy("d7", "bbbb", "2026-03-15T00:00:00Z");
    d7["commit_at"] = json!("2026-03-14T23:00:00Z");
    pinned(
        &[d7.clone(), rollback("r-asof", "bbbb", AS_OF)],
        None,
        Numbers {
            deploys: 1,
            lead: (Some(3600.0), 1),
            failures: (1, 1),
            restore: (None, 0, 0),
            rework: 0,
        },
        "a rollback at as_of",
    )
    .await;

    // Incidents, one ref_id. Two opens at one instant, in two services: the earlier in
    // the stream starts it, and it belongs to that one's service.
    let open_api = opened("o-api", "INC-T", "2026-03-11T00:00:00Z");
    let mut open_web = opened("o-web", "INC-T", "2026-03-11T00:00:00Z");
    open_web["service"] = json!("web");
    // A close named by ref_id alone, from a third service, 2 h later; a second close at
    // the same instant is the same close.
    let mut close = closed("c-1", "INC-T", "2026-03-11T02:00:00Z");
    close["service"] = json!("db");
    let mut close_again = closed("c-2", "INC-T", "2026-03-11T02:00:00Z");
    close_again["service"] = json!("db");
    for (log, api, what) in [
        (
            vec![
                open_api.clone(),
                open_web.clone(),
                close.clone(),
                close_again.clone(),
            ],
            (Some(7200.0), 1, 0),
            "api's open first",
        ),
        (
            vec![
                open_web.clone(),
                open_api.clone(),
                close_again.clone(),
                close.clone(),
            ],
            (None, 0, 0),
            "web's open first",
        ),
    ] {
        pinned(&log, Some("api"), week(0, 0, 0, api), what).await;
        pinned(&log, None, week(0, 0, 0, (Some(7200.0), 1, 0)), what).await;
    }

    // Re-triggered opens: an open while it runs and one at the close's instant are the
    // same incident; the first open after the close starts another, which a close at
    // its own instant ends (0 s); a close before any open is ignored.
    let r = |id: &str, kind: &str, at: &str| {
        if kind == "o" {
            opened(id, "INC-R", at)
        } else {
            closed(id, "INC-R", at)
        }
    };
    let log = vec![
        r("c0", "c", "2026-03-09T12:00:00Z"),
        r("o1", "o", "2026-03-10T00:00:00Z"),
        r("o2", "o", "2026-03-10T01:00:00Z"),
        r("c1", "c", "2026-03-10T03:00:00Z"),
        r("o3", "o", "2026-03-10T03:00:00Z"),
        r("o4", "o", "2026-03-12T00:00:00Z"),
        r("c2", "c", "2026-03-12T00:00:00Z"),
        r("o5", "o", "2026-03-13T00:00:00Z"),
    ];
    let want = week(0, 0, 0, (Some(1.5 * 3600.0), 2, 1));
    pinned(&log, None, want.clone(), "re-triggers, in order").await;
    let mut reversed = log.clone();
    reversed.reverse();
    pinned(&reversed, None, want, "re-triggers, reversed").await;
}

/// Rework (CONTRACT.md section 5): an attempt made while an incident of its service and
/// environment runs, from its open's instant (included) to its close's (excluded), the
/// incident paired as for time to restore. Each log also arrives last event first.
#[tokio::test]
async fn rework_is_an_attempt_made_while_an_incident_runs() {
    let week = |attempts, failed, rework, restore| Numbers {
        deploys: attempts - failed,
        lead: (None, 0),
        failures: (failed, attempts),
        restore,
        rework,
    };
    let mut failed_late = deploy("late", "c003", "2026-03-15T00:00:00Z");
    failed_late["succeeded"] = json!(false);
    let mut checks = vec![
        (
            vec![
                opened("o", "INC-E", "2026-03-10T00:00:00Z"),
                closed("c", "INC-E", "2026-03-10T02:00:00Z"),
                deploy("at-open", "a001", "2026-03-10T00:00:00Z"),
                deploy("inside", "a002", "2026-03-10T01:59:59.999999Z"),
                deploy("at-close", "a003", "2026-03-10T02:00:00Z"),
                deploy("before", "a004", "2026-03-09T23:59:59.999999Z"),
            ],
            week(4, 0, 2, (Some(7200.0), 1, 0)),
            "at the open's instant: rework; at the close's: not",
        ),
        (
            vec![
                opened("r1", "INC-R", "2026-03-11T00:00:00Z"),
                opened("r2", "INC-R", "2026-03-11T01:00:00Z"), // re-trigger
                deploy("during", "b001", "2026-03-11T02:00:00Z"),
                closed("rc", "INC-R", "2026-03-11T03:00:00Z"),
                opened("r3", "INC-R", "2026-03-11T03:00:00Z"), // at the close: the same one
                deploy("after", "b002", "2026-03-11T03:00:00Z"),
                opened("r4", "INC-R", "2026-03-11T05:00:00Z"), // a new one, never closed
                deploy("again", "b003", "2026-03-11T06:00:00Z"),
            ],
            week(3, 0, 2, (Some(3.0 * 3600.0), 1, 1)),
            "a re-triggered incident ends at its first close",
        ),
        (
            vec![
                // Opened before the window, closed after as_of: running at every attempt.
                opened("l", "INC-L", "2026-03-08T00:00:00Z"),
                closed("lc", "INC-L", "2026-03-17T00:00:00Z"),
                opened("m", "INC-M", "2026-03-12T00:00:00Z"),
                closed("mc", "INC-M", "2026-03-12T12:00:00Z"),
                deploy("first", "c001", "2026-03-09T00:00:00Z"),
                // Two incidents at once: one rework attempt.
                deploy("both", "c002", "2026-03-12T06:00:00Z"),
                failed_late,
            ],
            week(3, 1, 3, (Some(12.0 * 3600.0), 1, 1)),
            "an incident from before the window to after as_of, two at once, a failed attempt",
        ),
    ];
    for (log, want, what) in checks.clone() {
        let mut reversed = log;
        reversed.reverse();
        checks.push((reversed, want, what));
    }
    for (log, want, what) in checks {
        pinned(&log, None, want.clone(), what).await;
        pinned(&log, Some("api"), want, what).await;
    }
}

/// Rework counts only an incident of the attempt's own service and environment: the
/// service and environment of the incident's first open, whoever closes or re-triggers
/// it. All services, each service and the by-service pass agree.
#[tokio::test]
async fn rework_needs_an_incident_of_the_same_service_and_environment() {
    // (id, kind, service, environment, day and hour of March 2026)
    let log: Vec<Value> = [
        // A staging incident: rework for staging's attempt, not production's.
        ("s-open", "opened", "api", "staging", "10T00"),
        ("p-api-1", "deploy", "api", "prod", "10T01"),
        ("s-api", "deploy", "api", "staging", "10T01"),
        // web's incident, closed by a close sent from api: rework for web only.
        ("w-open", "opened", "web", "prod", "12T00"),
        ("p-api-2", "deploy", "api", "prod", "12T01"),
        ("p-web-1", "deploy", "web", "prod", "12T01"),
        ("w-close", "closed", "api", "prod", "12T04"),
        // api's incident, re-triggered from web: still api's.
        ("x-open", "opened", "api", "prod", "13T00"),
        ("x-again", "opened", "web", "prod", "13T01"),
        ("p-web-2", "deploy", "web", "prod", "13T02"),
        ("p-api-3", "deploy", "api", "prod", "13T02"),
        ("x-close", "closed", "web", "prod", "13T03"),
    ]
    .into_iter()
    .map(|(id, kind, service, environment, at)| {
        let mut e = json!({"id": id, "kind": kind, "service": service, "environment": environment,
                           "occurred_at": format!("2026-03-{at}:00:00Z")});
        if kind == "deploy" {
            e["git_sha"] = json!("abcd");
        } else {
            e["kind"] = json!(format!("incident_{kind}"));
            e["ref_id"] = json!(format!("INC-{}", &id[..1]));
        }
        e
    })
    .collect();
    let env = TestEnv::new().await;
    env.seed(&log).await;
    let oracle = Oracle::new(&log);
    for (service, environment, rework, attempts) in [
        (None, "prod", 2, 5),
        (Some("api"), "prod", 1, 3),
        (Some("web"), "prod", 1, 2),
        (None, "staging", 1, 1),
    ] {
        let q = query(7, 0, service, environment);
        let r = report(&env, &q).await;
        assert_eq!(
            (r.rework_rate.rework, r.rework_rate.attempts),
            (rework, attempts),
            "{q:?}"
        );
        let want = oracle.numbers(environment, service, t(AS_OF), 7, 0);
        assert_eq!(numbers(&r), want, "the oracle: {q:?}");
    }
    let all = serde_json::to_value(report(&env, &query(7, 0, None, "prod")).await).unwrap();
    assert_eq!(
        all["rework_rate"],
        json!({"rework": 2, "attempts": 5, "rate": 0.4})
    );
    let pool = dora_api::connect(&env.database_url, 2).unwrap();
    let by_service = compute_grouped(&pool, &query(7, 0, None, "prod"), 1, true)
        .await
        .unwrap();
    let rework: Vec<(Option<&str>, i64, Option<f64>)> = by_service
        .iter()
        .map(|r| {
            (
                r.service.as_deref(),
                r.rework_rate.rework,
                r.rework_rate.rate,
            )
        })
        .collect();
    assert_eq!(
        rework,
        [(Some("api"), 1, Some(0.3333)), (Some("web"), 1, Some(0.5))]
    );
    pool.close().await;
    env.cleanup().await;
}

pub(crate) fn random_log(rng: &mut Rng, n: usize) -> Vec<Value> {
    let base = t("2026-02-01T00:00:00Z");
    (0..n)
        .map(|i| {
            // Whole hours, so equal times (ties) happen often.
            let at = base + TimeDelta::hours(rng.below(45 * 24) as i64);
            let service = ["api", "web", "db"][rng.below(3) as usize];
            let environment = ["prod", "prod", "staging"][rng.below(3) as usize];
            let sha = format!("{:04x}", rng.below(12));
            let ref_id = format!("INC-{}", rng.below(15));
            let mut e = match rng.below(10) {
                0..=4 => {
                    let mut d =
                        json!({"kind": "deploy", "git_sha": sha, "succeeded": rng.below(6) != 0});
                    if rng.below(4) != 0 {
                        d["commit_at"] =
                            json!((at - TimeDelta::minutes(rng.below(5000) as i64)).to_rfc3339());
                    }
                    d
                }
                5 | 6 => json!({"kind": "rollback", "git_sha": sha}),
                7 => {
                    let mut o = json!({"kind": "incident_opened", "ref_id": ref_id});
                    if rng.below(2) == 0 {
                        o["git_sha"] = json!(sha);
                    }
                    o
                }
                _ => json!({"kind": "incident_closed", "ref_id": ref_id}),
            };
            e["id"] = json!(format!("e{i}"));
            e["service"] = json!(service);
            e["environment"] = json!(environment);
            e["occurred_at"] = json!(at.to_rfc3339());
            e
        })
        .collect()
}

#[tokio::test]
async fn the_facts_agree_with_a_naive_reading_of_the_contract_on_random_logs() {
    let mut rng = Rng::new(0x5EED_D0A4);
    let mut log = random_log(&mut rng, 1500);
    shuffle(&mut log, &mut rng);
    let reworked = agree_with_the_oracle(log, &mut rng, 200, 1).await;
    assert!(reworked > 0, "the random windows hold rework");
}

/// The hot-key shape: few keys, each with a long history, so a batch's recompute works
/// on a slice of a key's attempts and markers, or of a ref_id's incidents, with much
/// history on both sides of it. Three shas of one environment reused by hundreds of
/// deploys and markers, two ref_ids reused by hundreds of opens and closes, arriving
/// shuffled in small batches.
#[tokio::test]
async fn the_facts_agree_with_a_naive_reading_of_the_contract_on_hot_keys() {
    on_hot_keys(0x0407_1EE5, 1).await;
}

/// The hot-key shape again, two batches written at once: their appends and recomputes
/// interleave on the same keys (see `store::SERIALISE_BATCHES`).
#[tokio::test]
async fn the_facts_agree_with_a_naive_reading_when_batches_are_written_two_at_a_time() {
    on_hot_keys(0x2B47_C4E5, 2).await;
}

/// A random log of `seed` in the hot-key shape, checked as [`shaped`] does.
async fn on_hot_keys(seed: u64, together: usize) {
    shaped(seed, hot_keys, together).await;
}

/// A random log of `seed` in `shape`, shuffled, fed in batches of up to 40 events,
/// `together` written at once, and checked against the oracle.
async fn shaped(seed: u64, shape: Shape, together: usize) {
    let mut rng = Rng::new(seed);
    let mut log = random_log(&mut rng, 2500);
    shape(&mut log, &mut rng);
    shuffle(&mut log, &mut rng);
    agree_with_the_oracle(log, &mut rng, 40, together).await;
}

/// Ties everywhere (issue 26): the random log on three instants, so each instant holds
/// hundreds of attempts of one key (some of one sha, many of distinct shas), their
/// markers, and incidents of many ref_ids opened, re-triggered and closed at once. The
/// contract's tie rules (stream order) decide every fact; shuffled, in small batches.
#[tokio::test]
async fn the_facts_agree_with_a_naive_reading_of_the_contract_on_ties() {
    shaped(0x7135_0001, |log, rng| on_instants(log, rng, 3), 1).await;
}

/// Ties on hot keys, two batches written at once: eight instants, three shas, two
/// ref_ids, so each ref_id is re-triggered dozens of times at one instant and each sha
/// has dozens of attempts and markers at each (fewer instants would leave too few
/// marked attempts for the check that the log exercises them).
#[tokio::test]
async fn the_facts_agree_with_a_naive_reading_of_the_contract_on_ties_of_hot_keys() {
    let shape: Shape = |log, rng| {
        hot_keys(log, rng);
        on_instants(log, rng, 8);
    };
    shaped(0x7135_0002, shape, 2).await;
}

/// Late events into long chains: the hot-key shape arriving in time order, but a
/// fifth of it held back and delivered last in random order, each landing in front of
/// or inside chains of hundreds of attempts and incidents already stored.
#[tokio::test]
async fn the_facts_agree_with_a_naive_reading_of_the_contract_on_late_events_into_long_chains() {
    let mut rng = Rng::new(0x7135_0003);
    let mut log = random_log(&mut rng, 2500);
    hot_keys(&mut log, &mut rng);
    let at = |e: &Value| {
        e["occurred_at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap()
    };
    log.sort_by_key(at);
    let (mut on_time, mut late) = (Vec::new(), Vec::new());
    for e in log {
        if rng.below(5) == 0 {
            late.push(e);
        } else {
            on_time.push(e);
        }
    }
    shuffle(&mut late, &mut rng);
    on_time.extend(late);
    agree_with_the_oracle(on_time, &mut rng, 40, 1).await;
}

/// Moves every event of `log` onto one of `instants` instants a day apart (a commit an
/// hour before its deploy).
fn on_instants(log: &mut [Value], rng: &mut Rng, instants: u64) {
    let base = t("2026-02-10T00:00:00Z");
    for e in log.iter_mut() {
        let at = base + TimeDelta::days(rng.below(instants) as i64);
        e["occurred_at"] = json!(at.to_rfc3339());
        if e.get("commit_at").is_some() {
            e["commit_at"] = json!((at - TimeDelta::hours(1)).to_rfc3339());
        }
    }
}

/// Arrival order is not event order: a seeded shuffle.
fn shuffle(log: &mut [Value], rng: &mut Rng) {
    for i in (1..log.len()).rev() {
        log.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

/// Turns a random log into the hot-key shape (see the test above).
fn hot_keys(log: &mut [Value], rng: &mut Rng) {
    for e in log.iter_mut() {
        e["environment"] = json!("prod");
        e["service"] = json!(["api", "api", "web"][rng.below(3) as usize]);
        if e.get("git_sha").is_some() {
            e["git_sha"] = json!(format!("{:04x}", rng.below(3)));
        }
        if e.get("ref_id").is_some() {
            e["ref_id"] = json!(format!("INC-{}", rng.below(2)));
        }
        // Whole 6-hour steps (later, so a commit still precedes its deploy): many more
        // ties, such as an open at the instant of the close that ends its incident.
        let at: DateTime<Utc> = e["occurred_at"].as_str().unwrap().parse().unwrap();
        let step = 6 * 3600;
        let ceil = (at.timestamp() + step - 1) / step * step;
        e["occurred_at"] = json!(DateTime::from_timestamp(ceil, 0).unwrap().to_rfc3339());
    }
}

/// The bulk path (replay, and a first backfill) derives its facts by window passes over
/// the whole log; the live path recomputes slices batch by batch. On the same messages in
/// the same stream order they must leave the same store, row for row: the log (first
/// copy of an id wins, also when a later copy differs), the rejected messages, and both
/// facts tables. Random logs, the hot-key shape and ties (three instants), with
/// repeated ids and invalid messages mixed in.
#[tokio::test]
async fn the_bulk_path_leaves_the_same_store_as_the_live_path() {
    let plain: Shape = |_, _| {};
    let ties: Shape = |log, rng| on_instants(log, rng, 3);
    let shapes: [(u64, Shape); 4] = [
        (0xB01C_0001, plain),
        (0xB01C_0002, hot_keys),
        (0xB01C_0003, hot_keys),
        (0xB01C_0004, ties),
    ];
    for (seed, shape) in shapes {
        let mut rng = Rng::new(seed);
        let mut log = random_log(&mut rng, 2000);
        shape(&mut log, &mut rng);
        // Services known only by an incident (listed), and only by a rollback or a close
        // (not listed: no attempt, no incident).
        log.extend([
            json!({"id": "po", "kind": "incident_opened", "service": "pager-only", "ref_id": "INC-PO", "occurred_at": "2026-03-10T00:00:00Z"}),
            json!({"id": "ro", "kind": "rollback", "service": "rollback-only", "git_sha": "abcd", "occurred_at": "2026-03-10T00:00:00Z"}),
            json!({"id": "co", "kind": "incident_closed", "service": "close-only", "ref_id": "INC-CO", "occurred_at": "2026-03-10T00:00:00Z"}),
        ]);
        shuffle(&mut log, &mut rng);
        // Repeats of earlier ids, some with other content, and messages that fail
        // validation, at random places in the stream.
        for _ in 0..60 {
            let mut again = log[rng.below(log.len() as u64) as usize].clone();
            if again["kind"] == "deploy" && rng.below(2) == 0 {
                again["succeeded"] = json!(again["succeeded"] == json!(false));
            }
            let at = rng.below(log.len() as u64) as usize;
            log.insert(at, again);
        }
        for i in 0..10 {
            let at = rng.below(log.len() as u64) as usize;
            log.insert(
                at,
                json!({"id": format!("bad{i}"), "kind": "deploy", "service": "api",
                                  "environment": "prod", "occurred_at": "2026-02-02T00:00:00Z"}),
            );
        }
        let env = TestEnv::new().await;
        let messages = as_messages(&env, &log);

        let mut at = 0;
        while at < messages.len() {
            let take = (1 + rng.below(150) as usize).min(messages.len() - at);
            dora_projector::store::apply(&env.pool, &messages[at..at + take])
                .await
                .unwrap();
            at += take;
        }

        let bulk_url = env.another_database("bulk").await;
        let bulk = dora_projector::store::connect(&bulk_url, dora_event::STORE_SCHEMA, 2)
            .await
            .unwrap();
        dora_projector::store::migrate(&bulk, dora_event::STORE_SCHEMA)
            .await
            .unwrap();
        let last = messages.len() as u64;
        let mut load =
            dora_projector::bulk::BulkLoad::begin(&bulk, last, std::time::Duration::from_secs(60))
                .await
                .unwrap();
        let mut at = 0;
        while at < messages.len() {
            let take = (1 + rng.below(300) as usize).min(messages.len() - at);
            load.push(&messages[at..at + take], (at + take) as u64)
                .await
                .unwrap();
            at += take;
        }
        let applied = load.finish(last).await.unwrap();
        assert_eq!(applied.rejected, 10, "seed {seed:x}");
        assert_eq!(applied.duplicates, 60, "seed {seed:x}: the repeated ids");
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&bulk)
            .await
            .unwrap();
        assert_eq!(applied.inserted, stored as u64, "seed {seed:x}");
        assert_eq!(
            applied.inserted + applied.duplicates + applied.rejected,
            last,
            "seed {seed:x}"
        );

        for (table, key) in [
            ("events", "id"),
            ("deploy_facts", "event_id"),
            ("incident_facts", "open_event_id"),
            ("rejected_events", "stream_seq"),
            ("services", "environment, service"),
        ] {
            // rejected_at is when the row was written: the one column that may differ.
            let columns = if table == "rejected_events" {
                "stream_seq, subject, payload, reason, field, received_at"
            } else {
                "*"
            };
            let dump = format!(
                "SELECT coalesce(string_agg(r::text, E'\\n' ORDER BY {key}), '')
                 FROM (SELECT {columns} FROM {table}) r"
            );
            let live: String = sqlx::query_scalar(&dump)
                .fetch_one(&env.pool)
                .await
                .unwrap();
            let built: String = sqlx::query_scalar(&dump).fetch_one(&bulk).await.unwrap();
            assert!(!live.is_empty(), "{table} holds rows");
            assert!(
                live == built,
                "seed {seed:x}: {table} differs:\n{}",
                first_difference(["live", "bulk"], &live, &built)
            );
        }
        let listed: Vec<String> = sqlx::query_scalar(
            "SELECT service FROM services WHERE service LIKE '%-only' ORDER BY service",
        )
        .fetch_all(&bulk)
        .await
        .unwrap();
        assert_eq!(listed, ["pager-only"], "seed {seed:x}");
        let failed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deploy_facts WHERE failed_by <> event_id")
                .fetch_one(&bulk)
                .await
                .unwrap();
        let closed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM incident_facts WHERE closed_at IS NOT NULL")
                .fetch_one(&bulk)
                .await
                .unwrap();
        assert!(
            failed > 20 && closed > 20,
            "the log exercises markers and closes: {failed}, {closed}"
        );
        let position: i64 = sqlx::query_scalar("SELECT last_seq FROM store_position")
            .fetch_one(&bulk)
            .await
            .unwrap();
        assert_eq!(position, last as i64);
        // The indexes and keys dropped for the load are all back, as the migrations
        // declare them: the primary keys as constraints, not just unique indexes.
        let schema = "SELECT string_agg(d, E'\\n' ORDER BY d) FROM (
                          SELECT indexdef AS d FROM pg_indexes WHERE schemaname = current_schema()
                          UNION ALL
                          SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
                          FROM pg_constraint WHERE connamespace = current_schema()::regnamespace) s";
        let live: String = sqlx::query_scalar(schema)
            .fetch_one(&env.pool)
            .await
            .unwrap();
        let built: String = sqlx::query_scalar(schema).fetch_one(&bulk).await.unwrap();
        assert!(live.contains("events_pkey PRIMARY KEY"), "{live}");
        assert!(
            live == built,
            "seed {seed:x}: the schema differs:\n{}",
            first_difference(["live", "bulk"], &live, &built)
        );
        bulk.close().await;
        env.cleanup().await;
    }
}

/// The facts tables as [`Facts`] holds them.
async fn stored_facts(pool: &sqlx::PgPool) -> Facts {
    let attempts =
        sqlx::query_as("SELECT event_id, failed_at, failed_by FROM deploy_facts ORDER BY event_id")
            .fetch_all(pool)
            .await
            .unwrap();
    let incidents = sqlx::query_as(
        "SELECT open_event_id, ref_id, opened_at, close_event_id, closed_at
         FROM incident_facts ORDER BY open_event_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    Facts {
        attempts,
        incidents,
    }
}

/// Turns a random log into a shape of history.
type Shape = fn(&mut [Value], &mut Rng);

/// The first line where two table dumps differ, from each, under their names.
fn first_difference(names: [&str; 2], a: &str, b: &str) -> String {
    let (mut a, mut b) = (a.lines(), b.lines());
    loop {
        match (a.next(), b.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (x, y) => return format!("{}:  {x:?}\n{}:  {y:?}", names[0], names[1]),
        }
    }
}

/// One line per row.
fn lines<T: std::fmt::Debug>(rows: &[T]) -> String {
    rows.iter().map(|r| format!("{r:?}\n")).collect()
}

/// The events as stream messages, decoded as the projector decodes them: sequences
/// 1, 2, ... in the order given, published straight to NATS (source `nats`).
fn as_messages(env: &TestEnv, log: &[Value]) -> Vec<dora_projector::decode::Decoded> {
    let received_at = t("2026-11-01T00:00:00Z");
    let sources = dora_system_tests::source_keys(dora_system_tests::SOURCE_KEY);
    log.iter()
        .enumerate()
        .map(|(i, e)| {
            let incoming = dora_projector::decode::Incoming {
                stream_seq: i as u64 + 1,
                subject: env.subject(
                    e["environment"].as_str().unwrap_or("prod"),
                    e["service"].as_str().unwrap_or("api"),
                    e["kind"].as_str().unwrap_or("deploy"),
                ),
                payload: serde_json::to_vec(e).unwrap(),
                msg_id: e["id"].as_str().map(str::to_owned),
                source: None,
                signature: None,
                received_at: received_at + TimeDelta::microseconds(i as i64 * 1001),
                gateway_received_at: None,
            };
            dora_projector::decode::decode(&env.prefix, Some(&sources), incoming)
        })
        .collect()
}

/// Feeds `log` in its order, in batches of up to `batch` events, `together` batches
/// written at once, checking the facts row by row and the whole range's numbers after
/// each step, then checks random windows against the oracle and the naive SQL.
/// Returns how many reworked attempts the random windows held.
async fn agree_with_the_oracle(log: Vec<Value>, rng: &mut Rng, batch: u64, together: usize) -> i64 {
    let env = TestEnv::new().await;
    let pool = dora_api::connect(&env.database_url, 1).unwrap();
    // Two connections, both open and idle: each query reads its halves on both at once,
    // the second in the first one's snapshot (one connection reads them in turn).
    let two = dora_api::connect(&env.database_url, 2).unwrap();
    let (a, b) = tokio::join!(two.acquire(), two.acquire());
    drop((a.unwrap(), b.unwrap()));
    let mut fed = 0;
    while fed < log.len() {
        // `together` batches written at once, as the projector has them in flight: one
        // appends while another recomputes and commits.
        let mut batches = Vec::new();
        for _ in 0..together {
            let take = (1 + rng.below(batch) as usize).min(log.len() - fed);
            batches.push(&log[fed..fed + take]);
            fed += take;
        }
        futures::future::join_all(batches.into_iter().map(|b| env.seed(b))).await;
        // After every batch, not only at the end: a later batch that rewalks a key can
        // hide a wrong slice, so the facts of the log so far are checked over the whole
        // time range, where any wrong attempt or incident shows.
        let whole = MetricsQuery {
            days: 60,
            offset: 0,
            as_of: t("2026-03-25T00:00:00Z"),
            service: None,
            environment: "prod".to_owned(),
        };
        let oracle = Oracle::new(&log[..fed]);
        let got = numbers(&compute(&pool, &whole).await.unwrap());
        let want = oracle.numbers("prod", None, whole.as_of, 60, 0);
        assert_eq!(got, want, "after {fed} events: {whole:?}");
        // And each attempt's failure and each incident, row by row: a wrong marker or
        // close at an instant shared with others can leave every count right.
        let (stored, want) = (stored_facts(&env.pool).await, oracle.facts());
        for (what, stored, want) in [
            ("attempts", lines(&stored.attempts), lines(&want.attempts)),
            (
                "incidents",
                lines(&stored.incidents),
                lines(&want.incidents),
            ),
        ] {
            assert!(
                stored == want,
                "after {fed} events, {what} differ:\n{}",
                first_difference(["stored", "oracle"], &stored, &want)
            );
        }
        // And each incident's rework piece, as derived from scratch from the facts: a
        // piece the batch should have moved or counted into and did not.
        let wrong: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT row_to_json(w)::text FROM ({}) w",
            NAIVE_PIECES.trim_end()
        ))
        .fetch_all(&env.pool)
        .await
        .unwrap();
        assert!(
            wrong.is_empty(),
            "after {fed} events, rework pieces differ:\n{}",
            wrong.join("\n")
        );
    }

    let oracle = Oracle::new(&log);
    let mut reworked = 0;
    for _ in 0..60 {
        let q = MetricsQuery {
            days: 1 + rng.below(30) as u32,
            offset: rng.below(20) as u32,
            as_of: t("2026-03-05T00:00:00Z") + TimeDelta::hours(rng.below(20 * 24) as i64),
            service: [None, Some("api"), Some("web")][rng.below(3) as usize].map(str::to_owned),
            environment: ["prod", "staging"][rng.below(2) as usize].to_owned(),
        };
        let got = compute(&pool, &q).await.unwrap();
        // The medians PostgreSQL sorts for groups too large to send are the ones selected
        // here from the values, window by window and service by service.
        assert_eq!(
            compute(&two, &q).await.unwrap(),
            got,
            "halves at once: {q:?}"
        );
        for by_service in [false, true] {
            let selected = compute_grouped(&two, &q, 3, by_service).await.unwrap();
            let sorted = compute_grouped_sending(&pool, &q, 3, by_service, 0)
                .await
                .unwrap();
            assert_eq!(selected, sorted, "{q:?}, by service: {by_service}");
        }
        let got = numbers(&got);
        // The oracle: its own window arithmetic, over the events as generated.
        let want = oracle.numbers(
            &q.environment,
            q.service.as_deref(),
            q.as_of,
            q.days,
            q.offset,
        );
        assert_eq!(got, want, "{q:?}");
        // The naive SQL over the stored log, in the oracle's window, agrees too.
        let (start, end) = Oracle::window(q.as_of, q.days, q.offset);
        let (deploys, lead, lead_n, failed, attempts): (i64, Option<f64>, i64, i64, i64) =
            sqlx::query_as(NAIVE_DEPLOYS)
                .bind(&q.environment)
                .bind(start)
                .bind(end)
                .bind(q.as_of)
                .bind(&q.service)
                .fetch_one(&env.pool)
                .await
                .unwrap();
        let (restore, restore_n, open): (Option<f64>, i64, i64) = sqlx::query_as(NAIVE_INCIDENTS)
            .bind(&q.environment)
            .bind(start)
            .bind(end)
            .bind(&q.service)
            .fetch_one(&env.pool)
            .await
            .unwrap();
        let rework: i64 = sqlx::query_scalar(NAIVE_REWORK)
            .bind(&q.environment)
            .bind(start)
            .bind(end)
            .bind(&q.service)
            .fetch_one(&env.pool)
            .await
            .unwrap();
        let naive = Numbers {
            deploys,
            lead: (lead, lead_n),
            failures: (failed, attempts),
            restore: (restore, restore_n, open),
            rework,
        };
        assert_eq!(naive, want, "naive SQL: {q:?}");
        reworked += want.rework;
    }
    // Returned, not asserted: on a few instants every incident closes at the instant it
    // opens (each ref_id has closes at every instant), so those shapes hold no rework.
    let failed_total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deploy_facts WHERE failed_by <> event_id")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert!(
        failed_total > 20,
        "the random log exercises rollbacks and incidents: {failed_total}"
    );
    // The rework rule's edges are in the log: attempts at the very instant an incident
    // of their service opened (rework) and closed (not rework).
    let (at_open, at_close): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE d.occurred_at = i.opened_at),
                count(*) FILTER (WHERE d.occurred_at = i.closed_at)
         FROM deploy_facts d JOIN incident_facts i USING (service, environment)",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert!(
        at_open > 5 && at_close > 5,
        "attempts at an open's and a close's instant: {at_open}, {at_close}"
    );
    env.cleanup().await;
    reworked
}
