#!/usr/bin/env bash
# Lints the tracked C++/CUDA sources: (a) clang-format --dry-run --Werror (.clang-format) over
# every tracked .h/.cpp/.cu/.cuh, (b) clang-tidy (.clang-tidy, warnings as errors) over the
# project's .cpp files, from the compile commands of an existing build (CMake writes
# BUILD/compile_commands.json; configure with tools/test.sh or cmake first).
# Usage: bash tools/lint.sh [--format-only | --tidy-only] [BUILD_DIR] [--files FILE...]
#        BUILD_DIR: build; --files: clang-tidy only these .cpp files (repo-relative), not all
#        KVSCOPE_LINT_JOBS=N   clang-tidy jobs (default: nproc)
# Exits 1 when a file is not formatted or clang-tidy reports, 2 on bad usage or missing tools.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

do_format=1; do_tidy=1; build=build; only=()
while [ $# -gt 0 ]; do
  arg=$1; shift
  case "$arg" in
    --files) only=("$@"); [ ${#only[@]} -gt 0 ] || { echo "lint.sh: --files needs files" >&2; exit 2; }; break ;;
    --format-only) do_tidy=0 ;;
    --tidy-only) do_format=0 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    -*) echo "lint.sh: unknown option $arg" >&2; exit 2 ;;
    *) build=$arg ;;
  esac
done

# The Debian/Ubuntu clang 14 tools, unversioned names as a fallback.
pick() { for t in "$@"; do command -v "$t" >/dev/null && { echo "$t"; return; }; done; }
status=0

if [ "$do_format" = 1 ]; then
  fmt=$(pick clang-format-14 clang-format)
  [ -n "$fmt" ] || { echo "lint.sh: clang-format not found (apt install clang-format)" >&2; exit 2; }
  files=()
  while IFS= read -r -d '' f; do [ -f "$f" ] && files+=("$f"); done \
    < <(git ls-files -z -- '*.h' '*.cpp' '*.cu' '*.cuh')  # tracked and present
  echo "clang-format: ${#files[@]} files"
  if ! "$fmt" --dry-run --Werror "${files[@]}"; then
    echo "lint.sh: files above are not clang-formatted (fix: $fmt -i FILE)" >&2
    status=1
  fi
fi

if [ "$do_tidy" = 1 ]; then
  tidy=$(pick run-clang-tidy-14 run-clang-tidy)
  [ -n "$tidy" ] || { echo "lint.sh: run-clang-tidy not found (apt install clang-tidy)" >&2; exit 2; }
  if [ ! -f "$build/compile_commands.json" ]; then
    echo "lint.sh: $build/compile_commands.json: missing; configure the build first (cmake -S . -B $build)" >&2
    exit 2
  fi
  # The build's commands without its precompiled header (GCC's .gch is not a clang PCH; each
  # file includes what it uses), in a scratch folder.
  db=$(mktemp -d); trap 'rm -rf "$db"' EXIT
  python3 - "$build/compile_commands.json" "$db/compile_commands.json" <<'PY'
import json, re, sys
cmds = json.load(open(sys.argv[1]))
for c in cmds:
    c["command"] = re.sub(r"\s-Winvalid-pch|\s-include\s+\S*cmake_pch\.hxx", "", c["command"])
json.dump(cmds, open(sys.argv[2], "w"))
PY
  # The project's own .cpp files (not moc/qrc output in the build folder, not .cu: nvcc flags).
  # --files: one anchored pattern per file (run-clang-tidy takes regular expressions).
  patterns=("^$root/(app|bench|core|kernels|tests|traces|views)/.*\.cpp\$")
  if [ ${#only[@]} -gt 0 ]; then
    patterns=()
    for f in "${only[@]}"; do
      [ -f "$f" ] || { echo "lint.sh: $f: no such file" >&2; exit 2; }
      patterns+=("^$root/$(printf '%s' "${f#./}" | sed 's/[.+]/\\&/g')\$")
    done
  fi
  echo "clang-tidy: jobs ${KVSCOPE_LINT_JOBS:-$(nproc)}"
  if ! "$tidy" -quiet -j "${KVSCOPE_LINT_JOBS:-$(nproc)}" -p "$db" "${patterns[@]}"; then
    echo "lint.sh: clang-tidy reported (see above)" >&2
    status=1
  fi
fi
exit "$status"
