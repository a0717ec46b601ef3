#pragma once
// Budgets: how the policy spread its token budget. Left: one bar per layer at the current step
// (mean over heads, whiskers = min..max over heads, a tick = tokens actually held), so the shapes
// of PyramidKV (a ramp), D2O (density-driven, uneven) and DynamicKV (re-normalised groups) show
// at a glance. Right: budgets over steps, one line per layer (or per head of the selected layer
// when a head is selected). Clicking a bar selects its layer.
#include <cstdint>
#include <vector>

#include "views/plot_util.h"

namespace kvscope::views {

class BudgetView final : public View {
  public:
    const char* id() const override { return "budgets"; }
    const char* title() const override { return "Budgets"; }
    void draw(ViewContext& ctx) override;

    const PlotRect& bars_rect() const { return bars_; }
    const PlotRect& lines_rect() const { return lines_; }
    // Screen rectangle of layer l's bar in the last frame.
    PlotRect bar_rect(int32_t layer) const;

  private:
    PlotRect bars_;
    PlotRect lines_;
    std::vector<PlotRect> bar_rects_;
};

}  // namespace kvscope::views
