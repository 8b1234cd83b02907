//! Hostile bodies against each webhook route's handling before publishing (proof,
//! names, the tool's JSON, the mapping, validation: `webhooks::interpret`), property-
//! based: random bytes, random JSON, and the tools' published payloads with fields
//! removed, retyped or replaced. Every answer is a 4xx refusal, `ignored`, or events
//! that obey the contract's rules; never a panic or a 5xx. A wrong proof is always a
//! 401, whatever the body. The system test `hostile` sends such bodies through the
//! running gateway and checks that nothing refused is published.

// A panic in a test is a failed assertion with a line number.
#![allow(clippy::unwrap_used)]

use axum::http::HeaderMap;
use axum::response::IntoResponse;
use chrono::Utc;
use dora_ingest::auth::Tokens;
use dora_ingest::webhooks::names::NameMap;
use dora_ingest::webhooks::proof::Secrets;
use dora_ingest::webhooks::settings::WebhookSettings;
use dora_ingest::webhooks::{interpret, Delivery, Interpreted, Tool};
use proptest::prelude::*;
use serde_json::Value;

const SECRET: &str = "webhook-secret-0123456789";
const TOKEN: &str = "ci-secret-0123456789";

const TOOLS: [Tool; 5] = [
    Tool::GitHub,
    Tool::GitLab,
    Tool::PagerDuty,
    Tool::Opsgenie,
    Tool::Alertmanager,
];

fn settings() -> WebhookSettings {
    WebhookSettings {
        github_secret: Some(Secrets::parse(SECRET).unwrap()),
        pagerduty_secret: Some(Secrets::parse(SECRET).unwrap()),
        github_deploy_workflows: NameMap::parse(".github/workflows/test.yml=production").unwrap(),
        ..WebhookSettings::default()
    }
}

fn tokens() -> Tokens {
    Tokens::parse(&format!("ci={TOKEN}")).unwrap()
}

/// The published payloads each route is tested from, with the event header they go with.
fn fixtures(tool: Tool) -> Vec<(&'static str, Value)> {
    let read = |path: &str| -> Value {
        let file = format!(
            "{}/../tests/fixtures/webhooks/{path}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
    };
    match tool {
        Tool::GitHub => vec![
            (
                "deployment_status",
                read("github/deployment_status.payload.json"),
            ),
            (
                "workflow_run",
                read("github/workflow_run.completed.payload.json"),
            ),
        ],
        Tool::GitLab => vec![("Deployment Hook", read("gitlab/deployment_hook.json"))],
        Tool::PagerDuty => vec![
            ("", read("pagerduty/zulip.incident.triggered.json")),
            ("", read("pagerduty/zulip.incident.resolved.json")),
        ],
        Tool::Opsgenie => vec![("", read("opsgenie/create.json"))],
        Tool::Alertmanager => vec![("", read("alertmanager/zulip.firing.json"))],
    }
}

/// The headers of a delivery of `body` that proves its origin as `tool` does, or, with
/// `forged`, one whose proof is wrong.
fn headers(tool: Tool, event: &str, body: &[u8], forged: bool) -> HeaderMap {
    let secret = if forged {
        "forged-secret-0123456789"
    } else {
        SECRET
    };
    let token = if forged {
        "forged-token-0123456789"
    } else {
        TOKEN
    };
    let sign = |prefix: &str| format!("{prefix}{}", Secrets::parse(secret).unwrap().sign(body));
    let mut h = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        h.insert(name, value.parse().unwrap());
    };
    match tool {
        Tool::GitHub => {
            set("x-github-event", event.to_owned());
            set("x-hub-signature-256", sign("sha256="));
        }
        Tool::PagerDuty => set("x-pagerduty-signature", sign("v1=")),
        Tool::GitLab => {
            set("x-gitlab-event", event.to_owned());
            set("x-gitlab-token", token.to_owned());
        }
        Tool::Opsgenie | Tool::Alertmanager => set("authorization", format!("Bearer {token}")),
    }
    h
}

/// Runs `interpret` on one delivery and checks the outcome is sound. Returns the
/// status the gateway would answer before publishing (202 for events or ignored).
fn check(tool: Tool, event: &str, query: Option<&str>, body: &[u8], forged: bool) -> u16 {
    let headers = headers(tool, event, body, forged);
    let delivery = Delivery {
        tool,
        query,
        headers: &headers,
        body,
    };
    let received_at = Utc::now();
    match interpret(&delivery, &settings(), &tokens(), received_at) {
        Ok(Interpreted::Ignored { why, .. }) => {
            assert!(!forged, "a forged delivery got past its proof");
            assert!(!why.is_empty() && why.len() < 400, "{why}");
            202
        }
        Ok(Interpreted::Events { source, events }) => {
            assert!(!forged, "a forged delivery got past its proof");
            assert!(!events.is_empty());
            assert!(!source.is_empty());
            for (event, _) in &events {
                if let Err(rule) = dora_event::invariants::check(event, received_at) {
                    panic!("mapped an event that breaks `{rule}`: {event:?}");
                }
            }
            202
        }
        Err(e) => {
            assert!(e.rejection().is_some(), "a body made the gateway fail: {e}");
            let status = e.into_response().status();
            assert!(status.is_client_error(), "{status}");
            if forged {
                assert_eq!(status, 401, "a forged delivery is a 401 whatever its body");
            }
            status.as_u16()
        }
    }
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::String),
        prop::sample::select(vec![
            "success",
            "failure",
            "firing",
            "resolved",
            "Create",
            "Close",
            "incident.triggered",
            "2021-06-04T13:35:29Z",
            "2021-04-28 21:50:00 +0200",
            "service:x",
            "",
            "9999-12-31T23:59:59Z",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_.]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A change to one place of a payload: a key removed, or its value replaced.
#[derive(Debug, Clone)]
enum Change {
    Remove(prop::sample::Index),
    Replace(prop::sample::Index, Value),
}

/// Every path to a value inside `value`.
fn paths(value: &Value, at: &mut Vec<String>, all: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                at.push(k.clone());
                all.push(at.clone());
                paths(v, at, all);
                at.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                at.push(i.to_string());
                all.push(at.clone());
                paths(v, at, all);
                at.pop();
            }
        }
        _ => {}
    }
}

fn change(mut body: Value, changes: &[Change]) -> Value {
    for c in changes {
        let mut all = Vec::new();
        paths(&body, &mut Vec::new(), &mut all);
        if all.is_empty() {
            return body;
        }
        let (index, replacement) = match c {
            Change::Remove(i) => (i, None),
            Change::Replace(i, v) => (i, Some(v.clone())),
        };
        let path = &all[index.index(all.len())];
        let (last, parent) = path.split_last().unwrap();
        let mut at = &mut body;
        for step in parent {
            at = match at {
                Value::Object(m) => m.get_mut(step).unwrap(),
                Value::Array(a) => &mut a[step.parse::<usize>().unwrap()],
                _ => unreachable!(),
            };
        }
        match (at, replacement) {
            (Value::Object(m), None) => {
                m.remove(last);
            }
            (Value::Object(m), Some(v)) => {
                m.insert(last.clone(), v);
            }
            (Value::Array(a), None) => {
                a.remove(last.parse::<usize>().unwrap());
            }
            (Value::Array(a), Some(v)) => a[last.parse::<usize>().unwrap()] = v,
            _ => {}
        }
    }
    body
}

fn changes() -> impl Strategy<Value = Vec<Change>> {
    prop::collection::vec(
        prop_oneof![
            any::<prop::sample::Index>().prop_map(Change::Remove),
            (any::<prop::sample::Index>(), json_value()).prop_map(|(i, v)| Change::Replace(i, v)),
        ],
        1..4,
    )
}

fn tool() -> impl Strategy<Value = Tool> {
    prop::sample::select(TOOLS.to_vec())
}

fn query() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        Just("service=web".to_owned()),
        Just("service=web&environment=eu".to_owned()),
        "[a-z=&%]{0,16}",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_get_a_4xx_or_are_ignored(
        tool in tool(),
        body in prop::collection::vec(any::<u8>(), 0..512),
        forged in any::<bool>(),
    ) {
        let status = check(tool, "deployment_status", None, &body, forged);
        prop_assert!(status == 202 || (400..500).contains(&status));
    }

    #[test]
    fn random_json_gets_a_4xx_is_ignored_or_maps_soundly(
        tool in tool(),
        body in json_value(),
        event in prop::sample::select(vec!["deployment_status", "workflow_run", "Deployment Hook", "ping"]),
        query in query(),
    ) {
        let bytes = serde_json::to_vec(&body).unwrap();
        check(tool, event, query.as_deref(), &bytes, false);
    }

    #[test]
    fn published_payloads_changed_get_a_4xx_are_ignored_or_map_soundly(
        tool in tool(),
        pick in any::<prop::sample::Index>(),
        changes in changes(),
        query in query(),
        forged in any::<bool>(),
    ) {
        let all = fixtures(tool);
        let (event, body) = &all[pick.index(all.len())];
        let bytes = serde_json::to_vec(&change(body.clone(), &changes)).unwrap();
        check(tool, event, query.as_deref(), &bytes, forged);
    }
}

#[test]
fn the_published_payloads_themselves_map() {
    for tool in TOOLS {
        for (event, body) in fixtures(tool) {
            let bytes = serde_json::to_vec(&body).unwrap();
            // Opsgenie's and Alertmanager's samples name no service: the URL does.
            assert_eq!(
                check(tool, event, Some("service=web"), &bytes, false),
                202,
                "{tool:?}"
            );
            assert_eq!(check(tool, event, None, &bytes, true), 401, "{tool:?}");
        }
    }
}

#[test]
fn deep_nesting_and_huge_values_are_refused_with_a_4xx() {
    for tool in TOOLS {
        let depth = 100_000;
        let deep = "[".repeat(depth) + &"]".repeat(depth);
        assert_eq!(check(tool, "ping", None, deep.as_bytes(), false), 400);
        let mut body = fixtures(tool).remove(0);
        let huge = "x".repeat(1 << 20);
        for path in ["repository", "project", "event", "alert", "alerts"] {
            if body.1.get(path).is_some() {
                body.1[path] = Value::String(huge.clone());
            }
        }
        let bytes = serde_json::to_vec(&body.1).unwrap();
        let status = check(tool, body.0, Some("service=web"), &bytes, false);
        assert_eq!(status, 400, "{tool:?}");
    }
}
