//! The API's OpenAPI document, served at `GET /openapi.json`.
//!
//! The operations come from the handlers' `#[utoipa::path]` annotations, registered
//! with their routes by `utoipa-axum` (see [`crate::http::app`]); the schemas from the
//! types the handlers return and, for the query strings, from the parameter structs in
//! [`crate::params`], which a test holds to what the parser accepts. `/metrics` is
//! added by [`crate::metrics::ApiMetrics::instrument`] and listed here.

use utoipa::OpenApi;

/// The document's top; the paths are added as the routes are registered.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "dora-api",
        description = "The DORA metrics (the four keys and the rework rate), computed from \
                       the event log on every request \
                       (CONTRACT.md sections 5 and 6)."
    ),
    paths(crate::metrics::serve),
    tags(
        (name = "metrics", description = "The DORA metrics"),
        (name = "alerts", description = "Regression alerts"),
        (name = "health", description = "Probes and metrics")
    )
)]
pub struct ApiDoc;
