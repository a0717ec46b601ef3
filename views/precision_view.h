#pragma once
// Precision map: bits per token per layer after the current step (MiKV, KIVI): rows = layers,
// x = token position (zoom and pan as in the timeline), colour = the precision a token is held
// at in the selected head (or the mix over the layer's heads), evicted / merged tokens in their
// state colours. A bar at the right of each row gives the mean bits of the tokens it holds.
// Raster columns sample at most kSamplesPerColumn tokens, so a rebuild is bounded by pixels; a
// step change redraws only the tokens whose state changed in between (scrubbing stays cheap).
// Token states come from the trace's record-time summary (TraceModel::head_states: one row read
// per (layer, head)) when it has one, else from replayed histories (older traces); both give the
// same picture.
#include <cstdint>
#include <memory>
#include <vector>

#include "views/plot_util.h"

namespace kvscope::views {

class PrecisionView final : public View {
  public:
    static constexpr int kSamplesPerColumn = 8;

    const char* id() const override { return "precision"; }
    const char* title() const override { return "Precision map"; }
    void draw(ViewContext& ctx) override;
    void reset() override;

    const PlotRect& plot_rect() const { return plot_; }
    // The picture as last composed, [layers x columns] (tests compare the two state sources).
    const Raster& raster() const { return raster_; }
    // Screen point of (layer, token) in the last frame.
    ImVec2 point_of(int32_t layer, int64_t token) const;
    TokenAxis& axis() { return axis_; }

  private:
    struct Key {
        int32_t head = -2;
        double lo = 0, hi = 0;
        int width = 0;
        int loaded = 0;
        int64_t steps = 0;
        ThemeKind theme = ThemeKind::kDark;
        bool states = false;  // drawn from head_states() rather than history()
        bool operator==(const Key&) const = default;
    };
    // Full rebuild (zoom, pan, resize, head, data loaded): samples the tokens of every column and
    // looks up their state in every layer (and head). Bounded to kMaxLookups lookups by sampling
    // fewer tokens per column, then by a narrower raster.
    void rebuild(const ViewContext& ctx, int width);
    // Step change: only the tokens that changed in the steps between are looked up again.
    void update_step(const ViewContext& ctx, int64_t from, int64_t to);
    void compose(int32_t layer, int x, const Theme& theme);
    // The (layer, head) at `index` of histories_ / states_: loaded, and a token's state in it.
    bool loaded(size_t index) const { return states_[index] || histories_[index]; }
    CacheChange state_at(size_t index, int64_t token, int64_t step) const {
        return states_[index] ? states_[index]->state_at(token, step)
                              : histories_[index]->state_at(token, step);
    }

    static constexpr int64_t kMaxLookups = 250000;
    static constexpr uint32_t kNoSample = 0;
    static constexpr uint32_t kMissing = 1;  // history not loaded yet

    TokenAxis axis_;
    Raster raster_;
    Key key_;
    int64_t built_step_ = -1;
    PlotRect plot_;
    int32_t layers_ = 0;
    int heads_used_ = 0;
    int samples_ = 1;
    int columns_ = 0;
    std::vector<std::shared_ptr<const HeadHistory>> histories_;  // [L * heads_used]
    std::vector<std::shared_ptr<const HeadStates>> states_;      // [L * heads_used], or empty
    std::vector<int64_t> sample_token_;                          // [columns * samples], -1 = none
    int64_t slot_base_ = 0;                                      // first token of token_slot_
    std::vector<int32_t> token_slot_;      // token - slot_base_ -> index into sample_token_
    std::vector<uint32_t> sample_colour_;  // [L * heads_used * columns * samples]
    std::vector<uint8_t> dirty_;           // [L * columns]
    HoverLink hover_;
};

}  // namespace kvscope::views
