#!/usr/bin/env bash
# Writes link/llmux.order: the functions a running llmux executes, which release builds on
# x86_64 Linux place together at the start of the binary's code (lld's
# --symbol-ordering-file, passed by build.rs). The kernel maps a binary's code in 64 KiB
# around each page it faults in; with the functions llmux uses spread over all of its ~14 MB
# of code, nearly all of it was mapped and counted in RSS. Run it after changes to the
# dependencies (symbol names carry a hash of the crate's build, which they change) or that add or
# rename many functions; a stale list only places fewer functions together (lld ignores names it
# does not find), and bench/run.sh says how much of it a binary still has.
# It starts the release llmux under callgrind (valgrind) with the capture store on, sends every
# loadgen kind through it to the fake provider, stops it, and lists the functions of the llmux
# binary that ran, by their mangled names, the most executed first.
# Usage: bench/symbol-order.sh    (SKIP_BUILD=1 uses the binaries already built)
# It profiles five set-ups one after another and writes their union (the first one's list, then
# what each later one adds): the back-end speaking OpenAI chat over plain HTTP, the same over
# HTTPS (FAKE_TLS=1: the path real providers take), and back-ends speaking Anthropic, Gemini and
# Responses (FAKE_API=...: the same-protocol paths of Claude Code, the Gemini CLI and Codex).
# RUNS="plain tls anthropic gemini responses" picks some of them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
LLMUX_BIN="${LLMUX_BIN:-$bin/llmux}"
KINDS="nonstream stream anthropic-nonstream anthropic-stream gemini-nonstream gemini-stream responses-nonstream responses-stream"
command -v valgrind >/dev/null || { echo "valgrind is missing (scripts/setup installs it)" >&2; exit 1; }

build_release
require_bins "$LLMUX_BIN" "$bin/fake-provider" "$bin/loadgen"
run_start=$SECONDS
RUNS="${RUNS:-plain tls anthropic gemini responses}"

# profile_run NAME: one set-up (FAKE_TLS and FAKE_API as set by the caller) profiled under
# callgrind, its functions (most executed first) written to $tmp/NAME.order.
profile_run() {
    local name="$1" port profile pid i kind
    start_fake
    port="$("$bin/loadgen" free-port)"
    write_config "$tmp/llmux.toml" "$port" "[capture]
db = \"$tmp/capture-$name.sqlite\""
    profile="$tmp/$name.cg"
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$profile" \
        "$LLMUX_BIN" --config "$tmp/llmux.toml" --log-level warn >"$tmp/vg-$name.out" 2>&1 &
    pid=$!
    bench_pids+=("$pid")
    for (( i = 0; i < 600; i++ )); do
        curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/health" 2>/dev/null && break
        sleep 0.1
    done
    for kind in $KINDS; do
        "$bin/loadgen" run --url "http://127.0.0.1:$port/v1" --kind "$kind" -n 50 --warmup 0 >/dev/null
    done
    # The admin API and the inspector's list, as a person browsing the store uses them.
    curl -fsS -o /dev/null "http://127.0.0.1:$port/admin/api/requests?limit=20"
    curl -fsS -o /dev/null "http://127.0.0.1:$port/admin/api/stats"
    sleep 3
    stop_pid "$pid"
    stop_pid "$fake_pid"
    # Self cost per function of the llmux object only, mangled names (Rust's start with _ZN or
    # _R; C functions such as SQLite's keep their own names), the most executed first. Callgrind
    # names a recursive call's frames `name'2`, `name'3`: the same function, listed once.
    callgrind_annotate --inclusive=no --threshold=100 "$profile" 2>/dev/null |
        awk -v bin="$(basename "$LLMUX_BIN")" '
            $2 ~ /^\(/ && index($0, "[" ) && $0 ~ ("/" bin "\\]$") {
                name = $0
                sub(/^.*:/, "", name)
                sub(/ \[.*$/, "", name)
                sub(/\047[0-9]+$/, "", name)
                # Code without a symbol shows as its address: nothing to order by.
                if (name !~ /^0x[0-9a-f]+$/ && !(name in seen)) { seen[name] = 1; print name }
            }' >"$tmp/$name.order"
    echo "$name: $(wc -l <"$tmp/$name.order") functions" >&2
}

orders=()
for run in $RUNS; do
    case "$run" in
        plain) FAKE_TLS=0 FAKE_API=openai profile_run "$run" ;;
        tls) FAKE_TLS=1 FAKE_API=openai profile_run "$run" ;;
        anthropic|gemini|responses) FAKE_TLS=0 FAKE_API="$run" profile_run "$run" ;;
        *) echo "RUNS: unknown set-up $run (plain, tls, anthropic, gemini, responses)" >&2; exit 2 ;;
    esac
    orders+=("$tmp/$run.order")
done
# The union in the runs' order: each name where it first appears.
awk '!($0 in seen) { seen[$0] = 1; print }' "${orders[@]}" >"$tmp/llmux.order"
# An empty list (no profile written) would quietly undo the order: the old list stays.
[[ -s "$tmp/llmux.order" ]] || { echo "no functions in the profile; link/llmux.order kept" >&2; exit 1; }
mkdir -p "$root/link"
mv "$tmp/llmux.order" "$root/link/llmux.order"
echo "wrote $(wc -l <"$root/link/llmux.order") functions to link/llmux.order" >&2
