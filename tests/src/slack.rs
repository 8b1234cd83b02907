//! A real HTTP server on 127.0.0.1, port 0, standing in for a Slack incoming webhook:
//! it answers from a script (then `200 ok`) and records every request it received.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How the stand-in answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `200 ok`, as Slack answers.
    Ok,
    /// This status with this body.
    Status(u16, &'static str),
    /// `429` with `Retry-After: secs`.
    TooMany {
        /// The header's value.
        retry_after_secs: u64,
    },
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// Its JSON body (`Null` if it was not JSON).
    pub body: Value,
    /// The status it was answered with.
    pub status: u16,
}

#[derive(Debug, Default)]
struct Inner {
    script: VecDeque<Reply>,
    received: Vec<Received>,
}

/// The stand-in; stops when dropped.
#[derive(Debug)]
pub struct SlackStandIn {
    /// The webhook URL to configure (`http://127.0.0.1:<port>/services/T000/B000/test`).
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    _stop: watch::Sender<bool>,
}

impl SlackStandIn {
    /// Starts it on port 0.
    pub async fn start() -> SlackStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://{}/services/T000/B000/test",
            listener.local_addr().expect("addr")
        );
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new().fallback(receive).with_state(inner.clone());
        let (stop, rx) = watch::channel(false);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(dora_event::process::requested(rx))
                .await;
        });
        SlackStandIn {
            url,
            inner,
            _stop: stop,
        }
    }

    /// The next requests are answered with these, in order; then `200 ok` again.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// The bodies it accepted (answered 2xx).
    pub fn delivered(&self) -> Vec<Value> {
        self.lock()
            .received
            .iter()
            .filter(|r| (200..300).contains(&r.status))
            .map(|r| r.body.clone())
            .collect()
    }

    /// The `text` of each accepted body.
    pub fn texts(&self) -> Vec<String> {
        self.delivered()
            .iter()
            .map(|b| b["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    _headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
    let reply = inner.script.pop_front().unwrap_or(Reply::Ok);
    let (status, response) = match reply {
        Reply::Ok => (200, "ok".into_response()),
        Reply::Status(code, text) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, (status, text).into_response())
        }
        Reply::TooMany { retry_after_secs } => (
            429,
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_secs.to_string())],
                "rate_limited",
            )
                .into_response(),
        ),
    };
    inner.received.push(Received {
        at: Instant::now(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status,
    });
    response
}
