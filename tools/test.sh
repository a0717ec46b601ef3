#!/usr/bin/env bash
# Builds KVScope and runs the whole test suite. KVSCOPE_SANITIZE=1 builds with ASan + UBSan in a
# separate build folder. KVSCOPE_CTEST_EXCLUDE=REGEX leaves the matching ctest tests out.
# KVSCOPE_XVFB_TESTS=0 builds neither the kvscope-studio application nor its Xvfb tests (gui_*),
# so they do not run either: CI builds and runs them once, in the sanitized pass (the Studio's
# Qt-free libraries and their tests still build and run). Usage: bash tools/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# Both builds leave out full debug info (it slows compiling and linking the most); the sanitized one
# keeps line tables (-g1) so reports name files and lines.
if [ "${KVSCOPE_SANITIZE:-0}" = 1 ]; then
  BUILD=build-asan
  # CUDA is compiled once, in the normal build; the sanitized build leaves it out, and the
  # benchmarks (not tests) too.
  EXTRA=(-DKVSCOPE_SANITIZE=ON -DKVSCOPE_BUILD_CUDA=OFF -DKVSCOPE_BUILD_BENCH=OFF
         -DCMAKE_BUILD_TYPE=RelWithDebInfo
         "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG")
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
  BUILD=build; EXTRA=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -DNDEBUG"
                      "-DCMAKE_CUDA_FLAGS_RELWITHDEBINFO=-O2 -DNDEBUG")
fi
if [ "${KVSCOPE_XVFB_TESTS:-1}" = 0 ]; then EXTRA+=(-DKVSCOPE_BUILD_STUDIO_APP=OFF); else
  EXTRA+=(-DKVSCOPE_BUILD_STUDIO_APP=ON); fi
cmake -S . -B "$BUILD" -G Ninja -DKVSCOPE_WERROR=ON "${EXTRA[@]}"
cmake --build "$BUILD" -j "$(nproc)"
ctest --test-dir "$BUILD" --output-on-failure -j "$(nproc)" --timeout 600 \
  ${KVSCOPE_CTEST_EXCLUDE:+-E "$KVSCOPE_CTEST_EXCLUDE"}
