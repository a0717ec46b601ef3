#!/usr/bin/env bash
# Long fuzzing campaign of the trace reader (issue 11: >= 1 M executions with 0 crashes, hangs,
# OOMs and leaks) on a machine shared with other work. Needs build-fuzz/ from tools/fuzz.sh.
#   bash tools/fuzz_trace_reader_long.sh run WORKERS UNTIL [CHUNK_S]   # e.g. run 2 15:15 600
#   bash tools/fuzz_trace_reader_long.sh check     # after run: re-check artefacts, leak pass
#   bash tools/fuzz_trace_reader_long.sh count     # executions so far, per chunk and in total
# run: WORKERS libFuzzer processes at nice 19 on one shared corpus (libFuzzer reloads it, so the
# workers use each other's finds), in chunks of CHUNK_S seconds (default 600) until UNTIL (a
# `date -d` time), so the counts of finished chunks survive an interruption. Speed: no per-input
# leak checks (-detect_leaks=0 doubles exec/s); `check` re-runs every corpus input with them.
# libFuzzer's -timeout is wall-clock time, and a nice-19 process on a loaded machine can wait
# seconds for a core (inputs of 34-842 ms "timed out" at -timeout=10 in such runs, and libFuzzer
# stops at each): run uses -timeout=60 and -report_slow_units=10, and `check` re-runs every
# timeout and slow-unit artefact at normal priority with -timeout=10, where a real hang fails.
# check: each artefact (crash-, leak-, timeout-, oom-, slow-unit-) alone, then the whole corpus
# once (-runs=0), both with -timeout=10 -rss_limit_mb=2048 -detect_leaks=1; exits 1 on any failure.
# Logs: $FUZZ_LOG_DIR (default ${TMPDIR:-/tmp}/kvscope-fuzz-long); corpus:
# build-fuzz/corpus/fuzz_trace_reader_1m; artefacts: build-fuzz/artifacts/fuzz_trace_reader_1m/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build-fuzz/tests/fuzz/fuzz_trace_reader
CORPUS=build-fuzz/corpus/fuzz_trace_reader_1m
ARTS=build-fuzz/artifacts/fuzz_trace_reader_1m
LOGS=${FUZZ_LOG_DIR:-${TMPDIR:-/tmp}/kvscope-fuzz-long}
SEEDS=tests/fuzz/seeds/trace_reader
# As tools/fuzz.sh: libhdf5 hung in the probe's child is killed after 5 s; libhdf5's own leaks
# on damaged files are suppressed (tests/fuzz/lsan_libhdf5.supp says why).
export KVSCOPE_TRACE_PROBE_TIMEOUT_S=5
export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan_libhdf5.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
usage() { sed -n '4,6p' "$0" | sed 's/^# *//' >&2; exit 2; }
[ -x "$BIN" ] || { echo "$0: $BIN missing: build it with bash tools/fuzz.sh first" >&2; exit 1; }
mkdir -p "$LOGS" "$CORPUS" "$ARTS"

worker() {  # worker W UNTIL CHUNK: chunks until UNTIL
    local w=$1 end chunk=$3 n=0 left t log rc
    end=$(date -u -d "$2" +%s)
    mkdir -p "$ARTS/$w"
    while :; do
        left=$(( end - $(date -u +%s) ))
        [ "$left" -le 20 ] && break
        t=$(( left < chunk ? left : chunk ))
        n=$((n + 1)); log="$LOGS/w$w-chunk$n.log"
        rc=0
        nice -n 19 "$BIN" -max_total_time="$t" -timeout=60 -report_slow_units=10 \
            -rss_limit_mb=2048 -detect_leaks=0 -print_final_stats=1 -artifact_prefix="$ARTS/$w/" \
            "$CORPUS" "$SEEDS" >"$log" 2>&1 || rc=$?
        echo "$(date -u +%FT%TZ) worker $w chunk $n: ${t}s exit $rc" \
            "$(grep 'DONE' "$log" | tail -1)" >>"$LOGS/index.txt"
    done
}

case "${1:-}" in
run)
    [ $# -ge 3 ] || usage
    echo "$(date -u +%FT%TZ) run: $2 workers until $3, commit $(git rev-parse --short HEAD)" \
        >>"$LOGS/index.txt"
    for w in $(seq 1 "$2"); do worker "$w" "$3" "${4:-600}" & done
    wait
    ;;
count)
    total=0
    for log in "$LOGS"/w*-chunk*.log; do
        [ -e "$log" ] || continue
        e=$(grep -o 'number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
        printf '%-28s %9s executions\n' "$(basename "$log")" "$e"
        total=$((total + e))
    done
    echo "total: $total executions"
    ;;
check)
    failed=0
    while IFS= read -r -d '' a; do
        rc=0 one="$LOGS/check-$(basename "$a").log"
        "$BIN" -timeout=10 -rss_limit_mb=2048 -detect_leaks=1 "$a" >"$one" 2>&1 || rc=$?
        echo "artefact $(basename "$a"): exit $rc, $(grep -o 'in [0-9]* ms' "$one")"
        [ "$rc" = 0 ] || failed=1
    done < <(find "$ARTS" -type f -print0)
    rc=0
    "$BIN" -runs=0 -timeout=10 -rss_limit_mb=2048 -detect_leaks=1 -print_final_stats=1 \
        -artifact_prefix="$LOGS/check-" "$CORPUS" >"$LOGS/check-corpus.log" 2>&1 || rc=$?
    echo "corpus $CORPUS: $(find "$CORPUS" -type f | wc -l) inputs, exit $rc," \
        "$(grep -E 'INITED|DONE' "$LOGS/check-corpus.log" | tail -1)"
    [ "$rc" = 0 ] || failed=1
    exit "$failed"
    ;;
*) usage ;;
esac
