#!/usr/bin/env bash
# Session state in this process's memory vs. in Redis, in one run: two llmux instances in front
# of the same fake provider, one with `[state] backend = "memory"` ("off", the default) and one
# with `backend = "redis"` on a redis-server of its own on a loopback port ("on"), compared by
# `loadgen compare --report capture` ("added" is then what the Redis store costs per request:
# every request counts its session's turn, a read and a compare-and-set on Redis).
# The load generator's requests all derive the same session (same user agent, same first
# message), so at c=32 every request updates one key: the worst case for compare-and-set.
# Usage: bench/state.sh          (see "Session state: memory vs. Redis" in bench/README.md)
#   PIN=same|none|split  SKIP_BUILD=1  LLMUX_BIN=path   as for bench/run.sh
#   KINDS=nonstream,stream   REQUESTS=3000 WARMUP=300 ROUNDS=6 HIGH_C=32 HIGH_SECONDS=4
#   TARGET_US=150    the issue's target for the added p50, in microseconds (reported beside it)
# Needs redis-server (scripts/setup installs it). Writes bench/results/state-redis.md and
# bench/results/state-redis.json. Ends within 4 minutes after the build (BUDGET=200 seconds).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
LLMUX_BIN="${LLMUX_BIN:-$bin/llmux}"

REQUESTS="${REQUESTS:-3000}"
WARMUP="${WARMUP:-300}"
ROUNDS="${ROUNDS:-6}"
HIGH_C="${HIGH_C:-32}"
HIGH_SECONDS="${HIGH_SECONDS:-4}"
KINDS="${KINDS:-nonstream,stream}"
TARGET_US="${TARGET_US:-150}"
BUDGET="${BUDGET:-200}"
results="$here/results"
mkdir -p "$results"
out_md="$results/state-redis.md"
out_json="$results/state-redis.json"

command -v redis-server >/dev/null || { echo "redis-server is missing (scripts/setup installs it)" >&2; exit 1; }
build_release
require_bins "$LLMUX_BIN" "$bin/fake-provider" "$bin/loadgen"
run_start=$SECONDS
setup_pinning

# Redis on the load generator's CPU, like the fake provider: llmux's CPU stays its own.
redis_port="$("$bin/loadgen" free-port)"
"${pin_load[@]}" redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$tmp" >"$tmp/redis.out" 2>&1 &
redis_pid=$!
bench_pids+=("$redis_pid")
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break
    sleep 0.05
done

start_fake
off_port="$("$bin/loadgen" free-port)"
write_config "$tmp/off.toml" "$off_port"
start_llmux off "$tmp/off.toml" "$off_port"
off_pid="$started_pid"
on_port="$("$bin/loadgen" free-port)"
write_config "$tmp/on.toml" "$on_port" "
[state]
backend = \"redis\"
url = \"redis://127.0.0.1:$redis_port/0\""
start_llmux on "$tmp/on.toml" "$on_port"
on_pid="$started_pid"
compare_pair "$off_port" "$off_pid" "$on_port" "$on_pid" "$out_md" "$out_json" \
    --note "$(redis-server --version | cut -d' ' -f1-3); redis-server shares the CPU of the fake provider and the load generator" \
    --note "target (issue #19): added p50 <= ${TARGET_US} µs per request with Redis on loopback" \
    --note "every request updates one session key (same derived session): the compare-and-set worst case at c=$HIGH_C"
relabel_report "$out_md" "llmux session state: memory (off) vs. Redis (on)" \
    'llmux with `[state] backend = "memory"`' 'llmux with `[state] backend = "redis"`' \
    "the Redis store" "The capture report's yardstick: cost ≤ \\1 % (the issue's target is the added p50 above)" \
    Redis
stop_pid "$on_pid"
stop_pid "$off_pid"
echo "wrote $out_md and $out_json"
