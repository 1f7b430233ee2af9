#!/usr/bin/env bash
# A/A calibration: stands in for llmux with a second fake provider on the port of the generated
# config, so `LLMUX_BIN=bench/aa-standin.sh bench/run.sh` measures the noise floor of the method
# (added latency and throughput ratio should then be ~0 and ~1.00).
# Called as: aa-standin.sh --config FILE [--log-level LEVEL]
set -euo pipefail
[[ "${1:-}" == --config && -n "${2:-}" ]] || { echo "usage: $0 --config FILE" >&2; exit 2; }
port="$(sed -n 's/^port *= *//p' "$2" | head -n 1)"
bin="${CARGO_TARGET_DIR:-$HOME/.cache/llmux/target}/release"
exec "$bin/fake-provider" --port "$port"
