//! `GET /openapi.json` of the gateway and the API: an OpenAPI 3 document that names
//! every route with its statuses, and whose every path is served.

use dora_system_tests::{get_json, TestEnv};
use serde_json::{json, Value};

/// Fetches the document, checks its OpenAPI 3 shape (version, info, operations with
/// responses, every `$ref` resolved), and returns it. schemathesis, in
/// deploy/schemathesis.sh, checks it against the OpenAPI schema itself.
async fn document(base: &str) -> Value {
    let (status, doc) = get_json(base, "/openapi.json").await;
    assert_eq!(status, 200, "{base}/openapi.json");
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with("3."),
        "not OpenAPI 3: {}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().unwrap() {
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
        }
    }
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    for reference in refs {
        let pointer = reference.strip_prefix('#').expect("a local $ref");
        assert!(
            doc.pointer(pointer).is_some(),
            "unresolved $ref {reference}"
        );
    }
    doc
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                refs.push(r.clone());
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

/// The statuses documented for `method path`.
fn statuses(doc: &Value, path: &str, method: &str) -> Vec<String> {
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "no {method} {path} in the document");
    let mut statuses: Vec<String> = operation["responses"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    statuses.sort();
    statuses
}

#[tokio::test]
async fn both_processes_describe_every_route_they_serve() {
    let env = TestEnv::new().await;
    let ingest = env.spawn_ingest(env.ingest_config()).await;
    let api = env.spawn_api().await;

    let doc = document(&ingest.url).await;
    assert_eq!(
        statuses(&doc, "/events", "post"),
        ["202", "400", "401", "413", "415", "503"]
    );
    assert_eq!(
        doc["paths"]["/events"]["post"]["security"][0]["bearer"],
        serde_json::json!([])
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(
        doc["paths"]["/events"]["post"]["responses"]["503"]["headers"]["Retry-After"].is_object(),
        "the 503 names Retry-After"
    );
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert!(
            statuses(&doc, path, "get").contains(&"200".to_owned()),
            "{path}"
        );
    }
    for (tool, expected) in [
        ("github", &["202", "400", "401", "404", "413", "503"][..]),
        ("gitlab", &["202", "400", "401", "413", "503"][..]),
        ("pagerduty", &["202", "400", "401", "404", "413", "503"][..]),
        ("opsgenie", &["202", "400", "401", "413", "503"][..]),
        ("alertmanager", &["202", "400", "401", "413", "503"][..]),
    ] {
        let path = format!("/webhooks/{tool}");
        assert_eq!(statuses(&doc, &path, "post"), expected, "{path}");
        let params: Vec<&str> = doc["paths"][&path]["post"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(
            params.contains(&"service") && params.contains(&"environment"),
            "{path}: {params:?}"
        );
    }
    assert_eq!(
        doc["paths"].as_object().unwrap().len(),
        9,
        "the gateway's routes: {}",
        doc["paths"]
    );

    let doc = document(&api.url).await;
    for path in [
        "/dora",
        "/dora/trend",
        "/dora/failures",
        "/dashboard",
        "/alerts",
    ] {
        assert_eq!(statuses(&doc, path, "get"), ["200", "400", "503"], "{path}");
    }
    for path in ["/", "/healthz", "/readyz", "/metrics"] {
        statuses(&doc, path, "get");
    }
    let names: Vec<&str> = doc["paths"]["/dora/trend"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "days",
            "offset",
            "as_of",
            "service",
            "environment",
            "windows"
        ]
    );

    // The reports' metrics, the rework rate among them (rate nullable, no level).
    let schemas = &doc["components"]["schemas"];
    let mut metrics: Vec<&str> = schemas["Report"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    metrics.sort_unstable();
    assert_eq!(
        metrics,
        [
            "change_failure_rate",
            "deployment_frequency",
            "environment",
            "lead_time",
            "levels",
            "rework_rate",
            "service",
            "time_to_restore",
            "window"
        ]
    );
    let rework = &schemas["ReworkRate"];
    let mut fields: Vec<&str> = rework["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["attempts", "rate", "rework"], "{rework}");
    assert_eq!(
        rework["properties"]["rate"]["type"],
        json!(["number", "null"])
    );

    // Every documented path is a route: none of them is a 404.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in doc["paths"].as_object().unwrap().keys() {
        let status = client
            .get(format!("{}{path}", api.url))
            .send()
            .await
            .unwrap()
            .status();
        assert_ne!(status, 404, "{path} is documented but not served");
    }

    api.stop().await.unwrap();
    ingest.stop().await.unwrap();
    env.cleanup().await;
}
