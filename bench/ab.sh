#!/usr/bin/env bash
# Two llmux binaries in one run, same config, same fake provider: A (the baseline, "off")
# against B (the candidate, "on"), compared by `loadgen compare --report capture`, so
# "added" is what B costs over A. For a change's own cost, e.g. a stage every request runs:
#   A_BIN=/path/to/llmux-before B_BIN=/path/to/llmux-after bench/ab.sh
# Usage: bench/ab.sh     A_BIN (required), B_BIN (default: this tree's release build)
#   LABEL="what B adds"  a name for the report's title
#   PIN=same|none|split  SKIP_BUILD=1   KINDS=nonstream,stream   REQUESTS WARMUP ROUNDS
#   HIGH_C HIGH_SECONDS   as for bench/run.sh
#   HISTORY=40   every request carries 40 earlier agent turns (~100 KB; `loadgen run --history`)
#   HISTORY_FROM=src   their tool results are the files under src (`--history-from`)
#   HISTORY_GROWS=1 / HISTORY_FRESH=1   the requests grow a turn at a time / are each a
#                conversation of its own (`--history-grows` / `--history-fresh`)
#   EXTRA_TOOLS=20   20 tools offered besides the shell tool, ~0.9 KB each (`--extra-tools`)
#   WITH_STORE=1 both run the capture store (SQLite), each with its own database (not CAPTURE_DB:
#                that is llmux's own variable, which would point both at one file)
# Writes bench/results/ab.md and bench/results/ab.json. Ends within 4 minutes after the build.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
A_BIN="${A_BIN:?A_BIN: the baseline llmux binary}"
B_BIN="${B_BIN:-$bin/llmux}"
LABEL="${LABEL:-B over A}"
REQUESTS="${REQUESTS:-3000}"
WARMUP="${WARMUP:-300}"
ROUNDS="${ROUNDS:-6}"
HIGH_C="${HIGH_C:-32}"
HIGH_SECONDS="${HIGH_SECONDS:-4}"
KINDS="${KINDS:-nonstream,stream}"
BUDGET="${BUDGET:-200}"
results="$here/results"
mkdir -p "$results"
out_md="$results/ab.md"
out_json="$results/ab.json"

build_release
require_bins "$A_BIN" "$B_BIN" "$bin/fake-provider" "$bin/loadgen"
run_start=$SECONDS
setup_pinning
start_fake
a_port="$("$bin/loadgen" free-port)"
# capture_toml NAME: the capture store's table when WITH_STORE=1, a database per instance.
capture_toml() {
    if [[ "${WITH_STORE:-0}" == 1 ]]; then printf '[capture]\ndb = "%s"\n' "$tmp/$1.db"; fi
}
write_config "$tmp/a.toml" "$a_port" "$(capture_toml a)"
LLMUX_BIN="$A_BIN" start_llmux a "$tmp/a.toml" "$a_port"
a_pid="$started_pid"
b_port="$("$bin/loadgen" free-port)"
write_config "$tmp/b.toml" "$b_port" "$(capture_toml b)"
LLMUX_BIN="$B_BIN" start_llmux b "$tmp/b.toml" "$b_port"
b_pid="$started_pid"
compare_pair "$a_port" "$a_pid" "$b_port" "$b_pid" "$out_md" "$out_json" \
    --cost-target-pct 1 \
    --note "A: $A_BIN; B: $B_BIN; history: ${HISTORY:-0} turns${HISTORY_FROM:+ from $HISTORY_FROM}${EXTRA_TOOLS:+; $EXTRA_TOOLS extra tools}; capture store: ${WITH_STORE:-0}"
relabel_report "$out_md" "llmux A (off) vs. B (on): $LABEL" "llmux A" "llmux B" B \
    "Target: B costs ≤ \\1 %" B
stop_pid "$b_pid"
stop_pid "$a_pid"
echo "wrote $out_md and $out_json"
