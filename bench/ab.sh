#!/usr/bin/env bash
# Two llmux binaries in one run, same config, same fake provider: A (the baseline, "off")
# against B (the candidate, "on"), compared by `loadgen compare --report capture`, so
# "added" is what B costs over A. For a change's own cost, e.g. a stage every request runs:
#   A_BIN=/path/to/llmux-before B_BIN=/path/to/llmux-after bench/ab.sh
# Usage: bench/ab.sh     A_BIN (required), B_BIN (default: this tree's release build)
#   LABEL="what B adds"  a name for the report's title
#   PIN=same|none|split  SKIP_BUILD=1   KINDS=nonstream,stream   REQUESTS WARMUP ROUNDS
#   HIGH_C HIGH_SECONDS   as for bench/run.sh
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
write_config "$tmp/a.toml" "$a_port"
LLMUX_BIN="$A_BIN" start_llmux a "$tmp/a.toml" "$a_port"
a_pid="$started_pid"
b_port="$("$bin/loadgen" free-port)"
write_config "$tmp/b.toml" "$b_port"
LLMUX_BIN="$B_BIN" start_llmux b "$tmp/b.toml" "$b_port"
b_pid="$started_pid"
startup_rss="$(rss_kb "$b_pid")"
warm_up "http://127.0.0.1:$a_port/v1" "$KINDS"
warm_up "http://127.0.0.1:$b_port/v1" "$KINDS"
sleep 1
idle_rss="$(rss_kb "$b_pid")"
machine_notes

left=$(( BUDGET - (SECONDS - run_start) - 10 ))
(( left > 40 )) || { echo "only ${left} s of the ${BUDGET} s budget left for the measurement" >&2; exit 1; }
timeout "$left" "${pin_load[@]}" "$bin/loadgen" compare --report capture \
    --direct "http://127.0.0.1:$a_port/v1" --direct-pid "$a_pid" \
    --proxied "http://127.0.0.1:$b_port/v1" --proxy-pid "$b_pid" \
    --clk-tck "$clk_tck" --cost-target-pct 1 \
    --kinds "$KINDS" --requests "$REQUESTS" --warmup "$WARMUP" --rounds "$ROUNDS" \
    --high-concurrency "$HIGH_C" --high-seconds "$HIGH_SECONDS" \
    --budget-seconds "$(( left - 30 ))" \
    --startup-rss-kb "$startup_rss" --idle-rss-kb "$idle_rss" \
    --note "$(date -u +%Y-%m-%dT%H:%M:%SZ), llmux $rev, $(nproc) CPUs ($(uname -sr))" \
    --note "A: $A_BIN; B: $B_BIN" \
    --note "$busy_note" \
    --note "$pin_note" \
    --out "$out_md" --json-out "$out_json"
# loadgen's report speaks of the wire capture: say what was measured.
# shellcheck disable=SC2016 # the backquotes are Markdown
label="${LABEL//|/-}"
sed -i -e "1s|^# llmux wire capture: off vs. on|# llmux A (off) vs. B (on): $label|" \
    -e '/^off: /s/(llmux without capture)/(llmux A)/' \
    -e '/^off: /s/(llmux with `capture\.file`)/(llmux B)/' \
    -e "/^off: /s/what capture adds to a request/what B adds to a request/" \
    -e '/^off: /s/ (the capture writer thread included)//' \
    -e 's/^## Target: capture costs ≤ \([0-9]*\) %/## Target: B costs ≤ \1 %/' \
    -e 's/: capture adds /: B adds /' \
    -e 's/^llmux (capture on) RSS/llmux B RSS/' \
    "$out_md"
stop_pid "$b_pid"
stop_pid "$a_pid"
echo "wrote $out_md and $out_json"
