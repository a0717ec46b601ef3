#pragma once
// Compare: trace A (the open trace) and trace B (File > Compare with...) side by side at the shared
// step: policy, budget, answer verdict and output of each; bytes held per layer (a pair of bars per
// layer, with the totals); and a layer x head heatmap of how much the two held sets overlap
// (Jaccard |A∩B| / |A∪B|, views/compare_diff.h). Clicking a cell selects that layer and head
// everywhere; clicking a row label selects the layer with all heads. Without a B it draws a hint.
#include <cstdint>
#include <vector>

#include "views/compare_diff.h"
#include "views/plot_util.h"

namespace kvscope::views {

class CompareView final : public View {
  public:
    const char* id() const override { return "compare"; }
    const char* title() const override { return "Compare"; }
    void draw(ViewContext& ctx) override;
    void reset() override;

    // Last frame's screen rectangles: heatmap cell (layer, head); bar of A or B of a layer.
    PlotRect cell_rect(int32_t layer, int32_t head) const;
    PlotRect bar_rect(int32_t layer, bool b) const;
    // The held-set difference a heatmap cell showed in the last frame (counts and Jaccard).
    const HeldDiff& cell_diff(int32_t layer, int32_t head) const;

  private:
    void draw_summaries(const ViewContext& ctx);
    void draw_bytes(ViewContext& ctx, const PlotRect& area, int64_t step);
    void draw_overlap(ViewContext& ctx, const PlotRect& area, int64_t step);

    PlotRect grid_;
    float bar_x0_ = 0.0f;
    float bar_w_ = 0.0f;
    float row_h_ = 0.0f;
    float rows_y0_ = 0.0f;
    double max_bytes_ = 0.0;
    std::vector<int64_t> layer_bytes_[2];  // [L] of A and B, -1 not recorded
    int32_t layers_ = 0;
    int32_t heads_ = 0;
    std::vector<HeldDiffCache> cells_;  // [L*H]
    std::vector<HeldDiff> cell_diffs_;  // [L*H] as last drawn
};

}  // namespace kvscope::views
