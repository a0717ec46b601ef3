#!/usr/bin/env bash
# Regenerates resources/sample/sample.kvtrace.h5: the KVScope Studio sample trace, input of the
# GUI tests (tests/gui) and of the screenshots in docs/screenshots.
#
# Until `kvscope run` can record it from the bundled demo model, the trace is written by
# kvscope-synthetic-trace through the trace writer API with synthetic content (no model runs; see
# app/studio/synthetic_trace.h for what it contains). Deterministic: same build, same file.
# Usage: bash resources/sample/make_sample.sh [build folder, default: build]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
cmake --build "$BUILD" --target kvscope-synthetic-trace
"$BUILD/app/studio/kvscope-synthetic-trace" --out resources/sample/sample.kvtrace.h5 \
  --layers 8 --heads 4 --head-dim 64 --steps 24 --budget-ratio 0.35 --seed 7
echo "wrote resources/sample/sample.kvtrace.h5"
