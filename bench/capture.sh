#!/usr/bin/env bash
# Wire capture off vs. on, in one run: two llmux instances in front of the same fake provider, one
# without capture ("off") and one with `capture.file` in a temporary directory ("on"), compared
# by `loadgen compare --report capture` ("added" is then what capture costs). Then the capture-on
# llmux is stopped (it logs the records it dropped) and its files are measured; last, an A/A run
# (the off instance against a third llmux, also without capture) shows the noise floor.
# MODE=db measures the SQLite capture store instead: the on instance gets `capture.db` (a database
# in the same temporary directory) instead of `capture.file`.
# Usage: bench/capture.sh        (see "Wire capture: on vs. off" in bench/README.md)
#   MODE=file|db     file: the JSONL wire capture (the default); db: the capture store (SQLite)
#   PIN=same|none|split  SKIP_BUILD=1  LLMUX_BIN=path   as for bench/run.sh
#   KINDS=nonstream,stream   any loadgen kinds; both sides send the kind itself
#   REQUESTS=3000 WARMUP=300 ROUNDS=6 HIGH_C=32 HIGH_SECONDS=4   as for bench/run.sh
#   AA=1             the A/A noise-floor run after the measurement (AA=0 skips it)
#   CAPTURE_DIR=dir  put the capture file in a new directory under dir (default: the run's
#                    temporary directory, under $TMPDIR or /tmp); removed at the end either way
#   TARGET_PCT=15    the largest acceptable cost of capture, in percent
#   HISTORY=40       every request carries 40 earlier agent turns (~100 KB; `loadgen run --history`)
#   HISTORY_FROM=src their tool results are the files under src (`--history-from`), not generated code
#   HISTORY_GROWS=1  the requests grow a turn at a time from 20 turns to 40, as a session's do
#   HISTORY_FRESH=1  each request a conversation of its own (`--history-fresh`)
#   EXTRA_TOOLS=20   20 tools offered besides the shell tool, ~0.9 KB each (`--extra-tools`)
# Writes bench/results/capture.md and bench/results/capture.json (MODE=db: capture-db.md and
# capture-db.json). Ends within 4 minutes after the build (BUDGET=230 seconds).
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
AA="${AA:-1}"
TARGET_PCT="${TARGET_PCT:-15}"
MODE="${MODE:-file}"
case "$MODE" in
    file | db) ;;
    *) echo "MODE must be file or db" >&2; exit 2 ;;
esac
BUDGET="${BUDGET:-230}"
results="$here/results"
mkdir -p "$results"
if [[ "$MODE" == db ]]; then
    out_md="$results/capture-db.md"
    out_json="$results/capture-db.json"
else
    out_md="$results/capture.md"
    out_json="$results/capture.json"
fi

build_release
require_bins "$LLMUX_BIN" "$bin/fake-provider" "$bin/loadgen"
# Everything below counts against BUDGET (bash's SECONDS: seconds since the script started).
run_start=$SECONDS
setup_pinning

# Where the capture goes: a new directory, removed at the end. Streams write ~40 KB a request, a
# run ~0.3-0.5 GB: ask for 2 GB free (the capture store is capped at 1 GiB by default).
if [[ -n "${CAPTURE_DIR:-}" ]]; then
    capdir="$(mktemp -d "$CAPTURE_DIR/llmux-capture.XXXXXX")"
    cleanup_paths+=("$capdir")
else
    capdir="$tmp/capture"
    mkdir -p "$capdir"
fi
wire="$capdir/wire.jsonl"
db="$capdir/capture.sqlite"
free_kb="$(df -Pk "$capdir" | awk 'NR == 2 {print $4}')"
(( free_kb > 2 * 1024 * 1024 )) || { echo "less than 2 GB free under $capdir" >&2; exit 1; }
capfs="$(df -PT "$capdir" | awk 'NR == 2 {print $2}')"

start_fake
off_port="$("$bin/loadgen" free-port)"
write_config "$tmp/off.toml" "$off_port"
start_llmux off "$tmp/off.toml" "$off_port"
off_pid="$started_pid"
on_port="$("$bin/loadgen" free-port)"
if [[ "$MODE" == db ]]; then
    # The capture store with its defaults (30 days' retention, 1 GiB cap).
    write_config "$tmp/on.toml" "$on_port" "
[capture]
db = \"$db\""
    writer_label="capture store (SQLite) writer thread"
    writer_comm=llmux-capture-d   # llmux-capture-db, cut to the 15 characters of comm
    capture_note="capture store (SQLite) on $capfs ($db); capture settings: defaults (30 days' retention, 1 GiB cap)"
else
    # Default buffering and 100 MB rotation, but every rotated file is kept (max_files and the
    # total cap raised) so the run's whole output can be measured.
    write_config "$tmp/on.toml" "$on_port" "
[capture]
file = \"$wire\"
max_files = 1000
total_max_bytes = 1000000000000"
    writer_label="capture writer thread"
    writer_comm=llmux-capture
    capture_note="capture file on $capfs ($capdir); capture settings: defaults (64 KiB buffer, flush every 1 s or 100 records, 100 MB rotation) with every rotated file kept"
fi
start_llmux on "$tmp/on.toml" "$on_port"
on_pid="$started_pid"
if [[ "$AA" == 1 ]]; then
    aa_port="$("$bin/loadgen" free-port)"
    write_config "$tmp/aa.toml" "$aa_port"
    start_llmux aa "$tmp/aa.toml" "$aa_port"
    aa_pid="$started_pid"
fi
startup_rss="$(rss_kb "$on_pid")"

# Warm-up of every instance, then let them settle.
warm_up "http://127.0.0.1:$off_port/v1" "$KINDS" "${HISTORY:-0}"
warm_up "http://127.0.0.1:$on_port/v1" "$KINDS" "${HISTORY:-0}"
if [[ "$AA" == 1 ]]; then warm_up "http://127.0.0.1:$aa_port/v1" "$KINDS" "${HISTORY:-0}"; fi
sleep 1
idle_rss="$(rss_kb "$on_pid")"
machine_notes

# compare DIRECT_PORT DIRECT_PID PROXIED_PORT PROXIED_PID SECONDS OUT_MD OUT_JSON [NOTE...]
compare() {
    local dport="$1" dpid="$2" pport="$3" ppid="$4" limit="$5" md="$6" json="$7" n notes=()
    shift 7
    for n in "$@"; do notes+=(--note "$n"); done
    timeout "$limit" "${pin_load[@]}" "$bin/loadgen" compare --report capture \
        --direct "http://127.0.0.1:$dport/v1" --direct-pid "$dpid" \
        --proxied "http://127.0.0.1:$pport/v1" --proxy-pid "$ppid" \
        --clk-tck "$clk_tck" --cost-target-pct "$TARGET_PCT" \
        --kinds "$KINDS" --requests "$REQUESTS" --warmup "$WARMUP" --rounds "$ROUNDS" \
        --high-concurrency "$HIGH_C" --high-seconds "$HIGH_SECONDS" \
        --budget-seconds "$(( limit - 30 ))" --history "${HISTORY:-0}" "${history_args[@]}" \
        --startup-rss-kb "$startup_rss" --idle-rss-kb "$idle_rss" \
        --note "$(date -u +%Y-%m-%dT%H:%M:%SZ), llmux $rev, $(nproc) CPUs ($(uname -sr))" \
        --note "$busy_note" \
        --note "$pin_note; the $writer_label shares the CPU of llmux" \
        --note "load generator: 1 thread, one keep-alive HTTP/1.1 connection per worker; fake provider: 1 thread" \
        "${notes[@]}" \
        --out "$md" --json-out "$json"
}

# The measurement: whatever is left of BUDGET, less 60 s for the A/A run and the shutdown.
left=$(( BUDGET - (SECONDS - run_start) - (AA == 1 ? 60 : 10) ))
(( left > 40 )) || { echo "only ${left} s of the ${BUDGET} s budget left for the measurement" >&2; exit 1; }
compare "$off_port" "$off_pid" "$on_port" "$on_pid" "$left" "$out_md" "$out_json" "$capture_note"
if [[ "$MODE" == db ]]; then
    # loadgen's capture report speaks of the wire capture (`capture.file`): say what was measured.
    # shellcheck disable=SC2016 # the backquotes are Markdown
    sed -i -e '1s/^# llmux wire capture:/# llmux capture store (SQLite):/' \
        -e '/^off: /s/(llmux with `capture\.file`)/(llmux with `capture.db`, the capture store (SQLite))/' \
        "$out_md"
fi

# The capture writer thread's CPU time (ns) and context switches so far, then a graceful stop:
# llmux flushes the capture and logs how many records (MODE=db: requests) it dropped.
writer_ns=""
writer_vcs=""
writer_ivcs=""
for t in /proc/"$on_pid"/task/*; do
    if [[ "$(cat "$t/comm" 2>/dev/null)" == "$writer_comm" ]]; then
        writer_ns="$(cut -d' ' -f1 "$t/schedstat")"
        writer_vcs="$(awk '/^voluntary_ctxt_switches:/ {print $2}' "$t/status")"
        writer_ivcs="$(awk '/^nonvoluntary_ctxt_switches:/ {print $2}' "$t/status")"
    fi
done
stop_pid "$on_pid" 15
if [[ "$MODE" == db ]]; then
    dropped_re='[0-9][0-9]* requests were not recorded in the capture store'
else
    dropped_re='[0-9][0-9]* capture records were dropped'
fi
dropped="$(grep -o "$dropped_re" "$tmp/on.err" | awk '{print $1}' | tail -n 1 || true)"
if [[ -z "$dropped" ]]; then
    if [[ "$stop_rc" == 0 ]]; then dropped=0; else dropped="unknown (llmux exited with status $stop_rc)"; fi
fi

# ratio A B [DIGITS]: A / B, or n/a when B is 0.
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-0}" 'BEGIN { if (b > 0) printf "%.*f", d, a / b; else printf "n/a" }'; }
# The capture store: the database and its WAL after the graceful stop (a WAL is removed only
# when the last connection closes cleanly; llmux's exit leaves it in place), and its rows.
db_stats() {
    # db_stats DB: prints "ROWS STREAMED" of table requests, or "n/a n/a".
    python3 - "$1" <<'PY' 2>"$tmp/db_stats.err" || echo "n/a n/a"
import sqlite3, sys
con = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
rows, streamed = con.execute("SELECT count(*), coalesce(sum(stream != 0), 0) FROM requests").fetchone()
print(rows, streamed)
PY
}
size_of() { if [[ -e "$1" ]]; then stat -c %s "$1"; else echo 0; fi; }

if [[ "$MODE" == file ]]; then
    # Records and bytes per direction; a request record is "stream" when its payload asks for one.
    files=("$wire"*)
    bytes=0
    for f in "${files[@]}"; do bytes=$(( bytes + $(stat -c %s "$f") )); done
    declare -A cnt=() byt=()
    while read -r key c b; do
        cnt[$key]=$c
        byt[$key]=$b
    done < <(cat "${files[@]}" | LC_ALL=C awk '
        {
            d = "other"
            if (match($0, /"direction":"[a-z_]+"/)) d = substr($0, RSTART + 13, RLENGTH - 14)
            if (d == "outbound_request") d = d (index($0, "\"stream\":true") ? "/stream" : "/nonstream")
            c[d]++; b[d] += length($0) + 1
        }
        END { for (d in c) print d, c[d], b[d] }')
    records=0
    for key in "${!cnt[@]}"; do records=$(( records + cnt[$key] )); done
    for key in outbound_request/nonstream outbound_request/stream inbound_response stream_start \
        stream_chunk stream_end; do
        cnt[$key]="${cnt[$key]:-0}"
        byt[$key]="${byt[$key]:-0}"
    done
    requests=$(( cnt[outbound_request/nonstream] + cnt[outbound_request/stream] ))
    direction_list="outbound_request ${requests}"
    for key in inbound_response stream_start stream_chunk stream_end; do
        direction_list+=", $key ${cnt[$key]}"
    done
    ns_requests="${cnt[inbound_response]}"
    ns_bytes=$(( byt[outbound_request/nonstream] + byt[inbound_response] ))
    st_requests="${cnt[stream_start]}"
    st_bytes=$(( byt[outbound_request/stream] + byt[stream_start] + byt[stream_chunk] + byt[stream_end] ))
    st_records=$(( cnt[outbound_request/stream] + cnt[stream_start] + cnt[stream_chunk] + cnt[stream_end] ))
    writer_cpu="n/a (no llmux-capture thread found)"
    writer_cs="n/a"
    if [[ -n "$writer_ns" ]]; then
        writer_cpu="$(ratio "$writer_ns" 1000000000 2) s in all, $(ratio "$writer_ns" $(( records * 1000 )) 2) µs per record"
        writer_cs="$writer_vcs voluntary (wake-ups), $writer_ivcs involuntary: one wake-up per $(ratio "$records" "$writer_vcs" 1) records"
    fi
    {
        echo
        echo "## Capture file"
        echo
        echo "Everything the capture-on llmux wrote over the run (warm-ups included), measured after its"
        echo "graceful stop (exit status $stop_rc)."
        echo
        echo "| what | value |"
        echo "|---|--:|"
        echo "| files | ${#files[@]} ($(basename "$wire") and $(( ${#files[@]} - 1 )) rotated at 100 MB) |"
        echo "| bytes written | $bytes ($(ratio "$bytes" 1048576 1) MB) |"
        echo "| records | $records ($direction_list) |"
        echo "| requests captured | $requests ($ns_requests without stream, $st_requests streamed) |"
        echo "| bytes per request without stream (request + response record) | $(ratio "$ns_bytes" "$ns_requests") |"
        echo "| bytes per streamed request (request, stream_start, chunks, stream_end) | $(ratio "$st_bytes" "$st_requests") ($(ratio "$st_records" "$st_requests" 1) records) |"
        echo "| records dropped (llmux's shutdown log) | $dropped |"
        echo "| capture writer thread CPU | $writer_cpu |"
        echo "| capture writer thread context switches | $writer_cs |"
    } >>"$out_md"
    if command -v jq >/dev/null; then
        jq --argjson bytes "$bytes" --argjson records "$records" --argjson requests "$requests" \
            --arg dropped "$dropped" --argjson files "${#files[@]}" --arg writer_ns "$writer_ns" \
            --arg writer_vcs "$writer_vcs" \
            --argjson ns_bytes "$ns_bytes" --argjson ns_requests "$ns_requests" \
            --argjson st_bytes "$st_bytes" --argjson st_requests "$st_requests" \
            '. + {capture_file: {files: $files, bytes: $bytes, records: $records, requests: $requests,
                  nonstream: {requests: $ns_requests, bytes: $ns_bytes},
                  stream: {requests: $st_requests, bytes: $st_bytes},
                  dropped: ($dropped | tonumber? // $dropped),
                  writer_thread_cpu_ns: ($writer_ns | tonumber? // null),
                  writer_thread_voluntary_ctxt_switches: ($writer_vcs | tonumber? // null)}}' \
            "$out_json" >"$tmp/capture.json" && mv "$tmp/capture.json" "$out_json"
    fi
else
    db_bytes="$(size_of "$db")"
    wal_bytes="$(size_of "$db-wal")"
    wal_state="absent (checkpointed and removed at the close)"
    [[ -e "$db-wal" ]] && wal_state="$wal_bytes ($(ratio "$wal_bytes" 1048576 1) MB)"
    read -r rows streamed < <(db_stats "$db")
    nonstreamed="n/a"
    rows_n=0   # for the ratios: n/a when the rows could not be counted
    if [[ "$rows" =~ ^[0-9]+$ ]]; then
        nonstreamed=$(( rows - streamed ))
        rows_n="$rows"
    fi
    row_note=""
    [[ -s "$tmp/db_stats.err" ]] && row_note=" ($(tail -n 1 "$tmp/db_stats.err"))"
    writer_cpu="n/a (no $writer_comm thread found)"
    writer_cs="n/a"
    if [[ -n "$writer_ns" ]]; then
        writer_cpu="$(ratio "$writer_ns" 1000000000 2) s in all, $(ratio "$writer_ns" $(( rows_n * 1000 )) 2) µs per row"
        writer_cs="$writer_vcs voluntary (wake-ups), $writer_ivcs involuntary: one wake-up per $(ratio "$rows_n" "$writer_vcs" 1) rows"
    fi
    {
        echo
        echo "## Capture store"
        echo
        echo "The SQLite database the capture-on llmux wrote over the run (warm-ups included), measured"
        echo "after its graceful stop (exit status $stop_rc)."
        echo
        echo "| what | value |"
        echo "|---|--:|"
        echo "| database file size | $db_bytes ($(ratio "$db_bytes" 1048576 1) MB) |"
        echo "| WAL file size | $wal_state |"
        echo "| rows in \`requests\` | $rows$row_note ($nonstreamed without stream, $streamed streamed) |"
        echo "| database bytes per row | $(ratio "$db_bytes" "$rows_n") |"
        echo "| requests dropped (llmux's shutdown log) | $dropped |"
        echo "| capture store writer thread CPU | $writer_cpu |"
        echo "| capture store writer thread context switches | $writer_cs |"
    } >>"$out_md"
    if command -v jq >/dev/null; then
        jq --argjson db_bytes "$db_bytes" --argjson wal_bytes "$wal_bytes" \
            --argjson wal_present "$([[ -e "$db-wal" ]] && echo true || echo false)" \
            --arg rows "$rows" --arg streamed "$streamed" --arg dropped "$dropped" \
            --arg writer_ns "$writer_ns" --arg writer_vcs "$writer_vcs" \
            '. + {capture_db: {db_bytes: $db_bytes, wal_bytes: $wal_bytes, wal_present: $wal_present,
              rows: ($rows | tonumber? // null), stream_rows: ($streamed | tonumber? // null),
              dropped: ($dropped | tonumber? // $dropped),
              writer_thread_cpu_ns: ($writer_ns | tonumber? // null),
              writer_thread_voluntary_ctxt_switches: ($writer_vcs | tonumber? // null)}}' \
            "$out_json" >"$tmp/capture.json" && mv "$tmp/capture.json" "$out_json"
    fi
fi

# The noise floor: the same comparison between two llmux instances without capture.
if [[ "$AA" == 1 ]]; then
    left=$(( BUDGET - (SECONDS - run_start) - 5 ))
    {
        echo
        echo "## Noise floor (A/A)"
        echo
    } >>"$out_md"
    if (( left > 40 )); then
        compare "$off_port" "$off_pid" "$aa_port" "$aa_pid" "$left" "$tmp/aa.md" "$tmp/aa.json" >/dev/null
        {
            echo "The same comparison right after, between the off instance and a third llmux, also"
            echo "without capture (\"on\" below is that one): differences of this size are noise."
            echo
            # The main table of the A/A report: from its header to the first blank line.
            sed -n '/^| kind | c | off p50/,/^$/p' "$tmp/aa.md"
            grep '^- time budget' "$tmp/aa.md" || true
        } >>"$out_md"
        if command -v jq >/dev/null; then
            jq --slurpfile aa "$tmp/aa.json" '. + {aa: $aa[0]}' "$out_json" >"$tmp/capture.json" \
                && mv "$tmp/capture.json" "$out_json"
        fi
    else
        echo "Skipped: only ${left} s of the ${BUDGET} s budget were left." >>"$out_md"
    fi
fi

cat "$out_md"
for n in off on aa; do
    if [[ -s "$tmp/$n.err" ]]; then
        echo "llmux ($n) stderr (last lines):" >&2
        tail -n 10 "$tmp/$n.err" >&2
    fi
done
echo "wrote $out_md" >&2
