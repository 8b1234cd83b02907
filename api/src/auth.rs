//! Read tokens (`DORA_API_TOKENS`, optional). Unset, every route is open, as on a
//! private network behind a proxy. Set, every route but the probes (`/healthz`,
//! `/readyz`) needs one of the tokens: `Authorization: Bearer <secret>` from scripts and
//! Prometheus, or HTTP Basic (any user name, the secret as password), which a browser
//! asks for by itself, so the dashboard works without a login page.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine;
use dora_event::tokens::Tokens;
use serde_json::json;

/// Routes a probe must reach without a token.
const OPEN: [&str; 2] = ["/healthz", "/readyz"];

/// `app` with the read-token check in front of it, when tokens are set.
pub fn guard(app: Router, tokens: Option<Tokens>) -> Router {
    match tokens {
        Some(tokens) => app.layer(middleware::from_fn_with_state(Arc::new(tokens), require)),
        None => app,
    }
}

async fn require(State(tokens): State<Arc<Tokens>>, request: Request, next: Next) -> Response {
    if OPEN.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    match check(&tokens, request.headers()) {
        Ok(name) => {
            tracing::debug!(token = name, "read allowed");
            next.run(request).await
        }
        Err(problem) => {
            // The problem names what is missing, never what was presented.
            tracing::warn!(problem, path = request.uri().path(), "read refused");
            let mut response =
                (StatusCode::UNAUTHORIZED, Json(json!({ "error": problem }))).into_response();
            // Both schemes are offered; a browser shows its login prompt for Basic.
            response.headers_mut().append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"dora\""),
            );
            response.headers_mut().append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"dora\", charset=\"UTF-8\""),
            );
            response
        }
    }
}

/// The name of the token the request presents, or what is wrong with it.
fn check<'t>(tokens: &'t Tokens, headers: &HeaderMap) -> Result<&'t str, &'static str> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err("DORA_API_TOKENS is set: send `Authorization: Bearer <token>`, or HTTP Basic with the token as password");
    };
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not ASCII")?;
    let (scheme, credentials) = value
        .split_once(' ')
        .ok_or("the Authorization header must be `Bearer <token>` or `Basic <credentials>`")?;
    let secret = if scheme.eq_ignore_ascii_case("bearer") {
        credentials.trim().as_bytes().to_vec()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials.trim())
            .map_err(|_| "the Basic credentials are not base64")?;
        // `user:password`; the password is the token (a user name is not asked for).
        let colon = decoded
            .iter()
            .position(|b| *b == b':')
            .ok_or("the Basic credentials must be `user:token`")?;
        decoded[colon + 1..].to_vec()
    } else {
        return Err("the Authorization header must be `Bearer <token>` or `Basic <credentials>`");
    };
    tokens.lookup(&secret).ok_or("unknown token")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        h
    }

    #[test]
    fn bearer_and_basic_name_the_token() {
        let tokens = Tokens::parse("team=aaaaaaaaaaaaaaaa,grafana=bbbbbbbbbbbbbbbb").unwrap();
        assert_eq!(
            check(&tokens, &headers("Bearer bbbbbbbbbbbbbbbb")),
            Ok("grafana")
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:aaaaaaaaaaaaaaaa");
        assert_eq!(
            check(&tokens, &headers(&format!("Basic {basic}"))),
            Ok("team")
        );
        let no_user = base64::engine::general_purpose::STANDARD.encode(":aaaaaaaaaaaaaaaa");
        assert_eq!(
            check(&tokens, &headers(&format!("basic {no_user}"))),
            Ok("team")
        );
    }

    #[test]
    fn every_refusal_says_why() {
        let tokens = Tokens::parse("team=aaaaaaaaaaaaaaaa").unwrap();
        let user_only = base64::engine::general_purpose::STANDARD.encode("aaaaaaaaaaaaaaaa");
        let wrong = base64::engine::general_purpose::STANDARD.encode("team:aaaaaaaaaaaaaaab");
        for (authorization, says) in [
            ("Bearer aaaaaaaaaaaaaaab", "unknown token"),
            ("Bearer", "must be"),
            ("Token aaaaaaaaaaaaaaaa", "must be"),
            ("Basic !!!", "not base64"),
            (&format!("Basic {user_only}") as &str, "user:token"),
            (&format!("Basic {wrong}"), "unknown token"),
        ] {
            let problem = check(&tokens, &headers(authorization)).unwrap_err();
            assert!(problem.contains(says), "{authorization}: {problem}");
        }
        assert!(check(&tokens, &HeaderMap::new())
            .unwrap_err()
            .contains("DORA_API_TOKENS"));
    }
}
