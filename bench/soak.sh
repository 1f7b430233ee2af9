#!/usr/bin/env bash
# Soak: mixed load on one llmux for DURATION seconds (default 1800: 30 minutes), all four client
# APIs, streaming and not (the eight loadgen kinds), with both captures on (the JSONL wire
# capture and the SQLite capture store). Each kind runs in its own loop: BATCH requests from
# CONCURRENCY connections, then a PAUSE, so the load is steady rather than flat out (the capture
# writers keep up and the machine stays usable). llmux's RSS and open file descriptors are
# sampled every SAMPLE seconds.
# Pass: zero errors, and after the warm-up every RSS sample stays within 10 % of the first one
# after it. The warm-up is WARMUP seconds (default a tenth of the run and at least 60), or, when
# later, until a minute after the capture store first reached its size cap (CAPTURE_DB_MAX_BYTES,
# llmux's default 1 GiB): a store still filling up is not yet the steady state, where every
# minute of appends is also a minute of pruning.
# Usage: bench/soak.sh
#   DURATION=1800 SAMPLE=10 WARMUP=180 BATCH=40 CONCURRENCY=2 PAUSE=0.5 SKIP_BUILD=1 LLMUX_BIN=path
# Writes bench/results/soak.md (the table and the verdict) and bench/results/soak.svg (the plot).
# Ends by itself DURATION seconds after llmux is ready, plus at most a minute.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
PIN="${PIN:-none}"
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
LLMUX_BIN="${LLMUX_BIN:-$bin/llmux}"
DURATION="${DURATION:-1800}"
SAMPLE="${SAMPLE:-10}"
WARMUP="${WARMUP:-$(( DURATION / 10 > 60 ? DURATION / 10 : 60 ))}"
BATCH="${BATCH:-40}"
CONCURRENCY="${CONCURRENCY:-2}"
PAUSE="${PAUSE:-0.5}"
DB_CAP="${CAPTURE_DB_MAX_BYTES:-1073741824}"
KINDS="nonstream stream anthropic-nonstream anthropic-stream gemini-nonstream gemini-stream responses-nonstream responses-stream"
results="$here/results"
mkdir -p "$results"
(( WARMUP < DURATION )) || { echo "WARMUP must be shorter than DURATION" >&2; exit 2; }

build_release
require_bins "$LLMUX_BIN" "$bin/fake-provider" "$bin/loadgen"
run_start=$SECONDS
setup_pinning
machine_notes

start_fake
port="$("$bin/loadgen" free-port)"
write_config "$tmp/llmux.toml" "$port" "[capture]
file = \"$tmp/capture.jsonl\"
db = \"$tmp/capture.sqlite\""
start_llmux llmux "$tmp/llmux.toml" "$port"
llmux_pid=$started_pid
url="http://127.0.0.1:$port/v1"

soak_start=$SECONDS
end=$(( soak_start + DURATION ))
loop_pids=()
for kind in $KINDS; do
    (
        while (( SECONDS < end )); do
            "${pin_load[@]}" "$bin/loadgen" run --url "$url" --kind "$kind" -c "$CONCURRENCY" \
                -n "$BATCH" --warmup 0 --max-seconds 30 --json >>"$tmp/$kind.jsonl" 2>>"$tmp/$kind.err" ||
                echo '{"ok":0,"errors":1,"first_error":"loadgen failed"}' >>"$tmp/$kind.jsonl"
            sleep "$PAUSE"
        done
    ) &
    loop_pids+=("$!")
    bench_pids+=("$!")
done

# One sample: seconds, RSS, its anonymous and file-backed parts (heap vs. mapped files such
# as SQLite's shared-memory index), open fds.
sample() {
    local fds parts
    fds="$(find "/proc/$llmux_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
    parts="$(awk '/^RssAnon:/ {a=$2} /^RssFile:/ {f=$2} /^RssShmem:/ {m=$2} END {print a "," f+m}' "/proc/$llmux_pid/status")"
    db="$(stat -c %s "$tmp/capture.sqlite" 2>/dev/null || echo 0)"
    echo "$(( SECONDS - soak_start )),$(rss_kb "$llmux_pid"),$parts,$fds,$db" >>"$tmp/samples.csv"
}
echo "seconds,rss_kib,anon_kib,file_kib,open_fds,db_bytes" >"$tmp/samples.csv"
while (( SECONDS < end )); do
    kill -0 "$llmux_pid" 2>/dev/null || { echo "llmux exited during the soak" >&2; tail -n 30 "$tmp/llmux.err" >&2; exit 1; }
    sample
    sleep "$SAMPLE"
done
for p in "${loop_pids[@]}"; do wait "$p" 2>/dev/null || true; done
sample
health="$(curl -fsS --max-time 5 "http://127.0.0.1:$port/health" || echo failed)"
stop_pid "$llmux_pid" 40
dropped="$(grep -Eo '[0-9]+ (capture records were dropped|requests were not recorded)' "$tmp/llmux.err" | tr '\n' ';' || true)"

python3 - "$tmp" "$KINDS" "$WARMUP" "$DURATION" "$results" "$rev" "$busy_note" "$health" "$stop_rc" "${dropped:-none}" "$DB_CAP" <<'PY'
import csv, json, sys
tmp, kinds, warmup, duration, results, rev, busy, health, stop_rc, dropped, db_cap = sys.argv[1:12]
warmup, duration, db_cap = int(warmup), int(duration), int(db_cap)
rows = list(csv.DictReader(open(f"{tmp}/samples.csv")))
# The store's file grows until its pages in use reach the cap, then stays (pages are reused).
capped = next((int(r["seconds"]) for r in rows if int(r["db_bytes"] or 0) >= db_cap * 0.98), None)
warmup_note = f"{warmup} s warm-up"
if capped is not None and capped + 60 > warmup:
    warmup = capped + 60
    warmup_note = f"warm-up until a minute after the store reached its cap at {capped} s"
elif capped is None:
    warmup_note += " (the capture store did not reach its cap)"
if warmup >= duration:
    warmup = max(0, duration - 60)
    warmup_note += f"; cut to {warmup} s to leave a minute"
samples = [(int(r["seconds"]), int(r["rss_kib"]), int(r["open_fds"])) for r in rows]
parts = {int(r["seconds"]): (int(r["anon_kib"] or 0), int(r["file_kib"] or 0)) for r in rows}
db_mib = {int(r["seconds"]): int(r["db_bytes"] or 0) / 1048576 for r in rows}
totals = {}
for kind in kinds.split():
    ok = errors = 0
    first = None
    for line in open(f"{tmp}/{kind}.jsonl"):
        r = json.loads(line)
        ok += r.get("ok", 0); errors += r.get("errors", 0)
        first = first or r.get("first_error")
    totals[kind] = (ok, errors, first)
after = [s for s in samples if s[0] >= warmup]
base = after[0][1]
low, high = min(s[1] for s in after), max(s[1] for s in after)
spread = max(high - base, base - low) / base * 100
errors = sum(e for _, e, _ in totals.values())
requests = sum(o for o, _, _ in totals.values())
passed = errors == 0 and spread <= 10 and health.startswith("{") and stop_rc == "0"
mib = lambda kb: kb / 1024

# The plot: RSS over time, the warm-up shaded, the ±10 % band around the first sample after it.
W, H, L, B = 720, 320, 60, 40
tmax = max(duration, samples[-1][0]) or 1
ymax = max(high, max(s[1] for s in samples)) * 1.15
x = lambda t: L + (W - L - 10) * t / tmax
y = lambda kb: H - B - (H - B - 10) * kb / ymax
pts = " ".join(f"{x(t):.1f},{y(kb):.1f}" for t, kb, _ in samples)
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<rect x="{L}" y="10" width="{x(warmup) - L:.1f}" height="{H - B - 10}" fill="#eee"/>',
       f'<rect x="{x(warmup):.1f}" y="{y(base * 1.1):.1f}" width="{x(tmax) - x(warmup):.1f}" height="{y(base * 0.9) - y(base * 1.1):.1f}" fill="#e3f2e3"/>',
       f'<polyline fill="none" stroke="#1565c0" stroke-width="1.5" points="{pts}"/>',
       f'<line x1="{L}" y1="{H - B}" x2="{W - 10}" y2="{H - B}" stroke="black"/>',
       f'<line x1="{L}" y1="10" x2="{L}" y2="{H - B}" stroke="black"/>',
       f'<text x="{L}" y="{H - 12}">0 s</text><text x="{W - 60}" y="{H - 12}">{tmax} s</text>',
       f'<text x="4" y="{y(base) + 4:.1f}">{mib(base):.1f} MiB</text>',
       f'<text x="4" y="14">{mib(ymax):.0f} MiB</text>',
       f'<text x="{L + 6}" y="24">llmux RSS during the soak (grey: warm-up; green: ±10 % of the first sample after it)</text>',
       '</svg>']
open(f"{results}/soak.svg", "w").write("\n".join(svg) + "\n")

step = max(1, len(samples) // 40)
shown = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
lines = [f"# Soak: {duration} s of mixed load, both captures on", "",
         f"llmux {rev}; {busy}.", "",
         f"**{'PASS' if passed else 'FAIL'}**: {requests} requests, {errors} errors; RSS after the "
         f"{warmup_note} between {mib(low):.1f} and {mib(high):.1f} MiB, at most {spread:.1f} % "
         f"from {mib(base):.1f} MiB (limit 10 %); /health at the end: {health}; exit status {stop_rc}; "
         f"capture losses logged at exit: {dropped}.", "",
         "![RSS over time](soak.svg)", "",
         "| kind | requests ok | errors | first error |", "|---|---|---|---|"]
lines += [f"| {k} | {o} | {e} | {f or ''} |" for k, (o, e, f) in totals.items()]
lines += ["", "| second | RSS MiB | of it anonymous (heap) | of it file-backed | open fds | store file MiB |",
          "|---|---|---|---|---|---|"]
lines += [f"| {t} | {mib(kb):.1f} | {mib(parts[t][0]):.1f} | {mib(parts[t][1]):.1f} | {fd} | {db_mib[t]:.0f} |"
          for t, kb, fd in shown]
open(f"{results}/soak.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines[:6]))
sys.exit(0 if passed else 1)
PY
