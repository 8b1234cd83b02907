//! Bearer-token authentication. Secrets are compared in constant time and never logged.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;

pub use dora_event::tokens::Tokens;

use crate::error::Error;
use crate::http::AppState;

/// The authenticated caller: the name of its token, which becomes the events' `source`.
#[derive(Debug, Clone)]
pub struct Source(pub String);

impl FromRequestParts<AppState> for Source {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        bearer(&parts.headers, &state.tokens).map(Source)
    }
}

/// The name of the token that `Authorization: Bearer <secret>` presents; why not, as
/// the `401`'s text. The reason is logged, never the secret.
pub fn bearer(headers: &HeaderMap, tokens: &Tokens) -> Result<String, Error> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(header) = header else {
        tracing::warn!("rejected: no Authorization header");
        return Err(Error::Unauthorized(
            "missing `Authorization: Bearer <token>` header",
        ));
    };
    let presented = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => {
            tracing::warn!("rejected: Authorization header is not a bearer token");
            return Err(Error::Unauthorized(
                "the Authorization header must be `Bearer <token>`",
            ));
        }
    };
    match tokens.lookup(presented.as_bytes()) {
        Some(name) => Ok(name.to_owned()),
        None => {
            tracing::warn!("rejected: unknown bearer token");
            Err(Error::Unauthorized("unknown token"))
        }
    }
}
