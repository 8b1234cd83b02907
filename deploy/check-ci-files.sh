#!/usr/bin/env bash
# Validates the GitHub Action, the example workflows and the GitLab CI template against
# the JSON schemas that ship inside check-jsonschema (no network needed once installed).
# The system test `emit::ci_files_*` checks what the schemas cannot: that every
# dora-emit invocation in them parses with dora-emit's own argument parser.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v check-jsonschema >/dev/null 2>&1; then
    python3 -m pip install --quiet check-jsonschema
fi
check-jsonschema --builtin-schema vendor.github-actions deploy/github/action.yml
check-jsonschema --builtin-schema vendor.github-workflows deploy/github/workflows/*.yml
check-jsonschema --builtin-schema vendor.gitlab-ci deploy/gitlab/*.gitlab-ci.yml
