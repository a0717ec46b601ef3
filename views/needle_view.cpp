#include "views/needle_view.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "views/plot_legend.h"
#include "views/text_fit.h"

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
    // The verdict is the line a class reads first: it wraps rather than being cut off.
    if (ms.expected_answer.empty()) {
        fitted_text("no expected answer");
    } else if (found == 1) {
        fitted_textf(theme.held, "answer RIGHT: output contains \"%s\"",
                     ms.expected_answer.c_str());
    } else if (found == 0) {
        fitted_textf(IM_COL32(226, 72, 58, 255), "answer WRONG: output lacks \"%s\"",
                     ms.expected_answer.c_str());
    } else {
        fitted_textf(0, "answer not checked yet (\"%s\")", ms.expected_answer.c_str());
    }
    std::string text;
    for (int64_t t = ms.begin; t < ms.end && t < s.n_tokens; ++t) text += model.token_text(t);
    ImGui::TextDisabled("needle text:");
    ImGui::SameLine();
    fitted_text(display_piece(text).c_str(), theme.needle);

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

    draw_forensics_bar();

    const ImVec2 avail = ImGui::GetContentRegionAvail();
    const ImVec2 o = ImGui::GetCursorScreenPos();
    const float font = ImGui::GetFontSize();
    const float label_w = ImGui::CalcTextSize("L000").x + 6;
    const float mat_w = std::min(avail.x * 0.42f, static_cast<float>(heads_) * 48.0f + label_w);
    matrix_ =
        PlotRect{ImVec2(o.x + label_w, o.y + font + 8), ImVec2(o.x + mat_w, o.y + avail.y - 8)};
    // An explanation needs the room under the curve more than the curve needs its height.
    const bool why = explanation_ && explanation_->trace == s.path;
    curve_ = PlotRect{ImVec2(o.x + mat_w + 60, o.y + font + 8),
                      ImVec2(o.x + avail.x - 10,
                             o.y + font + 8 + std::max(50.0f, avail.y * (why ? 0.22f : 0.38f)))};
    if (matrix_.width() < 10 || matrix_.height() < 10) return;
    Canvas canvas = ctx.canvas();
    draw_matrix(ctx, canvas, span);
    if (curve_.width() > 40) {
        draw_curve(ctx, canvas, span);
        ImGui::SetCursorScreenPos(ImVec2(curve_.min.x - 50, curve_.max.y + font * 2 + 8));
        ImGui::BeginChild("##outscored", ImVec2(o.x + avail.x - (curve_.min.x - 50),
                                                o.y + avail.y - (curve_.max.y + font * 2 + 8)));
        ImGui::PushTextWrapPos(0.0f);  // a child window starts without the host's wrap
        draw_outscored(ctx, span);
        ImGui::PopTextWrapPos();
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
    draw_y_axis(canvas, theme, curve_, 0.0, 1.0, "needle held");
    // The colour key, right of the axis title; over the plot's top edge when it does not fit.
    const std::vector<LegendItem> key = {
        {LegendItem::Mark::kLine, theme.held, "mean over heads"},
        {LegendItem::Mark::kLine, theme.bits_color(2), "lowest head"},
        {LegendItem::Mark::kLine, theme.selection,
         "L" + std::to_string(ctx.state.layer) + " H" +
             std::to_string(std::max(ctx.state.head, 0))}};
    const float font = ImGui::GetFontSize();
    const float key_x = std::max(curve_.max.x - legend_width(key),
                                 curve_.min.x + ImGui::CalcTextSize("needle held").x + 16.0f);
    draw_legend(canvas, theme, ImVec2(key_x, curve_.min.y - font - 2), key);
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
    shown_.clear();
    heading_.clear();
    showing_why_ = false;
    {
        const trace::MarkedSpan& m = model.spans()[static_cast<size_t>(span)];
        if (explanation_ && explanation_->trace == model.summary().path &&
            explanation_->span_begin == m.begin && explanation_->span_end == m.end) {
            draw_why(ctx, span);
            return;
        }
    }
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
    // Not the policy's score: attention received is what some policies rank by, not all, and a
    // count of "higher" tokens says nothing about the cut-off the policy applied.
    heading_ = "Held tokens by prefill attention received (not the policy's score)";
    ImGui::Text("%s, layer %d head %d:", heading_.c_str(), layer, head);
    ImGui::TextDisabled(
        "needle mean %.4g; %zu of %zu held prompt tokens received more. "
        "\"Explain with the policy's score\" shows the policy's own ranking.",
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
    draw_attention_notes(ctx, span);
}

namespace {

std::string score_text(double v) {
    if (std::isnan(v)) return "-";
    if (std::isinf(v)) return v > 0 ? "protected" : "-inf";
    char b[32];
    std::snprintf(b, sizeof b, "%.4g", v);
    return b;
}

std::string token_label(const TraceModel& model, int64_t t) {
    if (t < 0 || t >= model.summary().n_tokens) return std::to_string(t);
    return std::to_string(t) + " '" + display_piece(model.token_text(t)) + "'";
}

// "at the prompt's compression" / "at decode step 3 (trace step 3)".
std::string when_text(int64_t step) {
    if (step < 0) return "at the prompt's compression (trace step 0)";
    return "at decode step " + std::to_string(step + 1);
}

std::string how_text(const TraceModel& model, const NeedleDecision& d) {
    if (d.action == "merged") {
        char w[32];
        std::snprintf(w, sizeof w, "%.3g", static_cast<double>(d.weight));
        return "merged into " + token_label(model, d.into_position) +
               (std::isnan(d.weight) ? std::string() : std::string(" with weight ") + w);
    }
    if (d.action == "quantized" || d.action == "demoted")
        return d.action + " to " + std::to_string(d.bits) + " bits";
    return d.action;
}

}  // namespace

void NeedleView::draw_forensics_bar() {
    if (!forensics_) return;
    const NeedleForensics& f = *forensics_;
    ImGui::BeginDisabled(f.busy || !f.explain);
    if (ImGui::Button("Explain with the policy's score") && f.explain) f.explain();
    ImGui::EndDisabled();
    if (ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled))
        ImGui::SetTooltip(
            "Re-run the trace's policy from its prompt (no change to its decisions) "
            "and record, for every needle token, the policy's own score, rank and "
            "cut-off where it left");
    ImGui::SameLine();
    ImGui::BeginDisabled(f.busy || !f.rescue);
    if (ImGui::Button("Rescue...") && f.rescue) f.rescue();
    ImGui::EndDisabled();
    if (ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled))
        ImGui::SetTooltip(
            "Which layers' loss of the needle broke the answer: re-run with the "
            "needle kept in some layers (the What-if dock lists the runs)");
    if (f.busy) {
        ImGui::SameLine();
        if (ImGui::Button("Cancel") && f.cancel) f.cancel();
        ImGui::SameLine();
        if (f.total > 0) {
            ImGui::Text("%s %lld / %lld", f.what.c_str(), static_cast<long long>(f.done),
                        static_cast<long long>(f.total));
        } else {
            ImGui::Text("%s", f.what.c_str());
        }
    }
    if (!f.busy && !f.rescue_summary.empty()) ImGui::TextWrapped("%s", f.rescue_summary.c_str());
    if (!f.error.empty())
        ImGui::TextColored(ImVec4(0.89f, 0.31f, 0.23f, 1.0f), "%s", f.error.c_str());
}

void NeedleView::draw_why(ViewContext& ctx, int32_t span) {
    const TraceModel& model = ctx.model;
    const Theme& theme = ctx.theme;
    const NeedleExplanation& e = *explanation_;
    const trace::MarkedSpan& ms = model.spans()[static_cast<size_t>(span)];
    const int32_t layer = ctx.state.layer;
    const int32_t head = std::max(ctx.state.head, 0);
    showing_why_ = true;
    for (const auto& d : e.decisions)
        if (d.layer == layer && d.kv_head == head && d.position >= ms.begin && d.position < ms.end)
            shown_.push_back(d);
    heading_ = "Why it left, by the policy's own score";
    ImGui::Text("%s, layer %d head %d:", heading_.c_str(), layer, head);
    ImGui::TextWrapped("score: %s  (policy %s)",
                       e.score_name.empty() ? "none: this policy does not rank tokens by a score"
                                            : e.score_name.c_str(),
                       e.policy.c_str());
    if (e.same_as_trace) {
        ImGui::TextDisabled("re-run output equals the trace's: these are its decisions");
    } else {
        ImGui::TextColored(ImVec4(0.89f, 0.31f, 0.23f, 1.0f),
                           "re-run output DIFFERS from the trace (\"%s\"): decisions of the "
                           "re-run",
                           display_piece(e.rerun_text).c_str());
    }
    // Per needle token: the decision that removed it (the first that is not "kept"), else its
    // prompt-time "kept" decision.
    std::vector<const NeedleDecision*> rows;
    for (int64_t p = ms.begin; p < ms.end; ++p) {
        const NeedleDecision* keep = nullptr;
        const NeedleDecision* lost = nullptr;
        for (const auto& d : shown_) {
            if (d.position != p) continue;
            if (d.action == "kept") {
                if (!keep) keep = &d;
            } else if (!lost) {
                lost = &d;
            }
        }
        if (lost || keep) rows.push_back(lost ? lost : keep);
    }
    if (rows.empty()) {
        ImGui::TextDisabled("No decision on the needle in this head: it was never ranked here.");
        draw_attention_notes(ctx, span);
        return;
    }
    // Scale of the dot plot: the finite scores and cut-offs shown.
    double lo = INFINITY, hi = -INFINITY;
    for (const NeedleDecision* d : rows) {
        for (double v : {d->score, d->cutoff}) {
            if (std::isfinite(v)) {
                lo = std::min(lo, v);
                hi = std::max(hi, v);
            }
        }
    }
    const float font = ImGui::GetFontSize();
    const float row_h = font + 4.0f;
    const float label_w = ImGui::CalcTextSize("00000 'xxxxxxxx'").x;
    const ImVec2 o = ImGui::GetCursorScreenPos();
    const float width = std::max(ImGui::GetContentRegionAvail().x, label_w + 80.0f);
    const PlotRect plot{
        ImVec2(o.x + label_w + 6.0f, o.y + font + 4.0f),
        ImVec2(o.x + width - 8.0f, o.y + font + 4.0f + row_h * static_cast<float>(rows.size()))};
    Canvas canvas = ctx.canvas();
    const bool scaled = std::isfinite(lo) && std::isfinite(hi);
    if (scaled && hi <= lo) {
        lo -= 0.5;
        hi += 0.5;
    }
    auto x_of = [&](double v) {
        if (std::isinf(v)) return v > 0 ? plot.max.x : plot.min.x;
        return plot.min.x + static_cast<float>((v - lo) / (hi - lo)) * plot.width();
    };
    canvas.rect(plot.min, plot.max, theme.panel);
    const NeedleDecision& first = *rows.front();
    canvas.text(ImVec2(o.x, o.y), theme.text_dim,
                scaled ? "score (" + score_text(lo) + " .. " + score_text(hi) +
                             "); line: cut-off, the lowest score kept; budget " +
                             (first.budget >= 0 ? std::to_string(first.budget) : "-") + " of " +
                             std::to_string(first.candidates) + " candidates"
                       : std::string("no finite scores to plot"));
    int hovered = -1;
    for (size_t i = 0; i < rows.size(); ++i) {
        const NeedleDecision& d = *rows[i];
        const float y = plot.min.y + row_h * (static_cast<float>(i) + 0.5f);
        const bool lost = d.action != "kept";
        canvas.text(ImVec2(o.x, y - font * 0.5f), lost ? theme.text : theme.text_dim,
                    token_label(model, d.position));
        if (scaled && std::isfinite(d.cutoff)) {
            const float cx = x_of(d.cutoff);
            canvas.line(ImVec2(cx, y - row_h * 0.5f), ImVec2(cx, y + row_h * 0.5f), theme.selection,
                        2.0f);
        }
        if (scaled && !std::isnan(d.score)) {
            const float x = x_of(d.score);
            canvas.rect(ImVec2(plot.min.x, y - 2.0f), ImVec2(x, y + 2.0f),
                        with_alpha(lost ? theme.evicted : theme.held, 0.5f));
            canvas.circle(
                ImVec2(x, y), 4.0f,
                lost ? (d.action == "merged" ? theme.merged : theme.evicted) : theme.held);
        }
        const ImVec2 m = ImGui::GetIO().MousePos;
        if (m.x >= o.x && m.x <= plot.max.x && m.y >= y - row_h * 0.5f && m.y < y + row_h * 0.5f)
            hovered = static_cast<int>(i);
    }
    ImGui::SetCursorScreenPos(o);
    ImGui::InvisibleButton("##why_plot", ImVec2(width - 8.0f, plot.max.y - o.y + 4.0f));
    if (hovered >= 0 && ImGui::IsItemHovered()) {
        const NeedleDecision& d = *rows[static_cast<size_t>(hovered)];
        ImGui::SetTooltip(
            "%s: %s %s\nscore %s, rank %lld of %lld, cut-off %s\n(click to select "
            "the token)",
            token_label(model, d.position).c_str(), how_text(model, d).c_str(),
            when_text(d.step).c_str(), score_text(d.score).c_str(), static_cast<long long>(d.rank),
            static_cast<long long>(d.candidates), score_text(d.cutoff).c_str());
        if (ImGui::IsMouseClicked(ImGuiMouseButton_Left)) ctx.state.select_token(d.position);
    }
    // The same in words, one line per needle token.
    for (const NeedleDecision* dp : rows) {
        const NeedleDecision& d = *dp;
        if (d.action == "kept") {
            ImGui::TextDisabled("%s kept at the prompt: score %s, rank %lld of %lld",
                                token_label(model, d.position).c_str(), score_text(d.score).c_str(),
                                static_cast<long long>(d.rank),
                                static_cast<long long>(d.candidates));
        } else {
            ImGui::Text("%s %s %s: score %s, rank %lld of %lld, cut-off %s",
                        token_label(model, d.position).c_str(), how_text(model, d).c_str(),
                        when_text(d.step).c_str(), score_text(d.score).c_str(),
                        static_cast<long long>(d.rank), static_cast<long long>(d.candidates),
                        score_text(d.cutoff).c_str());
        }
    }
    // Took its place: the kept tokens just above the cut-off at the first loss here.
    const NeedleDecision* loss = nullptr;
    for (const NeedleDecision* d : rows)
        if (d->action != "kept" && (!loss || d->step < loss->step)) loss = d;
    if (loss && !loss->took_its_place.empty()) {
        ImGui::Text("Took its place %s (kept, just above the cut-off):",
                    when_text(loss->step).c_str());
        for (size_t i = 0; i < loss->took_its_place.size(); ++i) {
            const auto& [pos, sc] = loss->took_its_place[i];
            ImGui::PushID(static_cast<int>(i) + 1000);
            const std::string label = token_label(model, pos) + "  score " + score_text(sc);
            if (ImGui::Selectable(label.c_str(), ctx.state.token == pos))
                ctx.state.select_token(pos);
            ImGui::PopID();
        }
    }
    draw_attention_notes(ctx, span);
}

void NeedleView::draw_attention_notes(ViewContext& ctx, int32_t span) {
    const TraceModel& model = ctx.model;
    const trace::MarkedSpan& ms = model.spans()[static_cast<size_t>(span)];
    const int32_t layer = ctx.state.layer;
    const int32_t head = std::max(ctx.state.head, 0);
    const auto attn = model.attn_received(layer, head);
    ImGui::Separator();
    if (attn && !attn->empty()) {
        // Attention received at prefill is summed over the queries that can see a key: the key
        // at position p is seen by P - p of them, so the sum favours early tokens. Divided by
        // P - p it is the mean attention per query that could attend to it.
        const int64_t P = std::ssize(*attn);
        double raw = 0.0, per_query = 0.0, all_per_query = 0.0;
        int64_t n = 0, n_all = 0;
        for (int64_t t = 0; t < P; ++t) {
            const double a = (*attn)[static_cast<size_t>(t)];
            if (!std::isfinite(a)) continue;
            all_per_query += a / static_cast<double>(P - t);
            ++n_all;
            if (t >= ms.begin && t < ms.end) {
                raw += a;
                per_query += a / static_cast<double>(P - t);
                ++n;
            }
        }
        if (n > 0) {
            ImGui::Text(
                "needle attention received (prefill, mean per token): sum %.4g, per "
                "query that sees it %.4g (all prompt tokens: %.4g)",
                raw / static_cast<double>(n), per_query / static_cast<double>(n),
                n_all > 0 ? all_per_query / static_cast<double>(n_all) : 0.0);
            ImGui::TextDisabled(
                "The sum favours early tokens (P - position queries see each "
                "one); the per-query mean divides by that count.");
        }
    }
    const float rho = model.spearman(layer, head);
    if (!std::isnan(rho)) {
        ImGui::Text("Spearman rho = %.3f", static_cast<double>(rho));
        ImGui::SameLine();
        ImGui::TextDisabled(
            "= corr(MINUS key norm, attention received): positive means keys "
            "with SMALL norms receive more attention");
    }
}

}  // namespace kvscope::views
