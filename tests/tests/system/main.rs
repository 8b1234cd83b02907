//! System tests: the real processes against the real PostgreSQL and nats-server.
//! One binary, one module per capability.

// A panic in a test helper is a failed assertion with a line number.
#![allow(clippy::unwrap_used)]

mod alerts;
mod api;
mod dashboard;
mod dedup;
mod demo;
mod emit;
mod emit_ci_files;
mod hostile;
mod ingest;
mod limits;
mod metrics;
mod observe;
mod openapi;
mod position;
mod projector;
mod replay;
mod replica;
mod source;
mod trend;
mod webhooks;
