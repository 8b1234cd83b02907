//! What the webhook tests share: the tools' published payloads (tests/fixtures/webhooks),
//! deliveries signed as each tool signs them, and a real HTTP server on port 0 standing
//! in for GitHub's and GitLab's commit APIs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use dora_ingest::webhooks::names::NameMap;
use dora_ingest::webhooks::proof::Secrets;
use dora_ingest::webhooks::settings::ApiToken;

use crate::TestEnv;

/// The GitHub webhook secret the tests configure.
pub const GITHUB_SECRET: &str = "github-webhook-secret-0123456789";
/// The PagerDuty webhook secret the tests configure.
pub const PAGERDUTY_SECRET: &str = "pagerduty-webhook-secret-0123456789";
/// The token the commit stand-in expects from the gateway.
pub const API_TOKEN: &str = "code-host-token-0123456789";

/// The bytes of a fixture, as published.
pub fn fixture_bytes(path: &str) -> Vec<u8> {
    let file = format!("{}/fixtures/webhooks/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&file).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// A fixture, parsed.
pub fn fixture(path: &str) -> Value {
    serde_json::from_slice(&fixture_bytes(path)).expect("fixture JSON")
}

/// `sha256=<hex>`: GitHub's `X-Hub-Signature-256` of `body` under `secret`.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let secrets = Secrets::parse(secret).expect("secret");
    format!("sha256={}", secrets.sign(body))
}

/// `v1=<hex>`: PagerDuty's `X-PagerDuty-Signature` of `body` under `secret`.
pub fn pagerduty_signature(secret: &str, body: &[u8]) -> String {
    let secrets = Secrets::parse(secret).expect("secret");
    format!("v1={}", secrets.sign(body))
}

/// The gateway with both signed routes configured, GitHub's test workflow as a deploy,
/// and, with `api`, the commit lookups pointed at the stand-in.
pub fn webhook_config(env: &TestEnv, api: Option<&CommitApi>) -> dora_ingest::Config {
    let mut config = env.ingest_config();
    let hooks = &mut config.webhooks;
    hooks.github_secret = Some(Secrets::parse(GITHUB_SECRET).expect("test setting"));
    // The second secret is PagerDuty's own Go client's test secret: rotation.
    hooks.pagerduty_secret = Some(
        Secrets::parse(&format!(
            "{PAGERDUTY_SECRET},lDQHScfUeXUKaQRNF+8XIiDKZ7XX3itBAYzwU0TARw8lJqRnkKl2iB1anSb0Z+IK"
        ))
        .expect("test setting"),
    );
    hooks.github_deploy_workflows =
        NameMap::parse(".github/workflows/test.yml=production").expect("test setting");
    if let Some(api) = api {
        hooks.github_token = Some(ApiToken::parse(API_TOKEN).expect("test setting"));
        hooks.github_api_url = api.url.clone();
        hooks.gitlab_token = Some(ApiToken::parse(API_TOKEN).expect("test setting"));
        hooks.gitlab_api_url = api.url.clone();
    }
    config
}

/// `POST {base}{path}` with `headers` and `body`; the status and the JSON answer.
pub async fn deliver(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("POST webhook");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A GitHub delivery of `event` with `body`, signed with `secret`, as JSON.
pub async fn deliver_github(
    base: &str,
    query: &str,
    event: &str,
    secret: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let signature = github_signature(secret, &body);
    deliver(
        base,
        &format!("/webhooks/github{query}"),
        &[
            ("content-type", "application/json"),
            ("x-github-event", event),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("x-hub-signature-256", &signature),
        ],
        body,
    )
    .await
}

/// How the commit stand-in answers.
#[derive(Debug, Clone)]
pub enum CommitReply {
    /// `200` with this JSON body.
    Json(Value),
    /// This status, empty body.
    Status(u16),
    /// Nothing for this long, then `200` with the body.
    Slow(Duration, Value),
}

/// One request the stand-in received: its path and its credentials header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// The request path.
    pub path: String,
    /// `authorization` (GitHub) or `private-token` (GitLab), as received.
    pub credential: Option<String>,
}

#[derive(Debug)]
struct Inner {
    reply: CommitReply,
    asked: Vec<Asked>,
}

/// A stand-in for `GET /repos/<owner>/<repo>/commits/<sha>` (GitHub) and
/// `GET /projects/<id>/repository/commits/<sha>` (GitLab); stops when dropped.
#[derive(Debug)]
pub struct CommitApi {
    /// Its base URL (`http://127.0.0.1:<port>`).
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    _stop: watch::Sender<bool>,
}

impl CommitApi {
    /// Starts it on port 0, answering `reply` to every request.
    pub async fn start(reply: CommitReply) -> CommitApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let inner = Arc::new(Mutex::new(Inner {
            reply,
            asked: Vec::new(),
        }));
        let app = Router::new()
            .route("/repos/{owner}/{repo}/commits/{sha}", get(github))
            .route("/projects/{id}/repository/commits/{sha}", get(gitlab))
            .with_state(inner.clone());
        let (stop, mut rx) = watch::channel(false);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
        });
        CommitApi {
            url,
            inner,
            _stop: stop,
        }
    }

    /// What it was asked, in order.
    pub fn asked(&self) -> Vec<Asked> {
        self.inner.lock().expect("lock").asked.clone()
    }

    /// Answers `reply` from now on.
    pub fn reply(&self, reply: CommitReply) {
        self.inner.lock().expect("lock").reply = reply;
    }
}

type Shared = State<Arc<Mutex<Inner>>>;

async fn github(
    State(inner): Shared,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/repos/{owner}/{repo}/commits/{sha}");
    answer(inner, path, header(&headers, "authorization")).await
}

async fn gitlab(
    State(inner): Shared,
    Path((id, sha)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/projects/{id}/repository/commits/{sha}");
    answer(inner, path, header(&headers, "private-token")).await
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn answer(inner: Arc<Mutex<Inner>>, path: String, credential: Option<String>) -> Response {
    let reply = {
        let mut inner = inner.lock().expect("lock");
        inner.asked.push(Asked { path, credential });
        inner.reply.clone()
    };
    match reply {
        CommitReply::Json(body) => axum::Json(body).into_response(),
        CommitReply::Status(status) => StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        CommitReply::Slow(wait, body) => {
            tokio::time::sleep(wait).await;
            axum::Json(body).into_response()
        }
    }
}
