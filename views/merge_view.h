#pragma once
// Merges: arcs from each merged token to the token it was folded into (D2O, DMC), for the
// selected layer and head, up to the current step; arc strength follows the merge weight. Below,
// a virtualised table of the merges. The token axis zooms and pans like the timeline; at most
// kMaxArcs arcs (the heaviest) are drawn at once.
#include <cstdint>
#include <vector>

#include "views/plot_util.h"

namespace kvscope::views {

class MergeView final : public View {
  public:
    struct Merge {
        int32_t step = 0;
        int32_t source = 0;
        int32_t target = -1;  // -1 = destination unknown
        float weight = 0.0f;
    };
    static constexpr size_t kMaxArcs = 1500;

    const char* id() const override { return "merges"; }
    const char* title() const override { return "Merges"; }
    void draw(ViewContext& ctx) override;
    void reset() override;

    // Merges of the shown (layer, head), in step order (all steps).
    const std::vector<Merge>& merges() const { return merges_; }
    const PlotRect& plot_rect() const { return plot_; }
    float baseline() const { return baseline_; }
    TokenAxis& axis() { return axis_; }

  private:
    void collect(const HeadHistory& h);

    TokenAxis axis_;
    PlotRect plot_;
    float baseline_ = 0.0f;
    int32_t layer_ = -1;
    int32_t head_ = -1;
    int64_t history_steps_ = -1;
    std::vector<Merge> merges_;
    std::vector<uint32_t> by_weight_;  // indices into merges_, heaviest first
    float max_weight_ = 1.0f;
    HoverLink hover_;
};

}  // namespace kvscope::views
