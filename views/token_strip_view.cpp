#include "views/token_strip_view.h"

#include <algorithm>

#include "views/text_fit.h"

namespace kvscope::views {

namespace {

constexpr float kPadX = 3.0f;
constexpr float kGapX = 2.0f;

ImU32 readable_text(ImU32 fill) {
    const float r = static_cast<float>((fill >> IM_COL32_R_SHIFT) & 0xFF);
    const float g = static_cast<float>((fill >> IM_COL32_G_SHIFT) & 0xFF);
    const float b = static_cast<float>((fill >> IM_COL32_B_SHIFT) & 0xFF);
    return 0.299f * r + 0.587f * g + 0.114f * b > 140.0f ? IM_COL32(18, 18, 20, 255)
                                                         : IM_COL32(244, 244, 246, 255);
}

}  // namespace

void TokenStripView::reset() {
    widths_.clear();
    line_break_.clear();
    line_start_.clear();
    layout_width_ = -1.0f;
    scrolled_to_ = -1;
    visible_.clear();
    diff_cache_.reset();
    shown_diff_.reset();
}

std::optional<PlotRect> TokenStripView::token_rect(int64_t token) const {
    auto it = visible_.find(token);
    if (it == visible_.end()) return std::nullopt;
    return it->second;
}

void TokenStripView::update_widths(const TraceModel& model) {
    const float font = ImGui::GetFontSize();
    if (font != font_size_) {
        widths_.clear();
        line_break_.clear();
        font_size_ = font;
    }
    const int64_t n = model.summary().n_tokens;
    if (std::ssize(widths_) == n) return;
    if (std::ssize(widths_) > n) {
        widths_.clear();
        line_break_.clear();
    }
    for (int64_t t = std::ssize(widths_); t < n; ++t) {
        const std::string_view piece = model.token_text(t);
        const std::string shown = display_piece(piece);
        const float w = ImGui::CalcTextSize(shown.c_str(), shown.c_str() + shown.size()).x;
        widths_.push_back(std::max(w, font * 0.35f) + 2 * kPadX);
        line_break_.push_back(piece.find('\n') != std::string_view::npos ? 1 : 0);
    }
    layout_width_ = -1.0f;
}

void TokenStripView::update_layout(float width) {
    if (width == layout_width_ && !line_start_.empty() &&
        line_start_.back() == std::ssize(widths_)) {
        return;
    }
    layout_width_ = width;
    line_start_.assign(1, 0);
    float x = 0.0f;
    const int64_t n = std::ssize(widths_);
    for (int64_t t = 0; t < n; ++t) {
        const float w = widths_[static_cast<size_t>(t)] + kGapX;
        if (x > 0.0f && x + w > width) {
            line_start_.push_back(t);
            x = 0.0f;
        }
        x += w;
        if (line_break_[static_cast<size_t>(t)] && t + 1 < n) {
            line_start_.push_back(t + 1);
            x = 0.0f;
        }
    }
    line_start_.push_back(n);
}

ImU32 TokenStripView::token_colour(const ViewContext& ctx, const HeadHistory* head,
                                   const HeadSet& heads, int64_t token) const {
    if (head) return ctx.theme.state_color(head->state_at(token, ctx.state.step));
    return heads_state_color(ctx.theme, heads_state(heads, token, ctx.state.step));
}

void TokenStripView::draw(ViewContext& ctx) {
    const TraceModel& model = ctx.model;
    const TraceSummary& s = model.summary();
    const Theme& theme = ctx.theme;
    visible_.clear();

    layer_head_selector(ctx, true);
    ImGui::SameLine();
    const int64_t present = std::min(s.n_prompt_tokens + ctx.state.step + 1, s.n_tokens);
    fitted_textf(0, "step %lld  ·  %lld prompt + %lld generated tokens",
                 static_cast<long long>(ctx.state.step), static_cast<long long>(s.n_prompt_tokens),
                 static_cast<long long>(std::max<int64_t>(present - s.n_prompt_tokens, 0)));
    draw_state_legend(ctx, true);

    // Compare mode: the A/B difference at the selection (A's histories are the ones below).
    shown_diff_.reset();
    HeadSet diff_a;
    HeadSet diff_b;
    if (diff_toggle(ctx)) {
        ImGui::SameLine(0, 12);
        const Load load = ctx.state.head < 0 ? Load::kLater : Load::kNow;
        diff_a = compare_heads(model, ctx.state.layer, ctx.state.head, load);
        diff_b = compare_heads(*ctx.compare, ctx.state.layer, ctx.state.head, load);
        shown_diff_ =
            diff_cache_.get(diff_a, diff_b, ctx.state.layer, ctx.state.head, ctx.state.step,
                            std::max(s.n_tokens, ctx.compare->summary().n_tokens));
        draw_diff_legend(ctx, *shown_diff_);
    }

    update_widths(model);
    const ImVec2 avail = ImGui::GetContentRegionAvail();
    if (avail.x < 20 || avail.y < 20) return;
    const float line_h = ImGui::GetTextLineHeight() + 6.0f;
    ImGui::BeginChild("##strip", avail, false);
    const float width = ImGui::GetContentRegionAvail().x - 4.0f;
    update_layout(width);

    // Scroll to a token selected in another view.
    const int64_t lines = std::ssize(line_start_) - 1;
    if (ctx.state.token >= 0 && ctx.state.token != scrolled_to_) {
        scrolled_to_ = ctx.state.token;
        const auto it = std::upper_bound(line_start_.begin(), line_start_.end(), ctx.state.token);
        const int64_t line = std::max<int64_t>(it - line_start_.begin() - 1, 0);
        const float y = static_cast<float>(line) * line_h;
        if (y < ImGui::GetScrollY() || y + line_h > ImGui::GetScrollY() + avail.y) {
            ImGui::SetScrollY(std::max(0.0f, y - avail.y * 0.4f));
        }
    }

    const HeadSet heads =
        ctx.state.head < 0 ? layer_heads(model, ctx.state.layer, Load::kLater) : HeadSet{};
    const auto head =
        ctx.state.head >= 0 ? model.history(ctx.state.layer, ctx.state.head, Load::kNow) : nullptr;
    const auto& spans = model.spans();
    Canvas canvas = ctx.canvas();
    const ImVec2 mouse = ImGui::GetIO().MousePos;
    const bool window_hovered = ImGui::IsWindowHovered();
    int64_t hovered = -1;

    const float clip_min_y = ImGui::GetWindowPos().y;
    const float clip_max_y = clip_min_y + ImGui::GetWindowSize().y;
    ImGuiListClipper clipper;
    clipper.Begin(static_cast<int>(lines), line_h);
    while (clipper.Step()) {
        for (int line = clipper.DisplayStart; line < clipper.DisplayEnd; ++line) {
            const ImVec2 origin = ImGui::GetCursorScreenPos();
            float x = origin.x;
            for (int64_t t = line_start_[static_cast<size_t>(line)];
                 t < line_start_[static_cast<size_t>(line) + 1]; ++t) {
                const float w = widths_[static_cast<size_t>(t)];
                const ImVec2 a(x, origin.y + 1);
                const ImVec2 b(x + w, origin.y + line_h - 2);
                x += w + kGapX;
                const bool exists = t < present;
                ImU32 fill = exists ? token_colour(ctx, head.get(), heads, t) : theme.panel;
                if (exists && shown_diff_) {
                    fill = diff_colour(theme, token_diff(diff_a, diff_b, t, ctx.state.step),
                                       static_cast<int32_t>(diff_a.size()), fill);
                }
                canvas.rect(a, b, fill);
                const std::string shown = display_piece(model.token_text(t));
                canvas.text(ImVec2(a.x + kPadX, a.y + 2),
                            exists ? readable_text(fill) : theme.text_dim, shown);
                if (t == s.n_prompt_tokens && t > 0) {
                    canvas.line(ImVec2(a.x - 1.5f, a.y - 1), ImVec2(a.x - 1.5f, b.y + 1),
                                theme.step_marker, 2.0f);
                }
                for (const trace::MarkedSpan& span : spans) {
                    if (t >= span.begin && t < span.end) {
                        canvas.line(ImVec2(a.x, b.y + 1), ImVec2(b.x, b.y + 1), theme.needle, 2.0f);
                    }
                }
                if (t == ctx.state.token) {
                    canvas.rect_outline(ImVec2(a.x - 1, a.y - 1), ImVec2(b.x + 1, b.y + 1),
                                        theme.selection, 2.0f);
                } else if (t == ctx.state.hover_token) {
                    canvas.rect_outline(a, b, with_alpha(theme.hover, 0.6f));
                }
                if (window_hovered && mouse.x >= a.x && mouse.x < b.x + kGapX &&
                    mouse.y >= a.y - 1 && mouse.y < b.y + 2) {
                    hovered = t;
                }
                if (b.y <= clip_max_y && a.y >= clip_min_y) visible_[t] = PlotRect{a, b};
            }
            ImGui::Dummy(ImVec2(width, line_h));
        }
    }
    clipper.End();

    hover_.update(ctx.state, hovered);
    if (hovered >= 0) {
        token_fate_tooltip(ctx, hovered);
        if (ImGui::IsMouseClicked(ImGuiMouseButton_Left)) {
            ctx.state.select_token(hovered);
            scrolled_to_ = hovered;
        }
    }
    ImGui::EndChild();
}

}  // namespace kvscope::views
