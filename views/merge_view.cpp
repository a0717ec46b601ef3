#include "views/merge_view.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "views/text_fit.h"

namespace kvscope::views {

void MergeView::reset() {
    axis_ = TokenAxis();
    layer_ = head_ = -1;
    history_steps_ = -1;
    merges_.clear();
    by_weight_.clear();
}

void MergeView::collect(const HeadHistory& h) {
    merges_.clear();
    max_weight_ = 0.0f;
    for (int64_t t = 0; t < h.tokens(); ++t) {
        for (int32_t i = h.first_change(t); i >= 0; i = h.change(i).next) {
            const CacheChange& c = h.change(i);
            if (c.state != TokenCacheState::kMerged) continue;
            const float w = std::isfinite(c.weight) ? c.weight : 1.0f;
            merges_.push_back({c.step, static_cast<int32_t>(t), c.into, w});
            max_weight_ = std::max(max_weight_, w);
        }
    }
    if (max_weight_ <= 0.0f) max_weight_ = 1.0f;
    std::stable_sort(merges_.begin(), merges_.end(),
                     [](const Merge& a, const Merge& b) { return a.step < b.step; });
    by_weight_.resize(merges_.size());
    std::iota(by_weight_.begin(), by_weight_.end(), 0u);
    std::stable_sort(by_weight_.begin(), by_weight_.end(),
                     [&](uint32_t a, uint32_t b) { return merges_[a].weight > merges_[b].weight; });
}

void MergeView::draw(ViewContext& ctx) {
    const TraceModel& model = ctx.model;
    const TraceSummary& s = model.summary();
    const Theme& theme = ctx.theme;
    const int64_t step = ctx.state.step;
    axis_.set_extent(static_cast<double>(std::max<int64_t>(s.n_tokens, 1)));

    layer_head_selector(ctx, false);
    const int32_t head = std::max(ctx.state.head, 0);
    const auto history = model.history(ctx.state.layer, head, Load::kNow);
    if (!history) {
        ImGui::TextDisabled("No cache history for this layer and head.");
        return;
    }
    if (ctx.state.layer != layer_ || head != head_ || history->steps() != history_steps_) {
        layer_ = ctx.state.layer;
        head_ = head;
        history_steps_ = history->steps();
        collect(*history);
    }
    const auto upto = std::upper_bound(merges_.begin(), merges_.end(), step,
                                       [](int64_t st, const Merge& m) { return st < m.step; });
    const size_t shown = static_cast<size_t>(upto - merges_.begin());
    ImGui::SameLine();
    if (ImGui::Button("Fit")) axis_.zoom_to(0, axis_.extent());
    ImGui::SameLine();
    fitted_textf(0, "%zu merges up to step %lld (%zu in the run)%s", shown,
                 static_cast<long long>(step), merges_.size(),
                 ctx.state.head < 0 ? "  ·  head 0: pick a head" : "");
    if (merges_.empty()) {
        ImGui::TextWrapped(
            "No merges in layer %d head %d. Merging policies (D2O, DMC) fold evicted tokens into "
            "kept ones; policy of this trace: %s.",
            ctx.state.layer, head, s.policy.c_str());
        return;
    }

    const ImVec2 avail = ImGui::GetContentRegionAvail();
    const ImVec2 o = ImGui::GetCursorScreenPos();
    const float font = ImGui::GetFontSize();
    const float table_h = std::clamp(avail.y * 0.32f, font * 4.0f, font * 14.0f);
    plot_ = PlotRect{ImVec2(o.x + 8, o.y + 4),
                     ImVec2(o.x + avail.x - 8, o.y + avail.y - table_h - font * 2.9f)};
    if (plot_.width() < 20 || plot_.height() < 30) return;
    baseline_ = plot_.max.y - font - 6;

    Canvas canvas = ctx.canvas();
    canvas.rect(plot_.min, plot_.max, theme.panel);
    canvas.line(ImVec2(plot_.min.x, baseline_), ImVec2(plot_.max.x, baseline_), theme.grid);
    draw_x_axis(canvas, theme, plot_, axis_.lo(), axis_.hi(), "token position");

    canvas.push_clip(plot_.min, plot_.max);
    // Token boxes along the baseline when zoomed in far enough to tell tokens apart.
    const float px_per_token = plot_.width() / static_cast<float>(axis_.hi() - axis_.lo());
    if (px_per_token >= 4.0f) {
        const int64_t t0 = std::max<int64_t>(0, static_cast<int64_t>(axis_.lo()));
        const int64_t t1 =
            std::min<int64_t>(s.n_tokens, static_cast<int64_t>(std::ceil(axis_.hi())));
        for (int64_t t = t0; t < t1; ++t) {
            const float x0 = axis_.to_x(plot_, static_cast<double>(t));
            const float x1 = axis_.to_x(plot_, static_cast<double>(t + 1));
            const ImU32 c = theme.state_color(history->state_at(t, step));
            canvas.rect(ImVec2(x0 + 0.5f, baseline_ + 1),
                        ImVec2(x1 - 0.5f, baseline_ + font * 0.6f), c);
        }
    }
    // Arcs (heaviest first, only those reaching into the visible range).
    const float max_h = baseline_ - plot_.min.y - 6;
    size_t drawn = 0;
    for (uint32_t idx : by_weight_) {
        const Merge& m = merges_[idx];
        if (m.step > step || m.target < 0) continue;
        const double a = std::min(m.source, m.target);
        const double b = std::max(m.source, m.target) + 1.0;
        if (b < axis_.lo() || a > axis_.hi()) continue;
        if (++drawn > kMaxArcs) break;
        const float xs = axis_.to_x(plot_, m.source + 0.5);
        const float xt = axis_.to_x(plot_, m.target + 0.5);
        const float h = std::min(max_h, std::abs(xt - xs) * 0.6f + 8.0f);
        const float wn = std::clamp(m.weight / max_weight_, 0.0f, 1.0f);
        const bool linked = m.source == ctx.state.token || m.target == ctx.state.token;
        const bool hovered = m.source == ctx.state.hover_token || m.target == ctx.state.hover_token;
        const ImU32 colour = linked    ? theme.selection
                             : hovered ? theme.hover
                                       : with_alpha(theme.merged, 0.3f + 0.7f * wn);
        canvas.bezier(ImVec2(xs, baseline_), ImVec2(xs, baseline_ - h), ImVec2(xt, baseline_ - h),
                      ImVec2(xt, baseline_), colour, linked ? 2.5f : 1.0f + 1.5f * wn);
        canvas.circle(ImVec2(xt, baseline_), 2.5f, theme.held);
    }
    canvas.pop_clip();

    ImGui::SetCursorScreenPos(plot_.min);
    ImGui::InvisibleButton("##arcs", ImVec2(plot_.width(), plot_.height()));
    const bool hovered = ImGui::IsItemHovered();
    axis_.handle_input(plot_, hovered, ImGui::IsItemActive());
    int64_t hover_token = -1;
    if (hovered) {
        const int64_t t =
            static_cast<int64_t>(std::floor(axis_.to_token(plot_, ImGui::GetIO().MousePos.x)));
        if (t >= 0 && t < s.n_tokens) {
            hover_token = t;
            token_fate_tooltip(ctx, t);
            if (ImGui::IsMouseClicked(ImGuiMouseButton_Left)) ctx.state.select_token(t);
        }
        if (ImGui::IsMouseDoubleClicked(ImGuiMouseButton_Left)) axis_.zoom_to(0, axis_.extent());
    }
    hover_.update(ctx.state, hover_token);

    // Table of merges up to the current step.
    // Below the axis' tick labels and title (two text lines).
    ImGui::SetCursorScreenPos(ImVec2(o.x, plot_.max.y + font * 2.6f));
    const ImGuiTableFlags flags = ImGuiTableFlags_ScrollY | ImGuiTableFlags_RowBg |
                                  ImGuiTableFlags_BordersInnerV | ImGuiTableFlags_SizingStretchProp;
    if (ImGui::BeginTable("##merges", 4, flags, ImVec2(avail.x, table_h))) {
        ImGui::TableSetupScrollFreeze(0, 1);
        ImGui::TableSetupColumn("step", ImGuiTableColumnFlags_WidthFixed, font * 4);
        // Explicit equal weights: proportional sizing from the first frame's (empty) content
        // squashed these to one character.
        ImGui::TableSetupColumn("merged token", ImGuiTableColumnFlags_WidthStretch, 1.0f);
        ImGui::TableSetupColumn("into", ImGuiTableColumnFlags_WidthStretch, 1.0f);
        ImGui::TableSetupColumn("weight", ImGuiTableColumnFlags_WidthFixed, font * 5);
        ImGui::TableHeadersRow();
        ImGuiListClipper clipper;
        clipper.Begin(static_cast<int>(shown));
        while (clipper.Step()) {
            for (int r = clipper.DisplayStart; r < clipper.DisplayEnd; ++r) {
                const Merge& m = merges_[static_cast<size_t>(r)];
                ImGui::TableNextRow();
                ImGui::TableNextColumn();
                ImGui::PushID(r);
                const bool selected = m.source == ctx.state.token;
                if (ImGui::Selectable(std::to_string(m.step).c_str(), selected,
                                      ImGuiSelectableFlags_SpanAllColumns)) {
                    ctx.state.select_token(m.source);
                    const double span = axis_.hi() - axis_.lo();
                    if (m.source < axis_.lo() || m.source > axis_.hi()) {
                        axis_.zoom_to(m.source - span / 2, m.source + span / 2);
                    }
                }
                ImGui::PopID();
                ImGui::TableNextColumn();
                ImGui::Text("%d \"%s\"", m.source,
                            display_piece(model.token_text(m.source)).c_str());
                ImGui::TableNextColumn();
                if (m.target >= 0) {
                    ImGui::Text("%d \"%s\"", m.target,
                                display_piece(model.token_text(m.target)).c_str());
                } else {
                    ImGui::TextDisabled("unknown");
                }
                ImGui::TableNextColumn();
                ImGui::Text("%.3f", static_cast<double>(m.weight));
            }
        }
        ImGui::EndTable();
    }
}

}  // namespace kvscope::views
