#pragma once
// The UI font of the ImGui views. Dear ImGui's built-in font is a small bitmap-style face that
// covers ASCII only; the Studio prefers a scalable system font (DejaVu Sans, Noto Sans, Liberation
// Sans — found under the standard font folders, or KVSCOPE_STUDIO_FONT=path) that also has the
// Greek, arrow and symbol glyphs the views use, and falls back to the built-in one.
#include <QString>

struct ImFontAtlas;

namespace kvscope::studio {

// Path of the font file in use ("" = Dear ImGui's built-in font). Searched once.
QString ui_font_path();
// Adds the UI font at `size_px` (logical size x scale) to `atlas` and builds it.
void add_ui_font(ImFontAtlas* atlas, float size_px);

inline constexpr float kUiFontSize = 15.0f;

}  // namespace kvscope::studio
