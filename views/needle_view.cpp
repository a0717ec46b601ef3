#include "views/needle_view.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

namespace kvscope::views {

namespace {

ImU32 survival_colour(const Theme& theme, float v) {
    if (std::isnan(v)) return theme.missing;
    return mix(theme.evicted, theme.held, std::clamp(v, 0.0f, 1.0f));
}

}  // namespace

void NeedleView::reset() {
    loss_span_ = -1;
    loss_steps_ = -1;
    mean_curve_.clear();
    min_curve_.clear();
}

PlotRect NeedleView::cell_rect(int32_t layer, int32_t head) const {
    const float cw = matrix_.width() / static_cast<float>(std::max(heads_, 1));
    const float ch = matrix_.height() / static_cast<float>(std::max(layers_, 1));
    const ImVec2 a(matrix_.min.x + cw * static_cast<float>(head),
                   matrix_.min.y + ch * static_cast<float>(layer));
    return PlotRect{a, ImVec2(a.x + cw, a.y + ch)};
}

const NeedleView::Loss& NeedleView::loss(const TraceModel& model, int32_t span) {
    const TraceSummary& s = model.summary();
    if (span == loss_span_ && s.n_steps == loss_steps_) return loss_;
    loss_span_ = span;
    loss_steps_ = s.n_steps;
    loss_ = Loss();
    mean_curve_.assign(static_cast<size_t>(s.n_steps), std::nanf(""));
    min_curve_.assign(static_cast<size_t>(s.n_steps), std::nanf(""));
    for (int64_t st = 0; st < s.n_steps; ++st) {
        double sum = 0.0;
        int n = 0;
        float lo = 1.0f;
        float hi = 0.0f;
        for (int32_t l = 0; l < s.n_layers; ++l) {
            for (int32_t h = 0; h < s.n_heads; ++h) {
                const float v = model.needle_survival(span, st, l, h);
                if (std::isnan(v)) continue;
                sum += v;
                ++n;
                lo = std::min(lo, v);
                hi = std::max(hi, v);
                if (loss_.step < 0 && v < 1.0f) {
                    loss_.step = st;
                    loss_.layer = l;
                    loss_.head = h;
                    loss_.survival = v;
                }
            }
        }
        if (n > 0) {
            mean_curve_[static_cast<size_t>(st)] = static_cast<float>(sum / n);
            min_curve_[static_cast<size_t>(st)] = lo;
            if (loss_.all_lost_step < 0 && hi <= 0.0f) loss_.all_lost_step = st;
        }
    }
    return loss_;
}

void NeedleView::draw(ViewContext& ctx) {
    const TraceModel& model = ctx.model;
    const TraceSummary& s = model.summary();
    const Theme& theme = ctx.theme;
    const auto& spans = model.spans();
    layers_ = s.n_layers;
    heads_ = s.n_heads;
    if (spans.empty()) {
        ImGui::TextWrapped(
            "This trace marks no spans. Needle-in-a-haystack runs (kvscope niah) mark the needle "
            "so "
            "this panel can show where it survived.");
        return;
    }
    const int32_t span =
        std::clamp<int32_t>(ctx.state.span, 0, static_cast<int32_t>(spans.size()) - 1);
    const trace::MarkedSpan& ms = spans[static_cast<size_t>(span)];
    ImGui::SetNextItemWidth(ImGui::GetFontSize() * 14);
    const std::string name =
        ms.label + " [" + std::to_string(ms.begin) + ", " + std::to_string(ms.end) + ")";
    if (ImGui::BeginCombo("##span", name.c_str())) {
        for (size_t i = 0; i < spans.size(); ++i) {
            const std::string n = spans[i].label + " [" + std::to_string(spans[i].begin) + ", " +
                                  std::to_string(spans[i].end) + ")";
            if (ImGui::Selectable(n.c_str(), static_cast<int32_t>(i) == span)) {
                ctx.state.select_span(static_cast<int32_t>(i));
            }
        }
        ImGui::EndCombo();
    }
    ImGui::SameLine();
    layer_head_selector(ctx, false);
    ImGui::SameLine();
    const int8_t found = model.answer_found(span);
    if (ms.expected_answer.empty()) {
        ImGui::TextDisabled("no expected answer");
    } else if (found == 1) {
        ImGui::TextColored(ImGui::ColorConvertU32ToFloat4(theme.held),
                           "answer RIGHT: output contains \"%s\"", ms.expected_answer.c_str());
    } else if (found == 0) {
        ImGui::TextColored(ImGui::ColorConvertU32ToFloat4(IM_COL32(226, 72, 58, 255)),
                           "answer WRONG: output lacks \"%s\"", ms.expected_answer.c_str());
    } else {
        ImGui::TextDisabled("answer not checked yet (\"%s\")", ms.expected_answer.c_str());
    }
    std::string text;
    for (int64_t t = ms.begin; t < ms.end && t < s.n_tokens; ++t) text += model.token_text(t);
    ImGui::TextDisabled("needle text:");
    ImGui::SameLine();
    ImGui::TextColored(ImGui::ColorConvertU32ToFloat4(theme.needle), "%s",
                       display_piece(text).c_str());

    const Loss& lost = loss(model, span);
    if (lost.step < 0) {
        ImGui::Text("Held whole in every layer and head through step %lld.",
                    static_cast<long long>(std::max<int64_t>(s.n_steps - 1, 0)));
    } else {
        ImGui::Text("First lost at step %lld in layer %d head %d (%.0f%% held there).",
                    static_cast<long long>(lost.step), lost.layer, lost.head,
                    static_cast<double>(lost.survival) * 100.0);
        if (lost.all_lost_step >= 0) {
            ImGui::SameLine();
            ImGui::Text("Gone from every head at step %lld.",
                        static_cast<long long>(lost.all_lost_step));
        }
    }

    const ImVec2 avail = ImGui::GetContentRegionAvail();
    const ImVec2 o = ImGui::GetCursorScreenPos();
    const float font = ImGui::GetFontSize();
    const float label_w = ImGui::CalcTextSize("L000").x + 6;
    const float mat_w = std::min(avail.x * 0.42f, static_cast<float>(heads_) * 48.0f + label_w);
    matrix_ =
        PlotRect{ImVec2(o.x + label_w, o.y + font + 8), ImVec2(o.x + mat_w, o.y + avail.y - 8)};
    curve_ =
        PlotRect{ImVec2(o.x + mat_w + 60, o.y + font + 8),
                 ImVec2(o.x + avail.x - 10, o.y + font + 8 + std::max(50.0f, avail.y * 0.38f))};
    if (matrix_.width() < 10 || matrix_.height() < 10) return;
    Canvas canvas = ctx.canvas();
    draw_matrix(ctx, canvas, span);
    if (curve_.width() > 40) {
        draw_curve(ctx, canvas, span);
        ImGui::SetCursorScreenPos(ImVec2(curve_.min.x - 50, curve_.max.y + font * 2 + 8));
        ImGui::BeginChild("##outscored", ImVec2(o.x + avail.x - (curve_.min.x - 50),
                                                o.y + avail.y - (curve_.max.y + font * 2 + 8)));
        draw_outscored(ctx, span);
        ImGui::EndChild();
    }
}

void NeedleView::draw_matrix(ViewContext& ctx, Canvas& canvas, int32_t span) {
    const Theme& theme = ctx.theme;
    const float font = ImGui::GetFontSize();
    const int64_t step = ctx.state.step;
    // The title must not run into the curve's title on its right (few heads: a narrow matrix).
    std::string title = "needle held after step " + std::to_string(step) + " (layer x head)";
    if (ImGui::CalcTextSize(title.c_str()).x > curve_.min.x - matrix_.min.x - 8.0f)
        title = "held, step " + std::to_string(step);
    canvas.text(ImVec2(matrix_.min.x, matrix_.min.y - font - 4), theme.text, title);
    const float ch = matrix_.height() / static_cast<float>(layers_);
    const float cw = matrix_.width() / static_cast<float>(heads_);
    const bool values = cw >= ImGui::CalcTextSize("100").x + 4 && ch >= font;
    const int label_every = ch >= font ? 1 : static_cast<int>(std::ceil(font / ch));
    for (int32_t l = 0; l < layers_; ++l) {
        for (int32_t h = 0; h < heads_; ++h) {
            const PlotRect r = cell_rect(l, h);
            const float v = ctx.model.needle_survival(span, step, l, h);
            canvas.rect(r.min, ImVec2(r.max.x - 1, r.max.y - 1), survival_colour(theme, v));
            if (values && !std::isnan(v)) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "%.0f", static_cast<double>(v) * 100.0);
                canvas.text_centred(ImVec2((r.min.x + r.max.x) * 0.5f, (r.min.y + r.max.y) * 0.5f),
                                    IM_COL32(245, 245, 245, 255), buf);
            }
        }
        if (l % label_every == 0 || l == ctx.state.layer) {
            const PlotRect r = cell_rect(l, 0);
            canvas.text(ImVec2(matrix_.min.x - ImGui::CalcTextSize("L000").x - 4,
                               r.min.y + (ch - font) * 0.5f),
                        l == ctx.state.layer ? theme.selection : theme.text_dim,
                        "L" + std::to_string(l));
        }
    }
    const PlotRect sel = cell_rect(ctx.state.layer, std::max(ctx.state.head, 0));
    canvas.rect_outline(ImVec2(sel.min.x - 1, sel.min.y - 1), sel.max, theme.selection, 2.0f);
    ImGui::SetCursorScreenPos(matrix_.min);
    ImGui::InvisibleButton("##survival", ImVec2(matrix_.width(), matrix_.height()));
    if (ImGui::IsItemHovered()) {
        const ImVec2 m = ImGui::GetIO().MousePos;
        const int32_t l =
            std::clamp(static_cast<int32_t>((m.y - matrix_.min.y) / ch), 0, layers_ - 1);
        const int32_t h =
            std::clamp(static_cast<int32_t>((m.x - matrix_.min.x) / cw), 0, heads_ - 1);
        // Step at which this (layer, head) first held less than the whole needle.
        int64_t first = -1;
        for (int64_t st = 0; st < ctx.model.summary().n_steps && first < 0; ++st) {
            if (ctx.model.needle_survival(span, st, l, h) < 1.0f) first = st;
        }
        ImGui::BeginTooltip();
        ImGui::Text("layer %d head %d: %.0f%% of the needle held after step %lld", l, h,
                    static_cast<double>(ctx.model.needle_survival(span, step, l, h)) * 100.0,
                    static_cast<long long>(step));
        if (first >= 0) {
            ImGui::Text("first lost at step %lld (double-click to go there)",
                        static_cast<long long>(first));
        } else {
            ImGui::Text("never lost");
        }
        ImGui::EndTooltip();
        if (ImGui::IsMouseClicked(ImGuiMouseButton_Left)) ctx.state.select_layer_head(l, h);
        if (ImGui::IsMouseDoubleClicked(ImGuiMouseButton_Left) && first >= 0)
            ctx.state.set_step(first);
    }
}

void NeedleView::draw_curve(ViewContext& ctx, Canvas& canvas, int32_t span) {
    const Theme& theme = ctx.theme;
    const int64_t S = std::max<int64_t>(ctx.model.summary().n_steps, 1);
    canvas.rect(curve_.min, curve_.max, theme.panel);
    draw_y_axis(canvas, theme, curve_, 0.0, 1.0, "needle held: mean, min, selected");
    draw_x_axis(canvas, theme, curve_, 0.0, static_cast<double>(S - 1), "step");
    const int columns =
        static_cast<int>(std::min<int64_t>(S, static_cast<int64_t>(curve_.width())));
    auto x_of = [&](int64_t st) {
        return S > 1 ? curve_.min.x +
                           curve_.width() * static_cast<float>(st) / static_cast<float>(S - 1)
                     : (curve_.min.x + curve_.max.x) * 0.5f;
    };
    auto y_of = [&](float v) { return curve_.max.y - std::clamp(v, 0.0f, 1.0f) * curve_.height(); };
    std::vector<ImVec2> mean_pts, min_pts, sel_pts;
    const int32_t head = std::max(ctx.state.head, 0);
    for (int c = 0; c < columns; ++c) {
        const int64_t st = columns > 1 ? c * (S - 1) / (columns - 1) : 0;
        const float mean =
            mean_curve_.empty() ? std::nanf("") : mean_curve_[static_cast<size_t>(st)];
        const float lo = min_curve_.empty() ? std::nanf("") : min_curve_[static_cast<size_t>(st)];
        const float sel = ctx.model.needle_survival(span, st, ctx.state.layer, head);
        if (!std::isnan(mean)) mean_pts.emplace_back(x_of(st), y_of(mean));
        if (!std::isnan(lo)) min_pts.emplace_back(x_of(st), y_of(lo));
        if (!std::isnan(sel)) sel_pts.emplace_back(x_of(st), y_of(sel));
    }
    auto plot = [&](const std::vector<ImVec2>& pts, ImU32 colour, float thickness) {
        if (pts.size() == 1) canvas.circle(pts[0], 3.0f, colour);
        if (pts.size() > 1)
            canvas.polyline(pts.data(), static_cast<int>(pts.size()), colour, thickness);
    };
    plot(min_pts, theme.bits_color(2), 1.5f);
    plot(mean_pts, theme.held, 2.0f);
    plot(sel_pts, theme.selection, 1.5f);
    const float sx = x_of(ctx.state.step);
    canvas.line(ImVec2(sx, curve_.min.y), ImVec2(sx, curve_.max.y),
                with_alpha(theme.step_marker, 0.8f), 1.5f);
    ImGui::SetCursorScreenPos(curve_.min);
    ImGui::InvisibleButton("##curve", ImVec2(curve_.width(), curve_.height()));
    if (ImGui::IsItemHovered() && S > 1) {
        const float fx = (ImGui::GetIO().MousePos.x - curve_.min.x) / curve_.width();
        const int64_t st =
            std::clamp<int64_t>(std::llround(fx * static_cast<float>(S - 1)), 0, S - 1);
        ImGui::SetTooltip("step %lld: mean %.2f, min %.2f (click to go there)",
                          static_cast<long long>(st),
                          static_cast<double>(mean_curve_[static_cast<size_t>(st)]),
                          static_cast<double>(min_curve_[static_cast<size_t>(st)]));
        if (ImGui::IsMouseClicked(ImGuiMouseButton_Left)) ctx.state.set_step(st);
    }
}

void NeedleView::draw_outscored(ViewContext& ctx, int32_t span) {
    const TraceModel& model = ctx.model;
    const trace::MarkedSpan& ms = model.spans()[static_cast<size_t>(span)];
    const int32_t layer = ctx.state.layer;
    const int32_t head = std::max(ctx.state.head, 0);
    const int64_t step = ctx.state.step;
    const auto attn = model.attn_received(layer, head);
    const auto history = model.history(layer, head, Load::kNow);
    if (!attn || attn->empty() || !history) return;
    const int64_t P = std::ssize(*attn);
    double needle_score = 0.0;
    int n_needle = 0;
    for (int64_t t = ms.begin; t < ms.end && t < P; ++t) {
        if (std::isfinite((*attn)[static_cast<size_t>(t)])) {
            needle_score += (*attn)[static_cast<size_t>(t)];
            ++n_needle;
        }
    }
    if (n_needle > 0) needle_score /= n_needle;
    // Held prompt tokens outside the needle, by attention received.
    std::vector<int64_t> held;
    for (int64_t t = 0; t < P; ++t) {
        if ((t < ms.begin || t >= ms.end) && is_held(history->state_at(t, step).state) &&
            std::isfinite((*attn)[static_cast<size_t>(t)])) {
            held.push_back(t);
        }
    }
    const size_t top = std::min<size_t>(held.size(), 6);
    std::partial_sort(held.begin(), held.begin() + static_cast<std::ptrdiff_t>(top), held.end(),
                      [&](int64_t a, int64_t b) {
                          return (*attn)[static_cast<size_t>(a)] > (*attn)[static_cast<size_t>(b)];
                      });
    size_t above = 0;
    for (int64_t t : held) above += (*attn)[static_cast<size_t>(t)] > needle_score ? 1 : 0;
    ImGui::Text("What outscored it in layer %d head %d (prefill attention received):", layer, head);
    ImGui::TextDisabled("needle mean %.4g; %zu of %zu held prompt tokens score higher",
                        needle_score, above, held.size());
    for (size_t i = 0; i < top; ++i) {
        const int64_t t = held[i];
        ImGui::PushID(static_cast<int>(i));
        char label[160];
        std::snprintf(label, sizeof label, "%6lld  %-16s  %.4g", static_cast<long long>(t),
                      display_piece(model.token_text(t)).c_str(),
                      static_cast<double>((*attn)[static_cast<size_t>(t)]));
        if (ImGui::Selectable(label, ctx.state.token == t)) ctx.state.select_token(t);
        ImGui::PopID();
    }
}

}  // namespace kvscope::views
