#pragma once
// Precision map: bits per token per layer after the current step (MiKV, KIVI): rows = layers,
// x = token position (zoom and pan as in the timeline), colour = the precision a token is held
// at in the selected head (or the mix over the layer's heads), evicted / merged tokens in their
// state colours. A bar at the right of each row gives the mean bits of the tokens it holds.
// Raster columns sample at most kSamplesPerColumn tokens, so a rebuild is bounded by pixels.
#include <cstdint>

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
    // Screen point of (layer, token) in the last frame.
    ImVec2 point_of(int32_t layer, int64_t token) const;
    TokenAxis& axis() { return axis_; }

private:
    struct Key {
        int32_t head = -2;
        int64_t step = -1;
        double lo = 0, hi = 0;
        int width = 0;
        int loaded = 0;
        int64_t steps = 0;
        ThemeKind theme = ThemeKind::kDark;
        bool operator==(const Key&) const = default;
    };
    void rebuild(const ViewContext& ctx, int width);

    TokenAxis axis_;
    Raster raster_;
    Key key_;
    PlotRect plot_;
    int32_t layers_ = 0;
    HoverLink hover_;
};

}  // namespace kvscope::views
