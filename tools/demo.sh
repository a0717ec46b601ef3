#!/usr/bin/env bash
# The main job: build KVScope, record a needle-in-a-haystack run of the bundled demo model under
# SnapKV into demo.kvtrace.h5, and print its summary. Usage: bash tools/demo.sh [policy] [ratio]
set -euo pipefail
cd "$(dirname "$0")/.."
POLICY=${1:-snapkv}
RATIO=${2:-0.25}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target kvscope
K=build/app/cli/kvscope

MODEL=resources/models/kvscope-demo
if [ ! -f "$MODEL/config.json" ]; then
  echo "demo: $MODEL not found; using the small fixture model tests/golden/models/llama_sp" >&2
  MODEL=tests/golden/models/llama_sp
fi

# A haystack of ~1,500 words with a pass key in the middle, then the question.
HAY=$(ls resources/haystacks/*.txt 2>/dev/null | head -n 1 || true)
if [ -n "$HAY" ]; then TEXT=$(tr -s ' \n' ' ' < "$HAY" | cut -d' ' -f1-1500); else
  TEXT=$(printf 'The grass is green. The sky is blue. The sun is yellow. Here we go. %.0s' $(seq 1 80)); fi
HALF=$(( ${#TEXT} / 2 ))
NEEDLE="The pass key is 71432. Remember it. 71432 is the pass key."
PROMPT_FILE=$(mktemp)
printf '%s %s %s\nWhat is the pass key? The pass key is' "${TEXT:0:$HALF}" "$NEEDLE" "${TEXT:$HALF}" > "$PROMPT_FILE"

$K run --model "$MODEL" --prompt-file "$PROMPT_FILE" --policy "$POLICY" --ratio "$RATIO" \
  --needle "The pass key is 71432" --answer 71432 --max-new 8 --trace demo.kvtrace.h5
rm -f "$PROMPT_FILE"
$K inspect demo.kvtrace.h5
echo "Open it in the Studio: build/app/studio/kvscope-studio demo.kvtrace.h5"
