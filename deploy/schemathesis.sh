#!/usr/bin/env bash
# Tests the live gateway and API against their own OpenAPI documents with schemathesis
# (PyPI): generated requests, valid and not, must get no server error and no response
# (status, content type, headers, body) that the document does not allow.
#
# Starts dora-projector, dora-ingest and dora-api as deploy/run.sh does, but on free
# ports, with a token of its own, a database `dora_schemathesis` and a stream
# `DORA_SCHEMATHESIS` (both kept between runs, so that the store and the stream agree),
# and stops them at the end. Non-zero when schemathesis finds anything.
#
#   deploy/schemathesis.sh                    200 examples per operation and phase
#   SCHEMATHESIS_EXAMPLES=1000 deploy/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."

examples=${SCHEMATHESIS_EXAMPLES:-200}
checks=${SCHEMATHESIS_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance}
bin=${CARGO_TARGET_DIR:-target}/debug
logs=$(mktemp -d)

command -v schemathesis >/dev/null 2>&1 || python3 -m pip install --quiet schemathesis
deploy/services.sh
db=dora_schemathesis
if ! psql -h 127.0.0.1 -U postgres -d postgres -w -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
    psql -h 127.0.0.1 -U postgres -d postgres -w -qc "CREATE DATABASE $db"
fi
cargo build -p dora-ingest -p dora-projector -p dora-api

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db
export DORA_STREAM=DORA_SCHEMATHESIS DORA_SUBJECT_PREFIX=dora_schemathesis.events
export DORA_INGEST_ADDR=127.0.0.1:$(free_port) DORA_API_ADDR=127.0.0.1:$(free_port)
export DORA_PROJECTOR_ADDR=127.0.0.1:$(free_port)
secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export DORA_INGEST_TOKENS="schemathesis=$secret"
# The gateway signs each event's source with it, the projector checks it.
export DORA_SOURCE_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
# The signed webhook routes answer 404 without their secrets: give them one each, so
# generated deliveries meet the signature checks (and get 401) instead.
export DORA_GITHUB_WEBHOOK_SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export DORA_PAGERDUTY_WEBHOOK_SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

pids=()
stop() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait || true; }
trap stop EXIT INT TERM
"$bin/dora-projector" 2> "$logs/projector.log" & pids+=($!)
"$bin/dora-ingest" 2> "$logs/ingest.log" & pids+=($!)
"$bin/dora-api" 2> "$logs/api.log" & pids+=($!)

wait_ready() {
    for _ in $(seq 1 300); do
        curl -fsS -o /dev/null --max-time 2 "http://$1/readyz" 2>/dev/null && return
        sleep 0.2
    done
    echo "schemathesis: http://$1 not ready after 60 s; logs in $logs" >&2
    exit 1
}
wait_ready "$DORA_PROJECTOR_ADDR"
wait_ready "$DORA_INGEST_ADDR"
wait_ready "$DORA_API_ADDR"

status=0
for target in "ingest $DORA_INGEST_ADDR" "api $DORA_API_ADDR"; do
    set -- $target
    echo "schemathesis: dora-$1 (http://$2/openapi.json), checks $checks, $examples examples"
    # The token goes to every operation; POST /events and the Opsgenie and
    # Alertmanager webhooks ask for it. Run from the
    # log directory: schemathesis and hypothesis keep their caches (what `st replay`
    # reads) in the working directory, which must not be the checkout.
    (cd "$logs" && schemathesis run "http://$2/openapi.json" \
        --header "Authorization: Bearer $secret" \
        --checks "$checks" \
        --phases examples,coverage,fuzzing \
        --max-examples "$examples" \
        --request-timeout 30 \
        --output-sanitize true \
        --report-dir "$logs/report-$1") \
        || status=1
done
if [ "$status" = 0 ]; then
    rm -rf "$logs"
else
    echo "schemathesis: failures above; the services' logs and reports are in $logs" >&2
fi
exit "$status"
