#pragma once
// Attention density and key norms. Top: D2O's attention density F per layer (bars; low = dense,
// evenly spread attention). Bottom left: key L2 norm (x) against attention received (y, log) of
// every prompt token for the selected layer and head, with its Spearman rho(-norm, attention);
// above a few thousand tokens the points are binned into a 2-D histogram raster. Right: a
// layer x head heatmap of rho. Clicks select a layer, a (layer, head) or a token.
#include <cstdint>
#include <memory>
#include <vector>

#include "views/plot_util.h"

namespace kvscope::views {

class DensityView final : public View {
  public:
    const char* id() const override { return "density"; }
    const char* title() const override { return "Density and key norms"; }
    void draw(ViewContext& ctx) override;
    void reset() override;

    const PlotRect& density_rect() const { return density_; }
    const PlotRect& scatter_rect() const { return scatter_; }
    PlotRect rho_cell_rect(int32_t layer, int32_t head) const;
    // Screen position of a prompt token's point in the last frame's scatter (nullopt if none).
    bool point_of(int64_t token, ImVec2* out) const;

  private:
    void draw_density(ViewContext& ctx, Canvas& canvas);
    void draw_scatter(ViewContext& ctx, Canvas& canvas);
    void draw_rho(ViewContext& ctx, Canvas& canvas);

    PlotRect density_;
    PlotRect scatter_;
    PlotRect rho_;
    int32_t layers_ = 0;
    int32_t heads_ = 0;

    // Scatter data of the shown (layer, head).
    int32_t data_layer_ = -1;
    int32_t data_head_ = -1;
    std::shared_ptr<const std::vector<float>> norms_;
    std::shared_ptr<const std::vector<float>> attn_;
    double x_lo_ = 0, x_hi_ = 1, y_lo_ = -6, y_hi_ = 0;  // y in log10
    float rho_value_ = 0.0f;
    Raster histogram_;
    int hist_w_ = 0, hist_h_ = 0;
    ThemeKind hist_theme_ = ThemeKind::kDark;
    bool hist_valid_ = false;
};

}  // namespace kvscope::views
