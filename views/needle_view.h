#pragma once
// Needle panel: the marked spans (needles) of the trace, whether the answer was right, a
// layer x head matrix of the fraction of the needle still held after the current step, where and
// when it was first lost, its survival over the steps, and — for the selected layer and head —
// why it left. With an explanation (set_explanation: the policy re-run under
// whatif::ExplainPolicy by the Studio) that is in the policy's own terms: when and how each needle
// token left (evicted / merged into which token / quantised to how many bits, at the prompt's
// compression or a decode step), its score against the cut-off and the budget, its rank, and the
// kept tokens just above the cut-off that took its place. Without one, the held tokens ranked by
// prefill attention received, labelled as such (it is not what every policy ranks by). Both show
// the needle's attention debiased for position and the stored Spearman statistic with its sign.
// Clicking a cell selects that layer and head; clicking the survival curve sets the step.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "views/needle_explanation.h"
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

    // The explanation of the open trace's needle (nullptr: none). It is shown only while the
    // trace it names (TraceSummary::path) is the one drawn, and for its own span.
    void set_explanation(std::shared_ptr<const NeedleExplanation> e) {
        explanation_ = std::move(e);
    }
    const NeedleExplanation* explanation() const { return explanation_.get(); }
    // The Studio's forensic jobs (buttons, progress, errors); owned by the Studio, may be null.
    void set_forensics(const NeedleForensics* f) { forensics_ = f; }
    // What the last draw showed for the selected (layer, head): the explanation's decisions on
    // the needle there (empty without one), and the heading of the ranking it listed.
    const std::vector<NeedleDecision>& shown_decisions() const { return shown_; }
    const std::string& list_heading() const { return heading_; }
    bool showing_explanation() const { return showing_why_; }

  private:
    void draw_matrix(ViewContext& ctx, Canvas& canvas, int32_t span);
    void draw_curve(ViewContext& ctx, Canvas& canvas, int32_t span);
    void draw_outscored(ViewContext& ctx, int32_t span);
    void draw_why(ViewContext& ctx, int32_t span);
    void draw_forensics_bar();
    void draw_attention_notes(ViewContext& ctx, int32_t span);

    PlotRect matrix_;
    PlotRect curve_;
    int32_t layers_ = 0;
    int32_t heads_ = 0;
    int32_t loss_span_ = -1;
    int64_t loss_steps_ = -1;
    Loss loss_;
    std::vector<float> mean_curve_;  // [S] mean survival over (layer, head)
    std::vector<float> min_curve_;   // [S]
    std::shared_ptr<const NeedleExplanation> explanation_;
    const NeedleForensics* forensics_ = nullptr;
    std::vector<NeedleDecision> shown_;
    std::string heading_;
    bool showing_why_ = false;
};

}  // namespace kvscope::views
