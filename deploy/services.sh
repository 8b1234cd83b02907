#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432, user postgres without a password) and
# nats-server with JetStream (127.0.0.1:4222) are running on this machine: installs
# them from Debian's packages if they are missing, starts them if they are stopped.
# Idempotent; safe to run before every test run.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }

missing=()
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
[ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
if [ ${#missing[@]} -gt 0 ]; then
    echo "services: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# PostgreSQL.
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    echo "services: starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi
if ! psql -h 127.0.0.1 -U postgres -d postgres -w -Atc 'SELECT 1' >/dev/null 2>&1; then
    # A fresh Debian cluster asks for a password over TCP. dora's defaults (and its
    # tests) connect as postgres without one, so trust loopback connections.
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    hba=/etc/postgresql/$version/main/pg_hba.conf
    echo "services: trusting 127.0.0.1 in $hba"
    as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    as_postgres psql -q -c 'SELECT pg_reload_conf()' >/dev/null
    sleep 0.5
fi
psql -h 127.0.0.1 -U postgres -d postgres -w -Atc 'SELECT 1' >/dev/null

# nats-server with JetStream.
nats_up() { (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; }
if ! nats_up; then
    echo "services: starting nats-server with JetStream"
    as_root mkdir -p /var/lib/nats-server
    nats=$(command -v nats-server || echo /usr/sbin/nats-server)
    as_root start-stop-daemon --start --oknodo --background --exec "$nats" -- \
        -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
    for _ in $(seq 1 50); do nats_up && break; sleep 0.2; done
fi
nats_up || { echo "services: nats-server did not come up on 127.0.0.1:4222" >&2; exit 1; }
echo "services: PostgreSQL and nats-server are up"
