#!/usr/bin/env bash
# Issue 15 "the full suite's wall time falls": the test suite with the fast CPU kernels (the
# default) against the reference loops (KVSCOPE_CPU_KERNELS=reference), in one run.
#
#   bash bench/suite_wall_time.sh BUILD_DIR [CTEST_EXCLUDE_REGEX]   (default exclude: ^gui_)
#
# Each test runs once in each mode, back to back, the order alternating from test to test, so a
# load change on a shared machine hits both modes alike; one test at a time (ctest -I N,N), so the
# sums are the serial suite time. Tests that set KVSCOPE_CPU_KERNELS themselves (the kernels'
# own fast-vs-reference tests) run the same work in both modes. Prints the totals, the ratio and
# the tests with the largest difference; exit 1 if a test fails in either mode.
set -uo pipefail
B=${1:?usage: suite_wall_time.sh BUILD_DIR [CTEST_EXCLUDE_REGEX]}
EXCLUDE=${2:-^gui_}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Test numbers and names of the tests that the exclusion leaves.
ctest --test-dir "$B" -N -E "$EXCLUDE" | sed -n 's/^ *Test *#\([0-9]*\): \(.*\)$/\1 \2/p' >"$TMP/list"
n=$(wc -l <"$TMP/list")
[ "$n" -gt 0 ] || { echo "no tests found in $B" >&2; exit 1; }

run_one() {  # $1 = test number, $2 = mode (fast|reference); prints seconds
  local t0 t1 rc
  t0=$(date +%s.%N)
  if [ "$2" = reference ]; then
    KVSCOPE_CPU_KERNELS=reference ctest --test-dir "$B" -I "$1,$1" -Q --timeout 900 >/dev/null 2>&1
  else
    env -u KVSCOPE_CPU_KERNELS ctest --test-dir "$B" -I "$1,$1" -Q --timeout 900 >/dev/null 2>&1
  fi
  rc=$?
  t1=$(date +%s.%N)
  echo "$t0 $t1 $rc" | awk '{printf "%.3f %d\n", $2 - $1, $3}'
}

i=0; failed=0
while read -r num name; do
  i=$((i + 1))
  if [ $((i % 2)) -eq 0 ]; then order="fast reference"; else order="reference fast"; fi
  declare -A sec=()
  for mode in $order; do
    read -r s rc < <(run_one "$num" "$mode")
    sec[$mode]=$s
    if [ "$rc" -ne 0 ]; then echo "FAILED ($mode): $name" >&2; failed=1; fi
  done
  printf '%s\t%s\t%s\n' "${sec[fast]}" "${sec[reference]}" "$name" >>"$TMP/times"
  [ $((i % 50)) -eq 0 ] && echo "... $i/$n tests" >&2
done <"$TMP/list"

awk -F'\t' -v n="$n" '
  { f += $1; r += $2 }
  END {
    printf "tests: %d (serial, one at a time; ctest start-up included in both)\n", n
    printf "reference loops: %8.1f s\n", r
    printf "fast (default):  %8.1f s\n", f
    printf "fast / reference: %.3f\n", f / r
  }' "$TMP/times"
echo "largest differences (reference - fast, seconds):"
awk -F'\t' '{ printf "%8.2f %8.2f %8.2f  %s\n", $2 - $1, $2, $1, $3 }' "$TMP/times" | sort -rn | head -12 |
  awk '{ print "  " $0 }'
echo "  (columns: difference, reference, fast, test)"
exit "$failed"
