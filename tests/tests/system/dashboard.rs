//! `GET /dashboard`, `/dora/failures` and the performance levels over HTTP, against
//! fixtures with known answers, and the page in a real headless Chromium.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use dora_system_tests::{get_json, TestEnv};
use serde_json::{json, Value};

const AS_OF: &str = "2026-03-16T00:00:00Z";
/// The one event field that may hold any printable text, as an attacker would send it.
const EVIL_REF: &str = r#"<script>alert("x")</script> & 'q'"#;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn deploy(service: &str, sha: &str, at: DateTime<Utc>, lead_hours: Option<f64>) -> Value {
    let mut d = json!({"id": format!("{service}-{sha}"), "kind": "deploy", "service": service,
                       "git_sha": sha, "occurred_at": at.to_rfc3339()});
    if let Some(h) = lead_hours {
        d["commit_at"] = json!((at - TimeDelta::seconds((h * 3600.0) as i64)).to_rfc3339());
    }
    d
}

fn failed(service: &str, sha: &str, at: DateTime<Utc>) -> Value {
    let mut d = deploy(service, sha, at, None);
    d["succeeded"] = json!(false);
    d
}

fn incident(service: &str, ref_id: &str, opened: &str, closed: Option<&str>) -> Vec<Value> {
    let mut events = vec![
        json!({"id": format!("open-{service}-{}", opened.replace(':', "")), "kind": "incident_opened",
                                  "service": service, "ref_id": ref_id, "occurred_at": opened}),
    ];
    if let Some(closed) = closed {
        events.push(json!({"id": format!("close-{service}-{}", closed.replace(':', "")), "kind": "incident_closed",
                           "service": service, "ref_id": ref_id, "occurred_at": closed}));
    }
    events
}

/// `api` got better on every metric this week, `web` worse on every one, and `batch`
/// has no lead time or restore data in either week. Current window 03-09..03-16,
/// prior 03-02..03-09. Rework: api 1 of 4 attempts last week (during INC-Q), 1 of 7
/// this week (during the incident still open); web none, then 1 of 4 (during INC-WC).
fn review_fixture() -> Vec<Value> {
    let day = |d: i64| t("2026-03-09T10:00:00Z") + TimeDelta::days(d);
    let mut events = Vec::new();
    // api, current: 7 deploys (lead 1,2,3,1,2,3,2 h: median 2 h), the last rolled back.
    for (i, lead) in [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 2.0].into_iter().enumerate() {
        events.push(deploy(
            "api",
            &format!("a{i:03x}"),
            day(i as i64),
            Some(lead),
        ));
    }
    events.push(
        json!({"id": "api-rollback", "kind": "rollback", "service": "api", "git_sha": "a006",
                       "occurred_at": "2026-03-15T12:00:00Z"}),
    );
    // api, prior: 2 deploys (10 h, 14 h: median 12 h) and 2 failed attempts.
    events.push(deploy("api", "b000", day(-7), Some(10.0)));
    events.push(deploy("api", "b001", day(-5), Some(14.0)));
    events.push(failed("api", "b002", day(-4)));
    events.push(failed("api", "b003", day(-3)));
    events.extend(incident(
        "api",
        "INC-P",
        "2026-03-03T00:00:00Z",
        Some("2026-03-04T00:00:00Z"),
    ));
    // As long as INC-P, so the prior median stays 24 h; b002 is attempted during it.
    events.extend(incident(
        "api",
        "INC-Q",
        "2026-03-05T00:00:00Z",
        Some("2026-03-06T00:00:00Z"),
    ));
    events.extend(incident(
        "api",
        "INC-C",
        "2026-03-10T00:00:00Z",
        Some("2026-03-10T00:30:00Z"),
    ));
    events.extend(incident("api", EVIL_REF, "2026-03-15T06:00:00Z", None));
    // web, prior: 7 deploys of 1 h lead, a 30 min incident.
    for i in 0..7 {
        events.push(deploy("web", &format!("c{i:03x}"), day(i - 7), Some(1.0)));
    }
    events.extend(incident(
        "web",
        "INC-WP",
        "2026-03-05T00:00:00Z",
        Some("2026-03-05T00:30:00Z"),
    ));
    // web, current: 2 deploys of 12 h lead and 2 failed attempts, a 24 h incident.
    events.push(deploy("web", "d000", day(1), Some(12.0)));
    events.push(deploy("web", "d001", day(2), Some(12.0)));
    events.push(failed("web", "d002", day(3)));
    events.push(failed("web", "d003", day(4)));
    events.extend(incident(
        "web",
        "INC-WC",
        "2026-03-12T00:00:00Z",
        Some("2026-03-13T00:00:00Z"),
    ));
    // batch: one deploy a week without a commit time, no incidents.
    events.push(deploy("batch", "e000", day(-6), None));
    events.push(deploy("batch", "e001", day(2), None));
    events
}

async fn get_html(base: &str, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("{base}{path}")).await.expect("GET");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The visible text of some HTML: tags become spaces, whitespace collapses.
fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Decodes the character references askama and browsers write.
fn decode(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find(';').expect("a reference ends with ;");
        let entity = &rest[1..end];
        out.push(match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            _ => {
                let code = entity.strip_prefix('#').expect("a numeric reference");
                char::from_u32(code.parse().unwrap()).unwrap()
            }
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The text of the card of `metric`, without its chart.
fn card(html: &str, metric: &str) -> String {
    let article = html
        .split("<article class=\"card\">")
        .skip(1)
        .find(|a| a.contains(&format!("<h2>{metric} ")))
        .unwrap_or_else(|| panic!("no card for {metric}"));
    let before_chart = article.split("<svg").next().unwrap();
    text(before_chart)
}

fn assert_card(html: &str, metric: &str, expected: &[&str]) {
    let card = card(html, metric);
    for e in expected {
        assert!(card.contains(e), "{metric}: `{e}` not in `{card}`");
    }
}

#[tokio::test]
async fn cards_show_current_prior_change_and_direction_by_polarity() {
    let env = TestEnv::new().await;
    env.seed(&review_fixture()).await;
    let api = env.spawn_api().await;

    let (status, better) =
        get_html(&api.url, &format!("/dashboard?as_of={AS_OF}&service=api")).await;
    assert_eq!(status, 200, "{better}");
    assert_card(
        &better,
        "Deployment frequency",
        &[
            "elite",
            "1 per day",
            "7 successful deploys in 7 days",
            "▲ better",
            "+0.7 per day",
            "Prior window: 2 per week",
        ],
    );
    assert_card(
        &better,
        "Lead time for changes",
        &[
            "elite",
            "2 hours",
            "median of 7 deploys",
            "▼ better",
            "−10 hours",
            "Prior window: 12 hours",
        ],
    );
    assert_card(
        &better,
        "Change failure rate",
        &[
            "medium",
            "14.3 %",
            "1 of 7 attempts failed",
            "▼ better",
            "−35.7 points",
            "Prior window: 50%",
        ],
    );
    assert_card(
        &better,
        "Time to restore",
        &[
            "elite",
            "30 minutes",
            "1 incident restored · 1 open",
            "▼ better",
            "−23.5 hours",
            "Prior window: 24 hours",
        ],
    );

    // No level: the badge is left out, not shown as "no level".
    assert_card(
        &better,
        "Rework rate",
        &[
            "lower is better",
            "14.3 %",
            "1 of 7 attempts during an incident",
            "▼ better",
            "−10.7 points",
            "Prior window: 25%",
        ],
    );
    assert!(!card(&better, "Rework rate").contains("level"));

    let (status, worse) =
        get_html(&api.url, &format!("/dashboard?as_of={AS_OF}&service=web")).await;
    assert_eq!(status, 200);
    assert_card(
        &worse,
        "Deployment frequency",
        &[
            "high",
            "2 per week",
            "▼ worse",
            "−0.7 per day",
            "Prior window: 1 per day",
        ],
    );
    assert_card(
        &worse,
        "Lead time for changes",
        &["12 hours", "▲ worse", "+11 hours", "Prior window: 1 hour"],
    );
    assert_card(
        &worse,
        "Change failure rate",
        &["low", "50 %", "▲ worse", "+50 points", "Prior window: 0%"],
    );
    assert_card(
        &worse,
        "Time to restore",
        &[
            "medium",
            "24 hours",
            "▲ worse",
            "+23.5 hours",
            "Prior window: 30 minutes",
        ],
    );
    assert_card(
        &worse,
        "Rework rate",
        &[
            "25 %",
            "1 of 4 attempts",
            "▲ worse",
            "+25 points",
            "Prior window: 0%",
        ],
    );

    let (status, quiet) =
        get_html(&api.url, &format!("/dashboard?as_of={AS_OF}&service=batch")).await;
    assert_eq!(status, 200);
    // A quiet service is a known one: its name stays in the field, and no notice.
    assert!(
        quiet.contains("list=\"service-names\" value=\"batch\""),
        "{quiet}"
    );
    assert!(!quiet.contains("No deploy or incident of"), "{quiet}");
    // A name the environment has no event of is said so, not shown as an idle service.
    let (status, typo) =
        get_html(&api.url, &format!("/dashboard?as_of={AS_OF}&service=bacth")).await;
    assert_eq!(status, 200);
    assert!(
        typo.contains("No deploy or incident of bacth is recorded in prod"),
        "{typo}"
    );
    for metric in ["Lead time for changes", "Time to restore"] {
        assert_card(
            &quiet,
            metric,
            &[
                "no level",
                "no data",
                "– no data to compare",
                "Prior window: no data",
            ],
        );
        let card = card(&quiet, metric);
        assert!(
            !card.contains("▲ ") && !card.contains("▼ ") && !card.contains("= "),
            "{card}"
        );
    }
    assert_card(
        &quiet,
        "Deployment frequency",
        &["1 per week", "= no change", "Prior window: 1 per week"],
    );
    assert_card(&quiet, "Change failure rate", &["0 %", "= no change"]);
    assert_card(
        &quiet,
        "Rework rate",
        &["0 %", "0 of 1 attempt during an incident", "= no change"],
    );

    // Each chart has a point or a no-data mark for each of the 12 windows.
    for page in [&better, &worse, &quiet] {
        let charts: Vec<&str> = page.split("<svg class=\"chart\"").skip(1).collect();
        assert_eq!(charts.len(), 5);
        for chart in charts {
            let chart = chart.split("</svg>").next().unwrap();
            assert_eq!(
                chart.matches("<circle").count() + chart.matches("no data</title>").count(),
                12
            );
        }
    }
    api.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn the_page_lists_services_failures_and_open_incidents_escaped() {
    let env = TestEnv::new().await;
    env.seed(&review_fixture()).await;
    let api = env.spawn_api().await;
    let (status, html) = get_html(&api.url, &format!("/dashboard?as_of={AS_OF}")).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        !html.contains("<script"),
        "no event text reaches the page unescaped"
    );
    assert!(!html.contains(EVIL_REF));
    let page = text(&html);
    assert!(
        decode(&page).contains(&format!("{EVIL_REF} api")),
        "the ref_id is shown, as text: {page}"
    );

    // Per service, most attempts first, each linking to its own page.
    let (a, w, b) = (
        page.find("api 7 ").unwrap(),
        page.find("web 4 ").unwrap(),
        page.find("batch 1 ").unwrap(),
    );
    assert!(a < w && w < b, "{page}");
    let pinned = "as_of=2026-03-16T00%3A00%3A00Z";
    // Attribute values as the browser reads them.
    let attributes = decode(&html);
    assert!(attributes.contains(&format!(
        "href=\"/dashboard?days=7&{pinned}&service=web&environment=prod\""
    )));

    // Failed deploys of the window: api's rolled-back a006 and web's two failed attempts.
    assert!(page.contains("Failed deploys (3)"), "{page}");
    assert!(
        page.contains("api a006 15 Mar 2026 10:00 rolled back 2 h later ( api-rollback )"),
        "{page}"
    );
    assert!(
        page.contains("web d003 13 Mar 2026 10:00 the attempt itself failed ( web-d003 )"),
        "{page}"
    );
    // Open incidents, by ref_id, with how long they have been open at the window's end.
    assert!(page.contains("Open incidents (1)"), "{page}");
    assert!(page.contains("api 15 Mar 2026 06:00 18 h"), "{page}");
    // The form suggests every service with events as the reader types, and links to
    // the JSON behind the page.
    let datalist = &html[html.find("<datalist id=\"service-names\">").unwrap()..];
    let datalist = &datalist[..datalist.find("</datalist>").unwrap()];
    for service in ["api", "batch", "web"] {
        assert!(
            datalist.contains(&format!("<option value=\"{service}\">")),
            "{service}: {datalist}"
        );
    }
    assert!(html.contains("list=\"service-names\" value=\"\""), "{html}");
    assert!(!page.contains("No deploy or incident of"), "{page}");
    for path in ["/dora", "/dora/trend", "/dora/failures"] {
        let href = format!("href=\"{path}?days=7&{pinned}&environment=prod\"");
        assert!(attributes.contains(&href), "{href}");
    }
    // The form's "all services" sends an empty service.
    let (status, _) = get_html(
        &api.url,
        &format!("/dashboard?days=7&service=&environment=prod&as_of={AS_OF}"),
    )
    .await;
    assert_eq!(status, 200);

    // `/` leads to the page.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects
        .get(format!("{}/", api.url))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(response.headers()["location"], "/dashboard");

    for (query, param) in [
        ("days=0", "days"),
        ("offset=7", "offset"),
        ("service=a.b", "service"),
        ("as_of=soon", "as_of"),
        ("days=7&days=7", "days"),
    ] {
        let (status, body) = get_json(&api.url, &format!("/dashboard?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["param"], param, "{query}: {body}");
    }
    api.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn failures_name_what_failed_each_attempt_and_total_the_failed_count() {
    let env = TestEnv::new().await;
    let mut events = review_fixture();
    // An incident naming a deployed sha fails it too.
    events.push(
        json!({"id": "inc-sha", "kind": "incident_opened", "service": "api", "ref_id": "INC-S",
                       "git_sha": "a002", "occurred_at": "2026-03-11T11:00:00Z"}),
    );
    env.seed(&events).await;
    let api = env.spawn_api().await;
    let (status, body) = get_json(&api.url, &format!("/dora/failures?as_of={AS_OF}")).await;
    assert_eq!(status, 200, "{body}");
    let (_, dora) = get_json(&api.url, &format!("/dora?as_of={AS_OF}")).await;
    assert_eq!(body["total"], dora["change_failure_rate"]["failed"]);
    assert_eq!(body["total"], 4);
    assert_eq!(body["window"], dora["window"]);
    let failures = body["failures"].as_array().unwrap();
    let summary: Vec<(&str, &str, &str)> = failures
        .iter()
        .map(|f| {
            (
                f["deploy_id"].as_str().unwrap(),
                f["failed_by"]["id"].as_str().unwrap(),
                f["failed_by"]["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("api-a006", "api-rollback", "rollback"),
            ("web-d003", "web-d003", "deploy"),
            ("web-d002", "web-d002", "deploy"),
            ("api-a002", "inc-sha", "incident_opened"),
        ],
        "newest first"
    );
    assert_eq!(failures[0]["service"], "api");
    assert_eq!(failures[0]["git_sha"], "a006");
    assert_eq!(failures[0]["occurred_at"], "2026-03-15T10:00:00Z");
    assert_eq!(
        failures[0]["failed_by"]["occurred_at"],
        "2026-03-15T12:00:00Z"
    );

    // Asked before the rollback, a006 had not failed.
    let (_, early) = get_json(&api.url, "/dora/failures?as_of=2026-03-15T11:00:00Z&days=7").await;
    assert_eq!(early["total"], 3);
    // limit cuts the list, not the total; an empty page still has its total.
    let (_, limited) = get_json(&api.url, &format!("/dora/failures?as_of={AS_OF}&limit=1")).await;
    assert_eq!(
        (
            limited["total"].as_i64(),
            limited["failures"].as_array().unwrap().len()
        ),
        (Some(4), 1)
    );
    let (_, none) = get_json(
        &api.url,
        &format!("/dora/failures?as_of={AS_OF}&service=batch"),
    )
    .await;
    assert_eq!(none["total"], 0);
    assert_eq!(none["failures"], json!([]));
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("windows=2", "windows"),
    ] {
        let (status, body) = get_json(&api.url, &format!("/dora/failures?{query}")).await;
        assert_eq!(
            (status, body["param"].as_str()),
            (400, Some(param)),
            "{query}"
        );
    }
    for (query, param) in [
        ("windows=0", "windows"),
        ("windows=105", "windows"),
        ("limit=5", "limit"),
    ] {
        let (status, body) = get_json(&api.url, &format!("/dora/trend?{query}")).await;
        assert_eq!(
            (status, body["param"].as_str()),
            (400, Some(param)),
            "{query}"
        );
    }
    api.stop().await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn levels_at_each_thresholds_boundary() {
    let env = TestEnv::new().await;
    let at = |h: i64| t("2026-03-09T01:00:00Z") + TimeDelta::hours(h);
    let mut events = Vec::new();
    // on-day: 7 deploys in 7 days (1 a day: elite), lead exactly 1 day (high), a
    // restore of exactly 1 hour (high), no failure (elite).
    for i in 0..7 {
        events.push(deploy(
            "on-day",
            &format!("a{i:03x}"),
            at(24 * i),
            Some(24.0),
        ));
    }
    events.extend(incident(
        "on-day",
        "R-1",
        "2026-03-10T00:00:00Z",
        Some("2026-03-10T01:00:00Z"),
    ));
    // on-week: 1 deploy in 7 days (1/7: high), lead exactly 7 days (medium), restore
    // exactly 1 day (medium).
    events.push(deploy("on-week", "b000", at(5), Some(7.0 * 24.0)));
    events.extend(incident(
        "on-week",
        "R-2",
        "2026-03-10T00:00:00Z",
        Some("2026-03-11T00:00:00Z"),
    ));
    // on-month: lead exactly 30 days (low), restore exactly 7 days (low).
    events.push(deploy("on-month", "c000", at(5), Some(30.0 * 24.0)));
    events.extend(incident(
        "on-month",
        "R-3",
        "2026-03-08T00:00:00Z",
        Some("2026-03-15T00:00:00Z"),
    ));
    // 20 attempts each: 1, 2, 3 and 4 failed (5%, 10%, 15%, 20%).
    for (service, failures) in [("cfr-5", 1), ("cfr-10", 2), ("cfr-15", 3), ("cfr-20", 4)] {
        for i in 0..20 {
            let sha = format!("d{i:03x}");
            events.push(if i < failures {
                failed(service, &sha, at(i))
            } else {
                deploy(service, &sha, at(i), None)
            });
        }
    }
    env.seed(&events).await;
    let api = env.spawn_api().await;
    let level = |body: &Value, metric: &str| body[metric]["level"].as_str().map(str::to_owned);
    let get = |service: &str, days: u32| {
        let url = api.url.clone();
        let path = format!("/dora?as_of={AS_OF}&service={service}&days={days}");
        async move { get_json(&url, &path).await.1 }
    };

    let on_day = get("on-day", 7).await;
    assert_eq!(on_day["levels"], "dora-2023");
    assert_eq!(
        level(&on_day, "deployment_frequency").as_deref(),
        Some("elite")
    );
    assert_eq!(level(&on_day, "lead_time").as_deref(), Some("high"));
    assert_eq!(level(&on_day, "time_to_restore").as_deref(), Some("high"));
    assert_eq!(
        level(&on_day, "change_failure_rate").as_deref(),
        Some("elite")
    );

    let on_week = get("on-week", 7).await;
    assert_eq!(on_week["deployment_frequency"]["per_day"], 0.143);
    assert_eq!(
        level(&on_week, "deployment_frequency").as_deref(),
        Some("high")
    );
    assert_eq!(level(&on_week, "lead_time").as_deref(), Some("medium"));
    assert_eq!(
        level(&on_week, "time_to_restore").as_deref(),
        Some("medium")
    );
    // One deploy in 30 days is monthly: medium, though per_day reads 0.033 < 1/30.
    let monthly = get("on-week", 30).await;
    assert_eq!(monthly["deployment_frequency"]["per_day"], 0.033);
    assert_eq!(
        level(&monthly, "deployment_frequency").as_deref(),
        Some("medium")
    );
    let rarer = get("on-week", 31).await;
    assert_eq!(
        level(&rarer, "deployment_frequency").as_deref(),
        Some("low")
    );

    let on_month = get("on-month", 7).await;
    assert_eq!(level(&on_month, "lead_time").as_deref(), Some("low"));
    assert_eq!(level(&on_month, "time_to_restore").as_deref(), Some("low"));

    for (service, expected) in [
        ("cfr-5", "elite"),
        ("cfr-10", "high"),
        ("cfr-15", "medium"),
        ("cfr-20", "low"),
    ] {
        let body = get(service, 7).await;
        assert_eq!(
            level(&body, "change_failure_rate").as_deref(),
            Some(expected),
            "{service}: {body}"
        );
    }
    // No data, no level; the trend's windows carry levels too.
    let nobody = get("nobody", 7).await;
    assert_eq!(nobody["lead_time"]["level"], Value::Null);
    assert_eq!(nobody["change_failure_rate"]["level"], Value::Null);
    assert_eq!(nobody["time_to_restore"]["level"], Value::Null);
    assert_eq!(
        level(&nobody, "deployment_frequency").as_deref(),
        Some("low")
    );
    let (_, trend) = get_json(
        &api.url,
        &format!("/dora/trend?as_of={AS_OF}&service=on-day&windows=2"),
    )
    .await;
    assert_eq!(trend["windows"][1]["levels"], "dora-2023");
    assert_eq!(trend["windows"][1]["lead_time"]["level"], "high");
    assert_eq!(trend["windows"][0]["lead_time"]["level"], Value::Null);
    api.stop().await.unwrap();
    env.cleanup().await;
}

/// Where the browser test leaves its screenshots (named in the README).
fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
}

fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("DORA_TEST_CHROMIUM") {
        return Some(path.into());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Runs headless Chromium with `args` and the flags this sandbox-less machine needs;
/// returns its stdout.
async fn chromium(binary: &Path, args: Vec<String>) -> String {
    let profile =
        std::env::temp_dir().join(format!("dora-chromium-{}", uuid::Uuid::now_v7().simple()));
    let binary = binary.to_path_buf();
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || {
            let output = std::process::Command::new(&binary)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--hide-scrollbars",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .args(args)
                .output()
                .expect("run chromium");
            let _ = std::fs::remove_dir_all(&profile);
            output
        }),
    )
    .await
    .expect("chromium finished within 120 s")
    .unwrap();
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn a_real_browser_renders_the_page() {
    let Some(binary) = find_chromium() else {
        eprintln!("\n{0}\nSKIPPED a_real_browser_renders_the_page: no `chromium` on PATH.\nInstall it (Debian: apt-get install -y chromium) or set DORA_TEST_CHROMIUM.\n{0}\n", "!".repeat(78));
        return;
    };
    let env = TestEnv::new().await;
    env.seed(&review_fixture()).await;
    let api = env.spawn_api().await;
    let url = format!("{}/dashboard?as_of={AS_OF}", api.url);

    let dom = chromium(&binary, vec!["--dump-dom".into(), url.clone()]).await;
    let page = text(&dom);
    for expected in [
        "Delivery review · all services · prod",
        "Deployment frequency",
        "Lead time for changes",
        "Change failure rate",
        "Time to restore",
        "Rework rate",
        "Failed deploys (3)",
        "Open incidents (1)",
    ] {
        assert!(page.contains(expected), "`{expected}` not rendered: {page}");
    }
    // The browser parsed the hostile ref_id as text, not as an element.
    assert!(!dom.contains("<script"), "a script element reached the DOM");
    assert!(
        dom.contains("&lt;script&gt;alert(\"x\")&lt;/script&gt; &amp; 'q'"),
        "{dom}"
    );

    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, size) in [
        ("dashboard-1280x720.png", "1280,720"),
        ("dashboard-phone-390x844.png", "390,844"),
    ] {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        chromium(
            &binary,
            vec![
                format!("--window-size={size}"),
                format!("--screenshot={}", path.display()),
                url.clone(),
            ],
        )
        .await;
        let png = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name} is a PNG");
        assert!(
            png.len() > 10_000,
            "{name} has content: {} bytes",
            png.len()
        );
    }
    api.stop().await.unwrap();
    env.cleanup().await;
}
