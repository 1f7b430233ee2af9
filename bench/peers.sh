#!/usr/bin/env bash
# llmux against a peer gateway, LiteLLM-Rust, in one run: the same OpenAI chat requests sent to
# the fake provider directly, through llmux and through LiteLLM-Rust, each proxy compared with
# the direct call by `loadgen compare` in rounds ordered llmux, peer, peer, llmux, so drift
# hits both alike. LiteLLM-Rust has no chat route: the chat body goes to its /v1/responses
# pass-through, which forwards it untouched to the fake's /v1/responses (answered like chat).
#
# Usage: LITE_BIN=/path/to/lite bench/peers.sh
#   LITE_BIN   LiteLLM-Rust's `lite` binary, built from its source (bench/README.md says how;
#              none of its code is in this repository)
#   PIN=same|none|split  SKIP_BUILD=1  KINDS=nonstream,stream  REQUESTS WARMUP ROUNDS HIGH_C
#   HIGH_SECONDS   as for bench/run.sh; PAIRS=2 (llmux/peer pairs of rounds, 1 or 2)
# Writes bench/results/peers.md (the summary table first, then each comparison's report) and
# peers-*.json. Ends within 6 minutes after the build.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
refuse_fake_tls
LITE_BIN="${LITE_BIN:?LITE_BIN: the lite binary of LiteLLM-Rust, see bench/README.md}"
LLMUX_BIN="${LLMUX_BIN:-$bin/llmux}"
REQUESTS="${REQUESTS:-3000}"
WARMUP="${WARMUP:-300}"
ROUNDS="${ROUNDS:-6}"
HIGH_C="${HIGH_C:-32}"
HIGH_SECONDS="${HIGH_SECONDS:-4}"
KINDS="${KINDS:-nonstream,stream}"
PAIRS="${PAIRS:-2}"
results="$here/results"
mkdir -p "$results"
out_md="$results/peers.md"

build_release
require_bins "$LLMUX_BIN" "$LITE_BIN" "$bin/fake-provider" "$bin/loadgen"
run_start=$SECONDS
setup_pinning
start_fake

llmux_port="$("$bin/loadgen" free-port)"
write_config "$tmp/llmux.toml" "$llmux_port"
start_llmux llmux "$tmp/llmux.toml" "$llmux_port"
llmux_pid="$started_pid"

# LiteLLM-Rust: one exact route for the load generator's model, no master key, no database.
# LITELLM_MODEL_COST_MAP_URL points at a closed loopback port so start-up does not wait for the
# network (it falls back to its embedded price map).
lite_port="$("$bin/loadgen" free-port)"
cat >"$tmp/lite.yaml" <<EOF
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: bench-not-a-secret
      api_base: http://$fake_addr
EOF
LITELLM_MODEL_COST_MAP_URL="http://127.0.0.1:9/none.json" RUST_LOG=warn \
    "${pin_proxy[@]}" "$LITE_BIN" --config "$tmp/lite.yaml" --host 127.0.0.1 --port "$lite_port" \
    >"$tmp/lite.out" 2>"$tmp/lite.err" &
lite_pid=$!
bench_pids+=("$lite_pid")
until curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$lite_port/health" 2>/dev/null; do
    if ! kill -0 "$lite_pid" 2>/dev/null || (( SECONDS - run_start > 25 )); then
        echo "LiteLLM-Rust did not become ready on 127.0.0.1:$lite_port; its output:" >&2
        tail -n 30 "$tmp/lite.out" "$tmp/lite.err" >&2
        exit 1
    fi
    sleep 0.1
done

direct="http://$fake_addr/v1"
warm_up "$direct" "$KINDS"
warm_up "http://127.0.0.1:$llmux_port/v1" "$KINDS"
for k in ${KINDS//,/ }; do
    timeout 8 "${pin_load[@]}" "$bin/loadgen" run --url "http://127.0.0.1:$lite_port/v1" \
        --chat-path /v1/responses --kind "$k" -n 200 --warmup 0 --max-seconds 3 \
        >"$tmp/warmup.out" 2>&1 \
        || { echo "warm-up of $k through LiteLLM-Rust failed:" >&2; cat "$tmp/warmup.out" >&2; exit 1; }
done
sleep 1
llmux_idle="$(rss_kb "$llmux_pid")"
lite_idle="$(rss_kb "$lite_pid")"
machine_notes

# measure NAME PID PORT [LOADGEN ARG...]: one `loadgen compare` of the direct call against the
# proxy on PORT, written to $tmp/NAME-<n>.md and $results/peers-NAME-<n>.json.
declare -A rounds_done=()
measure() {
    local name="$1" pid="$2" port="$3" n
    shift 3
    n=$(( ${rounds_done[$name]:-0} + 1 ))
    rounds_done[$name]=$n
    timeout 150 "${pin_load[@]}" "$bin/loadgen" compare \
        --direct "$direct" --proxied "http://127.0.0.1:$port/v1" --proxy-pid "$pid" \
        --clk-tck "$clk_tck" --kinds "$KINDS" --requests "$REQUESTS" --warmup "$WARMUP" \
        --rounds "$ROUNDS" --high-concurrency "$HIGH_C" --high-seconds "$HIGH_SECONDS" \
        --note "$name, round $n" "$@" \
        --out "$tmp/$name-$n.md" --json-out "$results/peers-$name-$n.json" >/dev/null
}
lite_args=(--proxied-chat-path /v1/responses)
measure llmux "$llmux_pid" "$llmux_port"
measure lite "$lite_pid" "$lite_port" "${lite_args[@]}"
if [[ "$PAIRS" == 2 ]]; then
    measure lite "$lite_pid" "$lite_port" "${lite_args[@]}"
    measure llmux "$llmux_pid" "$llmux_port"
fi

{
    echo "# llmux against LiteLLM-Rust: added to a direct call, one run"
    echo
    echo "- $(date -u +%Y-%m-%dT%H:%M:%SZ), llmux $rev, $(nproc) CPUs ($(uname -sr)); $busy_note; $pin_note"
    echo "- llmux: $LLMUX_BIN (OpenAI chat to /v1/chat/completions, default config)"
    echo "- LiteLLM-Rust: $LITE_BIN (the same body to its /v1/responses pass-through)"
    echo "- idle RSS after the warm-up: llmux $(( llmux_idle / 1024 )) MB, LiteLLM-Rust $(( lite_idle / 1024 )) MB"
    echo
    python3 "$here/peers_table.py" "$results"/peers-llmux-*.json -- "$results"/peers-lite-*.json
    for f in "$tmp"/llmux-*.md "$tmp"/lite-*.md; do
        echo
        sed 's/^#/##/' "$f"
    done
} >"$out_md"
stop_pid "$lite_pid"
stop_pid "$llmux_pid"
sed -n '1,/^## /p' "$out_md" | sed '$d'
echo "wrote $out_md"
