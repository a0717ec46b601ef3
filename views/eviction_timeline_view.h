#pragma once
// Eviction timeline: a tokens (x) by steps (y, step 0 at the top) raster of the cache state of
// the selected layer and head, or the mix over the layer's heads. Wheel zooms the token axis
// around the mouse, dragging pans, double-click fits; a click selects the token and the step.
// Virtualised for 100k+ tokens: the raster has one column per pixel; each column accumulates the
// state intervals of the tokens it covers through difference arrays over its rows, so a rebuild
// costs O(visible tokens x changes + pixels) and happens only when its inputs change.
#include <cstdint>
#include <vector>

#include "views/plot_util.h"

namespace kvscope::views {

class EvictionTimelineView final : public View {
  public:
    const char* id() const override { return "eviction_timeline"; }
    const char* title() const override { return "Eviction timeline"; }
    void draw(ViewContext& ctx) override;
    void reset() override;

    // Last frame's plot area and the screen point of (token, step) in it.
    const PlotRect& plot_rect() const { return plot_; }
    ImVec2 point_of(int64_t token, int64_t step) const;
    TokenAxis& axis() { return axis_; }

  private:
    struct Key {
        int32_t layer = -1;
        int32_t head = -2;
        double lo = 0;
        double hi = 0;
        int width = 0;
        int rows = 0;
        int64_t steps = 0;
        int loaded = 0;
        ThemeKind theme = ThemeKind::kDark;
        bool operator==(const Key&) const = default;
    };
    void rebuild(const ViewContext& ctx, const HeadSet& heads, int width, int rows);

    TokenAxis axis_;
    Raster raster_;
    Key key_;
    PlotRect plot_;
    int64_t steps_ = 1;
    std::vector<int64_t> row_step_;  // [rows] step each raster row shows
    HoverLink hover_;
};

}  // namespace kvscope::views
