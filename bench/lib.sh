# Helpers shared by bench/run.sh and bench/capture.sh; sourced, not run.
# Expects `set -euo pipefail` and the variables `here` (bench/), `root` (the repository) and, for
# start_llmux, `run_start`; sets variables the sourcing script reads (SC2034, SC2154).
# shellcheck shell=bash disable=SC2034,SC2154

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/llmux/target}"
export RUST_LIB_BACKTRACE=0
bin="$CARGO_TARGET_DIR/release"
PIN="${PIN:-same}"

# build_release: release build of llmux and the bench binaries unless SKIP_BUILD=1.
build_release() {
    if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
        echo "building release binaries..." >&2
        (cd "$root" && cargo build --release -p llmux -p llmux-bench)
    fi
}

# require_bins PATH...: exits when one is not an executable.
require_bins() {
    local b
    for b in "$@"; do
        [[ -x "$b" ]] || { echo "missing $b" >&2; exit 1; }
    done
}

# setup_pinning: sets pin_proxy and pin_load (taskset prefixes) from PIN=same|none|split, and
# pin_note (a line for the report).
pin_proxy=()
pin_load=()
setup_pinning() {
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
    pin_note="pinning: $PIN"
    case "$PIN" in
        split) pin_note+=" (llmux on CPU 1; fake provider and load generator on CPU 0)" ;;
        same) pin_note+=" (llmux, fake provider and load generator all on CPU 0)" ;;
    esac
}

# A temporary directory and the processes started here, removed and stopped on exit (with any
# path added to cleanup_paths).
tmp="$(mktemp -d)"
bench_pids=()
cleanup_paths=()
cleanup() {
    local p
    for p in "${bench_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${bench_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp" "${cleanup_paths[@]}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_pid PID [SECONDS]: SIGTERM, wait at most SECONDS (default 10) for the exit, SIGKILL after
# that; sets stop_rc to the exit status (137 after SIGKILL). The PID is no longer stopped on exit.
stop_pid() {
    local pid="$1" limit="${2:-10}" i p kept=()
    stop_rc=0
    kill "$pid" 2>/dev/null || true
    for (( i = 0; i < limit * 10; i++ )); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || stop_rc=$?
    for p in "${bench_pids[@]}"; do [[ "$p" == "$pid" ]] || kept+=("$p"); done
    bench_pids=("${kept[@]}")
}

# start_fake [ARGS...]: the fake provider on a port it picks, with ARGS (e.g.
# --chunk-interval-ms 50); sets fake_pid and fake_addr (HOST:PORT). FAKE_TLS=1 makes it an
# HTTPS provider whose certificate write_config's back-end trusts ($tmp/fake-ca.pem).
start_fake() {
    local tls=()
    [[ "${FAKE_TLS:-0}" == 1 ]] && tls=(--tls-cert-out "$tmp/fake-ca.pem")
    "${pin_load[@]}" "$bin/fake-provider" --port 0 "${tls[@]}" "$@" >"$tmp/fake.out" 2>"$tmp/fake.err" &
    fake_pid=$!
    bench_pids+=("$fake_pid")
    fake_addr=""
    local _
    for _ in $(seq 100); do
        fake_addr="$(sed -n 's/^listening on //p' "$tmp/fake.out")"
        [[ -n "$fake_addr" ]] && break
        kill -0 "$fake_pid" 2>/dev/null || { cat "$tmp/fake.err" >&2; exit 1; }
        sleep 0.05
    done
    [[ -n "$fake_addr" ]] || { echo "fake provider did not start" >&2; exit 1; }
}

# refuse_fake_tls: exits when FAKE_TLS=1, for a script that calls the fake provider itself
# (its direct side), which speaks plain HTTP only.
refuse_fake_tls() {
    if [[ "${FAKE_TLS:-0}" == 1 ]]; then
        echo "$(basename "$0") calls the fake provider directly over plain HTTP; FAKE_TLS=1 is for the scripts that only go through llmux (callgrind.sh, ab.sh, capture.sh, https.sh)" >&2
        exit 2
    fi
}

# write_config FILE PORT [EXTRA TOML]: an llmux config with the fake as its default back-end,
# listening on 127.0.0.1:PORT; EXTRA is appended (e.g. a [capture] table). FAKE_API picks the API
# the back-end speaks to the fake (which speaks them all): openai (chat completions, the
# default), anthropic (/v1/messages), gemini (/v1beta/models/...:generateContent) or responses
# (/v1/responses).
write_config() {
    local backend_type="openai-compatible" scheme=http tls_toml="" api_toml=""
    if [[ "${FAKE_TLS:-0}" == 1 ]]; then
        scheme=https tls_toml="ca_file = \"$tmp/fake-ca.pem\""
    fi
    local base_url="$scheme://$fake_addr/v1"
    case "${FAKE_API:-openai}" in
        openai) ;;
        anthropic) backend_type="anthropic-compatible" base_url="$scheme://$fake_addr" ;;
        # The Gemini back-end needs a key; the fake reads none.
        gemini)
            backend_type="gemini" base_url="$scheme://$fake_addr"
            api_toml='api_key_env = "LLMUX_BENCH_FAKE_KEY"'
            export LLMUX_BENCH_FAKE_KEY=fake-key
            ;;
        responses) api_toml='api = "responses"' ;;
        *) echo "FAKE_API=${FAKE_API}: expected openai, anthropic, gemini or responses" >&2; exit 2 ;;
    esac
    cat >"$1" <<EOF
default_backend = "fake"

[proxy]
host = "127.0.0.1"
port = $2
# The Anthropic kinds use /v1/messages on the main port; no dedicated port (port + 1 may be taken).
anthropic_port = 0

[backends.fake]
type = "$backend_type"
base_url = "$base_url"
$api_toml
$tls_toml
${3:-}
EOF
}

# start_llmux NAME CONFIG PORT: starts $LLMUX_BIN (output in $tmp/NAME.out and .err) and waits
# until GET /health answers on PORT, at most until 25 s after the script started; sets
# started_pid. Exits with its output when it does not become ready.
start_llmux() {
    local name="$1" config="$2" port="$3" ready=0
    "${pin_proxy[@]}" "$LLMUX_BIN" --config "$config" --log-level warn \
        >"$tmp/$name.out" 2>"$tmp/$name.err" &
    started_pid=$!
    bench_pids+=("$started_pid")
    while (( SECONDS - run_start < 25 )); do
        if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/health" 2>/dev/null; then
            ready=1
            break
        fi
        kill -0 "$started_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ "$ready" != 1 ]]; then
        echo "llmux ($name) did not become ready on 127.0.0.1:$port; its output:" >&2
        tail -n 30 "$tmp/$name.out" "$tmp/$name.err" >&2
        exit 1
    fi
}

# history_args: the loadgen arguments HISTORY_FROM, HISTORY_GROWS and HISTORY_FRESH ask for.
# HISTORY_FROM=dir: the tool results of HISTORY's turns are the files under dir (`loadgen run
# --history-from`): real files compress as real sessions do, loadgen's generated code 18-fold.
history_args=()
if [[ -n "${HISTORY_FROM:-}" ]]; then history_args=(--history-from "$(realpath "$HISTORY_FROM")"); fi
# HISTORY_GROWS=1: the requests grow a turn at a time from half of HISTORY's turns to all of
# them, as an agent session's do (`loadgen run --history-grows`).
if [[ "${HISTORY_GROWS:-0}" == 1 ]]; then history_args+=(--history-grows); fi
# HISTORY_FRESH=1: 64 conversations in turn, each with tool calls of its own, a request repeating
# only the first and last two messages of the ones before it (`loadgen run --history-fresh`):
# llmux's message memo at its worst.
if [[ "${HISTORY_FRESH:-0}" == 1 ]]; then history_args+=(--history-fresh); fi
# EXTRA_TOOLS=N: N tools offered besides the shell tool, ~0.9 KB each, as an agent's are
# (`loadgen run --extra-tools`).
if [[ "${EXTRA_TOOLS:-0}" != 0 ]]; then history_args+=(--extra-tools "$EXTRA_TOOLS"); fi

# warm_up URL KINDS: up to 200 requests of each kind (comma-separated) to URL, 3 s each (8 s
# hard limit); a kind with no successful answer stops the run with the load generator's output.
# HISTORY (default 0): earlier agent turns in each request (`loadgen run --history`), for the
# scripts whose measurement sends them too (capture.sh, and compare_pair's callers).
warm_up() {
    local url="$1" history="${3:-0}" k rc from=()
    if (( history > 0 )); then from=("${history_args[@]}"); fi
    for k in ${2//,/ }; do
        rc=0
        timeout 8 "${pin_load[@]}" "$bin/loadgen" run --url "$url" --history "$history" \
            "${from[@]}" --kind "$k" -n 200 --warmup 0 --max-seconds 3 >"$tmp/warmup.out" 2>&1 || rc=$?
        if [[ "$rc" != 0 ]]; then
            if [[ "$rc" == 124 ]]; then
                echo "warm-up of $k against $url did not end within 8 s" >&2
            else
                echo "warm-up of $k against $url failed:" >&2
            fi
            cat "$tmp/warmup.out" >&2
            exit 1
        fi
    done
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# machine_notes: sets rev (git revision, +dirty), clk_tck and busy_note (how busy the machine is
# without us: CPU use over one second while our processes idle; a WARNING above 15 %).
machine_notes() {
    local loadavg b0 t0 b1 t1 busy_pct
    rev="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if ! git -C "$root" diff --quiet HEAD 2>/dev/null; then rev="$rev+dirty"; fi
    clk_tck="$(getconf CLK_TCK)"
    loadavg="$(cut -d' ' -f1-3 /proc/loadavg)"
    read -r b0 t0 < <(cpu_busy); sleep 1; read -r b1 t1 < <(cpu_busy)
    busy_pct=$(( (b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1) ))
    busy_note="machine CPU busy before the run: ${busy_pct}% (load average $loadavg)"
    if (( busy_pct > 15 )); then
        busy_note="WARNING: $busy_note; other work competes for the CPUs, expect noisy p99 and c=32 numbers"
        echo "$busy_note" >&2
    fi
}
cpu_busy() { awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }

# order_note BINARY: sets order_note to how many of link/llmux.order's functions the binary has
# (bench/symbol-order.sh): a list far behind the code leaves the functions a request runs spread
# out again, and idle RSS grows back. Names carry a hash of the llmux crate's build, which changes
# with its dependencies: a list goes stale when Cargo.toml or Cargo.lock changes.
order_note() {
    local list="$root/link/llmux.order" found total
    order_note="code order: no link/llmux.order"
    [[ -f "$list" ]] || return 0
    total="$(wc -l <"$list")"
    local symbols
    # Not an ELF binary (the A/A stand-in script), or no nm: nothing to count.
    if ! symbols="$(nm --defined-only "$1" 2>/dev/null)"; then
        order_note="code order: nm cannot read $1"
        return 0
    fi
    found="$(awk 'NR == FNR {want[$1] = 1; next} ($3 in want) && !seen[$3]++ {n++} END {print n + 0}' \
        "$list" - <<<"$symbols")"
    order_note="code order: $found of the $total functions in link/llmux.order are in this binary"
    if (( found * 10 < total * 9 )); then
        order_note="WARNING: $order_note; the list is stale (run bench/symbol-order.sh), expect more RSS"
        echo "$order_note" >&2
    fi
}

# compare_pair OFF_PORT OFF_PID ON_PORT ON_PID OUT_MD OUT_JSON [LOADGEN ARG...]: warms both llmux
# instances up, then `loadgen compare --report capture` of OFF against ON in what is left of
# BUDGET ("added" is what ON costs over OFF), with the machine's notes first; extra loadgen
# arguments (more --note, --cost-target-pct) go last. For runs whose two sides are two llmux
# instances (bench/state.sh, bench/ab.sh). HISTORY=N: N earlier agent turns in every request.
compare_pair() {
    local off_port="$1" off_pid="$2" on_port="$3" on_pid="$4" md="$5" json="$6" left startup idle
    shift 6
    startup="$(rss_kb "$on_pid")"
    warm_up "http://127.0.0.1:$off_port/v1" "$KINDS" "${HISTORY:-0}"
    warm_up "http://127.0.0.1:$on_port/v1" "$KINDS" "${HISTORY:-0}"
    sleep 1
    idle="$(rss_kb "$on_pid")"
    machine_notes
    left=$(( BUDGET - (SECONDS - run_start) - 10 ))
    (( left > 40 )) || { echo "only ${left} s of the ${BUDGET} s budget left for the measurement" >&2; exit 1; }
    timeout "$left" "${pin_load[@]}" "$bin/loadgen" compare --report capture \
        --direct "http://127.0.0.1:$off_port/v1" --direct-pid "$off_pid" \
        --proxied "http://127.0.0.1:$on_port/v1" --proxy-pid "$on_pid" \
        --clk-tck "$clk_tck" \
        --kinds "$KINDS" --requests "$REQUESTS" --warmup "$WARMUP" --rounds "$ROUNDS" \
        --high-concurrency "$HIGH_C" --high-seconds "$HIGH_SECONDS" \
        --budget-seconds "$(( left - 30 ))" --history "${HISTORY:-0}" "${history_args[@]}" \
        --startup-rss-kb "$startup" --idle-rss-kb "$idle" \
        --note "$(date -u +%Y-%m-%dT%H:%M:%SZ), llmux $rev, $(nproc) CPUs ($(uname -sr))" \
        --note "$busy_note" \
        --note "$pin_note" \
        "$@" \
        --out "$md" --json-out "$json"
}

# relabel_report MD TITLE OFF ON ADDS TARGET SHORT: loadgen's capture report speaks of the wire
# capture; this says what was measured instead. TITLE replaces the title, OFF and ON the two
# sides' descriptions, ADDS "capture" in "what capture adds to a request", TARGET the target
# heading (`\1` is the percentage), SHORT "capture" in "capture adds" and "(capture on) RSS".
relabel_report() {
    local md="$1" title off on adds target short
    # Literal text for sed's replacement side, with | as the delimiter.
    literal() { local s="${1//\\/\\\\}"; s="${s//&/\\&}"; printf '%s' "${s//|/\\|}"; }
    title="$(literal "$2")" off="$(literal "$3")" on="$(literal "$4")" adds="$(literal "$5")"
    target="${6//|/\\|}" short="$(literal "$7")"
    sed -i -e "1s|^# llmux wire capture: off vs. on|# $title|" \
        -e "/^off: /s|(llmux without capture)|($off)|" \
        -e "/^off: /s|(llmux with \`capture\\.file\`)|($on)|" \
        -e "/^off: /s|what capture adds to a request|what $adds adds to a request|" \
        -e '/^off: /s| (the capture writer thread included)||' \
        -e "s|^## Target: capture costs ≤ \\([0-9]*\\) %|## $target|" \
        -e "s|: capture adds |: $short adds |" \
        -e "s|^llmux (capture on) RSS|llmux ($short on) RSS|" \
        "$md"
}
