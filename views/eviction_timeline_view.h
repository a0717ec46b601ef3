#pragma once
// Eviction timeline: a tokens (x) by steps (y, step 0 at the top) raster of the cache state of
// the selected layer and head, or the mix over the layer's heads. Wheel zooms the token axis
// around the mouse, dragging pans, double-click fits; a click selects the token and the step.
// Virtualised for 100k+ tokens: the raster has one column per pixel; each column accumulates the
// state intervals of the tokens it covers through difference arrays over its rows, so a rebuild
// costs O(visible tokens x changes + pixels) and happens only when its inputs change.
// Compare mode (a trace B open, diff ticked): the cells where a token is held only in A or only in
// B are drawn in the diff colours over the dimmed states, for every step both traces have, and the
// legend counts them at the current step.
#include <cstdint>
#include <optional>
#include <vector>

#include "views/compare_diff.h"
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
    // Compare mode: the counts the diff legend showed in the last frame; nullopt without overlay.
    const std::optional<HeldDiff>& shown_diff() const { return shown_diff_; }

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
        const TraceModel* compare = nullptr;  // set while the diff overlay is drawn
        int loaded_b = 0;
        int64_t steps_b = 0;
        bool operator==(const Key&) const = default;
    };
    // `heads_b`: B's histories aligned with `heads` (empty without the diff overlay).
    void rebuild(const ViewContext& ctx, const HeadSet& heads, const HeadSet& heads_b, int width,
                 int rows);

    TokenAxis axis_;
    Raster raster_;
    Key key_;
    PlotRect plot_;
    int64_t steps_ = 1;
    std::vector<int64_t> row_step_;  // [rows] step each raster row shows
    HoverLink hover_;
    HeldDiffCache diff_cache_;
    std::optional<HeldDiff> shown_diff_;
};

}  // namespace kvscope::views
