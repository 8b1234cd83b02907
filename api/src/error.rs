//! The API's one error type.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// Every refusal's body: what is wrong, and for a bad parameter which.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What is wrong, in a sentence a person can act on.
    pub error: String,
    /// The query parameter at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub param: Option<String>,
}

impl ErrorBody {
    /// A body without a parameter.
    pub fn new(error: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: error.into(),
            param: None,
        }
    }
}

/// Everything the API can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A query parameter is malformed or out of range.
    #[error("{message}")]
    BadParam {
        /// The parameter.
        param: String,
        /// What is wrong.
        message: String,
    },
    /// PostgreSQL failed or is unreachable.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Serving failed.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
    /// A setting is malformed (named; a secret's value is never shown).
    #[error("{name}: {message}")]
    Setting {
        /// The environment variable.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The alert schema's migrations failed.
    #[error("migrating the alert schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A page template failed to render.
    #[error("rendering a page: {0}")]
    Render(#[from] askama::Error),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::BadParam { param, message } => (
                StatusCode::BAD_REQUEST,
                Json(ErrorBody {
                    error: message,
                    param: Some(param),
                }),
            )
                .into_response(),
            Error::Database(sqlx::Error::PoolTimedOut) => busy(
                "every database connection of dora-api is in use; retry shortly",
            ),
            Error::Database(sqlx::Error::Database(e)) if e.code().as_deref() == Some("57014") => {
                busy("the query ran past DORA_API_STATEMENT_TIMEOUT and was cancelled; ask for a shorter window or one service")
            }
            Error::Database(e) if store_unavailable(&e).is_some() => {
                busy(&store_unavailable(&e).unwrap_or_default())
            }
            other => {
                // The details go to the log, not to the caller.
                tracing::error!(error = %other, "request failed");
                let status = match &other {
                    Error::Database(sqlx::Error::Io(_)) => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                (
                    status,
                    Json(ErrorBody::new(
                        "the metrics could not be computed; see the dora-api log",
                    )),
                )
                    .into_response()
            }
        }
    }
}

/// Why the store cannot be read, in words an operator can act on, when the cause is the
/// setup rather than the request: the database missing, the store not migrated yet, the
/// login refused, the server unreachable. `None` for other errors.
pub fn store_unavailable(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(e) => {
            let code = e.code();
            let why = e.message();
            match code.as_deref()? {
                // invalid_catalog_name: PostgreSQL's message names the database.
                "3D000" => Some(format!(
                    "{why} (DATABASE_URL): start dora-projector, which creates and migrates it, or point DATABASE_URL at the store"
                )),
                // undefined_table, invalid_schema_name: the projector has not migrated it.
                "42P01" | "3F000" => Some(format!(
                    "the store is not migrated yet ({why}): start dora-projector, which creates it"
                )),
                // invalid_authorization_specification, invalid_password.
                "28000" | "28P01" => Some(format!("PostgreSQL refused the login of DATABASE_URL: {why}")),
                _ => None,
            }
        }
        sqlx::Error::Io(e) => Some(format!("cannot reach PostgreSQL (DATABASE_URL): {e}")),
        sqlx::Error::Tls(e) => Some(format!("cannot reach PostgreSQL (DATABASE_URL): TLS: {e}")),
        _ => None,
    }
}

/// A `503` the caller can act on: what happened, and when to ask again.
fn busy(message: &str) -> Response {
    tracing::warn!(message, "request refused");
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(ErrorBody::new(message)),
    )
        .into_response();
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("5"),
    );
    response
}

/// Shorthand for the API's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
