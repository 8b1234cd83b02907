//! The gateway's one error type; every rejection is JSON that names the problem.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// Every refusal's body: what is wrong, and for an invalid event where.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What is wrong, in a sentence a person can act on.
    pub error: String,
    /// The element of the array at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub index: Option<usize>,
    /// The field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
}

/// Everything the gateway can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Missing or unknown bearer token.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A webhook's proof of origin (signature or token header) missing or wrong.
    #[error("{0}")]
    Unproven(&'static str),
    /// A webhook route whose secret is not configured.
    #[error("{0}")]
    NotConfigured(&'static str),
    /// A webhook body that is JSON but not the tool's payload, or lacks what dora needs.
    #[error("{0}")]
    InvalidPayload(String),
    /// Body is not declared as JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Body over the limit.
    #[error("request body is over the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// Body could not be read.
    #[error("{0}")]
    BadRequest(String),
    /// Body is not JSON.
    #[error("{0}")]
    InvalidJson(String),
    /// An empty array, or one over the batch limit.
    #[error("{0}")]
    BatchSize(String),
    /// One event broke a rule of the contract.
    #[error("{message}")]
    InvalidEvent {
        /// Position in the array, for a batch.
        index: Option<usize>,
        /// The field at fault.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// JetStream unreachable or did not acknowledge: nothing may be reported accepted.
    /// The text says what a retry does.
    #[error("{0}")]
    Unavailable(String),
    /// NATS unreachable at start.
    #[error("cannot reach NATS at {url} (NATS_URL): {source}")]
    Connect {
        /// The server tried.
        url: String,
        /// Why it failed.
        source: async_nats::Error,
    },
    /// The stream is missing or misconfigured.
    #[error(transparent)]
    Stream(#[from] dora_event::stream::StreamError),
    /// Serving failed.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::Unauthorized(_) | Error::Unproven(_) => StatusCode::UNAUTHORIZED,
            Error::NotConfigured(_) => StatusCode::NOT_FOUND,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BadRequest(_)
            | Error::InvalidJson(_)
            | Error::BatchSize(_)
            | Error::InvalidEvent { .. }
            | Error::InvalidPayload(_) => StatusCode::BAD_REQUEST,
            Error::Unavailable(_) | Error::Connect { .. } | Error::Stream(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Why a request was refused for what it sent, as a metric label: a small fixed
    /// set. `None` for failures that are not the client's.
    pub fn rejection(&self) -> Option<&'static str> {
        match self {
            Error::Unauthorized(_) | Error::Unproven(_) => Some("unauthorized"),
            Error::NotConfigured(_) => Some("not_configured"),
            Error::InvalidPayload(_) => Some("invalid_payload"),
            Error::UnsupportedMediaType(_) => Some("unsupported_media_type"),
            Error::PayloadTooLarge(_) => Some("payload_too_large"),
            Error::BadRequest(_) => Some("unreadable_body"),
            Error::InvalidJson(_) => Some("invalid_json"),
            Error::BatchSize(_) => Some("batch_size"),
            Error::InvalidEvent { .. } => Some("invalid_event"),
            Error::Unavailable(_) | Error::Connect { .. } | Error::Stream(_) | Error::Io(_) => None,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let (index, field) = match &self {
            Error::InvalidEvent { index, field, .. } => (*index, field.clone()),
            _ => (None, None),
        };
        let body = ErrorBody {
            error: self.to_string(),
            index,
            field,
        };
        let mut response = (status, Json(body)).into_response();
        // A bearer route's challenge; a webhook's proof is the tool's own scheme.
        if matches!(self, Error::Unauthorized(_)) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(dora_event::serve::RETRY_AFTER_SECS),
            );
        }
        response
    }
}

/// Shorthand for the gateway's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
