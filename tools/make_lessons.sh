#!/usr/bin/env bash
# Re-records the traces of the bundled lessons (resources/lessons/<name>/lesson.json, issue 16
# item 3) with the exact `kvscope run` commands each lesson lists under "commands", so the
# lesson and its traces cannot drift apart. The commands use the bundled demo model
# (resources/models/kvscope-demo), greedy decoding and a fixed scenario seed: the traces are
# deterministic up to floating-point summation order. Prints the size of every lesson folder.
# Usage: bash tools/make_lessons.sh [build folder, default: build]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
cmake --build "$BUILD" --target kvscope
K="$BUILD/app/cli/kvscope"
for lesson in resources/lessons/*/lesson.json; do
  # One command per line; "kvscope" is the CLI of this build.
  python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["commands"]))' \
    "$lesson" | while IFS= read -r cmd; do
      read -r -a argv <<<"$cmd"
      [[ "${argv[0]}" == kvscope ]] || { echo "$lesson: not a kvscope command: $cmd" >&2; exit 2; }
      echo "+ $cmd"
      "$K" "${argv[@]:1}" >/dev/null
    done
done
du -sh resources/lessons/*/ resources/lessons
