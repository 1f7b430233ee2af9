#!/usr/bin/env bash
# What the steering stages cost per streamed chunk: llmux with every stage on against the same
# binary with every stage off, both in front of the same fake provider, both sent the same
# streamed request (64 content chunks, a shell tool offered as coding agents do, so the stages
# that watch tool calls run). Two measures:
#   instructions  callgrind's count per request (bench/callgrind.sh, BASE_TOML = all off), which
#                 barely moves between runs;
#   CPU time      llmux's own CPU time per request (the schedstat of its threads), in rounds
#                 that alternate between the two instances, converted to µs per chunk.
# "On" is: loop detection, the tool-call reactor (a rule on shell calls), tool-call repair,
# dangerous commands, pytest compression and full-suite steering, `<think>` tags, content
# rewriting (an inbound and an outbound rule) and prompt redaction.
# Usage: bench/stages.sh
#   SKIP_BUILD=1   use the binaries already built
#   N=1000         requests per callgrind count
#   REQUESTS=2000 ROUNDS=4   requests per side per round of the CPU-time measure
# Writes bench/results/stages.md. Needs valgrind (scripts/setup installs it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
LLMUX_BIN="${LLMUX_BIN:-$bin/llmux}"
N="${N:-1000}"
REQUESTS="${REQUESTS:-2000}"
ROUNDS="${ROUNDS:-4}"
CHUNKS=64
out="$here/results/stages.md"

build_release
require_bins "$LLMUX_BIN" "$bin/fake-provider" "$bin/loadgen"

cat >"$tmp/reactor.toml" <<'EOF'
[[rules]]
name = "no publishing"
tool_names = ["@shell"]
commands = ["^npm publish"]
action = "block"
message = "publishing is for the user"
EOF
cat >"$tmp/rewriting.toml" <<'EOF'
[[rules]]
direction = "inbound"
target = "system"
action = "append"
text = "\n\nAnswer in British English."

[[rules]]
direction = "outbound"
target = "answer"
action = "append"
text = "\n\n(answered through llmux)"
EOF
on_toml="
[loop_detection]
enabled = true
[tool_call_reactor]
rules_file = \"$tmp/reactor.toml\"
[tool_call_repair]
enabled = true
[dangerous_command_prevention]
enabled = true
[think_tags]
enabled = true
[content_rewriting]
rules_file = \"$tmp/rewriting.toml\"
[redaction]
prompts = true
[session]
pytest_compression_enabled = true
pytest_full_suite_steering_enabled = true"
off_toml="
[loop_detection]
enabled = false
[tool_call_reactor]
enabled = false
[tool_call_repair]
enabled = false
[dangerous_command_prevention]
enabled = false
[think_tags]
enabled = false
[session]
pytest_compression_enabled = false
pytest_full_suite_steering_enabled = false"

# Instructions: callgrind.sh counts "llmux" (on) and "base" (off).
counts="$(SKIP_BUILD=1 KIND=stream N="$N" LOADGEN_ARGS=--tools EXTRA_TOML="$on_toml" \
    BASE_TOML="$off_toml" bash "$here/callgrind.sh")"
echo "$counts"
on_instr="$(awk '$1 == "llmux" {print $2}' <<<"$counts")"
off_instr="$(awk '$1 == "base" {print $2}' <<<"$counts")"

# CPU time: both instances up at once, rounds alternating between them.
run_start=$SECONDS
start_fake
for side in off on; do
    port="$("$bin/loadgen" free-port)"
    toml="${side}_toml"
    write_config "$tmp/$side.toml" "$port" "${!toml}"
    start_llmux "$side" "$tmp/$side.toml" "$port"
    declare "${side}_port=$port" "${side}_pid=$started_pid"
done

# cpu_ns PID: CPU time of every living thread of PID, in ns (%.0f: mawk's %d stops at 2^31).
cpu_ns() {
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'
}
load() {
    "$bin/loadgen" run --url "http://127.0.0.1:$1/v1" --kind stream --tools -n "$2" \
        --warmup 0 >/dev/null
}
load "$off_port" 300
load "$on_port" 300
machine_notes
declare -A spent=([off]=0 [on]=0)
for (( round = 1; round <= ROUNDS; round++ )); do
    for side in off on; do
        port="${side}_port"
        pid="${side}_pid"
        before="$(cpu_ns "${!pid}")"
        load "${!port}" "$REQUESTS"
        after="$(cpu_ns "${!pid}")"
        spent[$side]=$(( spent[$side] + after - before ))
        echo "round $round, $side (pid ${!pid}, port ${!port}): $(( (after - before) / REQUESTS / 1000 )) µs/request" >&2
    done
done
total=$(( REQUESTS * ROUNDS ))

{
    echo "# Steering stages: cost per streamed chunk"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), llmux $rev, $(nproc) CPUs ($(uname -sr)); $busy_note."
    echo "Streamed OpenAI chat requests with a shell tool offered, $CHUNKS content chunks each, through"
    echo "llmux with every steering stage on against the same binary with every stage off (see"
    echo "bench/stages.sh for both configs). Target (issue #15): at most 2 µs added per chunk."
    echo
    echo "| measure | all off | all on | added per request | added per chunk |"
    echo "|---|--:|--:|--:|--:|"
    awk -v off="$off_instr" -v on="$on_instr" -v c="$CHUNKS" -v n="$N" 'BEGIN {
        printf "| instructions per request (callgrind, %s requests) | %d | %d | %+d | %+.0f instructions |\n", n, off, on, on - off, (on - off) / c }'
    awk -v off="${spent[off]}" -v on="${spent[on]}" -v n="$total" -v c="$CHUNKS" -v r="$ROUNDS" 'BEGIN {
        o = off / n / 1000; a = on / n / 1000
        printf "| llmux CPU µs per request (schedstat, %d requests per side in %s alternating rounds) | %.1f | %.1f | %+.1f | %+.2f µs |\n", n, r, o, a, a - o, (a - o) / c }'
    awk -v off="$off_instr" -v on="$on_instr" -v ns="${spent[off]}" -v n="$total" -v c="$CHUNKS" 'BEGIN {
        rate = off / (ns / n)
        printf "\nThe added instructions at the off instance'"'"'s own rate (%.2f instructions per ns: its\n", rate
        printf "instructions over its CPU time, kernel time included, so an upper bound): %.2f µs per chunk.\n", (on - off) / c / rate / 1000 }'
    echo
    echo "CPU time moves by a few percent between runs on a busy 2-core machine, and most of it is"
    echo "the kernel's (about 160 system calls per streamed request); the instruction count is the"
    echo "steadier measure of what the stages add."
} >"$out"
cat "$out"
echo "wrote $out" >&2
