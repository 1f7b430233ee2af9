#!/usr/bin/env bash
# Instructions and system calls llmux spends per request, counted rather than timed: callgrind
# counts the instructions of every llmux thread while the load generator sends N requests of one
# kind, and strace counts the system calls of a second, uninstrumented run. Counts barely move
# between runs, so a change of 1 % shows, where latency on a busy 2-core machine moves by 5 %.
# Usage: bench/callgrind.sh                     (the release llmux, KIND=nonstream, N=2000)
#   BASE_BIN=path   also count this binary (e.g. a build of main) and print the difference
#   KIND=nonstream|stream|anthropic-nonstream|...   (see `loadgen run --help`)
#   N=2000          requests counted, after 300 not counted
#   SKIP_BUILD=1    use the binaries already in $CARGO_TARGET_DIR/release
#   EXTRA_TOML=...  appended to the config (e.g. a [loop_detection] table to count a stage)
#   BASE_TOML=...   appended to the base run's config instead (with BASE_BIN unset, the base
#                   run is the same binary: one config against another)
#   LOADGEN_ARGS=.. more `loadgen run` arguments (e.g. --tools)
#   SETTLE=0        seconds to wait after the warm-up and after the counted requests before the
#                   counters are zeroed and dumped: with a [capture] db in EXTRA_TOML, SETTLE=4
#                   puts the store writer's work for exactly the counted rows in the count (it
#                   writes within 1 s and indexes after 1 s without requests)
# Needs valgrind and strace (scripts/setup installs valgrind). Callgrind output files stay in
# bench/results/callgrind/ for `callgrind_annotate` (self cost by function: --inclusive=no).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
LLMUX_BIN="${LLMUX_BIN:-$bin/llmux}"
KIND="${KIND:-nonstream}"
N="${N:-2000}"
out="$here/results/callgrind"
mkdir -p "$out"
for tool in valgrind callgrind_control strace; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (scripts/setup installs it)" >&2; exit 1; }
done

build_release
require_bins "$LLMUX_BIN" "$bin/fake-provider" "$bin/loadgen"
run_start=$SECONDS
start_fake

# load URL COUNT: COUNT requests of KIND, one at a time.
load() {
    # shellcheck disable=SC2086 # LOADGEN_ARGS is a list of words
    "$bin/loadgen" run --url "$1" --kind "$KIND" -n "$2" ${LOADGEN_ARGS:-} >/dev/null
}

# count NAME BIN [TOML]: prints "NAME instructions/request syscalls/request"; TOML is appended
# to the config.
count() {
    local name="$1" llmux="$2" extra="${3:-}" port pid file instructions syscalls
    port="$("$bin/loadgen" free-port)"
    write_config "$tmp/$name.toml" "$port" "$extra"
    # Instructions: zero the counters after the warm-up, dump them after the counted requests.
    valgrind --tool=callgrind --callgrind-out-file="$out/$name.$KIND.cg" \
        "$llmux" --config "$tmp/$name.toml" --log-level warn >"$tmp/$name.vg.out" 2>&1 &
    pid=$!
    bench_pids+=("$pid")
    wait_ready "$port" 60
    load "http://127.0.0.1:$port/v1" 300
    sleep "${SETTLE:-0}"
    callgrind_control -z "$pid" >/dev/null 2>&1
    load "http://127.0.0.1:$port/v1" "$N"
    sleep "${SETTLE:-0}"
    callgrind_control -d "$pid" >/dev/null 2>&1
    stop_pid "$pid"
    file="$(ls -t "$out/$name.$KIND.cg".* | head -1)"
    instructions="$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')"
    # System calls: the same run without valgrind, strace attached after the warm-up.
    run_start=$SECONDS
    LLMUX_BIN="$llmux" start_llmux "$name" "$tmp/$name.toml" "$port"
    pid="$started_pid"
    load "http://127.0.0.1:$port/v1" 300
    strace -c -f -p "$pid" -o "$tmp/$name.strace" 2>/dev/null &
    local tracer=$!
    sleep 0.5
    load "http://127.0.0.1:$port/v1" "$N"
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null || true
    stop_pid "$pid"
    syscalls="$(awk '$NF == "total" {print ($3 ~ /^[0-9]+$/ && $4 !~ /^[0-9]+$/) ? $3 : $4}' "$tmp/$name.strace")"
    echo "$name $((instructions / N)) $(awk -v s="$syscalls" -v n="$N" 'BEGIN {printf "%.2f", s / n}')"
}

# wait_ready PORT SECONDS: until GET /health answers (valgrind starts llmux slowly).
wait_ready() {
    local i
    for (( i = 0; i < $2 * 10; i++ )); do
        curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$1/health" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "llmux did not answer on port $1 within $2 s" >&2
    exit 1
}

printf '%-8s %14s %14s   (KIND=%s, N=%s)\n' binary instr/request syscalls/req "$KIND" "$N"
read -r name instr sys < <(count llmux "$LLMUX_BIN" "${EXTRA_TOML:-}")
printf '%-8s %14s %14s\n' "$name" "$instr" "$sys"
if [[ -n "${BASE_BIN:-}" || -n "${BASE_TOML+set}" ]]; then
    read -r bname binstr bsys < <(count base "${BASE_BIN:-$LLMUX_BIN}" "${BASE_TOML-${EXTRA_TOML:-}}")
    printf '%-8s %14s %14s\n' "$bname" "$binstr" "$bsys"
    awk -v a="$instr" -v b="$binstr" 'BEGIN {printf "llmux - base: %+d instructions per request (%+.2f %%)\n", a - b, (a - b) * 100 / b}'
fi
