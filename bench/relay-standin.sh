#!/usr/bin/env bash
# The proxy floor: stands in for llmux with a TCP byte relay (bench/src/bin/relay.rs) from the
# generated config's port to its back-end's address, so `LLMUX_BIN=bench/relay-standin.sh
# bench/run.sh` measures what any proxy costs on this machine before it parses a byte (two more
# socket reads and writes, and the wake-ups they cause). llmux's cost above it is its own code's.
# Called as: relay-standin.sh --config FILE [--log-level LEVEL]
set -euo pipefail
[[ "${1:-}" == --config && -n "${2:-}" ]] || { echo "usage: $0 --config FILE" >&2; exit 2; }
port="$(sed -n 's/^port *= *//p' "$2" | head -n 1)"
upstream="$(sed -n 's|^base_url *= *"http://\([^/"]*\).*|\1|p' "$2" | head -n 1)"
[[ -n "$port" && -n "$upstream" ]] || { echo "$0: no port or http base_url in $2" >&2; exit 2; }
bin="${CARGO_TARGET_DIR:-$HOME/.cache/llmux/target}/release"
exec "$bin/relay" --port "$port" --upstream "$upstream"
