#include "views/precision_view.h"

#include <algorithm>
#include <cmath>

namespace kvscope::views {

void PrecisionView::reset() {
    axis_ = TokenAxis();
    key_ = Key();
}

ImVec2 PrecisionView::point_of(int32_t layer, int64_t token) const {
    const float rh = plot_.height() / static_cast<float>(std::max(layers_, 1));
    return ImVec2(axis_.to_x(plot_, static_cast<double>(token) + 0.5),
                  plot_.min.y + rh * (static_cast<float>(layer) + 0.5f));
}

void PrecisionView::rebuild(const ViewContext& ctx, int width) {
    const TraceModel& model = ctx.model;
    const TraceSummary& s = model.summary();
    const Theme& theme = ctx.theme;
    const int64_t step = ctx.state.step;
    raster_.resize(width, layers_);
    for (int32_t l = 0; l < layers_; ++l) {
        HeadSet heads;
        if (ctx.state.head >= 0) {
            heads.push_back(model.history(l, ctx.state.head, Load::kLater));
        } else {
            heads = layer_heads(model, l, Load::kLater);
        }
        uint32_t* row = raster_.row(l);
        for (int x = 0; x < width; ++x) {
            const auto [t0, t1] = axis_.column_tokens(x, width, s.n_tokens);
            if (t0 >= t1) {
                row[x] = theme.panel;
                continue;
            }
            // Mean colour over up to kSamplesPerColumn evenly spread tokens and the heads.
            const int64_t n = t1 - t0;
            const int samples = static_cast<int>(std::min<int64_t>(n, kSamplesPerColumn));
            float rgb[3] = {0, 0, 0};
            int count = 0;
            bool missing = false;
            for (int k = 0; k < samples; ++k) {
                const int64_t t = t0 + (n * k) / samples;
                for (const auto& h : heads) {
                    if (!h) {
                        missing = true;
                        continue;
                    }
                    const ImU32 c = theme.state_color(h->state_at(t, step));
                    rgb[0] += static_cast<float>((c >> IM_COL32_R_SHIFT) & 0xFF);
                    rgb[1] += static_cast<float>((c >> IM_COL32_G_SHIFT) & 0xFF);
                    rgb[2] += static_cast<float>((c >> IM_COL32_B_SHIFT) & 0xFF);
                    ++count;
                }
            }
            row[x] = count == 0 ? (missing ? theme.missing : theme.panel)
                                : IM_COL32(static_cast<int>(rgb[0] / static_cast<float>(count)),
                                           static_cast<int>(rgb[1] / static_cast<float>(count)),
                                           static_cast<int>(rgb[2] / static_cast<float>(count)), 255);
        }
    }
    raster_.mark_dirty();
}

void PrecisionView::draw(ViewContext& ctx) {
    const TraceModel& model = ctx.model;
    const TraceSummary& s = model.summary();
    const Theme& theme = ctx.theme;
    const int64_t step = ctx.state.step;
    layers_ = s.n_layers;
    if (layers_ <= 0) {
        ImGui::TextDisabled("This trace has no layers.");
        return;
    }
    axis_.set_extent(static_cast<double>(std::max<int64_t>(s.n_tokens, 1)));

    layer_head_selector(ctx, true);
    ImGui::SameLine();
    if (ImGui::Button("Fit")) axis_.zoom_to(0, axis_.extent());
    ImGui::SameLine();
    ImGui::TextDisabled("bits per token per layer after step %lld", static_cast<long long>(step));
    draw_state_legend(ctx, true);

    const ImVec2 avail = ImGui::GetContentRegionAvail();
    const ImVec2 o = ImGui::GetCursorScreenPos();
    const float font = ImGui::GetFontSize();
    const float left = ImGui::CalcTextSize("L000").x + 8;
    const float bar_w = std::clamp(avail.x * 0.12f, 40.0f, 110.0f);
    plot_ = PlotRect{ImVec2(o.x + left, o.y + 4),
                     ImVec2(o.x + avail.x - bar_w - 20, o.y + avail.y - font * 2 - 10)}
                .snapped();
    if (plot_.width() < 20 || plot_.height() < 10) return;

    int loaded = 0;
    for (int32_t l = 0; l < layers_; ++l) {
        if (ctx.state.head >= 0) {
            loaded += model.history(l, ctx.state.head, Load::kLater) ? 1 : 0;
        } else {
            for (int32_t h = 0; h < s.n_heads; ++h) loaded += model.history(l, h, Load::kLater) ? 1 : 0;
        }
    }
    Key key;
    key.head = ctx.state.head;
    key.step = step;
    key.lo = axis_.lo();
    key.hi = axis_.hi();
    key.width = std::clamp(static_cast<int>(plot_.width()), 1, 4096);
    key.loaded = loaded;
    key.steps = s.n_steps;
    key.theme = theme.kind;
    if (!(key == key_)) {
        key_ = key;
        rebuild(ctx, key.width);
    }

    Canvas canvas = ctx.canvas();
    canvas.rect(plot_.min, plot_.max, theme.panel);
    raster_.draw(canvas, ctx.textures, plot_.min, plot_.max);
    draw_x_axis(canvas, theme, plot_, axis_.lo(), axis_.hi(), "token position");
    const float rh = plot_.height() / static_cast<float>(layers_);
    const int label_every = rh >= font ? 1 : static_cast<int>(std::ceil(font / rh));
    for (int32_t l = 0; l < layers_; ++l) {
        const float y0 = plot_.min.y + rh * static_cast<float>(l);
        if (l % label_every == 0 || l == ctx.state.layer) {
            canvas.text(ImVec2(o.x, y0 + (rh - font) * 0.5f),
                        l == ctx.state.layer ? theme.selection : theme.text_dim, "L" + std::to_string(l));
        }
        if (rh >= 3 && l > 0) {
            canvas.line(ImVec2(plot_.min.x, y0), ImVec2(plot_.max.x, y0), with_alpha(theme.background, 0.6f));
        }
        // Mean bits of the held tokens (over the selected head or every loaded head).
        int64_t bits = 0;
        int64_t held = 0;
        for (int32_t h = 0; h < s.n_heads; ++h) {
            if (ctx.state.head >= 0 && h != ctx.state.head) continue;
            if (const auto hist = model.history(l, h, Load::kLater)) {
                bits += hist->held_bits(step);
                held += hist->held(step);
            }
        }
        if (held > 0) {
            const double mean = static_cast<double>(bits) / static_cast<double>(held);
            const float x0 = plot_.max.x + 10;
            canvas.rect(ImVec2(x0, y0 + 1), ImVec2(x0 + static_cast<float>(mean / 16.0) * bar_w, y0 + rh - 1),
                        theme.bits_color(static_cast<int>(std::lround(mean))));
        }
    }
    canvas.text(ImVec2(plot_.max.x + 10, plot_.max.y + 4), theme.text_dim, "mean bits");
    const float sel_y = plot_.min.y + rh * static_cast<float>(ctx.state.layer);
    canvas.rect_outline(ImVec2(plot_.min.x - 1, sel_y), ImVec2(plot_.max.x + 1, sel_y + rh), theme.selection, 1.5f);
    canvas.push_clip(plot_.min, plot_.max);
    if (ctx.state.token >= 0) {
        draw_marker_x(canvas, axis_.to_x(plot_, static_cast<double>(ctx.state.token) + 0.5),
                      plot_.min.y, plot_.max.y, theme.selection);
    }
    canvas.pop_clip();

    ImGui::SetCursorScreenPos(plot_.min);
    ImGui::InvisibleButton("##precision", ImVec2(plot_.width(), plot_.height()));
    const bool hovered = ImGui::IsItemHovered();
    axis_.handle_input(plot_, hovered, ImGui::IsItemActive());
    int64_t hover_token = -1;
    if (hovered) {
        const ImVec2 m = ImGui::GetIO().MousePos;
        const int64_t t = static_cast<int64_t>(std::floor(axis_.to_token(plot_, m.x)));
        const int32_t l = std::clamp(static_cast<int32_t>((m.y - plot_.min.y) / rh), 0, layers_ - 1);
        if (t >= 0 && t < s.n_tokens) {
            hover_token = t;
            token_fate_tooltip(ctx, t);
            if (ImGui::IsMouseClicked(ImGuiMouseButton_Left)) {
                ctx.state.select_layer(l);
                ctx.state.select_token(t);
            }
        }
        if (ImGui::IsMouseDoubleClicked(ImGuiMouseButton_Left)) axis_.zoom_to(0, axis_.extent());
    }
    hover_.update(ctx.state, hover_token);
}

}  // namespace kvscope::views
