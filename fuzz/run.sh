#!/usr/bin/env bash
# Runs the fuzz targets one after another, one libFuzzer process at a time, each until
# FUZZ_RUNS executions or FUZZ_SECONDS seconds, whichever comes first (default 10 million
# or 30 minutes). Before a run the target's corpus (fuzz/corpus/<target>/) is seeded from
# tests/fixtures/; after it the corpus is minimized (libFuzzer -merge=1) so the saved one
# stays small. A crash stops that target's run: the input is copied to
# fuzz/regressions/<target>/ (replayed by tests/fuzz_corpora.rs). Each run is a row of
# fuzz/runs.tsv, and the table in bench/results/fuzz.md is rewritten from it.
#
# Usage: fuzz/run.sh [target ...]     (every target when none is named)
#   FUZZ_RUNS=10000000 FUZZ_SECONDS=1800 FUZZ_MAX_LEN=16384
#   FUZZ_NO_BUILD=1 (use the built targets), FUZZ_SEED_ONLY=1 (only copy the seeds)
# Needs fuzz/setup.sh first.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/llmux/target-fuzz}"
RUNS="${FUZZ_RUNS:-10000000}"
SECONDS_EACH="${FUZZ_SECONDS:-1800}"
MAX_LEN="${FUZZ_MAX_LEN:-16384}"
BIN="$FUZZ_TARGET_DIR/x86_64-unknown-linux-gnu/release"
LOGS="$FUZZ_TARGET_DIR/fuzz-logs"
# The full working corpora, kept between runs; fuzz/corpus/ holds their minimized form.
WORK="$FUZZ_TARGET_DIR/fuzz-corpus"
SEED_BASE="$WORK"
FIX=tests/fixtures
ALL=(
    upstream_openai_chat upstream_openai_responses upstream_anthropic upstream_gemini
    request_openai_chat request_openai_responses request_anthropic request_gemini
    commands config
)
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL[@]}"); fi

# ---- seeds -------------------------------------------------------------------------

# add_seed TARGET FILE...: copies files into the corpus under their SHA-1 (as libFuzzer
# names them), so reseeding never duplicates.
add_seed() {
    local target=$1
    shift
    mkdir -p "$SEED_BASE/$target"
    local f
    for f in "$@"; do
        [ -f "$f" ] || continue
        cp "$f" "$SEED_BASE/$target/$(sha1sum <"$f" | cut -c1-40)"
    done
}

# add_text TARGET TEXT: one seed from a string (printf escapes allowed).
add_text() {
    local tmp
    tmp=$(mktemp)
    printf "$2" >"$tmp"
    add_seed "$1" "$tmp"
    rm -f "$tmp"
}

# fixtures DIR NAME...: the fixture files called NAME in every case of DIR.
fixtures() {
    local dir=$1
    shift
    local name
    for name in "$@"; do
        find "$FIX/$dir" -mindepth 2 -maxdepth 2 -type f -name "$name" | sort
    done
}

seed() {
    local t=$1
    case $t in
    request_openai_chat)
        add_seed "$t" $(fixtures openai_chat request.json upstream_request.json)
        add_seed "$t" $(fixtures openai_chat_to_responses request.json)
        add_seed "$t" $(fixtures openai_responses chat_upstream_request.json)
        ;;
    request_openai_responses)
        add_seed "$t" $(fixtures openai_responses request.json upstream_request.json)
        add_seed "$t" $(fixtures openai_chat_to_responses upstream_request.json)
        ;;
    request_anthropic)
        add_seed "$t" $(fixtures anthropic request.json upstream_request.json)
        ;;
    request_gemini)
        add_seed "$t" $(fixtures gemini request.json upstream_request.json)
        ;;
    upstream_openai_chat)
        add_seed "$t" $(fixtures openai_chat response.json expected_response.json upstream.sse expected.sse)
        add_seed "$t" $(fixtures openai_responses chat_response.json chat_upstream.sse)
        add_seed "$t" $(fixtures openai_chat_to_responses expected_response.json expected.sse)
        ;;
    upstream_openai_responses)
        add_seed "$t" $(fixtures openai_responses response.json expected_response.json \
            expected_from_chat_response.json upstream.sse expected.sse expected_from_chat.sse)
        add_seed "$t" $(fixtures openai_chat_to_responses response.json upstream.sse)
        ;;
    upstream_anthropic)
        add_seed "$t" $(fixtures anthropic response.json expected_response.json upstream.sse expected.sse)
        ;;
    upstream_gemini)
        add_seed "$t" $(fixtures gemini response.json expected_response.json upstream.sse expected.sse)
        # The same records as a streamed JSON array (no alt=sse).
        local f tmp
        for f in $(fixtures gemini upstream.sse expected.sse); do
            tmp=$(mktemp)
            { printf '['; sed -n 's/^data: \{0,1\}//p' "$f" | tr -d '\r' | paste -sd, -; printf ']'; } >"$tmp"
            add_seed "$t" "$tmp"
            rm -f "$tmp"
        done
        ;;
    commands)
        add_text "$t" '!/help'
        add_text "$t" '!/status'
        add_text "$t" 'please fix the bug\n!/set(temperature=0.5, model=openai:gpt-4o, reasoning=high)'
        add_text "$t" '!/backend(anthropic) !/model(anthropic/claude-sonnet-4) hello'
        add_text "$t" '!/oneoff(openai:gpt-4o-mini)\n'
        add_text "$t" '!/unset(model, temperature)\n!/unset(all)'
        add_text "$t" '!/max\n!/no-think !/low !/medium'
        add_text "$t" '!/project-dir(~/src)'
        add_text "$t" 'I tried !/help but it did not work'
        add_text "$t" 'code:\n```\n!/help\n```\nand `!/status` inline'
        add_text "$t" 'first part\0second part\n!/status'
        add_text "$t" '!/bogus(x)'
        ;;
    config)
        add_seed "$t" config/llmux.example.toml config/edit_precision_patterns.toml config/reasoning_aliases.toml
        add_text "$t" 'default_backend = "mock"\n[backends.mock]\nchunks = 5\nchunk_delay_ms = 100\n'
        add_text "$t" '[backends.local]\ntype = "openai_compatible"\nbase_url = "http://127.0.0.1:9/v1"\n\n[[model_aliases]]\npattern = "^gpt-(.*)$"\nreplacement = "local:$1"\n'
        add_text "$t" '[backends.x]\ntype = "nope"\n'
        ;;
    *)
        echo "fuzz/run.sh: unknown target $t" >&2
        exit 2
        ;;
    esac
}

# ---- results -------------------------------------------------------------------------

RESULTS=fuzz/runs.tsv
REPORT=bench/results/fuzz.md
[ -f "$RESULTS" ] || printf 'target\tdate\tcommit\texecutions\texec_per_s\tfuzz_s\twall_s\treached_10M\tcorpus_files\tcorpus_kb\tnew_units\tcrashes\n' >"$RESULTS"

# Rewrites the table between the markers of bench/results/fuzz.md from fuzz/runs.tsv
# (the last run of each target).
write_report() {
    mkdir -p "$(dirname "$REPORT")"
    if [ ! -f "$REPORT" ] || ! grep -q '<!-- runs:begin -->' "$REPORT"; then
        printf '# Fuzzing\n\n<!-- runs:begin -->\n<!-- runs:end -->\n' >>"$REPORT"
    fi
    local table
    table=$(mktemp)
    {
        echo '| Target | Date (UTC) | Commit | Executions | exec/s | Fuzz time (s) | Wall (s) | Reached FUZZ_RUNS | Corpus files saved (working) | Saved KB | New units | Crashes |'
        echo '|---|---|---|--:|--:|--:|--:|---|--:|--:|--:|---|'
        tail -n +2 "$RESULTS" | awk -F'\t' '{last[$1]=$0; if (!($1 in seen)) {seen[$1]=1; order[n++]=$1}}
            END {for (i=0;i<n;i++) {split(last[order[i]], f, "\t");
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                    f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11], f[12]}}'
    } >"$table"
    awk -v table="$table" '
        /<!-- runs:begin -->/ {print; while ((getline line < table) > 0) print line; skip=1; next}
        /<!-- runs:end -->/ {skip=0}
        !skip {print}' "$REPORT" >"$REPORT.tmp"
    mv "$REPORT.tmp" "$REPORT"
    rm -f "$table"
}

# ---- runs ------------------------------------------------------------------------------

if [ "${FUZZ_SEED_ONLY:-0}" = 1 ]; then
    SEED_BASE=fuzz/corpus
    for t in "${TARGETS[@]}"; do seed "$t"; done
    exit 0
fi
if [ "${FUZZ_NO_BUILD:-0}" != 1 ]; then
    nice -n 10 cargo fuzz build --sanitizer none -O -a --target-dir "$FUZZ_TARGET_DIR"
fi
mkdir -p "$LOGS"
commit=$(git rev-parse --short HEAD)

for t in "${TARGETS[@]}"; do
    [ -x "$BIN/$t" ] || { echo "fuzz/run.sh: $BIN/$t is not built (fuzz/setup.sh)" >&2; exit 2; }
    seed "$t"
    mkdir -p "fuzz/artifacts/$t"
    before=$(ls "fuzz/artifacts/$t" | sort)
    log="$LOGS/$t.log"
    echo "fuzz/run.sh: $t: up to $RUNS runs or ${SECONDS_EACH}s; log $log"
    start=$(date +%s)
    set +e
    "$BIN/$t" -runs="$RUNS" -max_total_time="$SECONDS_EACH" -max_len="$MAX_LEN" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" "$WORK/$t" "fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    set -e
    wall=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    added=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
    fuzz_s=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)

    crashes=none
    new=$(comm -13 <(echo "$before") <(ls "fuzz/artifacts/$t" | sort) | grep -v '^$' || true)
    if [ -n "$new" ]; then
        mkdir -p "fuzz/regressions/$t"
        for a in $new; do cp "fuzz/artifacts/$t/$a" "fuzz/regressions/$t/$a"; done
        crashes=$(echo $new | tr ' ' ',')
        echo "fuzz/run.sh: $t: FOUND $crashes (exit $rc); kept in fuzz/regressions/$t/" >&2
        grep -m1 -A3 "panicked at\|ERROR: libFuzzer" "$log" >&2 || true
    elif [ "$rc" != 0 ]; then
        crashes="exit $rc, no artifact"
    fi

    # Minimize twice: the working corpus keeps every input that adds a feature (edge hit
    # counts included, -merge=1); the saved one (fuzz/corpus/<target>/, replayed by the
    # test) only a small set covering the same edges (-set_cover_merge=1 -use_counters=0).
    mkdir -p "fuzz/corpus/$t"
    merged="$FUZZ_TARGET_DIR/merge-$t"
    rm -rf "$merged"
    mkdir -p "$merged"
    "$BIN/$t" -merge=1 -max_len="$MAX_LEN" -timeout=10 "$merged" "$WORK/$t" "fuzz/corpus/$t" \
        >"$LOGS/$t.merge.log" 2>&1
    rm -rf "$WORK/$t"
    mv "$merged" "$WORK/$t"
    mkdir -p "$merged"
    "$BIN/$t" -set_cover_merge=1 -use_counters=0 -max_len="$MAX_LEN" -timeout=10 "$merged" "$WORK/$t" \
        >>"$LOGS/$t.merge.log" 2>&1
    rm -rf "fuzz/corpus/$t"
    mv "$merged" "fuzz/corpus/$t"
    work_files=$(find "$WORK/$t" -type f | wc -l)
    files=$(find "fuzz/corpus/$t" -type f | wc -l)
    kb=$(( ($(du -sb "fuzz/corpus/$t" | cut -f1) + 1023) / 1024 ))

    reached=no
    [ "${execs:-0}" -ge "$RUNS" ] && reached=yes
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$(date -u +%Y-%m-%dT%H:%MZ)" \
        "$commit" "${execs:-?}" "${rate:-?}" "${fuzz_s:-?}" "$wall" "$reached" "$files ($work_files)" "$kb" \
        "${added:-?}" "$crashes" >>"$RESULTS"
    write_report
    echo "fuzz/run.sh: $t: $execs runs, $rate exec/s, ${wall}s, corpus $files saved / $work_files working, crashes: $crashes"
done
