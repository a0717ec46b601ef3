#pragma once
// Layer x head overview: a heatmap (rows = layers, columns = cache heads) of the fraction of the
// tokens seen so far that each cache still holds after the current step, or of the bytes it
// holds; the recorded per-layer bytes are a bar at the right of each row. Clicking a cell selects
// that layer and head everywhere; clicking a row label selects the layer with all heads.
#include <cstdint>

#include "views/plot_util.h"

namespace kvscope::views {

class LayerHeadView final : public View {
  public:
    enum class Metric { kFractionKept, kBytesHeld };

    const char* id() const override { return "layer_head"; }
    const char* title() const override { return "Layer × head"; }
    void draw(ViewContext& ctx) override;

    // Last frame's screen rectangle of cell (layer, head).
    PlotRect cell_rect(int32_t layer, int32_t head) const;
    // The value a cell shows (NaN while its history is loading).
    static float cell_value(const TraceModel& model, Metric metric, int32_t layer, int32_t head,
                            int64_t step, double max_bytes);
    void set_metric(Metric m) { metric_ = m; }
    Metric metric() const { return metric_; }

  private:
    Metric metric_ = Metric::kFractionKept;
    PlotRect grid_;
    int32_t layers_ = 0;
    int32_t heads_ = 0;
};

}  // namespace kvscope::views
