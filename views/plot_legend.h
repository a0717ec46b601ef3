#pragma once
// Colour keys for plots whose marks are not token states (issue 16: the needle plot's mean / min
// / selected lines and the density scatter's dots had none): a row of swatches (a short line or a
// dot) with their names, drawn through the Canvas so it is in SVG exports too.
#include <string>
#include <vector>

#include "views/canvas.h"
#include "views/theme.h"

namespace kvscope::views {

struct LegendItem {
    enum class Mark { kLine, kDot, kRing } mark = Mark::kLine;
    ImU32 colour = 0;
    std::string name;
};

// Width of the row in pixels at the current font.
float legend_width(const std::vector<LegendItem>& items);
// Draws the row with its top-left corner at `pos` (one text line high).
void draw_legend(Canvas& canvas, const Theme& theme, ImVec2 pos,
                 const std::vector<LegendItem>& items);

}  // namespace kvscope::views
