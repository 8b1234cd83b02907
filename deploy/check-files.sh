#!/usr/bin/env bash
# Checks the production files under deploy/ without a cluster or a Docker daemon:
#   - the Kubernetes manifests validate against the Kubernetes schemas, offline
#     (kubernetes-validate from PyPI, which ships them; strict: unknown fields fail);
#   - the NATS configuration loads in the real nats-server (`-t`);
#   - the Dockerfile builds and copies exactly the dora-* binaries the workspace
#     builds (`cargo metadata`);
#   - the systemd units parse without warnings (`systemd-analyze verify`), when
#     systemd-analyze is installed.
# Non-zero on any failure. Needs python3, kubernetes-validate, nats-server and cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0
fail() { echo "check-files: $*" >&2; failed=1; }

# Kubernetes.
if ! command -v kubernetes-validate >/dev/null 2>&1; then
    fail "kubernetes-validate is missing: pip install kubernetes-validate"
else
    manifests=()
    for f in deploy/k8s/*.yaml; do
        # kustomization.yaml is kustomize's own format, not a Kubernetes resource.
        [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
    done
    kubernetes-validate --strict --quiet "${manifests[@]}" || fail "Kubernetes manifests do not validate"
    # Every file the kustomization lists exists, and every manifest is listed.
    for f in "${manifests[@]}"; do
        grep -qx "  - $(basename "$f")" deploy/k8s/kustomization.yaml ||
            fail "$f is not listed in deploy/k8s/kustomization.yaml"
    done
fi

# NATS: the passwords are environment references; any value will do for loading.
nats=$(command -v nats-server || echo /usr/sbin/nats-server)
if [ ! -x "$nats" ]; then
    fail "nats-server is missing (deploy/services.sh installs it)"
elif ! out=$(DORA_NATS_PIPELINE_PASSWORD=x DORA_NATS_INGEST_PASSWORD=x \
    DORA_NATS_PROJECTOR_PASSWORD=x DORA_NATS_ADMIN_PASSWORD=x \
    "$nats" -c deploy/nats/nats-server.conf -t 2>&1); then
    fail "deploy/nats/nats-server.conf does not load: $out"
fi

# Dockerfile against the workspace's binaries.
workspace_bins=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
names = {t["name"] for p in meta["packages"] if p["id"] in members
         for t in p["targets"] if "bin" in t["kind"] and t["name"].startswith("dora-")}
print("\n".join(sorted(names)))')
built=$(grep -o -- '--bin [a-z0-9-]*' deploy/Dockerfile | awk '{print $2}' | sort -u)
copied=$(grep -o 'target/release/dora-[a-z0-9-]*' deploy/Dockerfile | sed 's#target/release/##' | sort -u)
[ "$built" = "$workspace_bins" ] ||
    fail "Dockerfile builds [$(echo $built)], the workspace has [$(echo $workspace_bins)]"
[ "$copied" = "$workspace_bins" ] ||
    fail "Dockerfile copies [$(echo $copied)], the workspace has [$(echo $workspace_bins)]"

# systemd: a unit per long-running process, parsed by systemd itself. verify wants the
# binaries and environment files to exist, so it reads copies pointing at stand-ins.
for p in ingest projector api; do
    [ -f "deploy/systemd/dora-$p.service" ] || fail "deploy/systemd/dora-$p.service is missing"
done
if command -v systemd-analyze >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    for unit in deploy/systemd/*.service; do
        sed -e "s#^ExecStart=.*#ExecStart=/bin/true#" -e "s#/etc/dora/#$tmp/#g" "$unit" > "$tmp/$(basename "$unit")"
    done
    touch "$tmp/dora.env" "$tmp/ingest.env" "$tmp/projector.env" "$tmp/api.env"
    out=$(systemd-analyze verify "$tmp"/*.service 2>&1) || fail "systemd units: $out"
    # verify only warns about unknown keys; a warning here is a mistake in a unit.
    if echo "$out" | grep -q "$tmp"; then fail "systemd units: $out"; fi
fi

if [ "$failed" -ne 0 ]; then
    exit 1
fi
echo "check-files: Kubernetes manifests, NATS config, Dockerfile and systemd units are fine"
