#!/usr/bin/env bash
# Makes a trained model (a merged HF folder: config.json, generation_config.json,
# model.safetensors, tokenizer.json) the bundled demo model, re-records everything drawn from it,
# measures it for the model card, and lists what still needs a person.
#
# Usage: bash tools/train_demo/bundle.sh MODEL_DIR [STAGES] [BUILD]
#   STAGES (comma-separated, default all): copy, sample, lessons, screenshots, check, eval
#     copy         the four files into resources/models/kvscope-demo/ (MODEL_CARD.md and curves/
#                  stay); refused when they add up to more than 64 MB (issue 12's limit)
#     sample       resources/sample/make_sample.sh (D2O 0.5 must lose the needle, MiKV 0.25 must
#                  answer: the GUI tests and the screenshots' story rely on it; checked)
#     lessons      tools/make_lessons.sh
#     screenshots  docs/screenshots/make_screenshots.sh (needs xvfb-run)
#     check        prints what tests and docs quote from the model: the rescue line of the sample
#                  (tests/cli/whatif_cli_test.cpp, README, docs/screenshots/README.md,
#                  resources/sample/README.md) and tools/demo.sh's three answers
#     eval         the model card's grids (held-out and train; full, SnapKV 25 %, H2O 50 %,
#                  StreamingLLM 50 %; 1k-4k, and 8k when max_position_embeddings >= 8192; depths
#                  0-1 in 5 steps, 10 trials a cell, seed 1) into out/bundle_eval/, then the
#                  tables (eval_tables.py) and curves (eval_curves.py, into the model's curves/)
#   BUILD: build folder with kvscope (default build)
#   BUNDLE_EVAL_LENGTHS / BUNDLE_EVAL_TRIALS override the eval stage's grid (to try it quickly; the
#   model card's grids use the defaults)
# Exit 1 when a stage fails or a checked outcome does not hold; 2 for usage errors.
set -euo pipefail
cd "$(dirname "$0")/../.."
usage() { echo "usage: bash tools/train_demo/bundle.sh MODEL_DIR [STAGES] [BUILD]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 3 ]] || usage
SRC=$1
STAGES=${2:-copy,sample,lessons,screenshots,check,eval}
BUILD=${3:-build}
DEST=resources/models/kvscope-demo
K="$BUILD/app/cli/kvscope"
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
for s in ${STAGES//,/ }; do
  case $s in copy|sample|lessons|screenshots|check|eval) ;; *) echo "bundle: unknown stage '$s'" >&2; usage ;; esac
done
has() { [[ ",$STAGES," == *",$1,"* ]]; }
die() { echo "bundle: $*" >&2; exit 1; }
[[ -x $K ]] || die "$K not found: build kvscope first (cmake --build $BUILD --target kvscope)"

if has copy && [[ $(realpath "$SRC") == $(realpath "$DEST") ]]; then
  echo "copy: $SRC is the bundled model already"
elif has copy; then
  total=0
  for f in config.json generation_config.json model.safetensors tokenizer.json; do
    [[ -f $SRC/$f ]] || die "$SRC/$f: missing (a merged model folder has config.json, generation_config.json, model.safetensors, tokenizer.json)"
    total=$((total + $(stat -c %s "$SRC/$f")))
  done
  ((total <= 64 * 1000 * 1000)) || die "$SRC: $total bytes, over the 64 MB a bundled model may take"
  # Load it before anything is replaced: a model kvscope refuses never reaches resources/.
  probe=$(mktemp -d)
  "$K" run --model "$SRC" --prompt "The" --max-new 1 --threads 2 --quiet \
    --trace "$probe/probe.kvtrace.h5" >/dev/null || die "$SRC: kvscope cannot run it (see above)"
  rm -rf "$probe"
  cp "$SRC"/{config.json,generation_config.json,model.safetensors,tokenizer.json} "$DEST"/
  echo "copied $SRC -> $DEST ($total bytes)"
fi

if has sample; then
  bash resources/sample/make_sample.sh "$BUILD"
  d2o=$("$K" inspect resources/sample/sample.kvtrace.h5 | grep -E '^span 0:')
  mikv=$("$K" inspect resources/sample/sample_mikv.kvtrace.h5 | grep -E '^span 0:')
  echo "sample (D2O 0.5):  $d2o"
  echo "sample (MiKV 0.25): $mikv"
  [[ $d2o == *"answer found: no"* ]] || die "D2O 0.5 keeps the sample's needle: the Studio's lost-needle story needs another sample prompt"
  [[ $mikv == *"answer found: yes"* ]] || die "MiKV 0.25 loses the sample's needle: the mixed-precision screenshots need another sample prompt"
fi

has lessons && bash tools/make_lessons.sh
has screenshots && bash docs/screenshots/make_screenshots.sh

if has check; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "== what tests and docs quote from the bundled model =="
  "$K" rescue resources/sample/sample.kvtrace.h5 --quiet --out "$tmp/rescue" | grep -E "rescued|not rescued" \
    || echo "rescue: no layer set restores the answer"
  echo "  (expected by tests/cli/whatif_cli_test.cpp RescueCli and quoted in README.md,"
  echo "   docs/screenshots/README.md, resources/sample/README.md: grep -rn 'rescued by keeping')"
  for p in "full" "snapkv --memory 0.25" "streaming_llm --memory 0.25"; do
    # shellcheck disable=SC2086  # $p is a policy and its flags
    ans=$("$K" run --model "$DEST" --scenario niah --length 2048 --depth 0.5 --scenario-seed 1 \
          --max-new 12 --threads 2 --quiet --policy $p --trace "$tmp/demo.kvtrace.h5" --force \
          | grep -E '^answer')
    printf 'tools/demo.sh  %-28s %s\n' "$p" "$ans"
  done
fi

if has eval; then
  out=out/bundle_eval
  mkdir -p "$out"
  ctx=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['max_position_embeddings'])" "$DEST/config.json")
  lengths=1024,2048,4096
  ((ctx >= 8192)) && lengths=$lengths,8192
  lengths=${BUNDLE_EVAL_LENGTHS:-$lengths}  # both only to try the stage quickly
  trials=${BUNDLE_EVAL_TRIALS:-10}
  for split in heldout train; do
    for p in "full" "snapkv 0.25" "h2o 0.5" "streaming_llm 0.5"; do
      read -r pol ratio <<<"$p"
      stem="$out/${split}_$pol"
      echo "eval $split $pol ${ratio:+ratio $ratio }($lengths, $trials trials a cell)"
      "$K" eval needles --model "$DEST" --split "$split" --lengths "$lengths" \
        --depths 0,0.25,0.5,0.75,1 --trials "$trials" --policy "$pol" ${ratio:+--ratio "$ratio"} --threads 2 --quiet \
        --json --csv "$stem.csv" --details "${stem}_details.csv" --force > "$stem.json"
    done
  done
  "$PY" tools/train_demo/eval_tables.py "$out"/*_details.csv | tee "$out/tables.md"
  "$PY" tools/train_demo/eval_curves.py --out "$DEST/curves" --title "kvscope-demo" "$out"/*_{full,snapkv,h2o,streaming_llm}.csv
  echo "tables: $out/tables.md; curves: $DEST/curves/ (update MODEL_CARD.md from them)"
fi
