//! Observability: every process's `/metrics` parses as OpenMetrics text and its series
//! move when events flow; the projector's `/readyz`; the Grafana dashboard names only
//! exported series; `DORA_LOG_FORMAT`.

use std::collections::BTreeSet;

use clap::Parser;
use dora_event::settings::LogFormat;
use dora_system_tests::{eventually, get_json, post_events, Captured, TestEnv, CI_TOKEN};
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue, Sample};
use serde_json::{json, Value};

/// One scrape, parsed by a strict OpenMetrics parser.
struct Scrape(MetricsExposition<OpenMetricsType, OpenMetricsValue>);

/// `GET {base}/metrics`: `200`, the OpenMetrics content type, and a body that parses.
async fn scrape(base: &str) -> Scrape {
    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let body = response.text().await.unwrap();
    let parsed = openmetrics_parser::openmetrics::parse_openmetrics(&body)
        .unwrap_or_else(|e| panic!("{base}/metrics is not valid OpenMetrics text: {e:?}\n{body}"));
    Scrape(parsed)
}

fn number(value: &OpenMetricsValue) -> f64 {
    match value {
        OpenMetricsValue::Counter(c) => c.value.as_f64(),
        OpenMetricsValue::Gauge(n) | OpenMetricsValue::Unknown(n) => n.as_f64(),
        // A histogram's number is its count of observations.
        OpenMetricsValue::Histogram(h) => h.count.unwrap_or(0) as f64,
        other => panic!("not a number: {other:?}"),
    }
}

impl Scrape {
    fn samples(&self, family: &str) -> Vec<&Sample<OpenMetricsValue>> {
        self.0
            .families
            .get(family)
            .unwrap_or_else(|| panic!("no family `{family}` in {:?}", self.family_names()))
            .iter_samples()
            .collect()
    }

    /// The value of the sample of `family` whose labels include `labels`; `None` if
    /// there is none (a family without samples, or no such label set).
    fn value(&self, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
            .samples(family)
            .iter()
            .filter(|s| {
                let set = s.get_labelset().unwrap();
                labels
                    .iter()
                    .all(|(k, v)| set.get_label_value(k).unwrap_or("") == *v)
            })
            .map(|s| number(&s.value))
            .collect();
        assert!(found.len() <= 1, "{family} {labels:?} matches {found:?}");
        found.first().copied()
    }

    /// Like [`Scrape::value`], `0` when absent: a counter family shows no sample, or
    /// is left out, until it is first incremented.
    fn count(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        if !self.0.families.contains_key(family) {
            return 0.0;
        }
        self.value(family, labels).unwrap_or(0.0)
    }

    /// Every label value of `label` in `family`.
    fn label_values(&self, family: &str, label: &str) -> BTreeSet<String> {
        self.samples(family)
            .iter()
            .filter_map(|s| {
                s.get_labelset()
                    .unwrap()
                    .get_label_value(label)
                    .map(str::to_owned)
            })
            .collect()
    }

    fn family_names(&self) -> BTreeSet<String> {
        self.0.families.keys().cloned().collect()
    }

    /// The names a PromQL query may use: `x_total` for a counter `x`, `x_bucket`,
    /// `x_sum` and `x_count` for a histogram `x`, `x` itself for a gauge.
    fn series_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        // A family declared with no sample is not a series a query can find.
        for (name, family) in self
            .0
            .families
            .iter()
            .filter(|(_, f)| f.iter_samples().next().is_some())
        {
            match family.family_type {
                OpenMetricsType::Counter => {
                    names.insert(format!("{name}_total"));
                }
                OpenMetricsType::Histogram => {
                    for suffix in ["bucket", "sum", "count"] {
                        names.insert(format!("{name}_{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.clone());
                }
            }
        }
        names
    }
}

fn deploy(id: &str, service: &str, sha: &str) -> Value {
    json!({"id": id, "kind": "deploy", "service": service, "git_sha": sha})
}

#[tokio::test]
async fn ingest_metrics_count_accepted_duplicate_and_refused_requests() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;

    let before = scrape(&ingest.url).await;
    assert_eq!(before.count("dora_ingest_events_accepted", &[]), 0.0);
    assert_eq!(
        before.count("dora_ingest_publish_duration_seconds", &[]),
        0.0
    );

    let batch = json!([
        deploy("m-1", "api", "aaaa01"),
        deploy("m-2", "api", "aaaa02"),
        deploy("m-3", "web", "aaaa03")
    ]);
    assert_eq!(
        post_events(&ingest.url, Some(CI_TOKEN), &batch).await.0,
        202
    );
    // The same three again: accepted, and all three duplicates.
    assert_eq!(
        post_events(&ingest.url, Some(CI_TOKEN), &batch).await.0,
        202
    );
    let late_commit = json!({"kind": "deploy", "service": "api", "git_sha": "abcd",
        "commit_at": "2026-01-02T00:00:00Z", "occurred_at": "2026-01-01T00:00:00Z"});
    assert_eq!(
        post_events(&ingest.url, Some(CI_TOKEN), &late_commit)
            .await
            .0,
        400
    );
    let typo = json!({"kind": "deploy", "service": "api", "git_sha": "abcd", "succeded": true});
    assert_eq!(post_events(&ingest.url, Some(CI_TOKEN), &typo).await.0, 400);
    let (status, _) = dora_system_tests::post_raw(
        &ingest.url,
        Some(CI_TOKEN),
        "application/json",
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        post_events(&ingest.url, Some("wrong-token-0123456789"), &batch)
            .await
            .0,
        401
    );

    let after = scrape(&ingest.url).await;
    assert_eq!(after.count("dora_ingest_events_accepted", &[]), 6.0);
    assert_eq!(after.count("dora_ingest_events_duplicates", &[]), 3.0);
    let rejected = |reason, field| {
        after.count(
            "dora_ingest_requests_rejected",
            &[("reason", reason), ("field", field)],
        )
    };
    assert_eq!(rejected("invalid_event", "commit_at"), 1.0);
    // The misspelt field is not a label value: the sender chose it.
    assert_eq!(rejected("invalid_event", "unknown"), 1.0);
    assert!(!after
        .label_values("dora_ingest_requests_rejected", "field")
        .contains("succeded"));
    assert_eq!(rejected("invalid_json", ""), 1.0);
    assert_eq!(rejected("unauthorized", ""), 1.0);
    let requests = |status| {
        after.count(
            "dora_ingest_http_requests",
            &[("method", "POST"), ("route", "/events"), ("status", status)],
        )
    };
    assert_eq!(
        (requests("202"), requests("400"), requests("401")),
        (2.0, 3.0, 1.0)
    );
    // Two publishing requests, each timed once; refused requests never publish.
    assert_eq!(
        after.count("dora_ingest_publish_duration_seconds", &[]),
        2.0
    );
    assert_eq!(after.count("dora_ingest_publish_failures", &[]), 0.0);
    let latency = after.value(
        "dora_ingest_http_request_duration_seconds",
        &[("method", "POST"), ("route", "/events")],
    );
    assert_eq!(latency, Some(6.0));

    ingest.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn projector_metrics_follow_the_stream_until_the_lag_is_zero() {
    let env = TestEnv::new().await;
    // A backlog waits in the stream before the projector starts.
    for i in 0..40 {
        let body = deploy(&format!("p-{i}"), "api", &format!("{i:06x}"));
        env.publish_raw(
            &env.subject("prod", "api", "deploy"),
            body.to_string().as_bytes(),
            Some(&format!("p-{i}")),
        )
        .await;
    }
    // One invalid message: its subject disagrees with its body.
    env.publish_raw(
        &env.subject("prod", "web", "deploy"),
        deploy("p-bad", "api", "abcd").to_string().as_bytes(),
        Some("p-bad"),
    )
    .await;
    // And one event the store already holds, as if another path had brought it.
    env.seed(&[deploy("p-0", "api", "000000")]).await;
    let last_seq = env
        .js
        .get_stream(&env.stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .last_sequence;
    assert_eq!(last_seq, 41);

    let projector = env.spawn_projector(env.projector_config()).await;
    eventually(
        "the projector applied the backlog and reports no lag",
        || async {
            let s = scrape(&projector.url).await;
            s.count("dora_projector_events_applied", &[]) == 39.0
                && s.value("dora_projector_consumer_lag", &[]) == Some(0.0)
                && s.value("dora_projector_consumer_ack_pending", &[]) == Some(0.0)
        },
    )
    .await;
    // Nothing else flows now, so the next scrape shows the same totals.
    let s = scrape(&projector.url).await;
    assert_eq!(s.count("dora_projector_events_duplicates", &[]), 1.0);
    assert_eq!(s.count("dora_projector_events_rejected", &[]), 1.0);
    assert_eq!(
        s.value("dora_projector_last_applied_sequence", &[]),
        Some(last_seq as f64)
    );
    assert!(s.count("dora_projector_batch_duration_seconds", &[]) >= 1.0);
    assert_eq!(env.event_count().await, 40);

    // New traffic moves the counters and the sequence again.
    env.publish_raw(
        &env.subject("staging", "api", "deploy"),
        json!({"id": "p-new", "kind": "deploy", "service": "api", "environment": "staging", "git_sha": "beef"})
            .to_string()
            .as_bytes(),
        Some("p-new"),
    )
    .await;
    eventually("the new event is applied and counted", || async {
        let s = scrape(&projector.url).await;
        s.count("dora_projector_events_applied", &[]) == 40.0
            && s.value("dora_projector_last_applied_sequence", &[]) == Some(42.0)
            && s.value("dora_projector_consumer_lag", &[]) == Some(0.0)
    })
    .await;
    // The projector's own routes are counted like the other processes' are.
    let s = scrape(&projector.url).await;
    assert!(
        s.count(
            "dora_projector_http_requests",
            &[("route", "/metrics"), ("status", "200")]
        ) >= 2.0
    );

    projector.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn projector_is_ready_only_with_its_database() {
    let env = TestEnv::new().await;

    // A closed port: up, not ready, and it says why.
    let mut config = env.projector_config();
    config.database.url = "postgres://postgres@127.0.0.1:1/dora".to_owned();
    let unreachable = env.spawn_projector(config).await;
    let (status, body) = get_json(&unreachable.url, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("PostgreSQL"),
        "{body}"
    );
    assert_eq!(get_json(&unreachable.url, "/healthz").await.0, 200);
    unreachable.stop().await.unwrap();

    // A database that does not exist on a server that answers: the projector owns the
    // store, so it creates the database and becomes ready without anyone's help.
    let missing = format!("{}_later", env.db_name);
    let mut config = env.projector_config();
    config.database.url = env.database_url.replace(&env.db_name, &missing);
    let created = env.spawn_projector(config).await;
    eventually(
        "the projector creates its database and becomes ready",
        || async { get_json(&created.url, "/readyz").await.0 == 200 },
    )
    .await;
    let scraped = scrape(&created.url).await;
    assert_eq!(scraped.count("dora_projector_events_applied", &[]), 0.0);
    created.stop().await.unwrap();
    sqlx::query(&format!("DROP DATABASE {missing} WITH (FORCE)"))
        .execute(&env.pool)
        .await
        .unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn api_metrics_time_routes_and_export_the_dora_gauges() {
    let env = TestEnv::new().await;
    let now = chrono::Utc::now();
    let at = |hours: i64| (now - chrono::TimeDelta::hours(hours)).to_rfc3339();
    env.seed(&[
        json!({"id": "d1", "kind": "deploy", "service": "api", "git_sha": "aaa1", "commit_at": at(30), "occurred_at": at(28)}),
        json!({"id": "d2", "kind": "deploy", "service": "api", "git_sha": "aaa2", "commit_at": at(26), "occurred_at": at(24)}),
        json!({"id": "d3", "kind": "deploy", "service": "api", "git_sha": "aaa3", "succeeded": false, "occurred_at": at(20)}),
        json!({"id": "d4", "kind": "deploy", "service": "web", "git_sha": "bbb1", "occurred_at": at(10)}),
        json!({"id": "i1", "kind": "incident_opened", "service": "web", "ref_id": "INC-1", "occurred_at": at(9)}),
        json!({"id": "i2", "kind": "incident_closed", "service": "web", "ref_id": "INC-1", "occurred_at": at(7)}),
        // Made while web's incident ran: rework.
        json!({"id": "d6", "kind": "deploy", "service": "web", "git_sha": "bbb3", "occurred_at": at(8)}),
        json!({"id": "s1", "kind": "deploy", "service": "api", "environment": "staging", "git_sha": "ccc1", "occurred_at": at(5)}),
        // Environments with nothing in the week but an incident still open (measured),
        // and with nothing at all in it (not measured).
        json!({"id": "o1", "kind": "incident_opened", "service": "db", "environment": "dr", "ref_id": "INC-2", "occurred_at": at(40 * 24)}),
        json!({"id": "q1", "kind": "deploy", "service": "api", "environment": "qa", "git_sha": "ddd1", "occurred_at": at(30 * 24)}),
    ])
    .await;
    let api = env.spawn_api().await;
    assert_eq!(get_json(&api.url, "/dora").await.0, 200);
    assert_eq!(get_json(&api.url, "/dora?service=api&days=7").await.0, 200);
    assert_eq!(get_json(&api.url, "/no-such-page").await.0, 404);

    let s = scrape(&api.url).await;
    // Latency by route: two requests with different URIs are one route.
    assert_eq!(
        s.value(
            "dora_api_http_request_duration_seconds",
            &[("method", "GET"), ("route", "/dora")]
        ),
        Some(2.0)
    );
    let routes = s.label_values("dora_api_http_request_duration_seconds", "route");
    assert!(
        routes
            .iter()
            .all(|r| !r.contains('?') && r != "/no-such-page"),
        "{routes:?}"
    );
    assert!(routes.contains("unmatched"), "{routes:?}");

    // Each gauge equals what /dora answers for the same scope.
    for (service, environment) in [
        (None, "prod"),
        (Some("api"), "prod"),
        (Some("web"), "prod"),
        (Some("api"), "staging"),
    ] {
        let mut path = format!("/dora?days=7&environment={environment}");
        if let Some(service) = service {
            path.push_str(&format!("&service={service}"));
        }
        let (_, report) = get_json(&api.url, &path).await;
        let labels = [
            ("environment", environment),
            ("service", service.unwrap_or("")),
        ];
        let gauge = |name| s.value(name, &labels);
        let context = format!("{path}: {report}");
        assert_eq!(
            gauge("dora_deploys"),
            report["deployment_frequency"]["deploys"].as_f64(),
            "{context}"
        );
        assert_eq!(
            gauge("dora_deployment_frequency_per_day"),
            report["deployment_frequency"]["per_day"].as_f64(),
            "{context}"
        );
        assert_eq!(
            gauge("dora_lead_time_median_seconds"),
            report["lead_time"]["median_seconds"].as_f64(),
            "{context}"
        );
        assert_eq!(
            gauge("dora_change_failure_rate"),
            report["change_failure_rate"]["rate"].as_f64(),
            "{context}"
        );
        assert_eq!(
            gauge("dora_deploy_attempts"),
            report["change_failure_rate"]["attempts"].as_f64(),
            "{context}"
        );
        assert_eq!(
            gauge("dora_deploys_failed"),
            report["change_failure_rate"]["failed"].as_f64(),
            "{context}"
        );
        assert_eq!(
            gauge("dora_time_to_restore_median_seconds"),
            report["time_to_restore"]["median_seconds"].as_f64(),
            "{context}"
        );
        assert_eq!(
            gauge("dora_open_incidents"),
            report["time_to_restore"]["open_incidents"].as_f64(),
            "{context}"
        );
        assert_eq!(
            gauge("dora_rework_rate"),
            report["rework_rate"]["rate"].as_f64(),
            "{context}"
        );
    }
    assert_eq!(
        s.label_values("dora_deploy_attempts", "environment"),
        ["dr", "prod", "staging"].map(str::to_owned).into(),
        "every environment with something in the week, no other"
    );
    assert_eq!(
        s.value(
            "dora_open_incidents",
            &[("environment", "dr"), ("service", "")]
        ),
        Some(1.0)
    );
    // The fixture's own numbers, so the comparison above cannot pass on two wrong sides.
    let all = [("environment", "prod"), ("service", "")];
    assert_eq!(s.value("dora_deploy_attempts", &all), Some(5.0));
    assert_eq!(s.value("dora_rework_rate", &all), Some(0.2));
    assert_eq!(s.value("dora_deploys_failed", &all), Some(1.0));
    assert_eq!(s.value("dora_lead_time_median_seconds", &all), Some(7200.0));
    let web = [("environment", "prod"), ("service", "web")];
    assert_eq!(
        s.value("dora_time_to_restore_median_seconds", &web),
        Some(7200.0)
    );
    assert_eq!(s.value("dora_rework_rate", &web), Some(0.5));
    // No samples, no series: web has no lead time, as /dora says null, and dr no
    // attempts, so no rework rate.
    assert_eq!(s.value("dora_lead_time_median_seconds", &web), None);
    assert_eq!(
        s.value(
            "dora_rework_rate",
            &[("environment", "dr"), ("service", "")]
        ),
        None
    );

    // New events move the gauges (after the short cache).
    env.seed(&[json!({"id": "d5", "kind": "deploy", "service": "web", "git_sha": "bbb2", "occurred_at": at(1)})])
        .await;
    eventually("the web deploy count rises to 3", || async {
        scrape(&api.url).await.value("dora_deploys", &web) == Some(3.0)
    })
    .await;

    api.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn api_metrics_count_alert_checks_firings_and_deliveries() {
    let env = TestEnv::new().await;
    let now = chrono::Utc::now();
    let week = chrono::TimeDelta::days(7);
    // checkout: 0 of 4 attempts failed last week, 3 of 7 this week; search: 40 clean
    // attempts each week, so all services together stay within tolerance.
    let mut events = Vec::new();
    for (service, end, n, failed) in [
        ("checkout", now - week, 4, 0),
        ("checkout", now, 7, 3),
        ("search", now - week, 40, 0),
        ("search", now, 40, 0),
    ] {
        for i in 0..n {
            let at = end - chrono::TimeDelta::hours(1 + (i as i64 * 160) / n as i64);
            events.push(
                json!({"id": format!("{service}-{}-{i}", end.timestamp()), "kind": "deploy",
                "service": service, "git_sha": format!("{:08x}{i:04x}", end.timestamp()),
                "succeeded": i >= failed, "occurred_at": at.to_rfc3339()}),
            );
        }
    }
    env.seed(&events).await;
    let mut config = env.api_config();
    config.alerts.interval = std::time::Duration::from_secs(1);
    let api = env.spawn_api_with(config).await;

    eventually(
        "the alert loop fired once and logged its message",
        || async {
            let s = scrape(&api.url).await;
            s.count("dora_api_alert_checks", &[("outcome", "checked")]) >= 1.0
                && s.count("dora_api_alert_deliveries", &[("outcome", "logged")]) == 1.0
        },
    )
    .await;
    let s = scrape(&api.url).await;
    assert_eq!(
        s.count("dora_api_alert_changes", &[("kind", "firing")]),
        1.0
    );
    assert_eq!(
        s.count("dora_api_alert_changes", &[("kind", "recovered")]),
        0.0
    );
    assert_eq!(s.value("dora_api_alert_scopes_regressed", &[]), Some(1.0));
    assert_eq!(
        s.count("dora_api_alert_deliveries", &[("outcome", "delivered")]),
        0.0
    );
    assert_eq!(
        s.count("dora_api_alert_checks", &[("outcome", "failed")]),
        0.0
    );
    // Later checks find it still firing: no second message.
    let checks = s.count("dora_api_alert_checks", &[("outcome", "checked")]);
    eventually("another check ran", || async {
        scrape(&api.url)
            .await
            .count("dora_api_alert_checks", &[("outcome", "checked")])
            > checks
    })
    .await;
    let s = scrape(&api.url).await;
    assert_eq!(
        s.count("dora_api_alert_changes", &[("kind", "firing")]),
        1.0
    );
    assert_eq!(
        s.count("dora_api_alert_deliveries", &[("outcome", "logged")]),
        1.0
    );

    api.stop().await.unwrap();
    env.cleanup().await;
}

/// Every `dora_...` name in the dashboard's queries.
fn dashboard_series() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/dora.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(
        exprs.len() >= 10,
        "the dashboard has {} queries",
        exprs.len()
    );
    let mut names = BTreeSet::new();
    for expr in exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("dora_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            // Only metric names: not a label value such as `job="dora_api"`.
            let before = rest[..at].chars().last();
            if before != Some('"') {
                names.insert(tail[..end].to_owned());
            }
            rest = &tail[end..];
        }
    }
    names
}

fn collect_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "query", Value::String(expr)) => out.push(expr.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_grafana_dashboard_names_only_exported_series() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let projector = env.spawn_projector(env.projector_config()).await;
    let mut config = env.api_config();
    // The alert loop checks at once and then every second, so its series have samples.
    config.alerts.interval = std::time::Duration::from_secs(1);
    let api = env.spawn_api_with(config).await;
    let sha = "abcd01";
    let ago = |minutes| (chrono::Utc::now() - chrono::TimeDelta::minutes(minutes)).to_rfc3339();
    let events = json!([
        {"id": "g-1", "kind": "deploy", "service": "api", "git_sha": sha,
         "commit_at": ago(120), "occurred_at": ago(60)},
        {"id": "g-2", "kind": "incident_opened", "service": "api", "ref_id": "G-1", "git_sha": sha,
         "occurred_at": ago(50)},
        {"id": "g-3", "kind": "incident_closed", "service": "api", "ref_id": "G-1",
         "occurred_at": ago(40)},
    ]);
    assert_eq!(
        post_events(&ingest.url, Some(CI_TOKEN), &events).await.0,
        202
    );
    assert_eq!(
        post_events(&ingest.url, Some(CI_TOKEN), &json!({"kind": "nope"}))
            .await
            .0,
        400
    );
    env.wait_for_events(3).await;
    assert_eq!(get_json(&api.url, "/dora").await.0, 200);
    eventually("an alert check ran", || async {
        scrape(&api.url)
            .await
            .count("dora_api_alert_checks", &[("outcome", "checked")])
            >= 1.0
    })
    .await;

    let mut exported = BTreeSet::new();
    for url in [&ingest.url, &projector.url, &api.url] {
        exported.extend(scrape(url).await.series_names());
    }
    let queried = dashboard_series();
    let missing: Vec<_> = queried.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries series nobody exports: {missing:?}"
    );
    // It shows each process and the DORA gauges.
    for prefix in [
        "dora_ingest_",
        "dora_projector_",
        "dora_api_",
        "dora_deploy",
        "dora_change_failure_rate",
        "dora_rework_rate",
    ] {
        assert!(
            queried.iter().any(|q| q.starts_with(prefix)),
            "nothing from {prefix}"
        );
    }

    for running in [ingest, projector, api] {
        running.stop().await.unwrap();
    }
    env.cleanup().await;
}

#[test]
fn the_grafana_dashboard_is_importable() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/dora.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // The data source is a variable over the Prometheus data sources, not one of
    // ours: the file imports, and provisions, into any Grafana as it is.
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(variables.iter().any(|v| v["name"] == "DS_PROMETHEUS"
        && v["type"] == "datasource"
        && v["query"] == "prometheus"));
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    assert!(dashboard.get("id").is_none(), "an id would clash on import");
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{}",
            panel["title"]
        );
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}");
        }
    }
    // Panel ids are unique, or Grafana mixes their settings up.
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len());
}

// Current-thread runtime: the processes' tasks run on this thread, so the subscriber
// set for this thread sees their logs and no other test's.
#[tokio::test(flavor = "current_thread")]
async fn json_logs_are_one_json_object_per_line() {
    let env = TestEnv::new().await;
    let (captured, guard) = Captured::json_logs("dora_ingest=info");
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let event = json!({"id": "log-1", "kind": "deploy", "service": "api", "git_sha": "abcd"});
    assert_eq!(
        post_events(&ingest.url, Some(CI_TOKEN), &event).await.0,
        202
    );
    ingest.stop().await.unwrap();
    drop(guard);

    let text = captured.text();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}")))
        .collect();
    let accepted = lines
        .iter()
        .find(|l| l["message"] == "events accepted")
        .unwrap_or_else(|| panic!("no `events accepted` line in {text}"));
    assert_eq!(accepted["source"], "ci");
    assert_eq!(accepted["accepted"], 1);
    assert_eq!(accepted["level"], "INFO");
    assert!(accepted["timestamp"].is_string());
    assert!(!text.contains('\u{1b}'), "no terminal escapes in JSON logs");
    env.cleanup().await;
}

#[test]
fn text_logs_to_a_file_carry_no_colour_codes() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber =
        dora_event::process::subscriber("system=info", LogFormat::Text, false, move || {
            writer.clone()
        });
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(answer = 42, "plain words");
    });
    let text = captured.text();
    assert!(
        text.contains("plain words") && text.contains("answer=42"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "{text:?}");
}

#[test]
fn a_bad_log_format_is_refused_naming_the_setting() {
    let ingest = dora_ingest::Config::try_parse_from([
        "dora-ingest",
        "--tokens",
        "ci=0123456789abcdef",
        "--log-format",
        "xml",
    ]);
    let projector =
        dora_projector::Config::try_parse_from(["dora-projector", "--log-format", "yaml"]);
    let api = dora_api::Config::try_parse_from(["dora-api", "--log-format", "JSONL"]);
    for err in [
        ingest.unwrap_err(),
        projector.unwrap_err(),
        api.unwrap_err(),
    ] {
        let message = err.to_string();
        assert!(message.contains("DORA_LOG_FORMAT"), "{message}");
        assert!(
            message.contains("text") && message.contains("json"),
            "{message}"
        );
    }
    let api = dora_api::Config::try_parse_from(["dora-api", "--log-format", "json"]).unwrap();
    assert_eq!(api.log.format, LogFormat::Json);
    let api = dora_api::Config::try_parse_from(["dora-api"]).unwrap();
    assert_eq!(api.log.format, LogFormat::Text);
}
