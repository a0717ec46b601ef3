#include "views/layer_head_view.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "views/text_fit.h"

namespace kvscope::views {

namespace {

// Bytes a cache head holds: Σ bits over held tokens x head_dim x 2 (keys and values) / 8.
double head_bytes(const HeadCounts& c, int32_t head_dim) {
    return static_cast<double>(c.held_bits) * std::max(head_dim, 1) * 2.0 / 8.0;
}

}  // namespace

float LayerHeadView::cell_value(const TraceModel& model, Metric metric, int32_t layer, int32_t head,
                                int64_t step, double max_bytes) {
    // Counts only (the trace's /summary when it has one): never a head's whole history.
    const auto c = model.head_counts(layer, head, step, Load::kLater);
    if (!c) return std::nanf("");
    if (metric == Metric::kFractionKept) {
        return c->appended > 0 ? static_cast<float>(c->held) / static_cast<float>(c->appended)
                               : 0.0f;
    }
    return max_bytes > 0 ? static_cast<float>(head_bytes(*c, model.summary().head_dim) / max_bytes)
                         : 0.0f;
}

PlotRect LayerHeadView::cell_rect(int32_t layer, int32_t head) const {
    const float cw = grid_.width() / static_cast<float>(std::max(heads_, 1));
    const float ch = grid_.height() / static_cast<float>(std::max(layers_, 1));
    const ImVec2 a(grid_.min.x + cw * static_cast<float>(head),
                   grid_.min.y + ch * static_cast<float>(layer));
    return PlotRect{a, ImVec2(a.x + cw, a.y + ch)};
}

void LayerHeadView::draw(ViewContext& ctx) {
    const TraceModel& model = ctx.model;
    const TraceSummary& s = model.summary();
    const Theme& theme = ctx.theme;
    const int64_t step = ctx.state.step;
    layers_ = s.n_layers;
    heads_ = s.n_heads;
    if (layers_ <= 0 || heads_ <= 0) {
        ImGui::TextDisabled("This trace has no layers.");
        return;
    }

    int m = static_cast<int>(metric_);
    ImGui::RadioButton("fraction kept", &m, 0);
    ImGui::SameLine();
    ImGui::RadioButton("bytes held", &m, 1);
    metric_ = static_cast<Metric>(m);
    ImGui::SameLine();
    fitted_textf(0, "after step %lld  ·  click a cell: select layer and head",
                 static_cast<long long>(step));

    double max_bytes = 0.0;
    int loading = 0;
    for (int32_t l = 0; l < layers_; ++l) {
        for (int32_t h = 0; h < heads_; ++h) {
            if (const auto c = model.head_counts(l, h, step, Load::kLater)) {
                max_bytes = std::max(max_bytes, head_bytes(*c, s.head_dim));
            } else {
                ++loading;
            }
        }
    }
    double max_layer_bytes = 0.0;
    for (int32_t l = 0; l < layers_; ++l) {
        max_layer_bytes = std::max(max_layer_bytes, static_cast<double>(model.bytes_held(step, l)));
    }

    const ImVec2 avail = ImGui::GetContentRegionAvail();
    const ImVec2 origin = ImGui::GetCursorScreenPos();
    const float font = ImGui::GetFontSize();
    const float label_w = ImGui::CalcTextSize("L000").x + 8.0f;
    const float header_h = font + 6.0f;
    const float bar_w = avail.x > 420.0f ? std::clamp(avail.x * 0.18f, 40.0f, 140.0f) : 0.0f;
    const float legend_w = avail.x > 300.0f ? 70.0f : 0.0f;
    const float grid_w = avail.x - label_w - bar_w - legend_w - 24.0f;
    const float grid_h = avail.y - header_h - font - 12.0f;
    if (grid_w < 16 || grid_h < 16) return;
    const float cw = std::min(grid_w / static_cast<float>(heads_), 90.0f);
    const float ch = std::min(grid_h / static_cast<float>(layers_), std::max(cw, 22.0f));
    grid_ = PlotRect{ImVec2(origin.x + label_w, origin.y + header_h),
                     ImVec2(origin.x + label_w + cw * static_cast<float>(heads_),
                            origin.y + header_h + ch * static_cast<float>(layers_))};

    Canvas canvas = ctx.canvas();
    const bool show_values = cw >= ImGui::CalcTextSize("0.00").x + 6 && ch >= font + 2;
    for (int32_t h = 0; h < heads_; ++h) {
        const PlotRect r = cell_rect(0, h);
        if (cw >= ImGui::CalcTextSize("h00").x || h % 4 == 0) {
            canvas.text_centred(ImVec2((r.min.x + r.max.x) * 0.5f, origin.y + header_h * 0.5f),
                                h == ctx.state.head ? theme.selection : theme.text_dim,
                                "h" + std::to_string(h));
        }
    }
    const int label_every = ch >= font ? 1 : static_cast<int>(std::ceil(font / ch));
    for (int32_t l = 0; l < layers_; ++l) {
        const PlotRect row = cell_rect(l, 0);
        const float cy = (row.min.y + row.max.y) * 0.5f;
        if (l % label_every == 0 || l == ctx.state.layer) {
            canvas.text(ImVec2(origin.x, cy - font * 0.5f),
                        l == ctx.state.layer ? theme.selection : theme.text_dim,
                        "L" + std::to_string(l));
        }
        for (int32_t h = 0; h < heads_; ++h) {
            const PlotRect r = cell_rect(l, h);
            const float v = cell_value(model, metric_, l, h, step, max_bytes);
            canvas.rect(r.min, ImVec2(r.max.x - 1, r.max.y - 1), theme.heat(v));
            if (show_values && !std::isnan(v)) {
                char buf[16];
                std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(v));
                canvas.text_centred(
                    ImVec2((r.min.x + r.max.x) * 0.5f, (r.min.y + r.max.y) * 0.5f),
                    v > 0.6f ? IM_COL32(20, 20, 24, 255) : IM_COL32(240, 240, 244, 255), buf);
            }
        }
        // Recorded bytes of the layer (exact, from /steps/bytes_held).
        const int64_t bytes = model.bytes_held(step, l);
        if (bytes >= 0 && max_layer_bytes > 0 && bar_w > 0.0f) {
            const float x0 = grid_.max.x + 10.0f;
            const float w =
                static_cast<float>(static_cast<double>(bytes) / max_layer_bytes) * bar_w;
            canvas.rect(ImVec2(x0, row.min.y + 1), ImVec2(x0 + w, row.max.y - 2),
                        with_alpha(theme.text_dim, 0.7f));
        }
    }
    if (ctx.state.head >= 0) {
        const PlotRect r = cell_rect(ctx.state.layer, ctx.state.head);
        canvas.rect_outline(ImVec2(r.min.x - 1, r.min.y - 1), r.max, theme.selection, 2.5f);
    } else {
        const PlotRect a = cell_rect(ctx.state.layer, 0);
        const PlotRect b = cell_rect(ctx.state.layer, heads_ - 1);
        canvas.rect_outline(ImVec2(a.min.x - 1, a.min.y - 1), b.max, theme.selection, 2.5f);
    }
    if (bar_w > 0.0f) {
        canvas.text(ImVec2(grid_.max.x + 10.0f, grid_.max.y + 4), theme.text_dim, "layer bytes");
    }
    if (legend_w > 0.0f) {
        const PlotRect bar{
            ImVec2(grid_.max.x + bar_w + 24.0f, grid_.min.y),
            ImVec2(grid_.max.x + bar_w + 36.0f, grid_.min.y + std::min(grid_.height(), 200.0f))};
        draw_colour_bar(canvas, theme, bar, 0.0, metric_ == Metric::kFractionKept ? 1.0 : max_bytes,
                        false, nullptr);
    }
    if (loading > 0) {
        canvas.text(ImVec2(grid_.min.x, grid_.max.y + 4), theme.text_dim,
                    "loading " + std::to_string(loading) + " heads...");
    }

    // Interaction over labels + grid.
    ImGui::SetCursorScreenPos(ImVec2(origin.x, grid_.min.y));
    ImGui::InvisibleButton("##grid", ImVec2(grid_.max.x - origin.x, grid_.height()));
    if (ImGui::IsItemHovered()) {
        const ImVec2 mp = ImGui::GetIO().MousePos;
        const int32_t l =
            std::clamp(static_cast<int32_t>((mp.y - grid_.min.y) / ch), 0, layers_ - 1);
        const bool on_label = mp.x < grid_.min.x;
        const int32_t h =
            std::clamp(static_cast<int32_t>((mp.x - grid_.min.x) / cw), 0, heads_ - 1);
        ImGui::BeginTooltip();
        if (on_label) {
            ImGui::Text("layer %d, all heads", l);
        } else {
            const float frac = cell_value(model, Metric::kFractionKept, l, h, step, max_bytes);
            ImGui::Text("layer %d head %d after step %lld", l, h, static_cast<long long>(step));
            if (const auto c = model.head_counts(l, h, step, Load::kLater)) {
                ImGui::Text("kept %lld of %lld tokens (%.1f%%)", static_cast<long long>(c->held),
                            static_cast<long long>(c->appended), static_cast<double>(frac) * 100.0);
                ImGui::Text("merged %lld, evicted %lld", static_cast<long long>(c->merged),
                            static_cast<long long>(c->evicted));
                ImGui::Text("bytes held ~%s", format_bytes(head_bytes(*c, s.head_dim)).c_str());
            }
            const int32_t budget = model.budget(step, l, h);
            if (budget >= 0) ImGui::Text("budget %d tokens", budget);
        }
        const int64_t bytes = model.bytes_held(step, l);
        if (bytes >= 0)
            ImGui::TextDisabled("layer %d holds %s (recorded)", l,
                                format_bytes(static_cast<double>(bytes)).c_str());
        ImGui::EndTooltip();
        if (ImGui::IsMouseClicked(ImGuiMouseButton_Left)) {
            ctx.state.select_layer_head(l, on_label ? -1 : h);
        }
    }
}

}  // namespace kvscope::views
