#!/usr/bin/env bash
# Runs the whole of dora on this machine, in the foreground: PostgreSQL and nats-server
# (installed and started if needed), then dora-projector, dora-ingest and dora-api.
# Ctrl-C stops all three. Settings come from the environment (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/services.sh

if ! psql -h 127.0.0.1 -U postgres -d postgres -w -Atc "SELECT 1 FROM pg_database WHERE datname = 'dora'" | grep -q 1; then
    psql -h 127.0.0.1 -U postgres -d postgres -w -qc 'CREATE DATABASE dora'
fi

cargo build --release -p dora-ingest -p dora-projector -p dora-api

if [ -z "${DORA_INGEST_TOKENS:-}" ]; then
    secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
    export DORA_INGEST_TOKENS="local=$secret"
    echo "run: no DORA_INGEST_TOKENS given; this run accepts the token: $secret"
fi

pids=()
stop() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait || true; }
trap stop EXIT INT TERM

# The projector owns the schema: it migrates before the API is asked anything.
target/release/dora-projector & pids+=($!)
target/release/dora-ingest & pids+=($!)
target/release/dora-api & pids+=($!)
echo "run: ingest on http://${DORA_INGEST_ADDR:-127.0.0.1:8081}, metrics on http://${DORA_API_ADDR:-127.0.0.1:8080}/dora"
# Stop everything when any one of them stops.
wait -n
