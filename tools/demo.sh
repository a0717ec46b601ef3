#!/usr/bin/env bash
# The main job: build KVScope, then record three needle-in-a-haystack runs of the bundled demo
# model (a 2048-token prompt built by `kvscope run --scenario niah`, the needle in the middle):
#   demo_full.kvtrace.h5   the full cache (finds the needle)
#   demo.kvtrace.h5        POLICY with MEMORY of the full cache's bytes (`--memory`: the budget
#                          fitted so that the cache holds at most that share after the first
#                          decoded token; default SnapKV at 25%: keeps the needle)
#   demo_other.kvtrace.h5  OTHER at the same memory (default StreamingLLM: sinks + a recent
#                          window, which cannot hold a mid-prompt fact)
# and print one line per run (answer, bytes held) and `kvscope inspect` of the two compressed runs.
# Usage: bash tools/demo.sh [policy] [memory] [length] [other policy]
set -euo pipefail
cd "$(dirname "$0")/.."
POLICY=${1:-snapkv}
MEMORY=${2:-0.25}
LENGTH=${3:-2048}
OTHER=${4:-streaming_llm}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target kvscope
K=build/app/cli/kvscope
MODEL=resources/models/kvscope-demo
# --force: running the demo again replaces its own three traces (kvscope never overwrites unasked).
SCENARIO=(--scenario niah --length "$LENGTH" --depth 0.5 --scenario-seed 1 --max-new 12 --force)

record() {  # name trace [policy flags...]
  local name=$1 trace=$2
  shift 2
  echo "== $name =="
  $K run --model "$MODEL" "${SCENARIO[@]}" "$@" --trace "$trace" | tee "$trace.log"
  echo
}
record "full cache" demo_full.kvtrace.h5 --policy full
record "$POLICY, memory $MEMORY" demo.kvtrace.h5 --policy "$POLICY" --memory "$MEMORY"
record "$OTHER, memory $MEMORY" demo_other.kvtrace.h5 --policy "$OTHER" --memory "$MEMORY"

echo "== the three runs =="
for t in demo_full demo demo_other; do
  printf '%-24s %s | %s\n' "$t.kvtrace.h5" "$(grep -E '^answer' "$t.kvtrace.h5.log")" \
    "$(grep -E '^cache' "$t.kvtrace.h5.log" | sed 's/^cache *//')"
  rm -f "$t.kvtrace.h5.log"
done
echo
$K inspect demo.kvtrace.h5
echo
$K inspect demo_other.kvtrace.h5
echo
echo "Open them in the Studio: build/app/studio/kvscope-studio demo.kvtrace.h5 --compare demo_other.kvtrace.h5"
echo "Why the needle was lost: $K explain demo_other.kvtrace.h5"
