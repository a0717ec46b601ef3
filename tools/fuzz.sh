#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (-fsanitize=fuzzer,address,undefined) in
# build-fuzz/ and runs each for SECONDS (default 60, the documented long run uses more), FUZZ_PARALLEL
# targets at a time (default: the number of cores), failing on any crash, sanitizer report, timeout
# (> 10 s for one input) or OOM (> 2048 MB RSS).
#   bash tools/fuzz.sh [SECONDS_PER_TARGET] [extra libFuzzer flags, e.g. -runs=100000]
#   FUZZ_TARGETS="fuzz_trace_reader fuzz_hf_config" bash tools/fuzz.sh 600   # some targets only
# Corpora grow in build-fuzz/corpus/<target>/ (seeded from tests/fuzz/seeds/<target>/ and the
# golden files); a failing input is saved as build-fuzz/artifacts/<target>/crash-* (or timeout-,
# oom-, leak-), reproduce it with: build-fuzz/tests/fuzz/<target> <that file>. Figures per target
# (executions, time, result) are printed at the end and written to build-fuzz/fuzz-summary.txt.
# Long run of the trace reader (bench/RESULTS.md, Reliability): tools/fuzz_trace_reader_long.sh
# (WORKERS processes at nice 19 on one shared corpus, chunked, no per-input leak checks; then every
# artefact and the whole corpus re-run at normal priority with -timeout=10 and leak checks):
#   bash tools/fuzz_trace_reader_long.sh run 2 15:15 && bash tools/fuzz_trace_reader_long.sh check
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
shift || true
EXTRA=("$@")
BUILD=build-fuzz
CLANG=$(command -v clang++-14 || command -v clang++ || true)
if [ -z "$CLANG" ]; then echo "fuzz.sh: clang++ not found (apt-get install clang-14)" >&2; exit 1; fi
CC=${CLANG/clang++/clang}
ALL=(fuzz_safetensors fuzz_hf_config fuzz_llama2c_checkpoint fuzz_tokenizer_json
     fuzz_llama2c_tokenizer fuzz_sentencepiece fuzz_trace_reader)
read -r -a TARGETS <<< "${FUZZ_TARGETS:-${ALL[*]}}"

# Only the fuzz targets and the probe helper are built: no CUDA, Studio or test suite.
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CLANG" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" \
  -DKVSCOPE_BUILD_FUZZ=ON -DKVSCOPE_BUILD_CUDA=OFF -DKVSCOPE_BUILD_STUDIO=OFF \
  -DKVSCOPE_BUILD_TESTS=OFF -DKVSCOPE_WERROR=ON >/dev/null
cmake --build "$BUILD" -j "${FUZZ_JOBS:-2}" --target "${TARGETS[@]}" kvscope-trace-probe

# Seeds: tests/fuzz/seeds/<name>/, plus the golden tokenizer.json files for fuzz_tokenizer_json.
seed_dirs() {
  local name=${1#fuzz_}
  [ -d "tests/fuzz/seeds/$name" ] && echo "tests/fuzz/seeds/$name"
  if [ "$1" = fuzz_tokenizer_json ]; then
    mkdir -p "$BUILD/seeds/tokenizer_json"
    for f in tests/golden/tokenizers/*/tokenizer.json; do
      cp -f "$f" "$BUILD/seeds/tokenizer_json/$(basename "$(dirname "$f")").json"
    done
    echo "$BUILD/seeds/tokenizer_json"
  fi
}

# A hung libhdf5 in the trace probe's child is killed after 5 s, inside libFuzzer's 10 s.
export KVSCOPE_TRACE_PROBE_TIMEOUT_S=5
# Leaks inside libhdf5's own code on damaged files are not ours to fix (see the file).
export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan_libhdf5.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
summary="$BUILD/fuzz-summary.txt"
: > "$summary"
# Targets run FUZZ_PARALLEL at a time (default: the number of cores; libFuzzer uses one core per
# process, so each target still has a core for its SECONDS), each writing its summary line to
# $BUILD/<target>.result; the lines are printed in the order of TARGETS.
run_target() {
  local t=$1 corpus="$BUILD/corpus/$1" artifacts="$BUILD/artifacts/$1" log="$BUILD/$1.log"
  local start rc=0 secs execs result seeds
  mkdir -p "$corpus" "$artifacts"
  mapfile -t seeds < <(seed_dirs "$t")
  start=$(date +%s)
  "$BUILD/tests/fuzz/$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "${EXTRA[@]}" "$corpus" "${seeds[@]}" \
    >"$log" 2>&1 || rc=$?
  secs=$(( $(date +%s) - start ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  if [ "$rc" = 0 ]; then result=ok; else result="FAILED (exit $rc; see $log)"; fi
  printf '%-26s %10s execs %5ss  corpus %5s  %s\n' "$t" "${execs:-?}" "$secs" \
    "$(ls "$corpus" | wc -l)" "$result" >"$BUILD/$t.result"
}
parallel=${FUZZ_PARALLEL:-$(nproc)}
for t in "${TARGETS[@]}"; do
  rm -f "$BUILD/$t.result"
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n || true; done
  run_target "$t" &
done
wait
failed=0
for t in "${TARGETS[@]}"; do
  line=$(cat "$BUILD/$t.result" 2>/dev/null || echo "$t: no result")
  echo "$line" | tee -a "$summary"
  case "$line" in
    *" ok") ;;
    *) failed=1
       grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==' "$BUILD/$t.log" | head -20 >&2 || true ;;
  esac
done
exit "$failed"
