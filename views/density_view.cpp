#include "views/density_view.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/probes/norm_attention.h"
#include "views/plot_legend.h"
#include "views/text_fit.h"

namespace kvscope::views {

namespace {

constexpr size_t kMaxPoints = 3000;  // above this the scatter is a 2-D histogram
constexpr float kAttnFloor = 1e-9f;  // log scale: zeros are drawn at this value

float log_attn(float a) {
    return std::log10(std::max(a, kAttnFloor));
}

}  // namespace

void DensityView::reset() {
    data_layer_ = -1;
    data_head_ = -1;
    norms_.reset();
    attn_.reset();
    hist_valid_ = false;
}

PlotRect DensityView::rho_cell_rect(int32_t layer, int32_t head) const {
    const float cw = rho_.width() / static_cast<float>(std::max(heads_, 1));
    const float ch = rho_.height() / static_cast<float>(std::max(layers_, 1));
    const ImVec2 a(rho_.min.x + cw * static_cast<float>(head),
                   rho_.min.y + ch * static_cast<float>(layer));
    return PlotRect{a, ImVec2(a.x + cw, a.y + ch)};
}

bool DensityView::point_of(int64_t token, ImVec2* out) const {
    if (!norms_ || !attn_ || token < 0 || token >= std::ssize(*norms_) ||
        token >= std::ssize(*attn_)) {
        return false;
    }
    const float x = (*norms_)[static_cast<size_t>(token)];
    const float y = log_attn((*attn_)[static_cast<size_t>(token)]);
    if (!std::isfinite(x) || !std::isfinite(y)) return false;
    *out = ImVec2(
        scatter_.min.x + static_cast<float>((x - x_lo_) / (x_hi_ - x_lo_)) * scatter_.width(),
        scatter_.max.y - static_cast<float>((y - y_lo_) / (y_hi_ - y_lo_)) * scatter_.height());
    return true;
}

void DensityView::draw(ViewContext& ctx) {
    const TraceSummary& s = ctx.model.summary();
    layers_ = s.n_layers;
    heads_ = s.n_heads;
    if (layers_ <= 0 || heads_ <= 0) {
        ImGui::TextDisabled("This trace has no layers.");
        return;
    }
    layer_head_selector(ctx, true);
    ImGui::SameLine();
    fitted_text("prefill statistics  ·  rho = Spearman(-key norm, attention received)");

    const ImVec2 avail = ImGui::GetContentRegionAvail();
    const ImVec2 o = ImGui::GetCursorScreenPos();
    const float font = ImGui::GetFontSize();
    const float left = ImGui::CalcTextSize("0.000").x + 12.0f;
    const float right_w = std::clamp(avail.x * 0.3f, 120.0f, 320.0f);
    const float top_h = std::max(60.0f, avail.y * 0.28f);
    density_ = PlotRect{ImVec2(o.x + left, o.y + font + 6),
                        ImVec2(o.x + avail.x - right_w - 20, o.y + top_h)};
    scatter_ = PlotRect{ImVec2(o.x + left, o.y + top_h + font * 3.0f + 24),
                        ImVec2(o.x + avail.x - right_w - 20, o.y + avail.y - font * 2.0f - 12)};
    rho_ = PlotRect{ImVec2(o.x + avail.x - right_w + ImGui::CalcTextSize("L00").x, o.y + font + 6),
                    ImVec2(o.x + avail.x - 50, o.y + avail.y - font * 2.0f - 12)};
    if (density_.width() < 20 || scatter_.height() < 20 || rho_.width() < 8) return;

    Canvas canvas = ctx.canvas();
    draw_density(ctx, canvas);
    draw_scatter(ctx, canvas);
    draw_rho(ctx, canvas);
}

void DensityView::draw_density(ViewContext& ctx, Canvas& canvas) {
    const Theme& theme = ctx.theme;
    const TraceModel& model = ctx.model;
    double y_max = 0.0;
    for (int32_t l = 0; l < layers_; ++l) {
        const float d = model.density_layer(l);
        if (std::isfinite(d)) y_max = std::max(y_max, static_cast<double>(d));
    }
    y_max = y_max > 0 ? y_max * 1.1 : 1.0;
    canvas.rect(density_.min, density_.max, theme.panel);
    draw_y_axis(canvas, theme, density_, 0.0, y_max, "attention density F per layer (D2O)");
    const float slot = density_.width() / static_cast<float>(layers_);
    for (int32_t l = 0; l < layers_; ++l) {
        const float d = model.density_layer(l);
        const float x0 = density_.min.x + slot * static_cast<float>(l) + slot * 0.15f;
        const float x1 = density_.min.x + slot * static_cast<float>(l + 1) - slot * 0.15f;
        if (!std::isfinite(d)) {
            canvas.rect(ImVec2(x0, density_.max.y - 3), ImVec2(x1, density_.max.y), theme.missing);
            continue;
        }
        const float y = density_.max.y - static_cast<float>(d / y_max) * density_.height();
        canvas.rect(
            ImVec2(x0, y), ImVec2(x1, density_.max.y),
            l == ctx.state.layer ? theme.selection : theme.heat(static_cast<float>(d / y_max)));
        if (slot >= ImGui::CalcTextSize("00").x + 2 || l % 4 == 0) {
            canvas.text_centred(
                ImVec2((x0 + x1) * 0.5f, density_.max.y + 3 + ImGui::GetFontSize() * 0.5f),
                theme.text_dim, std::to_string(l));
        }
    }
    ImGui::SetCursorScreenPos(density_.min);
    ImGui::InvisibleButton("##density", ImVec2(density_.width(), density_.height()));
    if (ImGui::IsItemHovered()) {
        const int32_t l =
            std::clamp(static_cast<int32_t>((ImGui::GetIO().MousePos.x - density_.min.x) / slot), 0,
                       layers_ - 1);
        ImGui::SetTooltip("layer %d: density F = %.4f (lower = denser attention)", l,
                          static_cast<double>(model.density_layer(l)));
        if (ImGui::IsMouseClicked(ImGuiMouseButton_Left)) ctx.state.select_layer(l);
    }
}

void DensityView::draw_scatter(ViewContext& ctx, Canvas& canvas) {
    const Theme& theme = ctx.theme;
    const TraceModel& model = ctx.model;
    const int32_t layer = ctx.state.layer;
    const int32_t head = std::max(ctx.state.head, 0);
    if (layer != data_layer_ || head != data_head_ || !norms_) {
        data_layer_ = layer;
        data_head_ = head;
        norms_ = model.key_norm(layer, head);
        attn_ = model.attn_received(layer, head);
        hist_valid_ = false;
        x_lo_ = y_lo_ = 1e30;
        x_hi_ = y_hi_ = -1e30;
        const size_t n = std::min(norms_->size(), attn_->size());
        for (size_t i = 0; i < n; ++i) {
            const float x = (*norms_)[i];
            const float y = log_attn((*attn_)[i]);
            if (!std::isfinite(x) || !std::isfinite(y)) continue;
            x_lo_ = std::min(x_lo_, static_cast<double>(x));
            x_hi_ = std::max(x_hi_, static_cast<double>(x));
            y_lo_ = std::min(y_lo_, static_cast<double>(y));
            y_hi_ = std::max(y_hi_, static_cast<double>(y));
        }
        if (x_lo_ > x_hi_) {
            x_lo_ = 0, x_hi_ = 1, y_lo_ = -6, y_hi_ = 0;
        }
        const double px = std::max((x_hi_ - x_lo_) * 0.05, 1e-3);
        const double py = std::max((y_hi_ - y_lo_) * 0.05, 1e-3);
        x_lo_ -= px, x_hi_ += px, y_lo_ -= py, y_hi_ += py;
        rho_value_ = model.spearman(layer, head);
        if (std::isnan(rho_value_) && n >= 2) {
            rho_value_ = static_cast<float>(
                key_norm_attention_spearman(std::span<const float>(norms_->data(), n),
                                            std::span<const float>(attn_->data(), n)));
        }
    }
    canvas.rect(scatter_.min, scatter_.max, theme.panel);
    draw_x_axis(canvas, theme, scatter_, x_lo_, x_hi_, "key L2 norm");
    draw_y_axis(canvas, theme, scatter_, y_lo_, y_hi_, "");
    char title[160];
    std::snprintf(title, sizeof title, "layer %d head %d%s  ·  rho = %.3f", layer, head,
                  ctx.state.head < 0 ? " (pick a head)" : "", static_cast<double>(rho_value_));
    const float font = ImGui::GetFontSize();
    canvas.push_clip(ImVec2(scatter_.min.x - 60, scatter_.min.y - 2 * font - 10),
                     ImVec2(scatter_.max.x, scatter_.min.y));
    canvas.text(ImVec2(scatter_.min.x, scatter_.min.y - 2 * font - 6), theme.text, title);
    canvas.text(ImVec2(scatter_.min.x - 40, scatter_.min.y - font - 4), theme.text_dim,
                "attention received (log10)");
    canvas.pop_clip();
    // Colour key, right-aligned on the title's row, or on the axis title's when the title
    // leaves no room.
    const std::vector<LegendItem> key = {
        {LegendItem::Mark::kDot, with_alpha(theme.heat(0.55f), 0.8f), "prompt token"},
        {LegendItem::Mark::kDot, theme.needle, "needle"},
        {LegendItem::Mark::kRing, theme.selection, "selected token"}};
    const float key_w = legend_width(key);
    const bool on_title = ImGui::CalcTextSize(title).x + 16.0f + key_w <= scatter_.width();
    draw_legend(
        canvas, theme,
        ImVec2(scatter_.max.x - key_w, scatter_.min.y - (on_title ? 2 * font + 6 : font + 4)), key);

    const size_t n = std::min(norms_->size(), attn_->size());
    const auto to_screen = [&](float x, float y) {
        return ImVec2(
            scatter_.min.x + static_cast<float>((x - x_lo_) / (x_hi_ - x_lo_)) * scatter_.width(),
            scatter_.max.y - static_cast<float>((y - y_lo_) / (y_hi_ - y_lo_)) * scatter_.height());
    };
    if (n <= kMaxPoints || canvas.svg() != nullptr) {
        const ImU32 c = with_alpha(theme.heat(0.55f), 0.8f);
        for (size_t i = 0; i < n; ++i) {
            const float x = (*norms_)[i];
            const float y = log_attn((*attn_)[i]);
            if (std::isfinite(x) && std::isfinite(y)) canvas.circle(to_screen(x, y), 2.5f, c);
        }
    } else {
        const int w = std::max(8, static_cast<int>(scatter_.width() / 3));
        const int h = std::max(8, static_cast<int>(scatter_.height() / 3));
        if (!hist_valid_ || w != hist_w_ || h != hist_h_ || hist_theme_ != theme.kind) {
            hist_w_ = w;
            hist_h_ = h;
            hist_theme_ = theme.kind;
            hist_valid_ = true;
            std::vector<int> counts(static_cast<size_t>(w) * static_cast<size_t>(h), 0);
            int max_count = 1;
            for (size_t i = 0; i < n; ++i) {
                const float x = (*norms_)[i];
                const float y = log_attn((*attn_)[i]);
                if (!std::isfinite(x) || !std::isfinite(y)) continue;
                const int bx =
                    std::clamp(static_cast<int>((x - x_lo_) / (x_hi_ - x_lo_) * w), 0, w - 1);
                const int by =
                    std::clamp(static_cast<int>((y_hi_ - y) / (y_hi_ - y_lo_) * h), 0, h - 1);
                int& cnt = counts[static_cast<size_t>(by) * static_cast<size_t>(w) +
                                  static_cast<size_t>(bx)];
                max_count = std::max(max_count, ++cnt);
            }
            histogram_.resize(w, h);
            const float denom = std::log1p(static_cast<float>(max_count));
            for (int y = 0; y < h; ++y) {
                uint32_t* row = histogram_.row(y);
                for (int x = 0; x < w; ++x) {
                    const int cnt = counts[static_cast<size_t>(y) * static_cast<size_t>(w) +
                                           static_cast<size_t>(x)];
                    row[x] = cnt == 0
                                 ? theme.panel
                                 : theme.heat(0.15f +
                                              0.85f * std::log1p(static_cast<float>(cnt)) / denom);
                }
            }
            histogram_.mark_dirty();
        }
        histogram_.draw(canvas, ctx.textures, scatter_.min, scatter_.max);
    }
    const auto& spans = model.spans();
    for (const trace::MarkedSpan& span : spans) {
        for (int64_t t = span.begin; t < span.end && t < static_cast<int64_t>(n); ++t) {
            ImVec2 p;
            if (point_of(t, &p)) canvas.circle(p, 3.5f, theme.needle);
        }
    }
    ImVec2 p;
    if (point_of(ctx.state.token, &p)) {
        canvas.draw_list()->AddCircle(p, 6.0f, theme.selection, 16, 2.0f);
    }
    // Hover: nearest point within 8 px; click selects that token.
    ImGui::SetCursorScreenPos(scatter_.min);
    ImGui::InvisibleButton("##scatter", ImVec2(scatter_.width(), scatter_.height()));
    if (ImGui::IsItemHovered() && n > 0) {
        const ImVec2 m = ImGui::GetIO().MousePos;
        int64_t best = -1;
        float best_d = 64.0f;
        for (size_t i = 0; i < n; ++i) {
            ImVec2 q;
            if (!point_of(static_cast<int64_t>(i), &q)) continue;
            const float d = (q.x - m.x) * (q.x - m.x) + (q.y - m.y) * (q.y - m.y);
            if (d < best_d) {
                best_d = d;
                best = static_cast<int64_t>(i);
            }
        }
        if (best >= 0) {
            ImGui::SetTooltip("token %lld \"%s\"\nkey norm %.3f, attention %.3g",
                              static_cast<long long>(best),
                              display_piece(model.token_text(best)).c_str(),
                              static_cast<double>((*norms_)[static_cast<size_t>(best)]),
                              static_cast<double>((*attn_)[static_cast<size_t>(best)]));
            if (ImGui::IsMouseClicked(ImGuiMouseButton_Left)) ctx.state.select_token(best);
        }
    }
}

void DensityView::draw_rho(ViewContext& ctx, Canvas& canvas) {
    const Theme& theme = ctx.theme;
    const float font = ImGui::GetFontSize();
    canvas.text(ImVec2(rho_.min.x, rho_.min.y - font - 4), theme.text, "rho per layer x head");
    const float ch = rho_.height() / static_cast<float>(layers_);
    const int label_every = ch >= font ? 1 : static_cast<int>(std::ceil(font / ch));
    for (int32_t l = 0; l < layers_; ++l) {
        for (int32_t h = 0; h < heads_; ++h) {
            const PlotRect r = rho_cell_rect(l, h);
            canvas.rect(r.min, ImVec2(r.max.x - 1, r.max.y - 1),
                        theme.diverging(ctx.model.spearman(l, h)));
        }
        if (l % label_every == 0) {
            const PlotRect r = rho_cell_rect(l, 0);
            canvas.text(
                ImVec2(r.min.x - ImGui::CalcTextSize("L00").x - 2, r.min.y + (ch - font) * 0.5f),
                l == ctx.state.layer ? theme.selection : theme.text_dim, "L" + std::to_string(l));
        }
    }
    const PlotRect sel = rho_cell_rect(ctx.state.layer, std::max(ctx.state.head, 0));
    const PlotRect sel_end =
        rho_cell_rect(ctx.state.layer, ctx.state.head < 0 ? heads_ - 1 : ctx.state.head);
    canvas.rect_outline(ImVec2(sel.min.x - 1, sel.min.y - 1), sel_end.max, theme.selection, 2.0f);
    draw_colour_bar(canvas, theme,
                    PlotRect{ImVec2(rho_.max.x + 8, rho_.min.y),
                             ImVec2(rho_.max.x + 18, rho_.min.y + std::min(rho_.height(), 160.0f))},
                    -1.0, 1.0, true, nullptr);
    ImGui::SetCursorScreenPos(rho_.min);
    ImGui::InvisibleButton("##rho", ImVec2(rho_.width(), rho_.height()));
    if (ImGui::IsItemHovered()) {
        const ImVec2 m = ImGui::GetIO().MousePos;
        const int32_t l = std::clamp(static_cast<int32_t>((m.y - rho_.min.y) / ch), 0, layers_ - 1);
        const int32_t h = std::clamp(
            static_cast<int32_t>((m.x - rho_.min.x) / (rho_.width() / static_cast<float>(heads_))),
            0, heads_ - 1);
        ImGui::SetTooltip("layer %d head %d: rho = %.3f, density %.4f", l, h,
                          static_cast<double>(ctx.model.spearman(l, h)),
                          static_cast<double>(ctx.model.density(l, h)));
        if (ImGui::IsMouseClicked(ImGuiMouseButton_Left)) ctx.state.select_layer_head(l, h);
    }
}

}  // namespace kvscope::views
