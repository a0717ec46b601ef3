#!/usr/bin/env bash
# The main job: build KVScope, then record two needle-in-a-haystack runs of the bundled demo model
# (a 2048-token prompt built by `kvscope run --scenario niah`, the needle in the middle): one with
# the full cache, which finds the needle, and one under a compression policy (default SnapKV
# keeping 25% of the prompt), which can lose it. Writes demo_full.kvtrace.h5 and demo.kvtrace.h5
# and prints the summary of the compressed run.
# Usage: bash tools/demo.sh [policy] [ratio] [length]
set -euo pipefail
cd "$(dirname "$0")/.."
POLICY=${1:-snapkv}
RATIO=${2:-0.25}
LENGTH=${3:-2048}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target kvscope
K=build/app/cli/kvscope
MODEL=resources/models/kvscope-demo
# --force: running the demo again replaces its own two traces (kvscope never overwrites unasked).
SCENARIO=(--scenario niah --length "$LENGTH" --depth 0.5 --scenario-seed 1 --max-new 12 --force)

echo "== full cache =="
$K run --model "$MODEL" "${SCENARIO[@]}" --policy full --trace demo_full.kvtrace.h5
echo
echo "== $POLICY, ratio $RATIO =="
$K run --model "$MODEL" "${SCENARIO[@]}" --policy "$POLICY" --ratio "$RATIO" \
  --trace demo.kvtrace.h5
echo
$K inspect demo.kvtrace.h5
echo
echo "Open them in the Studio: build/app/studio/kvscope-studio demo.kvtrace.h5"
echo "                         (File > Open: demo_full.kvtrace.h5 to compare)"
