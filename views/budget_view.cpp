#include "views/budget_view.h"

#include <algorithm>
#include <cmath>

namespace kvscope::views {

namespace {

struct LayerBudget {
    double mean = -1.0;  // -1 = no budget
    int32_t min = 0;
    int32_t max = 0;
};

LayerBudget layer_budget(const TraceModel& m, int64_t step, int32_t layer) {
    LayerBudget out;
    double sum = 0.0;
    int n = 0;
    for (int32_t h = 0; h < m.summary().n_heads; ++h) {
        const int32_t b = m.budget(step, layer, h);
        if (b < 0) continue;
        out.min = n == 0 ? b : std::min(out.min, b);
        out.max = n == 0 ? b : std::max(out.max, b);
        sum += b;
        ++n;
    }
    if (n > 0) out.mean = sum / n;
    return out;
}

// Colour of series i of n: the heat map without its darkest and palest ends (readable on both
// themes).
ImU32 series_colour(const Theme& theme, int i, int n) {
    const float t = n > 1 ? static_cast<float>(i) / static_cast<float>(n - 1) : 0.5f;
    const ImU32 c = theme.heat(0.15f + 0.7f * t);
    return theme.light_background() ? mix(c, IM_COL32(0, 0, 0, 255), 0.25f) : c;
}

}  // namespace

PlotRect BudgetView::bar_rect(int32_t layer) const {
    if (layer < 0 || static_cast<size_t>(layer) >= bar_rects_.size()) return {};
    return bar_rects_[static_cast<size_t>(layer)];
}

void BudgetView::draw(ViewContext& ctx) {
    const TraceModel& model = ctx.model;
    const TraceSummary& s = model.summary();
    const Theme& theme = ctx.theme;
    const int64_t step = ctx.state.step;
    bar_rects_.assign(static_cast<size_t>(std::max(s.n_layers, 0)), PlotRect{});

    layer_head_selector(ctx, true);
    ImGui::SameLine();
    if (!model.has_budgets()) {
        ImGui::TextDisabled("policy %s", s.policy.c_str());
        ImGui::TextWrapped(
            "This trace records no budgets (the policy sets none, e.g. a full cache or a pure "
            "quantisation policy).");
        return;
    }
    ImGui::TextDisabled(
        "policy %s  ·  after step %lld  ·  bar = mean over heads, whiskers = "
        "min..max, tick = held",
        s.policy.c_str(), static_cast<long long>(step));

    const ImVec2 avail = ImGui::GetContentRegionAvail();
    const ImVec2 origin = ImGui::GetCursorScreenPos();
    const float font = ImGui::GetFontSize();
    const float left = ImGui::CalcTextSize("00000").x + 12.0f;
    const float bottom = font * 2.0f + 12.0f;
    const float split = avail.x * 0.42f;
    bars_ = PlotRect{ImVec2(origin.x + left, origin.y + font + 8),
                     ImVec2(origin.x + split - 10, origin.y + avail.y - bottom)};
    lines_ = PlotRect{ImVec2(origin.x + split + left, origin.y + font + 8),
                      ImVec2(origin.x + avail.x - 10, origin.y + avail.y - bottom)};
    if (bars_.width() < 20 || bars_.height() < 20) return;

    const int32_t L = s.n_layers;
    const int64_t S = std::max<int64_t>(s.n_steps, 1);
    std::vector<LayerBudget> now(static_cast<size_t>(L));
    double y_max = 1.0;
    for (int32_t l = 0; l < L; ++l) {
        now[static_cast<size_t>(l)] = layer_budget(model, step, l);
        y_max = std::max(y_max, static_cast<double>(now[static_cast<size_t>(l)].max));
    }
    // Lines over steps, sampled at one step per pixel column at most.
    const bool per_head = ctx.state.head >= 0;
    const int n_series = per_head ? s.n_heads : L;
    const int columns =
        static_cast<int>(std::min<int64_t>(S, static_cast<int64_t>(lines_.width())));
    std::vector<std::vector<double>> series(
        static_cast<size_t>(n_series), std::vector<double>(static_cast<size_t>(columns), -1.0));
    std::vector<int64_t> column_step(static_cast<size_t>(columns));
    for (int c = 0; c < columns; ++c) {
        const int64_t st = columns > 1 ? c * (S - 1) / (columns - 1) : 0;
        column_step[static_cast<size_t>(c)] = st;
        for (int i = 0; i < n_series; ++i) {
            const double v =
                per_head ? model.budget(st, ctx.state.layer, i) : layer_budget(model, st, i).mean;
            series[static_cast<size_t>(i)][static_cast<size_t>(c)] = v;
            y_max = std::max(y_max, v);
        }
    }
    y_max *= 1.08;

    Canvas canvas = ctx.canvas();
    canvas.rect(bars_.min, bars_.max, theme.panel);
    canvas.rect(lines_.min, lines_.max, theme.panel);
    draw_y_axis(canvas, theme, bars_, 0.0, y_max, "tokens per cache head");
    draw_y_axis(canvas, theme, lines_, 0.0, y_max,
                per_head ? "per head of the layer" : "per layer");
    draw_x_axis(canvas, theme, lines_, 0.0, static_cast<double>(S - 1), "step");
    canvas.text(ImVec2(bars_.max.x - ImGui::CalcTextSize("layer").x, bars_.max.y + 6 + font),
                theme.text_dim, "layer");

    // Bars at the current step.
    const float slot = bars_.width() / static_cast<float>(std::max(L, 1));
    auto y_of = [&](const PlotRect& r, double v) {
        return r.max.y - static_cast<float>(v / y_max) * r.height();
    };
    for (int32_t l = 0; l < L; ++l) {
        const LayerBudget& b = now[static_cast<size_t>(l)];
        const float x0 = bars_.min.x + slot * static_cast<float>(l) + slot * 0.15f;
        const float x1 = bars_.min.x + slot * static_cast<float>(l + 1) - slot * 0.15f;
        const float xm = (x0 + x1) * 0.5f;
        bar_rects_[static_cast<size_t>(l)] = PlotRect{
            ImVec2(x0, b.mean >= 0 ? y_of(bars_, b.mean) : bars_.max.y), ImVec2(x1, bars_.max.y)};
        if (b.mean < 0) continue;
        canvas.rect(ImVec2(x0, y_of(bars_, b.mean)), ImVec2(x1, bars_.max.y),
                    series_colour(theme, l, L));
        if (b.max > b.min) {
            canvas.line(ImVec2(xm, y_of(bars_, b.min)), ImVec2(xm, y_of(bars_, b.max)), theme.text,
                        1.0f);
        }
        // Tokens actually held (mean over the loaded heads).
        double held = 0.0;
        int n = 0;
        for (int32_t h = 0; h < s.n_heads; ++h) {
            // Counts only: every head of every layer, never their histories (issue 18).
            if (const auto c = model.head_counts(l, h, step, Load::kLater)) {
                held += static_cast<double>(c->held);
                ++n;
            }
        }
        if (n > 0) {
            const float y = y_of(bars_, held / n);
            canvas.line(ImVec2(x0 - 2, y), ImVec2(x1 + 2, y), theme.text, 2.0f);
        }
        if (l == ctx.state.layer) {
            canvas.rect_outline(ImVec2(x0 - 2, y_of(bars_, b.mean) - 2),
                                ImVec2(x1 + 2, bars_.max.y), theme.selection, 2.0f);
        }
        if (slot >= ImGui::CalcTextSize("00").x + 2 || l % 4 == 0) {
            canvas.text_centred(ImVec2(xm, bars_.max.y + 4 + font * 0.5f), theme.text_dim,
                                std::to_string(l));
        }
    }

    // Lines over steps.
    std::vector<ImVec2> points;
    for (int i = 0; i < n_series; ++i) {
        const bool selected = per_head ? i == ctx.state.head : i == ctx.state.layer;
        points.clear();
        for (int c = 0; c < columns; ++c) {
            const double v = series[static_cast<size_t>(i)][static_cast<size_t>(c)];
            if (v < 0) continue;
            const float x = columns > 1 ? lines_.min.x + lines_.width() * static_cast<float>(c) /
                                                             static_cast<float>(columns - 1)
                                        : (lines_.min.x + lines_.max.x) * 0.5f;
            points.emplace_back(x, y_of(lines_, v));
        }
        const ImU32 colour = series_colour(theme, i, n_series);
        if (points.size() == 1) {
            canvas.circle(points[0], selected ? 4.0f : 2.5f, colour);
        } else if (points.size() > 1) {
            canvas.polyline(points.data(), static_cast<int>(points.size()), colour,
                            selected ? 3.0f : 1.3f);
        }
    }
    const float step_x =
        S > 1 ? lines_.min.x + lines_.width() * static_cast<float>(step) / static_cast<float>(S - 1)
              : (lines_.min.x + lines_.max.x) * 0.5f;
    canvas.line(ImVec2(step_x, lines_.min.y), ImVec2(step_x, lines_.max.y),
                with_alpha(theme.step_marker, 0.85f), 1.5f);

    // Interaction: bars select a layer; the line plot sets the step.
    ImGui::SetCursorScreenPos(bars_.min);
    ImGui::InvisibleButton("##bars", ImVec2(bars_.width(), bars_.height()));
    if (ImGui::IsItemHovered()) {
        const int32_t l = std::clamp(
            static_cast<int32_t>((ImGui::GetIO().MousePos.x - bars_.min.x) / slot), 0, L - 1);
        const LayerBudget& b = now[static_cast<size_t>(l)];
        ImGui::BeginTooltip();
        ImGui::Text("layer %d after step %lld", l, static_cast<long long>(step));
        if (b.mean >= 0) {
            ImGui::Text("budget mean %.1f, min %d, max %d tokens", b.mean, b.min, b.max);
        }
        ImGui::EndTooltip();
        if (ImGui::IsMouseClicked(ImGuiMouseButton_Left)) ctx.state.select_layer(l);
    }
    ImGui::SetCursorScreenPos(lines_.min);
    ImGui::InvisibleButton("##lines", ImVec2(lines_.width(), lines_.height()));
    if (ImGui::IsItemHovered() && S > 1) {
        const float fx = (ImGui::GetIO().MousePos.x - lines_.min.x) / lines_.width();
        const int64_t st =
            std::clamp<int64_t>(std::llround(fx * static_cast<float>(S - 1)), 0, S - 1);
        ImGui::SetTooltip("step %lld (click to go there)", static_cast<long long>(st));
        if (ImGui::IsMouseClicked(ImGuiMouseButton_Left)) ctx.state.set_step(st);
    }
}

}  // namespace kvscope::views
