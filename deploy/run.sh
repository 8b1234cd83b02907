#!/usr/bin/env bash
# Runs the whole of dora on this machine, in the foreground: PostgreSQL and nats-server
# (installed and started if needed), then dora-projector, dora-ingest and dora-api.
# Waits until each is ready, then prints where to find them. Ctrl-C stops all three.
# Settings come from the environment (see README.md).
#
#   deploy/run.sh           run dora
#   deploy/run.sh --demo    run dora and seed 90 days of demo history through the
#                           ingest API first (a second run adds nothing)
#
# State kept between runs, in $DORA_STATE_DIR (default .dora/, ignored by git): the
# generated ingest token, so a second run accepts the same token; the generated source
# key, so events signed in one run keep their source in the next (and after a replay);
# and the end time of the demo history, so a second --demo run sends the very same
# events.
set -euo pipefail
cd "$(dirname "$0")/.."

demo=false
for arg in "$@"; do
    case "$arg" in
        --demo) demo=true ;;
        -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run: unknown argument '$arg' (try --demo or --help)" >&2; exit 2 ;;
    esac
done

state=${DORA_STATE_DIR:-.dora}
bin=${CARGO_TARGET_DIR:-target}/release
ingest_addr=${DORA_INGEST_ADDR:-127.0.0.1:8081}
api_addr=${DORA_API_ADDR:-127.0.0.1:8080}
projector_addr=${DORA_PROJECTOR_ADDR:-127.0.0.1:8082}

deploy/services.sh

if ! psql -h 127.0.0.1 -U postgres -d postgres -w -Atc "SELECT 1 FROM pg_database WHERE datname = 'dora'" | grep -q 1; then
    psql -h 127.0.0.1 -U postgres -d postgres -w -qc 'CREATE DATABASE dora'
fi

packages=(-p dora-ingest -p dora-projector -p dora-api)
$demo && packages+=(-p dora-demo)
cargo build --release "${packages[@]}"

mkdir -p "$state"
if [ -z "${DORA_INGEST_TOKENS:-}" ]; then
    # One token for this checkout, made on the first run and kept, so pipelines and
    # a second --demo run can still send.
    if [ ! -s "$state/ingest-token" ]; then
        (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$state/ingest-token")
    fi
    secret=$(cat "$state/ingest-token")
    export DORA_INGEST_TOKENS="local=$secret"
    token_note="$secret (kept in $state/ingest-token)"
else
    # The demo sends with the first token given.
    first=${DORA_INGEST_TOKENS%%,*}
    secret=${first#*=}
    token_note="the secret of '${first%%=*}' in DORA_INGEST_TOKENS"
fi

if [ -z "${DORA_SOURCE_KEY:-}" ]; then
    # The key the gateway signs each event's source with and the projector checks it
    # with; made on the first run and kept, as the token is. The processes start
    # without one, but then keep any claimed source unverified: this setup is the
    # recommended one.
    if [ ! -s "$state/source-key" ]; then
        (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$state/source-key")
    fi
    DORA_SOURCE_KEY=$(cat "$state/source-key")
    export DORA_SOURCE_KEY
fi

pids=()
stop() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait || true; }
trap stop EXIT INT TERM

# The projector owns the schema: it migrates before the API is asked anything.
"$bin/dora-projector" & projector_pid=$!; pids+=("$projector_pid")
"$bin/dora-ingest" & ingest_pid=$!; pids+=("$ingest_pid")
"$bin/dora-api" & api_pid=$!; pids+=("$api_pid")

# True when GET http://$1$2 answers 200. curl when there is one, else bash's /dev/tcp.
http_ok() {
    local addr=$1 path=$2 host port status
    host=${addr%:*} port=${addr##*:}
    [ "$host" = 0.0.0.0 ] && host=127.0.0.1
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -o /dev/null --max-time 2 "http://$host:$port$path" 2>/dev/null
        return
    fi
    { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null || return 1
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$host" >&3
    read -r -t 2 _ status _ <&3 || true
    exec 3<&-
    [ "$status" = 200 ]
}

# Waits until $1's /readyz at $2 answers 200; stops everything if process $3 exits.
wait_ready() {
    local name=$1 addr=$2 pid=$3
    for _ in $(seq 1 600); do
        http_ok "$addr" /readyz && { echo "run: $name ready on http://$addr"; return; }
        kill -0 "$pid" 2>/dev/null || { echo "run: $name exited before it was ready" >&2; exit 1; }
        sleep 0.2
    done
    echo "run: $name not ready on http://$addr/readyz after 120 s" >&2
    exit 1
}

wait_ready dora-ingest "$ingest_addr" "$ingest_pid"
wait_ready dora-api "$api_addr" "$api_pid"
# A projector that serves /readyz says so in its --help; an older one shows it is ready
# through the API's /readyz, which waits for the schema the projector migrates.
# (Read whole first: with pipefail, grep -q closing the pipe early could fail the test.)
projector_help=$("$bin/dora-projector" --help 2>/dev/null || true)
if grep -q DORA_PROJECTOR_ADDR <<< "$projector_help"; then
    wait_ready dora-projector "$projector_addr" "$projector_pid"
fi

if $demo; then
    if [ ! -s "$state/demo-as-of" ]; then
        date -u +%Y-%m-%dT%H:%M:%SZ > "$state/demo-as-of"
    fi
    echo "run: seeding the demo history (ending $(cat "$state/demo-as-of")) through http://$ingest_addr"
    DORA_TOKEN=$secret "$bin/dora-demo" --url "http://$ingest_addr" --api "http://$api_addr" \
        --as-of "$(cat "$state/demo-as-of")"
fi

cat <<EOF

dora is running; Ctrl-C stops it.
  dashboard  http://$api_addr/dashboard
  metrics    http://$api_addr/dora?days=30
  ingest     http://$ingest_addr/events  (POST, Authorization: Bearer <token>)
  webhooks   http://$ingest_addr/webhooks/{github,gitlab,pagerduty,opsgenie,alertmanager}  (README: Connect your tools)
  token      $token_note

EOF
# Stop everything when any one of them stops.
wait -n
