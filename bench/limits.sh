#!/usr/bin/env bash
# What the input-limit check and failover add, in one run against one llmux (see
# bench/src/bin/turns.rs): a ~1 MB, 200-message conversation to a model with
# max_input_tokens set and to one without, first turn and follow-up turn; and a failover
# route whose first leg refuses connections against its second leg asked for directly.
# Usage: bench/limits.sh    (ROUNDS=15, SKIP_BUILD=1, LLMUX_BIN=path, PIN=same|none|split)
# Writes bench/results/limits.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
LLMUX_BIN="${LLMUX_BIN:-$bin/llmux}"
ROUNDS="${ROUNDS:-15}"
mkdir -p "$here/results"

build_release
require_bins "$LLMUX_BIN" "$bin/fake-provider" "$bin/turns"
run_start=$SECONDS
setup_pinning
start_fake
port="$("$bin/loadgen" free-port)"
write_config "$tmp/llmux.toml" "$port" '
[backends.dead]
type = "openai-compatible"
# Nothing listens on port 9 (discard): connections are refused at once.
base_url = "http://127.0.0.1:9/v1"

[models."fake:limited".limits]
max_input_tokens = 1000000

[routes.sturdy]
legs = ["dead:plain", "fake:plain"]'
start_llmux llmux "$tmp/llmux.toml" "$port"
{
    echo "# Limits and failover: added latency ($(date -u +%Y-%m-%dT%H:%MZ), $pin_note)"
    echo
    "${pin_load[@]}" "$bin/turns" --llmux "127.0.0.1:$port" --rounds "$ROUNDS"
} | tee "$here/results/limits.md"
