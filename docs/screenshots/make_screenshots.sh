#!/usr/bin/env bash
# Regenerates the KVScope Studio screenshots in docs/screenshots/ from the sample trace: one PNG
# per view (<view id>.png) plus the whole window (studio.png), under Xvfb (no display needed).
# Usage: bash docs/screenshots/make_screenshots.sh [build folder, default: build]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
cmake --build "$BUILD" --target kvscope-studio
OUT=docs/screenshots
# Layer 5 head 2 loses the needle during decoding; token 80 is inside the needle.
xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb XDG_CONFIG_HOME="$(mktemp -d)" \
  "$BUILD/app/studio/kvscope-studio" resources/sample/sample.kvtrace.h5 \
  --export-views "$OUT" --scale 1 --size 1500x950 --layer 5 --head 2 --token 80 --step 23 \
  --window-shot "$OUT/studio.png"
# The light theme, whole window only.
TMP=$(mktemp -d)
xvfb-run -a -s "-screen 0 1600x1000x24" env QT_QPA_PLATFORM=xcb XDG_CONFIG_HOME="$TMP/config" \
  "$BUILD/app/studio/kvscope-studio" resources/sample/sample.kvtrace.h5 \
  --export-views "$TMP/views" --scale 1 --size 1500x950 --layer 5 --head 2 --token 80 --step 23 \
  --theme light --window-shot "$OUT/studio_light.png"
rm -rf "$TMP"
ls -l "$OUT"/*.png
