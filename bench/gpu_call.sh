#!/usr/bin/env bash
# One device-tool call (run with carry [".devcarry/gpu"] after `bash bench/gpu_session.sh pack`):
#   bash bench/gpu_call.sh 585 check ops golden parity models8b bench8b
# runs the stages of bench/gpu_session.sh in order, each capped so the call ends inside its limit;
# models8b (8B-shape checkpoint only) runs in the background while the GPU stages run.
# Results: a temp dir packed into $OUT/r.tgz at the end (whatever finished), plus a short summary.
set -u
LIMIT=${1:-585}; shift
STAGES=("$@")
T=$(mktemp -d); FINAL_OUT=$OUT
cd "$(dirname "$0")/.."
start=$SECONDS
left() { echo $((LIMIT - (SECONDS - start) - 15)); }
if [[ " ${STAGES[*]} " == *" models8b "* ]]; then
  ( timeout -k 5 300 python3 bench/make_random_models.py --out build-models --shapes 8b > "$T/models.log" 2>&1
    echo "models8b rc=$?" >> "$T/status.txt" ) &
  MPID=$!
fi
for s in "${STAGES[@]}"; do
  [ "$s" = models8b ] && continue
  case $s in check) cap=60;; ops) cap=200;; golden) cap=100;; parity) cap=150;; *) cap=400;; esac
  if [[ "$s" == bench8b* || "$s" == prefill32k* || "$s" == peer8b || "$s" == profile8b* || "$s" == ncu8b* || "$s" == gemv-shapes || "$s" == decode-ab || "$s" == decode-multi ]] && [ -n "${MPID:-}" ]; then
    wait "$MPID" 2>/dev/null; MPID=
  fi
  l=$(left); [ "$l" -lt 20 ] && { echo "$s skipped (no time)" >> "$T/status.txt"; continue; }
  [ "$cap" -gt "$l" ] && cap=$l
  echo "=== $s cap ${cap}s at $((SECONDS - start))s" >> "$T/all.log"
  timeout -k 5 "$cap" env OUT="$T" bash bench/gpu_session.sh "$s" >> "$T/all.log" 2>&1
  echo "$s exit=$? at $((SECONDS - start))s" >> "$T/status.txt"
done
[ -n "${MPID:-}" ] && kill "$MPID" 2>/dev/null
cat "$T/status.txt"
grep -E "PASSED|FAILED|max rel|identical|differ|ms/token|tok/s|Error|error" "$T/all.log" | tail -40
tar czf "$FINAL_OUT/r.tgz" -C "$T" .
