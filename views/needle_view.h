#pragma once
// Needle panel: the marked spans (needles) of the trace, whether the answer was right, a
// layer x head matrix of the fraction of the needle still held after the current step, where and
// when it was first lost, its survival over the steps, and — for the selected layer and head —
// the held tokens that outscored it (prefill attention received, the signal most policies rank
// by). Clicking a cell selects that layer and head; clicking the survival curve sets the step.
#include <cstdint>
#include <vector>

#include "views/plot_util.h"

namespace kvscope::views {

class NeedleView final : public View {
  public:
    struct Loss {
        int64_t step = -1;  // first step at which some (layer, head) held less than all of it
        int32_t layer = -1;
        int32_t head = -1;
        float survival = 1.0f;
        int64_t all_lost_step = -1;  // first step at which no (layer, head) held any of it
    };

    const char* id() const override { return "needle"; }
    const char* title() const override { return "Needle"; }
    void draw(ViewContext& ctx) override;
    void reset() override;

    PlotRect cell_rect(int32_t layer, int32_t head) const;
    const PlotRect& curve_rect() const { return curve_; }
    // First loss of a span (computed from /steps/needle_survival; cached per span and steps).
    const Loss& loss(const TraceModel& model, int32_t span);

  private:
    void draw_matrix(ViewContext& ctx, Canvas& canvas, int32_t span);
    void draw_curve(ViewContext& ctx, Canvas& canvas, int32_t span);
    void draw_outscored(ViewContext& ctx, int32_t span);

    PlotRect matrix_;
    PlotRect curve_;
    int32_t layers_ = 0;
    int32_t heads_ = 0;
    int32_t loss_span_ = -1;
    int64_t loss_steps_ = -1;
    Loss loss_;
    std::vector<float> mean_curve_;  // [S] mean survival over (layer, head)
    std::vector<float> min_curve_;   // [S]
};

}  // namespace kvscope::views
