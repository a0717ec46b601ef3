#!/usr/bin/env bash
# tools/train_demo/bundle.sh refuses bad input before it replaces anything: usage errors exit 2;
# a model folder with a file missing, over 64 MB, or with weights kvscope cannot load exits 1
# naming the folder, and the bundled model's files are byte for byte what they were.
# Then its `check` stage on the bundled model prints the sample's rescue line and the main job's
# three answers (full cache FOUND).
# Usage: bundle_test.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -uo pipefail
ROOT=$1 BUILD=$2 WORK=$3
B="$ROOT/tools/train_demo/bundle.sh"
DEST="$ROOT/resources/models/kvscope-demo"
rm -rf "$WORK" && mkdir -p "$WORK"
fail() { echo "FAIL: $*"; exit 1; }
sums() { sha256sum "$DEST"/{config.json,generation_config.json,model.safetensors,tokenizer.json}; }
before=$(sums)

expect() {  # code pattern args...
  local code=$1 pattern=$2
  shift 2
  out=$(bash "$B" "$@" 2>&1)
  rc=$?
  [[ $rc == "$code" ]] || fail "bundle.sh $* exited $rc, expected $code: $out"
  [[ $out == *"$pattern"* ]] || fail "bundle.sh $* did not say '$pattern': $out"
  [[ $(sums) == "$before" ]] || fail "bundle.sh $* changed the bundled model"
}
expect 2 "usage:"
expect 2 "unknown stage 'bogus'" "$WORK/none" bogus "$BUILD"
expect 1 "$WORK/none/config.json: missing" "$WORK/none" copy "$BUILD"
# Over the size limit (a sparse 65 MB weights file next to real metadata).
mkdir -p "$WORK/big" && cp "$DEST"/{config.json,generation_config.json,tokenizer.json} "$WORK/big/"
truncate -s 65000000 "$WORK/big/model.safetensors"
expect 1 "over the 64 MB" "$WORK/big" copy "$BUILD"
# Weights that are not safetensors: kvscope refuses them, nothing is copied.
mkdir -p "$WORK/bad" && cp "$DEST"/{config.json,generation_config.json,tokenizer.json} "$WORK/bad/"
head -c 4096 /dev/urandom > "$WORK/bad/model.safetensors"
expect 1 "$WORK/bad: kvscope cannot run it" "$WORK/bad" copy "$BUILD"
# The check stage on the bundled model itself (copy is skipped: same folder).
out=$(bash "$B" "$DEST" copy,check "$BUILD" 2>&1) || fail "check stage failed: $out"
echo "$out"
[[ $out == *"is the bundled model already"* ]] || fail "copy onto itself not skipped"
[[ $out == *"rescued by keeping the needle in layers"* ]] || fail "no rescue line"
[[ $(grep -c "^tools/demo.sh" <<<"$out") == 3 ]] || fail "not three demo answers"
grep -E "^tools/demo.sh +full " <<<"$out" | grep -q "FOUND" || fail "full cache misses the demo needle"
[[ $(sums) == "$before" ]] || fail "the check stage changed the bundled model"
echo "bundle_test: ok"
