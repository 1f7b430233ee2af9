#!/usr/bin/env bash
# llmux in front of an HTTPS provider: the provider's TLS connection driven by the request's
# own task (src/backend/driven_http.rs) against reqwest's pooled client (every HTTPS back-end
# before 5150442; proxied back-ends still), one binary, one fake provider, sides alternating
# in rounds. The reqwest side runs with HTTPS_PROXY set to a dead port and NO_PROXY exempting
# 127.0.0.1: a proxy variable keeps the driven client off, and reqwest then connects directly.
# Usage: bench/https.sh            (the release llmux; results in bench/results/https.md)
#   SKIP_BUILD=1   use the binaries already built;  ROUNDS=3  rounds per kind and concurrency
#   N=2000         requests a side and round at c=1; DURATION=3  seconds a side and round at c=32
#   PIN=same|none|split   as bench/run.sh (same: llmux, fake and load generator on CPU 0)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
export FAKE_TLS=1
LLMUX_BIN="${LLMUX_BIN:-$bin/llmux}"
ROUNDS="${ROUNDS:-3}"
N="${N:-2000}"
DURATION="${DURATION:-3}"
report="$here/results/https.md"

build_release
require_bins "$LLMUX_BIN" "$bin/fake-provider" "$bin/loadgen"
PIN="${PIN:-same}"
setup_pinning
run_start=$SECONDS
start_fake

declare -A port pid
port[reqwest]="$("$bin/loadgen" free-port)"
write_config "$tmp/reqwest.toml" "${port[reqwest]}"
HTTPS_PROXY="http://127.0.0.1:9" NO_PROXY="127.0.0.1" start_llmux reqwest "$tmp/reqwest.toml" "${port[reqwest]}"
pid[reqwest]="$started_pid"
port[driven]="$("$bin/loadgen" free-port)"
write_config "$tmp/driven.toml" "${port[driven]}"
start_llmux driven "$tmp/driven.toml" "${port[driven]}"
pid[driven]="$started_pid"

# cpu_ticks PID: user + system time of the process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# measure SIDE KIND C: one loadgen run against SIDE; prints "p50 p99 rps cpu_us_per_request".
measure() {
    local side="$1" kind="$2" c="$3" before after json amount
    if [[ "$c" == 1 ]]; then amount=(-n "$N"); else amount=(--duration "$DURATION"); fi
    before="$(cpu_ticks "${pid[$side]}")"
    json="$("${pin_load[@]}" "$bin/loadgen" run --url "http://127.0.0.1:${port[$side]}/v1" --kind "$kind" \
        -c "$c" "${amount[@]}" --warmup 200 --json)"
    after="$(cpu_ticks "${pid[$side]}")"
    python3 -c 'import json, sys
r = json.loads(sys.argv[1]); ticks = int(sys.argv[2]); hz = int(sys.argv[3])
if r["errors"]: sys.exit("errors: %s" % r["first_error"])
print("%.1f %.1f %.0f %.1f" % (r["p50_us"], r["p99_us"], r["rps"], ticks * 1e6 / hz / r["ok"]))' \
        "$json" "$((after - before))" "$(getconf CLK_TCK)"
}

{
    echo "# llmux in front of an HTTPS provider: driven connection vs. reqwest's pool"
    echo
    echo "Both sides are the same binary in front of the same fake provider over TLS (a"
    echo "self-signed certificate given as the back-end's \`ca_file\`); reqwest: HTTPS_PROXY set,"
    echo "NO_PROXY=127.0.0.1. $ROUNDS rounds a kind, sides alternating; c=1: $N requests a side"
    echo "and round, c=32: $DURATION s. Latency: loadgen send → last byte, through llmux (no direct"
    echo "call: the load generator speaks plain HTTP). CPU: llmux's utime+stime per request."
    echo
    machine_notes
    echo "- $(date -u +%Y-%m-%dT%H:%M:%SZ), llmux $rev, $(nproc) CPUs; $busy_note; $pin_note"
    echo
    echo "| kind | c | round | reqwest p50 / p99 µs | driven p50 / p99 µs | reqwest req/s | driven req/s | reqwest CPU µs/req | driven CPU µs/req |"
    echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|"
    for kind in nonstream stream; do
        for c in 1 32; do
            for (( round = 1; round <= ROUNDS; round++ )); do
                read -r rp50 rp99 rrps rcpu < <(measure reqwest "$kind" "$c")
                read -r dp50 dp99 drps dcpu < <(measure driven "$kind" "$c")
                echo "| $kind | $c | $round | $rp50 / $rp99 | $dp50 / $dp99 | $rrps | $drps | $rcpu | $dcpu |"
            done
        done
    done
} | tee "$report"
