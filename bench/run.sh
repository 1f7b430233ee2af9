#!/usr/bin/env bash
# Direct calls to a fake OpenAI provider vs. the same calls through llmux, in one run.
# Usage: bench/run.sh            (see bench/README.md for the knobs below)
#   PIN=same|none|split  CPU pinning (default same): split = llmux on CPU 1, fake provider and
#                    load generator on CPU 0; same = all three on CPU 0
#   SKIP_BUILD=1     use the binaries already in $CARGO_TARGET_DIR/release
#   LLMUX_BIN=path   benchmark another llmux binary (same CLI: --config FILE --log-level LEVEL)
#   REQUESTS=3000 WARMUP=300 ROUNDS=6 HIGH_C=32 HIGH_SECONDS=4
#   KINDS=nonstream,stream,anthropic-nonstream,anthropic-stream,gemini-nonstream,gemini-stream,
#         responses-nonstream,responses-stream
#                    anthropic-*: Anthropic requests to llmux's /v1/messages; gemini-*: Gemini
#                    requests to /v1beta/models/fake-model:generateContent (stream:
#                    :streamGenerateContent?alt=sse); responses-*: OpenAI Responses requests to
#                    /v1/responses. Each is compared with the OpenAI request of the same size and
#                    stream flag sent straight to the fake.
# Writes bench/results/latest.md and bench/results/latest.json. Ends within 5 minutes after the
# build (BUDGET=290 seconds: start-up, probes and warm-ups, then `loadgen compare` gets the rest).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/llmux/target}"
export RUST_LIB_BACKTRACE=0
bin="$CARGO_TARGET_DIR/release"
LLMUX_BIN="${LLMUX_BIN:-$bin/llmux}"

PIN="${PIN:-same}"
REQUESTS="${REQUESTS:-3000}"
WARMUP="${WARMUP:-300}"
ROUNDS="${ROUNDS:-6}"
HIGH_C="${HIGH_C:-32}"
HIGH_SECONDS="${HIGH_SECONDS:-4}"
KINDS="${KINDS:-nonstream,stream,anthropic-nonstream,anthropic-stream,gemini-nonstream,gemini-stream,responses-nonstream,responses-stream}"
BUDGET="${BUDGET:-290}"
results="$here/results"
mkdir -p "$results"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    echo "building release binaries..." >&2
    (cd "$root" && cargo build --release -p llmux -p llmux-bench)
fi
for b in "$LLMUX_BIN" "$bin/fake-provider" "$bin/loadgen"; do
    [[ -x "$b" ]] || { echo "missing $b" >&2; exit 1; }
done
# Everything below counts against BUDGET (bash's SECONDS: seconds since the script started).
run_start=$SECONDS

pin_proxy=()
pin_load=()
case "$PIN" in
    split)
        if [[ "$(nproc)" -ge 2 ]] && command -v taskset >/dev/null; then
            pin_proxy=(taskset -c 1)
            pin_load=(taskset -c 0)
        else
            echo "PIN=split needs taskset and 2 CPUs; running unpinned" >&2
            PIN=none
        fi
        ;;
    same)
        if command -v taskset >/dev/null; then
            pin_proxy=(taskset -c 0)
            pin_load=(taskset -c 0)
        else
            echo "PIN=same needs taskset; running unpinned" >&2
            PIN=none
        fi
        ;;
    none) ;;
    *) echo "PIN must be none, split or same" >&2; exit 2 ;;
esac

tmp="$(mktemp -d)"
fake_pid=""
llmux_pid=""
cleanup() {
    local p
    for p in "$llmux_pid" "$fake_pid"; do
        if [[ -n "$p" ]]; then kill "$p" 2>/dev/null || true; fi
    done
    for p in "$llmux_pid" "$fake_pid"; do
        if [[ -n "$p" ]]; then wait "$p" 2>/dev/null || true; fi
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Fake provider on a port it picks itself.
"${pin_load[@]}" "$bin/fake-provider" --port 0 >"$tmp/fake.out" 2>"$tmp/fake.err" &
fake_pid=$!
fake_addr=""
for _ in $(seq 100); do
    fake_addr="$(sed -n 's/^listening on //p' "$tmp/fake.out")"
    [[ -n "$fake_addr" ]] && break
    kill -0 "$fake_pid" 2>/dev/null || { cat "$tmp/fake.err" >&2; exit 1; }
    sleep 0.05
done
[[ -n "$fake_addr" ]] || { echo "fake provider did not start" >&2; exit 1; }

# llmux in front of it.
port="$("$bin/loadgen" free-port)"
cat >"$tmp/llmux.toml" <<EOF
default_backend = "fake"

[proxy]
host = "127.0.0.1"
port = $port
# The Anthropic kinds use /v1/messages on the main port; no dedicated port (port + 1 may be taken).
anthropic_port = 0

[backends.fake]
type = "openai-compatible"
base_url = "http://$fake_addr/v1"
EOF
"${pin_proxy[@]}" "$LLMUX_BIN" --config "$tmp/llmux.toml" --log-level warn \
    >"$tmp/llmux.out" 2>"$tmp/llmux.err" &
llmux_pid=$!

ready=0
while (( SECONDS - run_start < 25 )); do
    if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/health" 2>/dev/null; then
        ready=1
        break
    fi
    kill -0 "$llmux_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ "$ready" != 1 ]]; then
    echo "llmux did not become ready on 127.0.0.1:$port; its output:" >&2
    tail -n 30 "$tmp/llmux.out" "$tmp/llmux.err" >&2
    exit 1
fi

# The Anthropic, Gemini and Responses kinds need their routes. A target without one (the A/A
# stand-in, an older llmux) answers 404: skip those kinds with a note. Any other failure is left to
# the load generator, which reports it.
# probe PREFIX NAME PATH BODY [CURL ARGS...]: skips the PREFIX-* kinds when PATH answers 404.
note_args=()
probe() {
    local prefix="$1" name="$2" path="$3" body="$4" code kept dropped note
    shift 4
    [[ ",$KINDS" == *",$prefix-"* ]] || return 0
    code="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 \
        -H 'content-type: application/json' "$@" -d "$body" \
        "http://127.0.0.1:$port$path" || true)"
    if [[ "$code" == 404 ]]; then
        kept="$(tr ',' '\n' <<<"$KINDS" | grep -v "^$prefix-" | paste -sd, - || true)"
        dropped="$(tr ',' '\n' <<<"$KINDS" | grep "^$prefix-" | paste -sd, - || true)"
        note="$LLMUX_BIN has no $path (HTTP 404): skipped the $name kinds ($dropped)"
        echo "$note" >&2
        note_args+=(--note "$note")
        KINDS="$kept"
    fi
}
probe anthropic Anthropic /v1/messages \
    '{"model":"gpt-4o-mini","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}' \
    -H 'anthropic-version: 2023-06-01'
probe gemini Gemini /v1beta/models/fake-model:generateContent \
    '{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}'
probe responses Responses /v1/responses '{"model":"gpt-4o-mini","input":"hi"}'
[[ -n "$KINDS" ]] || { echo "no kinds left to measure" >&2; exit 1; }

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
startup_rss="$(rss_kb "$llmux_pid")"

# Warm-up through the proxy (lazy initialisation, pooled connection), then let it settle.
# A kind whose warm-up gets no answer at all stops the run here, with the load generator's output.
for k in ${KINDS//,/ }; do
    rc=0
    timeout 8 "${pin_load[@]}" "$bin/loadgen" run --url "http://127.0.0.1:$port/v1" \
        --kind "$k" -n 200 --warmup 0 --max-seconds 3 >"$tmp/warmup.out" 2>&1 || rc=$?
    if [[ "$rc" != 0 ]]; then
        if [[ "$rc" == 124 ]]; then
            echo "warm-up of $k through llmux did not end within 8 s" >&2
        else
            echo "warm-up of $k through llmux failed:" >&2
        fi
        cat "$tmp/warmup.out" >&2
        exit 1
    fi
done
sleep 1
idle_rss="$(rss_kb "$llmux_pid")"

rev="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git -C "$root" diff --quiet HEAD 2>/dev/null; then rev="$rev+dirty"; fi
clk_tck="$(getconf CLK_TCK)"
llmux_threads="$(find "/proc/$llmux_pid/task" -mindepth 1 -maxdepth 1 | wc -l)"
loadavg="$(cut -d' ' -f1-3 /proc/loadavg)"
# How busy the machine is without us: CPU use over one second while our processes idle.
cpu_busy() { awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
read -r b0 t0 < <(cpu_busy); sleep 1; read -r b1 t1 < <(cpu_busy)
busy_pct=$(( (b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1) ))
busy_note="machine CPU busy before the run: ${busy_pct}% (load average $loadavg)"
if (( busy_pct > 15 )); then
    busy_note="WARNING: $busy_note; other work competes for the CPUs, expect noisy p99 and c=32 numbers"
    echo "$busy_note" >&2
fi

# Bounded: whatever is left of BUDGET. The load generator starts no further kind 30 s before that
# (it names the skipped kinds in the report); `timeout` is the backstop.
left=$(( BUDGET - (SECONDS - run_start) ))
(( left > 40 )) || { echo "only ${left} s of the ${BUDGET} s budget left for the measurement" >&2; exit 1; }
timeout "$left" "${pin_load[@]}" "$bin/loadgen" compare \
    --direct "http://$fake_addr/v1" \
    --proxied "http://127.0.0.1:$port/v1" \
    --proxy-pid "$llmux_pid" --clk-tck "$clk_tck" \
    --kinds "$KINDS" --requests "$REQUESTS" --warmup "$WARMUP" --rounds "$ROUNDS" \
    --high-concurrency "$HIGH_C" --high-seconds "$HIGH_SECONDS" --budget-seconds "$(( left - 30 ))" \
    --startup-rss-kb "$startup_rss" --idle-rss-kb "$idle_rss" \
    --note "$(date -u +%Y-%m-%dT%H:%M:%SZ), llmux $rev, $(nproc) CPUs ($(uname -sr)), llmux threads at idle: $llmux_threads" \
    --note "$busy_note" \
    --note "pinning: $PIN$([[ "$PIN" == split ]] && echo ' (llmux on CPU 1; fake provider and load generator on CPU 0)')$([[ "$PIN" == same ]] && echo ' (llmux, fake provider and load generator all on CPU 0)')" \
    --note "load generator: 1 thread, one keep-alive HTTP/1.1 connection per worker; fake provider: 1 thread" \
    "${note_args[@]}" \
    --out "$results/latest.md" --json-out "$results/latest.json"

if [[ -s "$tmp/llmux.err" ]]; then
    echo "llmux stderr (last lines):" >&2
    tail -n 10 "$tmp/llmux.err" >&2
fi
echo "wrote $results/latest.md" >&2
