#pragma once
// Token strip: the prompt and output text as wrapped token boxes, each coloured by its cache state
// after the current step in the selected layer and head (or the majority over the layer's heads,
// paler where heads disagree). With a second trace B open (compare mode), an overlay colours the
// tokens held only in A or only in B and dims the rest. Hover shows the token's fate in every
// layer; click selects it.
// Virtualised: only the visible lines are drawn; the wrap layout is O(T) arithmetic over cached
// token widths.
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "views/compare_diff.h"
#include "views/plot_util.h"

namespace kvscope::views {

class TokenStripView final : public View {
  public:
    const char* id() const override { return "token_strip"; }
    const char* title() const override { return "Token strip"; }
    void draw(ViewContext& ctx) override;
    void reset() override;

    // Screen rectangle of a token in the last frame (nullopt when it was not visible).
    std::optional<PlotRect> token_rect(int64_t token) const;
    // Compare mode: the held-set difference the diff overlay showed in the last frame (its
    // legend's counts); nullopt when no overlay was drawn.
    const std::optional<HeldDiff>& shown_diff() const { return shown_diff_; }

  private:
    void update_widths(const TraceModel& model);
    void update_layout(float width);
    ImU32 token_colour(const ViewContext& ctx, const HeadHistory* head, const HeadSet& heads,
                       int64_t token) const;

    std::vector<float> widths_;        // [T] box width (text + padding)
    std::vector<uint8_t> line_break_;  // [T] 1 = a new line starts after this token
    std::vector<int64_t> line_start_;  // [lines + 1] first token of each line
    float font_size_ = 0.0f;
    float layout_width_ = -1.0f;
    int64_t scrolled_to_ = -1;  // last selected token the view scrolled to
    std::unordered_map<int64_t, PlotRect> visible_;
    HoverLink hover_;
    HeldDiffCache diff_cache_;
    std::optional<HeldDiff> shown_diff_;
};

}  // namespace kvscope::views
