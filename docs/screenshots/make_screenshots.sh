#!/usr/bin/env bash
# Regenerates the KVScope Studio screenshots in docs/screenshots/ from the D2O sample trace (precision.png from the MiKV one): one PNG
# per view (<view id>.png) plus the whole window (studio.png), under Xvfb (no display needed), and
# compare mode (compare.png) from two runs of the sample's prompt recorded with kvscope run.
# Usage: bash docs/screenshots/make_screenshots.sh [build folder, default: build]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
cmake --build "$BUILD" --target kvscope-studio kvscope
OUT=docs/screenshots
# Layer 4 head 0 loses digits of the needle (token 252 is one); the last step is 15.
xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb XDG_CONFIG_HOME="$(mktemp -d)" \
  "$BUILD/app/studio/kvscope-studio" resources/sample/sample.kvtrace.h5 \
  --export-views "$OUT" --scale 1 --size 1500x950 --layer 4 --head 0 --token 252 --step 15 \
  --window-shot "$OUT/studio.png"
# The light theme, whole window only.
TMP=$(mktemp -d)
xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb XDG_CONFIG_HOME="$TMP/config" \
  "$BUILD/app/studio/kvscope-studio" resources/sample/sample.kvtrace.h5 \
  --export-views "$TMP/views" --scale 1 --size 1500x950 --layer 4 --head 0 --token 252 --step 15 \
  --theme light --window-shot "$OUT/studio_light.png"
# The precision map of the MiKV sample (the D2O run has no quantised tokens).
xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb XDG_CONFIG_HOME="$TMP/config2" \
  "$BUILD/app/studio/kvscope-studio" resources/sample/sample_mikv.kvtrace.h5 \
  --export-views "$TMP/mikv" --scale 1 --size 1500x950 --layer 4 --head 0 --token 252
cp "$TMP/mikv/precision.png" "$OUT/precision.png"
# Compare mode (compare.png, whole window): the sample's prompt under SnapKV holding 25% of the
# full cache's bytes (A, the needle answered) against StreamingLLM at the same memory (B, the
# needle evicted), both recorded here by kvscope run (--ignore-eos: the same 16 steps).
RUN=(--model resources/models/kvscope-demo --scenario niah --length 512 --depth 0.5
     --scenario-seed 1 --max-new 16 --ignore-eos --threads 2 --quiet)
"$BUILD/app/cli/kvscope" run "${RUN[@]}" --policy snapkv --memory 0.25 \
  --trace "$TMP/snapkv.kvtrace.h5" >/dev/null
"$BUILD/app/cli/kvscope" run "${RUN[@]}" --policy streaming_llm --memory 0.25 \
  --trace "$TMP/streaming_llm.kvtrace.h5" >/dev/null
xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb XDG_CONFIG_HOME="$TMP/config3" \
  "$BUILD/app/studio/kvscope-studio" "$TMP/snapkv.kvtrace.h5" \
  --compare "$TMP/streaming_llm.kvtrace.h5" \
  --export-views "$TMP/compare" --scale 1 --size 1500x950 --layer 4 --head 0 --token 252 \
  --window-shot "$OUT/compare.png"
# The NIAH grid dock (niah_grid.png): a sweep of the demo model (3 lengths x 5 depths, SnapKV
# keeping 50%, ~35 s on 2 threads) opened with --sweep.
"$BUILD/app/cli/kvscope" niah --model resources/models/kvscope-demo --lengths 256,512,1024 \
  --depths 0,0.25,0.5,0.75,1 --policies snapkv --ratios 0.5 --max-new 10 --threads 2 \
  --out "$TMP/sweep" >/dev/null 2>&1
xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb XDG_CONFIG_HOME="$TMP/config4" \
  "$BUILD/app/studio/kvscope-studio" --sweep "$TMP/sweep" --export-views "$TMP/grid" --scale 1 \
  --size 1500x950
cp "$TMP/grid/niah_grid.png" "$OUT/niah_grid.png"
# The What-if dock (whatif.png, whole window): made by the GUI test that times the dock on a 2k
# NIAH prompt of the demo model (prefill, re-runs, 50 slider moves, a sweep, then SnapKV 0.25).
cmake --build "$BUILD" --target test_gui_studio
mkdir -p "$TMP/whatif"
KVSCOPE_BENCH_LIVE=1 KVSCOPE_GUI_SHOTS="$TMP/whatif" QT_QPA_PLATFORM=xcb \
  xvfb-run -a -s "-screen 0 1280x800x24" "$BUILD/tests/gui/test_gui_studio" liveDockTimings
cp "$TMP/whatif/whatif_2k.png" "$OUT/whatif.png"
# Needle forensics (needle_why.png: the Needle view explained; rescue.png: whole window after a
# rescue search, compare mode against the rescuing run): made by the GUI tests that check them.
mkdir -p "$TMP/forensics"
KVSCOPE_GUI_SHOTS="$TMP/forensics" QT_QPA_PLATFORM=xcb \
  xvfb-run -a -s "-screen 0 1280x800x24" "$BUILD/tests/gui/test_gui_studio" \
  needleExplainUsesThePolicysOwnScore rescueFindsTheLayersAndOpensARunInCompare
cp "$TMP/forensics/needle_why.png" "$TMP/forensics/rescue.png" "$OUT/"
# A slide figure (slide_figure.png): what File > Export figure / --export-figure writes, the
# eviction timeline of layer 4 head 0 at the last step with a caption, at 1280x720.
xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb XDG_CONFIG_HOME="$TMP/config5" \
  "$BUILD/app/studio/kvscope-studio" resources/sample/sample.kvtrace.h5 \
  --export-figure "$OUT/slide_figure.png" --force --view eviction_timeline --layer 4 --head 0 \
  --token 252 --step 15 --size 1280x720 \
  --caption "D2O on the demo model: which tokens layer 4, head 0 keeps, merges and evicts"
# Presenter mode and help (presenter_*.png, help_*.png): made by the GUI test that checks them
# at 1280x720 (the screen is 1280x720: presenter mode is full screen); colours reduced to keep
# the files small.
cmake --build "$BUILD" --target test_gui_presenter
mkdir -p "$TMP/presenter"
KVSCOPE_GUI_SHOTS="$TMP/presenter" QT_QPA_PLATFORM=xcb \
  xvfb-run -a -s "-screen 0 1280x720x24" "$BUILD/tests/gui/test_gui_presenter"
for f in presenter_needle presenter_density presenter_token_strip help_shortcuts help_views; do
  /usr/bin/convert "$TMP/presenter/$f.png" +dither -colors 128 "PNG8:$OUT/$f.png"
done
# Guided story and lessons (story_dock.png, lesson.png, policy_explainer.png): made by the GUI
# test that opens the SnapKV lesson from Help > Lessons and steps its story with N / Shift+N.
cmake --build "$BUILD" --target test_gui_story
mkdir -p "$TMP/story"
KVSCOPE_GUI_SHOTS="$TMP/story" QT_QPA_PLATFORM=xcb \
  xvfb-run -a -s "-screen 0 1280x800x24" "$BUILD/tests/gui/test_gui_story"
for f in story_dock lesson policy_explainer; do
  /usr/bin/convert "$TMP/story/$f.png" +dither -colors 128 "PNG8:$OUT/$f.png"
done
rm -rf "$TMP"
ls -l "$OUT"/*.png
