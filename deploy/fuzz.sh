#!/usr/bin/env bash
# Fuzzes the gateway's request body handling (fuzz/fuzz_targets/body.rs) for a while:
# FUZZ_SECONDS, default 60. Installs cargo-fuzz where it is missing.
#
# cargo fuzz needs nightly-only compiler flags (-Z, sanitizer coverage); the machine has
# only the stable toolchain, and RUSTC_BOOTSTRAP=1 lets stable accept them. No
# sanitizer (-s none): the workspace forbids unsafe code, so AddressSanitizer would find
# nothing the Rust checks do not; the properties are panics and assertions, which
# libFuzzer catches as crashes.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds="${FUZZ_SECONDS:-60}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

# The corpus libFuzzer grows goes to a temporary directory; the seeds in the
# repository are only read.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus"
cd fuzz
status=0
RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none --target-dir "$root/target/fuzz" \
    body "$work/corpus" seeds/body -- -max_total_time="$seconds" -max_len=65536 \
    -timeout=10 -print_final_stats=1 >"$work/log" 2>&1 || status=$?
# What ran: the executions, the corpus and coverage it reached.
grep -E '^(#[0-9]+.*(INITED|DONE)|stat::number_of_executed_units|stat::average_exec_per_sec|Done [0-9]+ runs)' "$work/log" || true
if [ "$status" -ne 0 ]; then
    echo "fuzz: the body target failed (exit $status); the end of its log:" >&2
    tail -n 60 "$work/log" >&2
    exit "$status"
fi
echo "fuzz: the body target ran ${seconds} s without a failure"
