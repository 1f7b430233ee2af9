#!/usr/bin/env bash
# Cold start of the headless binary: from exec to the first answered chat request, timed by
# `loadgen cold-start` over RUNS starts (issue #17's target: ≤ 50 ms). Two configs: the bench
# config of run.sh (no capture) and the same with the capture store on (`[capture] db`, a new
# SQLite file each start), as on the desktop.
# Usage: bench/coldstart.sh   RUNS=20  SKIP_BUILD=1  LLMUX_BIN=path
# Writes bench/results/coldstart.md. Ends within a minute after the build.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
LLMUX_BIN="${LLMUX_BIN:-$bin/llmux}"
RUNS="${RUNS:-20}"
results="$here/results"
mkdir -p "$results"
out_md="$results/coldstart.md"

build_release
require_bins "$LLMUX_BIN" "$bin/fake-provider" "$bin/loadgen"
PIN=none setup_pinning
start_fake
machine_notes

# time_starts NAME EXTRA_TOML: RUNS starts of llmux with the bench config plus EXTRA_TOML.
time_starts() {
    local port
    port="$("$bin/loadgen" free-port)"
    write_config "$tmp/$1.toml" "$port" "$2"
    timeout 120 "$bin/loadgen" cold-start --url "http://127.0.0.1:$port/v1" --runs "$RUNS" -- \
        "$LLMUX_BIN" --config "$tmp/$1.toml" --log-level warn
}
no_capture="$(time_starts plain "")"
# A new store file for every start would need a wrapper; the same file is reopened instead,
# as a restarted desktop app does.
with_store="$(time_starts store $'[capture]\ndb = "'"$tmp"'/capture.sqlite"')"
{
    echo "# llmux cold start: exec to the first answered chat request"
    echo
    echo "- $(date -u +%Y-%m-%dT%H:%M:%SZ), llmux $rev, $(nproc) CPUs ($(uname -sr)); $busy_note"
    echo "- binary: $LLMUX_BIN; target ≤ 50 ms"
    echo
    echo "| config | result |"
    echo "|---|---|"
    echo "| bench config, no capture | $no_capture |"
    echo "| with the capture store (SQLite) | $with_store |"
} >"$out_md"
cat "$out_md"
