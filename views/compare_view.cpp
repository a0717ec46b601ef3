#include "views/compare_view.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace kvscope::views {

namespace {

constexpr const char* kHint =
    "Compare mode: File > Compare with... to open a second trace (B) of the same model and prompt, "
    "e.g. the full-cache run next to a compressed one. Its summary, bytes held and the overlap of "
    "the held sets then show here, and the token strip and eviction timeline colour the tokens "
    "held only in A or only in B.";

std::string budget_text(const TraceSummary& s) {
    char buf[64];
    if (s.budget_ratio >= 0.0) {
        std::snprintf(buf, sizeof buf, "ratio %.3g", s.budget_ratio);
        return buf;
    }
    if (s.budget_tokens >= 0) return std::to_string(s.budget_tokens) + " tokens per head";
    return "none (full cache)";
}

std::string answer_text(const TraceModel& m) {
    const auto& spans = m.spans();
    if (spans.empty()) return "no needle marked";
    std::string out;
    for (size_t i = 0; i < spans.size(); ++i) {
        if (!out.empty()) out += ", ";
        const int8_t found = m.answer_found(static_cast<int32_t>(i));
        out += found > 0 ? "answer found" : found == 0 ? "answer WRONG" : "not checked";
    }
    return out;
}

// The generated text, shortened to about `max_chars` bytes.
std::string output_text(const TraceModel& m, size_t max_chars) {
    const TraceSummary& s = m.summary();
    std::string out;
    for (int64_t t = s.n_prompt_tokens; t < s.n_tokens && out.size() < max_chars; ++t) {
        out += display_piece(m.token_text(t));
    }
    if (out.size() >= max_chars) out += "...";
    return out.empty() ? "(none)" : out;
}

std::string file_name(const std::string& path) {
    const size_t slash = path.find_last_of('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

void CompareView::reset() {
    cells_.clear();
    cell_diffs_.clear();
    layer_bytes_[0].clear();
    layer_bytes_[1].clear();
}

PlotRect CompareView::cell_rect(int32_t layer, int32_t head) const {
    const float cw = grid_.width() / static_cast<float>(std::max(heads_, 1));
    const float ch = grid_.height() / static_cast<float>(std::max(layers_, 1));
    const ImVec2 a(grid_.min.x + cw * static_cast<float>(head),
                   grid_.min.y + ch * static_cast<float>(layer));
    return PlotRect{a, ImVec2(a.x + cw, a.y + ch)};
}

PlotRect CompareView::bar_rect(int32_t layer, bool b) const {
    const auto& bytes = layer_bytes_[b ? 1 : 0];
    const float y = rows_y0_ + row_h_ * static_cast<float>(layer);
    const float half = (row_h_ - 3.0f) * 0.5f;
    const float y0 = y + 1.0f + (b ? half : 0.0f);
    float w = 0.0f;
    if (layer >= 0 && layer < std::ssize(bytes) && bytes[static_cast<size_t>(layer)] > 0 &&
        max_bytes_ > 0.0) {
        w = static_cast<float>(static_cast<double>(bytes[static_cast<size_t>(layer)]) /
                               max_bytes_) *
            bar_w_;
    }
    return PlotRect{ImVec2(bar_x0_, y0), ImVec2(bar_x0_ + w, y0 + half)};
}

const HeldDiff& CompareView::cell_diff(int32_t layer, int32_t head) const {
    static const HeldDiff kNone;
    const int64_t i = static_cast<int64_t>(layer) * heads_ + head;
    if (layer < 0 || head < 0 || head >= heads_ || i >= std::ssize(cell_diffs_)) return kNone;
    return cell_diffs_[static_cast<size_t>(i)];
}

void CompareView::draw_summaries(const ViewContext& ctx) {
    const TraceModel* models[2] = {&ctx.model, ctx.compare};
    const ImGuiTableFlags flags = ImGuiTableFlags_BordersInnerV | ImGuiTableFlags_SizingStretchProp;
    if (!ImGui::BeginTable("##summaries", 3, flags)) return;
    ImGui::TableSetupColumn("##what", ImGuiTableColumnFlags_WidthFixed,
                            ImGui::CalcTextSize("answer").x + 8.0f);
    ImGui::TableSetupColumn("A", ImGuiTableColumnFlags_WidthStretch, 1.0f);
    ImGui::TableSetupColumn("B", ImGuiTableColumnFlags_WidthStretch, 1.0f);
    Canvas canvas = ctx.canvas();
    const float box = ImGui::GetFontSize() * 0.8f;
    auto row = [&](const char* what, auto&& text_of) {
        ImGui::TableNextRow();
        ImGui::TableSetColumnIndex(0);
        ImGui::TextDisabled("%s", what);
        for (int k = 0; k < 2; ++k) {
            ImGui::TableSetColumnIndex(k + 1);
            const std::string text = text_of(*models[k], k);
            ImGui::TextUnformatted(text.c_str());
        }
    };
    // Trace row: a colour square that names A and B in the diff colours of the other views.
    ImGui::TableNextRow();
    ImGui::TableSetColumnIndex(0);
    ImGui::TextDisabled("trace");
    for (int k = 0; k < 2; ++k) {
        ImGui::TableSetColumnIndex(k + 1);
        const ImVec2 p = ImGui::GetCursorScreenPos();
        const float y = p.y + (ImGui::GetTextLineHeight() - box) * 0.5f;
        canvas.rect(ImVec2(p.x, y), ImVec2(p.x + box, y + box),
                    k == 0 ? ctx.theme.only_a : ctx.theme.only_b);
        ImGui::Dummy(ImVec2(box, box));
        ImGui::SameLine(0, 4);
        ImGui::Text("%s  %s  (%lld steps)", k == 0 ? "A" : "B",
                    file_name(models[k]->summary().path).c_str(),
                    static_cast<long long>(models[k]->summary().n_steps));
    }
    row("policy", [](const TraceModel& m, int) {
        const TraceSummary& s = m.summary();
        return s.policy + (s.policy_params.empty() ? "" : "  (" + s.policy_params + ")");
    });
    row("budget", [](const TraceModel& m, int) { return budget_text(m.summary()); });
    row("answer",
        [](const TraceModel& m, int) { return answer_text(m) + ": " + output_text(m, 60); });
    ImGui::EndTable();
}

void CompareView::draw_bytes(ViewContext& ctx, const PlotRect& area, int64_t step) {
    const Theme& theme = ctx.theme;
    const TraceModel* models[2] = {&ctx.model, ctx.compare};
    Canvas canvas = ctx.canvas();
    const float font = ImGui::GetFontSize();
    int64_t total[2] = {0, 0};
    bool recorded[2] = {true, true};
    max_bytes_ = 0.0;
    for (int k = 0; k < 2; ++k) {
        // B shows its own last step when it has fewer (the Studio clamps the shared step to both).
        const int64_t st = std::min(step, std::max<int64_t>(models[k]->summary().n_steps - 1, 0));
        layer_bytes_[k].assign(static_cast<size_t>(layers_), -1);
        for (int32_t l = 0; l < layers_; ++l) {
            const int64_t b = models[k]->bytes_held(st, l);
            layer_bytes_[k][static_cast<size_t>(l)] = b;
            if (b < 0) {
                recorded[k] = false;
                continue;
            }
            total[k] += b;
            max_bytes_ = std::max(max_bytes_, static_cast<double>(b));
        }
    }
    canvas.text(area.min, theme.text, "bytes held per layer after step " + std::to_string(step));
    const float label_w = ImGui::CalcTextSize("L000").x + 6.0f;
    // Per-layer values at the right when there is room for them next to useful bars.
    const float value_w =
        area.width() > 360.0f ? ImGui::CalcTextSize("000.0 KiB / 000.0 KiB").x : 0.0f;
    rows_y0_ = area.min.y + font + 8.0f;
    const float rows_h = area.max.y - rows_y0_ - 2.0f * font - 10.0f;
    row_h_ = std::clamp(rows_h / static_cast<float>(std::max(layers_, 1)), 4.0f, 3.0f * font);
    bar_x0_ = area.min.x + label_w;
    bar_w_ = std::max(area.width() - label_w - value_w - 8.0f, 10.0f);
    const bool show_values = row_h_ >= font && value_w > 0.0f;
    for (int32_t l = 0; l < layers_; ++l) {
        const float y = rows_y0_ + row_h_ * static_cast<float>(l);
        if (row_h_ >= font * 0.9f || l % 4 == 0) {
            canvas.text(ImVec2(area.min.x, y + (row_h_ - font) * 0.5f),
                        l == ctx.state.layer ? theme.selection : theme.text_dim,
                        "L" + std::to_string(l));
        }
        canvas.rect(ImVec2(bar_x0_, y + 1.0f), ImVec2(bar_x0_ + bar_w_, y + row_h_ - 2.0f),
                    theme.panel);
        for (int k = 0; k < 2; ++k) {
            const PlotRect r = bar_rect(l, k == 1);
            if (r.width() > 0.0f) canvas.rect(r.min, r.max, k == 0 ? theme.only_a : theme.only_b);
        }
        if (show_values) {
            auto fmt = [](int64_t b) {
                return b < 0 ? std::string("-") : format_bytes(static_cast<double>(b));
            };
            canvas.text(ImVec2(bar_x0_ + bar_w_ + 6.0f, y + (row_h_ - font) * 0.5f), theme.text_dim,
                        fmt(layer_bytes_[0][static_cast<size_t>(l)]) + " / " +
                            fmt(layer_bytes_[1][static_cast<size_t>(l)]));
        }
    }
    const float ty = rows_y0_ + row_h_ * static_cast<float>(layers_) + 6.0f;
    std::string totals =
        "total  A " +
        (recorded[0] ? format_bytes(static_cast<double>(total[0])) : std::string("not recorded")) +
        "   B " +
        (recorded[1] ? format_bytes(static_cast<double>(total[1])) : std::string("not recorded"));
    if (recorded[0] && recorded[1] && total[0] > 0) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "   B/A %.0f%%",
                      100.0 * static_cast<double>(total[1]) / static_cast<double>(total[0]));
        totals += buf;
    }
    canvas.text(ImVec2(area.min.x, ty), theme.text, totals);

    // Hover: the layer's exact numbers; click: select the layer (all heads).
    ImGui::SetCursorScreenPos(ImVec2(area.min.x, rows_y0_));
    ImGui::InvisibleButton("##bytes", ImVec2(std::max(area.width(), 1.0f),
                                             std::max(row_h_ * static_cast<float>(layers_), 1.0f)));
    if (ImGui::IsItemHovered() && layers_ > 0) {
        const int32_t l = std::clamp(
            static_cast<int32_t>((ImGui::GetIO().MousePos.y - rows_y0_) / row_h_), 0, layers_ - 1);
        ImGui::BeginTooltip();
        ImGui::Text("layer %d after step %lld", l, static_cast<long long>(step));
        for (int k = 0; k < 2; ++k) {
            const int64_t b = layer_bytes_[k][static_cast<size_t>(l)];
            ImGui::Text("%s: %s", k == 0 ? "A" : "B",
                        b < 0 ? "not recorded" : format_bytes(static_cast<double>(b)).c_str());
        }
        ImGui::TextDisabled("click: select layer %d (all heads)", l);
        ImGui::EndTooltip();
        if (ImGui::IsMouseClicked(ImGuiMouseButton_Left)) ctx.state.select_layer_head(l, -1);
    }
}

void CompareView::draw_overlap(ViewContext& ctx, const PlotRect& area, int64_t step) {
    const Theme& theme = ctx.theme;
    Canvas canvas = ctx.canvas();
    const float font = ImGui::GetFontSize();
    canvas.text(area.min, theme.text,
                "overlap of the held sets (Jaccard) after step " + std::to_string(step));
    const float label_w = ImGui::CalcTextSize("L000").x + 6.0f;
    const float header_h = font + 4.0f;
    const float legend_w = 60.0f;
    const float top = area.min.y + font + 8.0f;
    const float grid_w = area.width() - label_w - legend_w;
    const float grid_h = area.max.y - top - header_h - font - 8.0f;
    if (grid_w < 8.0f || grid_h < 8.0f) return;
    const float cw = std::min(grid_w / static_cast<float>(heads_), 90.0f);
    const float ch = std::min(grid_h / static_cast<float>(layers_), std::max(cw, 22.0f));
    grid_ = PlotRect{ImVec2(area.min.x + label_w, top + header_h),
                     ImVec2(area.min.x + label_w + cw * static_cast<float>(heads_),
                            top + header_h + ch * static_cast<float>(layers_))};

    const size_t cells = static_cast<size_t>(layers_) * static_cast<size_t>(heads_);
    if (cells_.size() != cells) cells_.assign(cells, HeldDiffCache());
    cell_diffs_.assign(cells, HeldDiff());
    const int64_t n_tokens =
        std::max(ctx.model.summary().n_tokens, ctx.compare->summary().n_tokens);
    int loading = 0;
    const bool show_values = cw >= ImGui::CalcTextSize("0.00").x + 6 && ch >= font + 2;
    for (int32_t h = 0; h < heads_; ++h) {
        const PlotRect r = cell_rect(0, h);
        if (cw >= ImGui::CalcTextSize("h00").x || h % 4 == 0) {
            canvas.text_centred(ImVec2((r.min.x + r.max.x) * 0.5f, top + header_h * 0.5f),
                                h == ctx.state.head ? theme.selection : theme.text_dim,
                                "h" + std::to_string(h));
        }
    }
    const int label_every = ch >= font ? 1 : static_cast<int>(std::ceil(font / ch));
    for (int32_t l = 0; l < layers_; ++l) {
        const PlotRect row = cell_rect(l, 0);
        if (l % label_every == 0 || l == ctx.state.layer) {
            canvas.text(ImVec2(area.min.x, (row.min.y + row.max.y - font) * 0.5f),
                        l == ctx.state.layer ? theme.selection : theme.text_dim,
                        "L" + std::to_string(l));
        }
        for (int32_t h = 0; h < heads_; ++h) {
            const size_t i =
                static_cast<size_t>(l) * static_cast<size_t>(heads_) + static_cast<size_t>(h);
            const HeadSet a = compare_heads(ctx.model, l, h, Load::kLater);
            const HeadSet b = compare_heads(*ctx.compare, l, h, Load::kLater);
            const HeldDiff& d = cells_[i].get(a, b, l, h, step, n_tokens);
            cell_diffs_[i] = d;
            loading += d.missing;
            const float v = d.heads > 0 ? static_cast<float>(d.jaccard()) : std::nanf("");
            const PlotRect r = cell_rect(l, h);
            canvas.rect(r.min, ImVec2(r.max.x - 1, r.max.y - 1), theme.heat(v));
            if (show_values && !std::isnan(v)) {
                char buf[16];
                std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(v));
                canvas.text_centred(
                    ImVec2((r.min.x + r.max.x) * 0.5f, (r.min.y + r.max.y) * 0.5f),
                    v > 0.6f ? IM_COL32(20, 20, 24, 255) : IM_COL32(240, 240, 244, 255), buf);
            }
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
    const PlotRect bar{ImVec2(grid_.max.x + 14.0f, grid_.min.y),
                       ImVec2(grid_.max.x + 26.0f, grid_.min.y + std::min(grid_.height(), 200.0f))};
    draw_colour_bar(canvas, theme, bar, 0.0, 1.0, false, nullptr);
    if (loading > 0) {
        canvas.text(ImVec2(grid_.min.x, grid_.max.y + 4), theme.text_dim,
                    "loading " + std::to_string(loading) + " heads...");
    }

    ImGui::SetCursorScreenPos(ImVec2(area.min.x, grid_.min.y));
    ImGui::InvisibleButton("##overlap", ImVec2(grid_.max.x - area.min.x, grid_.height()));
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
            const HeldDiff& d = cell_diff(l, h);
            ImGui::Text("layer %d head %d after step %lld", l, h, static_cast<long long>(step));
            if (d.heads > 0) {
                ImGui::Text("held in both %lld, only in A %lld, only in B %lld",
                            static_cast<long long>(d.both), static_cast<long long>(d.only_a),
                            static_cast<long long>(d.only_b));
                ImGui::Text("overlap (Jaccard) %.3f", d.jaccard());
            } else {
                ImGui::TextDisabled("loading...");
            }
        }
        ImGui::TextDisabled("click: select");
        ImGui::EndTooltip();
        if (ImGui::IsMouseClicked(ImGuiMouseButton_Left)) {
            ctx.state.select_layer_head(l, on_label ? -1 : h);
        }
    }
}

void CompareView::draw(ViewContext& ctx) {
    if (!ctx.compare) {
        draw_empty_view(ctx.theme, kHint);
        return;
    }
    const TraceSummary& s = ctx.model.summary();
    layers_ = s.n_layers;
    heads_ = s.n_heads;
    if (layers_ <= 0 || heads_ <= 0 || layers_ != ctx.compare->summary().n_layers ||
        heads_ != ctx.compare->summary().n_heads) {
        ImGui::TextWrapped("These traces cannot be compared: %s",
                           compare_mismatch(ctx.model, *ctx.compare).c_str());
        return;
    }
    draw_summaries(ctx);
    ImGui::Spacing();
    const ImVec2 avail = ImGui::GetContentRegionAvail();
    const ImVec2 origin = ImGui::GetCursorScreenPos();
    if (avail.x < 40 || avail.y < 40) return;
    // Bytes on the left, overlap on the right; stacked when the dock is narrow.
    const bool side = avail.x >= 420.0f;
    const PlotRect bytes_area =
        side ? PlotRect{origin, ImVec2(origin.x + avail.x * 0.48f, origin.y + avail.y)}
             : PlotRect{origin, ImVec2(origin.x + avail.x, origin.y + avail.y * 0.5f)};
    const PlotRect overlap_area = side
                                      ? PlotRect{ImVec2(origin.x + avail.x * 0.52f, origin.y),
                                                 ImVec2(origin.x + avail.x, origin.y + avail.y)}
                                      : PlotRect{ImVec2(origin.x, origin.y + avail.y * 0.5f + 6.0f),
                                                 ImVec2(origin.x + avail.x, origin.y + avail.y)};
    const int64_t step = ctx.state.step;
    draw_bytes(ctx, bytes_area, step);
    draw_overlap(ctx, overlap_area, step);
}

}  // namespace kvscope::views
