#!/usr/bin/env bash
# Regenerates the KVScope Studio sample traces, recorded by `kvscope run` from the bundled demo
# model (resources/models/kvscope-demo) on a 512-token needle-in-a-haystack prompt:
#   sample.kvtrace.h5       D2O at ratio 0.5: evictions, merges, per-layer budgets, a lost needle
#   sample_mikv.kvtrace.h5  MiKV at ratio 0.25: kept vs 4-bit tokens, the needle answered
# They are the input of the GUI tests (tests/gui) and of the screenshots in docs/screenshots.
# Deterministic (greedy decoding, fixed scenario seed) up to floating-point summation order.
# Usage: bash resources/sample/make_sample.sh [build folder, default: build]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
cmake --build "$BUILD" --target kvscope
K="$BUILD/app/cli/kvscope"
COMMON=(--model resources/models/kvscope-demo --scenario niah --length 512 --depth 0.5
        --scenario-seed 1 --max-new 16 --ignore-eos --threads 2 --quiet --force)
# --force: regenerates them; --ignore-eos: 16 steps whatever the answer (the GUI tests step through them)
"$K" run "${COMMON[@]}" --policy d2o --ratio 0.5 --trace resources/sample/sample.kvtrace.h5
"$K" run "${COMMON[@]}" --policy mikv --ratio 0.25 --trace resources/sample/sample_mikv.kvtrace.h5
"$K" inspect resources/sample/sample.kvtrace.h5 | grep -E "policy|events|span|valid"
"$K" inspect resources/sample/sample_mikv.kvtrace.h5 | grep -E "policy|events|span|valid"
