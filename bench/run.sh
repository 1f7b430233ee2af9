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
#                    /v1/responses. Each is compared with the request of the same size and
#                    stream flag in the back-end's API (FAKE_API, OpenAI chat by default) sent
#                    straight to the fake.
#   FAKE_API=openai|anthropic|gemini|responses  the API llmux's back-end speaks to the fake
#                    (default openai). The direct side then sends each kind's conversation in
#                    that API: that API's kinds measure the same-protocol path (the targets),
#                    the others their translation into it. Writes latest-$FAKE_API.md/.json
#                    instead of latest.md when not openai.
# Writes bench/results/latest.md and bench/results/latest.json (latest-$FAKE_API.* for another API). Ends within 5 minutes after the
# build (BUDGET=290 seconds: start-up, probes and warm-ups, then `loadgen compare` gets the rest).
# Wire capture off vs. on: bench/capture.sh (shares the helpers in bench/lib.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
refuse_fake_tls
LLMUX_BIN="${LLMUX_BIN:-$bin/llmux}"

REQUESTS="${REQUESTS:-3000}"
WARMUP="${WARMUP:-300}"
ROUNDS="${ROUNDS:-6}"
HIGH_C="${HIGH_C:-32}"
HIGH_SECONDS="${HIGH_SECONDS:-4}"
KINDS="${KINDS:-nonstream,stream,anthropic-nonstream,anthropic-stream,gemini-nonstream,gemini-stream,responses-nonstream,responses-stream}"
BUDGET="${BUDGET:-290}"
results="$here/results"
mkdir -p "$results"
FAKE_API="${FAKE_API:-openai}"
out_name=latest
[[ "$FAKE_API" == openai ]] || out_name="latest-$FAKE_API"

build_release
require_bins "$LLMUX_BIN" "$bin/fake-provider" "$bin/loadgen"
# Everything below counts against BUDGET (bash's SECONDS: seconds since the script started).
run_start=$SECONDS
setup_pinning

# Fake provider on a port it picks itself, llmux in front of it.
start_fake
port="$("$bin/loadgen" free-port)"
write_config "$tmp/llmux.toml" "$port"
start_llmux llmux "$tmp/llmux.toml" "$port"
llmux_pid="$started_pid"

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

startup_rss="$(rss_kb "$llmux_pid")"

# Warm-up through the proxy (lazy initialisation, pooled connection), then let it settle.
# A kind whose warm-up gets no answer at all stops the run here, with the load generator's output.
warm_up "http://127.0.0.1:$port/v1" "$KINDS"
sleep 1
idle_rss="$(rss_kb "$llmux_pid")"

llmux_threads="$(find "/proc/$llmux_pid/task" -mindepth 1 -maxdepth 1 | wc -l)"
machine_notes
order_note "$LLMUX_BIN"

# Bounded: whatever is left of BUDGET. The load generator starts no further kind 30 s before that
# (it names the skipped kinds in the report); `timeout` is the backstop.
left=$(( BUDGET - (SECONDS - run_start) ))
(( left > 40 )) || { echo "only ${left} s of the ${BUDGET} s budget left for the measurement" >&2; exit 1; }
timeout "$left" "${pin_load[@]}" "$bin/loadgen" compare \
    --direct "http://$fake_addr/v1" \
    --proxied "http://127.0.0.1:$port/v1" \
    --proxy-pid "$llmux_pid" --clk-tck "$clk_tck" --provider-api "$FAKE_API" \
    --kinds "$KINDS" --requests "$REQUESTS" --warmup "$WARMUP" --rounds "$ROUNDS" \
    --high-concurrency "$HIGH_C" --high-seconds "$HIGH_SECONDS" --budget-seconds "$(( left - 30 ))" \
    --startup-rss-kb "$startup_rss" --idle-rss-kb "$idle_rss" \
    --note "$(date -u +%Y-%m-%dT%H:%M:%SZ), llmux $rev, $(nproc) CPUs ($(uname -sr)), llmux threads at idle: $llmux_threads" \
    --note "$busy_note" \
    --note "$pin_note" \
    --note "$order_note" \
    --note "load generator: 1 thread, one keep-alive HTTP/1.1 connection per worker; fake provider: 1 thread" \
    "${note_args[@]}" \
    --out "$results/$out_name.md" --json-out "$results/$out_name.json"

if [[ -s "$tmp/llmux.err" ]]; then
    echo "llmux stderr (last lines):" >&2
    tail -n 10 "$tmp/llmux.err" >&2
fi
echo "wrote $results/$out_name.md" >&2
