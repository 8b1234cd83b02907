#!/usr/bin/env bash
# The benchmark command: starts PostgreSQL and NATS if they are not running, builds
# everything in release mode, and runs the scale benchmark (bench/src/bin/scale.rs),
# which prints one table: each figure beside the raw limit measured in the same run.
#
#   deploy/bench.sh                      # 1M events, a few minutes
#   deploy/bench.sh --events 10000000    # 10M events, about half an hour here
#
# Arguments go to the benchmark (--help lists them). It uses the test harness: a fresh
# database and stream, dropped at the end (--keep leaves them for EXPLAIN).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/services.sh
# The projector binary the benchmark runs as a child process, built with it.
cargo build --release --workspace --bins
exec target/release/scale "$@"
