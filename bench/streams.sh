#!/usr/bin/env bash
# Many streams at once: STREAMS (default 1000) streaming chat requests held open together, each
# 64 content chunks paced INTERVAL_MS (default 50) apart by the fake provider, first sent
# straight to the fake and then through llmux. Every frame is checked to arrive in order; each
# frame's delay (arrival minus the provider's send stamp) goes into a histogram, and llmux's RSS
# is sampled every 50 ms for its peak. "Added" is the proxied delay minus the direct one, at the
# same percentile, in one run.
# Usage: bench/streams.sh
#   STREAMS=1000 INTERVAL_MS=50 SKIP_BUILD=1 LLMUX_BIN=path PIN=none|same|split (default none)
# Writes bench/results/streams.md (and streams.json).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
PIN="${PIN:-none}"
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
refuse_fake_tls
# Only the fake's chat streams are paced and stamped (--chunk-interval-ms).
if [[ "${FAKE_API:-openai}" != openai ]]; then
    echo "streams.sh measures paced OpenAI chat streams; FAKE_API=${FAKE_API} is not supported" >&2
    exit 2
fi
LLMUX_BIN="${LLMUX_BIN:-$bin/llmux}"
STREAMS="${STREAMS:-1000}"
INTERVAL_MS="${INTERVAL_MS:-50}"
results="$here/results"
mkdir -p "$results"

build_release
require_bins "$LLMUX_BIN" "$bin/fake-provider" "$bin/streams" "$bin/loadgen"
run_start=$SECONDS
setup_pinning
machine_notes
# Each stream holds a socket in the tool, two in llmux and one in the fake.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

start_fake --chunk-interval-ms "$INTERVAL_MS"
port="$("$bin/loadgen" free-port)"
write_config "$tmp/llmux.toml" "$port"
start_llmux llmux "$tmp/llmux.toml" "$port"
llmux_pid=$started_pid
idle_kb="$(rss_kb "$llmux_pid")"

timeout=$(( INTERVAL_MS * 64 / 1000 + 60 ))
echo "direct: $STREAMS streams against the fake..." >&2
"${pin_load[@]}" "$bin/streams" --url "http://$fake_addr/v1" --streams "$STREAMS" \
    --timeout-secs "$timeout" >"$tmp/direct.json"
echo "through llmux: $STREAMS streams..." >&2
"${pin_load[@]}" "$bin/streams" --url "http://127.0.0.1:$port/v1" --streams "$STREAMS" \
    --pid "$llmux_pid" --timeout-secs "$timeout" >"$tmp/proxied.json"
after_kb="$(rss_kb "$llmux_pid")"

python3 - "$tmp/direct.json" "$tmp/proxied.json" "$idle_kb" "$after_kb" "$STREAMS" \
    "$INTERVAL_MS" "$rev" "$busy_note" "$pin_note" "$results" <<'PY'
import json, sys
direct, proxied = (json.load(open(p)) for p in sys.argv[1:3])
idle_kb, after_kb, streams, interval = (int(v) for v in sys.argv[3:7])
rev, busy, pin, results = sys.argv[7:11]
mib = lambda kb: kb / 1024
d, p = direct["frame_delay_us"], proxied["frame_delay_us"]
ok = lambda r: r["errors"] == 0 and r["out_of_order"] == 0 and r["frames"] == r["frames_expected"]
lines = [
    f"# {streams} streams at once, direct vs. through llmux",
    "",
    f"llmux {rev}; {streams} streaming chat requests opened together, 64 content chunks each, "
    f"{interval} ms apart; {busy}; {pin}.",
    "",
    "| | streams ok | peak open at once | frames (expected) | out of order | errors | frame delay p50 µs | p90 µs | p99 µs | max µs |",
    "|---|---|---|---|---|---|---|---|---|---|",
]
for name, r in (("direct", direct), ("through llmux", proxied)):
    f = r["frame_delay_us"]
    lines.append(f"| {name} | {r['streams_ok']} | {r['peak_active']} | {r['frames']} ({r['frames_expected']}) | "
                 f"{r['out_of_order']} | {r['errors']} | {f['p50']} | {f['p90']} | {f['p99']} | {f['max']} |")
lines += [
    "",
    f"- added per-frame delay: p50 {p['p50'] - d['p50']} µs, p99 {p['p99'] - d['p99']} µs",
    f"- llmux RSS: {mib(idle_kb):.1f} MiB idle, {mib(proxied['rss_peak_kib'] or 0):.1f} MiB at the peak, "
    f"{mib(after_kb):.1f} MiB after the streams ended",
    f"- every frame in order, none missing, no errors: {'yes' if ok(direct) and ok(proxied) else 'NO'}",
]
for name, r in (("direct", direct), ("through llmux", proxied)):
    if r.get("first_error"):
        lines.append(f"- first error ({name}): {r['first_error']}")
open(f"{results}/streams.md", "w").write("\n".join(lines) + "\n")
json.dump({"direct": direct, "proxied": proxied, "idle_kib": idle_kb, "after_kib": after_kb},
          open(f"{results}/streams.json", "w"), indent=2)
print("\n".join(lines))
sys.exit(0 if ok(direct) and ok(proxied) else 1)
PY
