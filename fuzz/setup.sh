#!/usr/bin/env bash
# Installs what fuzzing needs and builds every fuzz target. Idempotent: safe to rerun.
#
# Route: cargo-fuzz (libFuzzer) on the *stable* toolchain with `--sanitizer none`;
# no nightly and no RUSTC_BOOTSTRAP are needed (cargo-fuzz only passes stable -C flags
# when no sanitizer is asked for). libfuzzer-sys compiles libFuzzer's C++ with the
# system C++ compiler.
#
# Builds go to $FUZZ_TARGET_DIR (default ~/.cache/llmux/target-fuzz).
set -euo pipefail

cd "$(dirname "$0")/.."
FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/llmux/target-fuzz}"

if ! command -v c++ >/dev/null 2>&1; then
    echo "fuzz/setup.sh: installing a C++ compiler (libFuzzer is C++)"
    if [ "$(id -u)" = 0 ]; then
        apt-get update && apt-get install -y g++
    else
        sudo apt-get update && sudo apt-get install -y g++
    fi
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/setup.sh: installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi
echo "fuzz/setup.sh: $(cargo fuzz --version)"

echo "fuzz/setup.sh: building the fuzz targets into $FUZZ_TARGET_DIR"
nice -n 10 cargo fuzz build --sanitizer none -O -a --target-dir "$FUZZ_TARGET_DIR"
