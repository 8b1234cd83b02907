#!/usr/bin/env bash
# The test command: starts the services the tests need, then runs every test of the
# workspace against them.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/services.sh
# Databases left behind by an interrupted earlier run.
for db in $(psql -h 127.0.0.1 -U postgres -d postgres -w -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'dora\_test\_%'"); do
    psql -h 127.0.0.1 -U postgres -d postgres -w -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
done
cargo test --workspace "$@"
