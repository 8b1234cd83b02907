//! Benchmark programs for dora; each binary prints its figures. Run with `--release`.
//!
//! - `metrics`: `/dora` latency on a reproducible log of 1M events.
//! - `pipeline`: end-to-end events per second against the raw JetStream and
//!   PostgreSQL rates measured in the same run.

pub use dora_system_tests::Rng;
