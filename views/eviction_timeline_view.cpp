#include "views/eviction_timeline_view.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>
#include <vector>

#include "views/text_fit.h"

namespace kvscope::views {

namespace {

// Accumulated classes of a raster cell.
enum Cls { kFull = 0, kLow, kDemoted, kMerged, kEvicted, kNumCls };

int cls_of(const CacheChange& c) {
    switch (c.state) {
        case TokenCacheState::kHeld:
            return c.bits < 16 ? kLow : kFull;
        case TokenCacheState::kQuantized:
            return kLow;
        case TokenCacheState::kDemoted:
            return kDemoted;
        case TokenCacheState::kMerged:
            return kMerged;
        case TokenCacheState::kEvicted:
            return kEvicted;
        case TokenCacheState::kAbsent:
            break;
    }
    return -1;
}

using Intervals = std::vector<std::pair<int64_t, int64_t>>;

// Step ranges [first, last) during which `token` holds a slot, cut at `end_step`.
void held_intervals(const HeadHistory& h, int64_t token, int64_t end_step, Intervals& out) {
    out.clear();
    for (int32_t i = h.first_change(token); i >= 0;) {
        const CacheChange& c = h.change(i);
        const int32_t next = c.next;
        const int64_t end = std::min<int64_t>(next >= 0 ? h.change(next).step : end_step, end_step);
        if (is_held(c.state) && end > c.step) {
            if (!out.empty() && out.back().second == c.step) {
                out.back().second = end;
            } else {
                out.emplace_back(c.step, end);
            }
        }
        i = next;
    }
}

// Calls emit(first, last) for every range of `a` not covered by `b` (both sorted, disjoint).
template <typename Emit>
void subtract_intervals(const Intervals& a, const Intervals& b, Emit&& emit) {
    for (const auto& [a0, a1] : a) {
        int64_t cur = a0;
        for (const auto& [b0, b1] : b) {
            if (b1 <= cur) continue;
            if (b0 >= a1) break;
            if (b0 > cur) emit(cur, b0);
            cur = std::max(cur, b1);
            if (cur >= a1) break;
        }
        if (cur < a1) emit(cur, a1);
    }
}

}  // namespace

void EvictionTimelineView::reset() {
    axis_ = TokenAxis();
    key_ = Key();
    diff_cache_.reset();
    shown_diff_.reset();
}

ImVec2 EvictionTimelineView::point_of(int64_t token, int64_t step) const {
    const float x = axis_.to_x(plot_, static_cast<double>(token) + 0.5);
    const float y = plot_.min.y + (static_cast<float>(step) + 0.5f) /
                                      static_cast<float>(std::max<int64_t>(steps_, 1)) *
                                      plot_.height();
    return ImVec2(x, y);
}

void EvictionTimelineView::rebuild(const ViewContext& ctx, const HeadSet& heads,
                                   const HeadSet& heads_b, int width, int rows) {
    const Theme& theme = ctx.theme;
    raster_.resize(width, rows);
    // Row r shows the state after step row_step_[r] (the last step of the rows's range).
    row_step_.resize(static_cast<size_t>(rows));
    for (int r = 0; r < rows; ++r) {
        row_step_[static_cast<size_t>(r)] = (static_cast<int64_t>(r) + 1) * steps_ / rows - 1;
    }
    auto first_row_at_or_after = [&](int64_t step) {
        return static_cast<int>(std::lower_bound(row_step_.begin(), row_step_.end(), step) -
                                row_step_.begin());
    };
    int loaded = 0;
    for (const auto& h : heads) loaded += h ? 1 : 0;

    const std::array<ImU32, kNumCls> colours = {theme.held, theme.held, theme.demoted, theme.merged,
                                                theme.evicted};
    std::vector<std::array<float, kNumCls>> diff(static_cast<size_t>(rows) + 1);
    std::vector<float> bits_diff(static_cast<size_t>(rows) + 1);
    const int64_t n_tokens = ctx.model.summary().n_tokens;
    // Diff overlay: per row, the share of the cell's (token, head) pairs held only in A / only in
    // B, over the steps both traces have.
    const bool diff_on = !heads_b.empty();
    const int64_t diff_steps =
        diff_on ? std::min(steps_, std::max<int64_t>(ctx.compare->summary().n_steps, 1)) : 0;
    int pairs = 0;
    for (size_t h = 0; h < heads.size() && h < heads_b.size(); ++h) {
        pairs += heads[h] && heads_b[h] ? 1 : 0;
    }
    std::vector<std::array<float, 2>> only_diff(diff_on ? static_cast<size_t>(rows) + 1 : 0);
    Intervals held_a;
    Intervals held_b;
    for (int x = 0; x < width; ++x) {
        const auto [t0, t1] = axis_.column_tokens(x, width, n_tokens);
        if (t1 <= t0 || loaded == 0) {
            for (int r = 0; r < rows; ++r) {
                raster_.row(r)[x] = loaded == 0 && t1 > t0 ? theme.missing : theme.panel;
            }
            continue;
        }
        std::fill(diff.begin(), diff.end(), std::array<float, kNumCls>{});
        std::fill(bits_diff.begin(), bits_diff.end(), 0.0f);
        std::fill(only_diff.begin(), only_diff.end(), std::array<float, 2>{});
        const float weight = 1.0f / static_cast<float>((t1 - t0) * loaded);
        if (diff_on && pairs > 0) {
            const float pair_weight = 1.0f / static_cast<float>((t1 - t0) * pairs);
            for (size_t h = 0; h < heads.size() && h < heads_b.size(); ++h) {
                if (!heads[h] || !heads_b[h]) continue;
                for (int64_t t = t0; t < t1; ++t) {
                    held_intervals(*heads[h], t, diff_steps, held_a);
                    held_intervals(*heads_b[h], t, diff_steps, held_b);
                    auto add = [&](size_t k, int64_t first, int64_t last) {
                        const int ra = first_row_at_or_after(first);
                        const int rb = first_row_at_or_after(last);
                        if (rb <= ra) return;
                        only_diff[static_cast<size_t>(ra)][k] += pair_weight;
                        only_diff[static_cast<size_t>(rb)][k] -= pair_weight;
                    };
                    subtract_intervals(held_a, held_b,
                                       [&](int64_t first, int64_t last) { add(0, first, last); });
                    subtract_intervals(held_b, held_a,
                                       [&](int64_t first, int64_t last) { add(1, first, last); });
                }
            }
        }
        for (const auto& history : heads) {
            if (!history) continue;
            for (int64_t t = t0; t < t1; ++t) {
                for (int32_t i = history->first_change(t); i >= 0;) {
                    const CacheChange& c = history->change(i);
                    const int32_t next = c.next;
                    const int64_t end = next >= 0 ? history->change(next).step : steps_;
                    const int cls = cls_of(c);
                    if (cls >= 0 && end > c.step) {
                        const int ra = first_row_at_or_after(c.step);
                        const int rb = first_row_at_or_after(end);
                        if (rb > ra) {
                            diff[static_cast<size_t>(ra)][static_cast<size_t>(cls)] += weight;
                            diff[static_cast<size_t>(rb)][static_cast<size_t>(cls)] -= weight;
                            if (cls == kLow) {
                                bits_diff[static_cast<size_t>(ra)] += weight * c.bits;
                                bits_diff[static_cast<size_t>(rb)] -= weight * c.bits;
                            }
                        }
                    }
                    i = next;
                }
            }
        }
        std::array<float, kNumCls> acc{};
        float bits_acc = 0.0f;
        std::array<float, 2> only_acc{};
        for (int r = 0; r < rows; ++r) {
            float covered = 0.0f;
            float rgb[3] = {0, 0, 0};
            for (int k = 0; k < kNumCls; ++k) {
                acc[static_cast<size_t>(k)] += diff[static_cast<size_t>(r)][static_cast<size_t>(k)];
            }
            bits_acc += bits_diff[static_cast<size_t>(r)];
            for (int k = 0; k < kNumCls; ++k) {
                const float w = std::max(acc[static_cast<size_t>(k)], 0.0f);
                if (w <= 1e-6f) continue;
                ImU32 c = colours[static_cast<size_t>(k)];
                if (k == kLow) c = theme.bits_color(static_cast<int>(std::lround(bits_acc / w)));
                rgb[0] += w * static_cast<float>((c >> IM_COL32_R_SHIFT) & 0xFF);
                rgb[1] += w * static_cast<float>((c >> IM_COL32_G_SHIFT) & 0xFF);
                rgb[2] += w * static_cast<float>((c >> IM_COL32_B_SHIFT) & 0xFF);
                covered += w;
            }
            const float rest = std::max(0.0f, 1.0f - covered);
            rgb[0] += rest * static_cast<float>((theme.panel >> IM_COL32_R_SHIFT) & 0xFF);
            rgb[1] += rest * static_cast<float>((theme.panel >> IM_COL32_G_SHIFT) & 0xFF);
            rgb[2] += rest * static_cast<float>((theme.panel >> IM_COL32_B_SHIFT) & 0xFF);
            const float norm = covered + rest;
            ImU32 cell = IM_COL32(static_cast<int>(std::lround(rgb[0] / norm)),
                                  static_cast<int>(std::lround(rgb[1] / norm)),
                                  static_cast<int>(std::lround(rgb[2] / norm)), 255);
            if (diff_on) {
                // The states dimmed (as the token strip's overlay does), then the diff shares
                // blended in: a cell whose pairs all differ one way shows the pure diff colour.
                only_acc[0] += only_diff[static_cast<size_t>(r)][0];
                only_acc[1] += only_diff[static_cast<size_t>(r)][1];
                const float wa = std::clamp(only_acc[0], 0.0f, 1.0f);
                const float wb = std::clamp(only_acc[1], 0.0f, 1.0f - wa);
                cell = mix(theme.panel, cell, 0.35f);
                if (wa + wb > 1e-6f) {
                    cell = mix(cell, mix(theme.only_a, theme.only_b, wb / (wa + wb)), wa + wb);
                }
            }
            raster_.row(r)[x] = cell;
        }
    }
    raster_.mark_dirty();
}

void EvictionTimelineView::draw(ViewContext& ctx) {
    const TraceModel& model = ctx.model;
    const TraceSummary& s = model.summary();
    const Theme& theme = ctx.theme;
    steps_ = std::max<int64_t>(s.n_steps, 1);
    axis_.set_extent(static_cast<double>(std::max<int64_t>(s.n_tokens, 1)));

    layer_head_selector(ctx, true);
    ImGui::SameLine();
    if (ImGui::Button("Fit")) axis_.zoom_to(0, axis_.extent());
    ImGui::SameLine();
    fitted_textf(0, "tokens %s-%s of %lld  ·  wheel: zoom, drag: pan",
                 format_number(std::floor(axis_.lo())).c_str(),
                 format_number(std::ceil(axis_.hi())).c_str(), static_cast<long long>(s.n_tokens));
    draw_state_legend(ctx, true);
    shown_diff_.reset();
    HeadSet heads_b;
    if (diff_toggle(ctx)) {
        ImGui::SameLine(0, 12);
        const Load load = ctx.state.head < 0 ? Load::kLater : Load::kNow;
        heads_b = compare_heads(*ctx.compare, ctx.state.layer, ctx.state.head, load);
        shown_diff_ = diff_cache_.get(compare_heads(model, ctx.state.layer, ctx.state.head, load),
                                      heads_b, ctx.state.layer, ctx.state.head, ctx.state.step,
                                      std::max(s.n_tokens, ctx.compare->summary().n_tokens));
        draw_diff_legend(ctx, *shown_diff_);
    }

    const ImVec2 avail = ImGui::GetContentRegionAvail();
    const ImVec2 origin = ImGui::GetCursorScreenPos();
    const float left = ImGui::CalcTextSize("00000").x + 10.0f;
    const float bottom = ImGui::GetFontSize() * 2.0f + 10.0f;
    plot_ = PlotRect{ImVec2(origin.x + left, origin.y + 8),
                     ImVec2(origin.x + avail.x - 8, origin.y + avail.y - bottom)}
                .snapped();
    if (plot_.width() < 16 || plot_.height() < 16) return;

    const HeadSet heads = ctx.state.head < 0
                              ? layer_heads(model, ctx.state.layer, Load::kLater)
                              : HeadSet{model.history(ctx.state.layer, ctx.state.head, Load::kNow)};
    Key key;
    key.layer = ctx.state.layer;
    key.head = ctx.state.head;
    key.lo = axis_.lo();
    key.hi = axis_.hi();
    key.width = std::clamp(static_cast<int>(plot_.width()), 1, 4096);
    key.rows = static_cast<int>(std::min<int64_t>(steps_, static_cast<int64_t>(plot_.height())));
    key.steps = steps_;
    for (const auto& h : heads) key.loaded += h ? 1 : 0;
    key.theme = theme.kind;
    if (!heads_b.empty()) {
        key.compare = ctx.compare;
        for (const auto& h : heads_b) key.loaded_b += h ? 1 : 0;
        key.steps_b = ctx.compare->summary().n_steps;
    }
    if (!(key == key_)) {
        key_ = key;
        rebuild(ctx, heads, heads_b, key.width, key.rows);
    }

    Canvas canvas = ctx.canvas();
    canvas.rect(plot_.min, plot_.max, theme.panel);
    raster_.draw(canvas, ctx.textures, plot_.min, plot_.max);
    draw_x_axis(canvas, theme, plot_, axis_.lo(), axis_.hi(), "token position");
    // Row r covers steps [r, r+1) scaled; ticks mark step starts, step 0 at the top.
    draw_y_axis(canvas, theme, plot_, 0.0, static_cast<double>(steps_), "", true);
    canvas.text(ImVec2(origin.x, plot_.max.y + 6 + ImGui::GetFontSize()), theme.text_dim, "step");

    canvas.push_clip(plot_.min, plot_.max);
    const float step_y = point_of(0, ctx.state.step).y;
    canvas.line(ImVec2(plot_.min.x, step_y), ImVec2(plot_.max.x, step_y),
                with_alpha(theme.step_marker, 0.85f), 1.5f);
    if (s.n_prompt_tokens > axis_.lo() && s.n_prompt_tokens < axis_.hi()) {
        const float x = axis_.to_x(plot_, static_cast<double>(s.n_prompt_tokens));
        canvas.line(ImVec2(x, plot_.min.y), ImVec2(x, plot_.max.y), with_alpha(theme.text, 0.35f));
    }
    for (const trace::MarkedSpan& span : model.spans()) {
        const float a = axis_.to_x(plot_, static_cast<double>(span.begin));
        const float b = std::max(axis_.to_x(plot_, static_cast<double>(span.end)), a + 2.0f);
        // Above the raster, not over step 0's row (thin when the dock is short).
        canvas.rect(ImVec2(a, plot_.min.y - 6), ImVec2(b, plot_.min.y - 1), theme.needle);
    }
    if (ctx.state.token >= 0) {
        draw_marker_x(canvas, axis_.to_x(plot_, static_cast<double>(ctx.state.token) + 0.5),
                      plot_.min.y, plot_.max.y, theme.selection);
    }
    if (ctx.state.hover_token >= 0) {
        const float x = axis_.to_x(plot_, static_cast<double>(ctx.state.hover_token) + 0.5);
        canvas.line(ImVec2(x, plot_.min.y), ImVec2(x, plot_.max.y), with_alpha(theme.hover, 0.5f));
    }
    canvas.pop_clip();
    if (key.loaded < static_cast<int>(heads.size())) {
        canvas.text(ImVec2(plot_.min.x + 6, plot_.min.y + 6), theme.text,
                    "loading " + std::to_string(heads.size() - static_cast<size_t>(key.loaded)) +
                        " heads...");
    }

    ImGui::SetCursorScreenPos(plot_.min);
    ImGui::InvisibleButton("##timeline", ImVec2(plot_.width(), plot_.height()));
    const bool hovered = ImGui::IsItemHovered();
    axis_.handle_input(plot_, hovered, ImGui::IsItemActive());
    int64_t hover_token = -1;
    if (hovered) {
        const ImVec2 m = ImGui::GetIO().MousePos;
        const int64_t t = static_cast<int64_t>(std::floor(axis_.to_token(plot_, m.x)));
        const int64_t step = std::clamp<int64_t>(
            static_cast<int64_t>((m.y - plot_.min.y) / plot_.height() * static_cast<float>(steps_)),
            0, steps_ - 1);
        if (t >= 0 && t < s.n_tokens) {
            hover_token = t;
            ImGui::BeginTooltip();
            ImGui::Text("token %lld \"%s\"  ·  after step %lld", static_cast<long long>(t),
                        display_piece(model.token_text(t)).c_str(), static_cast<long long>(step));
            if (ctx.state.head >= 0 && heads[0]) {
                const CacheChange c = heads[0]->state_at(t, step);
                ImGui::Text(
                    "layer %d head %d: %s%s", ctx.state.layer, ctx.state.head,
                    trace::token_cache_state_name(c.state),
                    is_held(c.state) ? (", " + std::to_string(c.bits) + " bits").c_str() : "");
            } else {
                const HeadsState hs = heads_state(heads, t, step);
                ImGui::Text("layer %d: %d kept, %d low precision, %d merged, %d evicted",
                            ctx.state.layer, hs.held, hs.quantized, hs.merged, hs.evicted);
            }
            ImGui::TextDisabled("click: select token and step; double-click: fit");
            ImGui::EndTooltip();
            if (ImGui::IsMouseClicked(ImGuiMouseButton_Left)) {
                ctx.state.select_token(t);
                ctx.state.set_step(step);
            }
        }
        if (ImGui::IsMouseDoubleClicked(ImGuiMouseButton_Left)) axis_.zoom_to(0, axis_.extent());
    }
    hover_.update(ctx.state, hover_token);
}

}  // namespace kvscope::views
