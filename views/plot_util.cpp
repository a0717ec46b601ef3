#include "views/plot_util.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>

namespace kvscope::views {

// ---- Text -----------------------------------------------------------------------------------

namespace {

// Length of the valid UTF-8 sequence starting at s[i], 0 when invalid.
size_t utf8_length(std::string_view s, size_t i) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0 && c >= 0xC2) {
        n = 2;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3;
    } else if ((c & 0xF8) == 0xF0 && c <= 0xF4) {
        n = 4;
    } else {
        return 0;
    }
    if (i + n > s.size()) return 0;
    for (size_t k = 1; k < n; ++k) {
        if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 0;
    }
    return n;
}

}  // namespace

std::string display_piece(std::string_view piece) {
    std::string out;
    out.reserve(piece.size() + 4);
    for (size_t i = 0; i < piece.size();) {
        const auto c = static_cast<unsigned char>(piece[i]);
        if (c == '\n') {
            out += "\xE2\x86\xB5";  // ↵
            ++i;
        } else if (c == '\t') {
            out += "\xE2\x86\x92";  // →
            ++i;
        } else if (c < 0x20 || c == 0x7F) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02X", c);
            out += buf;
            ++i;
        } else if (const size_t n = utf8_length(piece, i); n > 0) {
            out.append(piece.substr(i, n));
            i += n;
        } else {
            char buf[8];  // a partial UTF-8 sequence (byte-level pieces split characters)
            std::snprintf(buf, sizeof buf, "\\x%02X", c);
            out += buf;
            ++i;
        }
    }
    return out;
}

std::vector<double> nice_ticks(double lo, double hi, int max_ticks) {
    std::vector<double> ticks;
    if (!(hi > lo) || max_ticks < 1 || !std::isfinite(lo) || !std::isfinite(hi)) return ticks;
    const double raw = (hi - lo) / max_ticks;
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    double step = mag;
    for (double m : {1.0, 2.0, 5.0, 10.0}) {
        step = m * mag;
        if (step >= raw) break;
    }
    for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
        ticks.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
    }
    return ticks;
}

std::string format_number(double v) {
    char buf[32];
    const double a = std::abs(v);
    if (a >= 1e6) {
        std::snprintf(buf, sizeof buf, "%.3gM", v / 1e6);
    } else if (a >= 1e4) {
        std::snprintf(buf, sizeof buf, "%.3gk", v / 1e3);
    } else if (a >= 1 || a == 0) {
        std::snprintf(buf, sizeof buf, "%.4g", v);
    } else {
        std::snprintf(buf, sizeof buf, "%.3g", v);
    }
    return buf;
}

std::string format_bytes(double bytes) {
    char buf[32];
    if (bytes >= 1024.0 * 1024.0 * 1024.0) {
        std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
    } else if (bytes >= 1024.0 * 1024.0) {
        std::snprintf(buf, sizeof buf, "%.2f MiB", bytes / (1024.0 * 1024.0));
    } else if (bytes >= 1024.0) {
        std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
    } else {
        std::snprintf(buf, sizeof buf, "%.0f B", bytes);
    }
    return buf;
}

// ---- Axes and legends -----------------------------------------------------------------------

void draw_x_axis(Canvas& canvas, const Theme& theme, const PlotRect& plot, double lo, double hi,
                 const char* label) {
    const int max_ticks = std::max(2, static_cast<int>(plot.width() / 70.0f));
    const float y = plot.max.y;
    canvas.line(ImVec2(plot.min.x, y), ImVec2(plot.max.x, y), theme.grid);
    for (double v : nice_ticks(lo, hi, max_ticks)) {
        const float x = plot.min.x + static_cast<float>((v - lo) / (hi - lo)) * plot.width();
        canvas.line(ImVec2(x, y), ImVec2(x, y + 4), theme.text_dim);
        const std::string s = format_number(v);
        const float w = ImGui::CalcTextSize(s.c_str()).x;
        canvas.text(ImVec2(x - w * 0.5f, y + 5), theme.text_dim, s);
    }
    if (label && *label) {
        const float w = ImGui::CalcTextSize(label).x;
        canvas.text(ImVec2(plot.max.x - w, y + 6 + ImGui::GetFontSize()), theme.text_dim, label);
    }
}

void draw_y_axis(Canvas& canvas, const Theme& theme, const PlotRect& plot, double lo, double hi,
                 const char* label, bool top_down) {
    const int max_ticks = std::max(2, static_cast<int>(plot.height() / 36.0f));
    const float x = plot.min.x;
    canvas.line(ImVec2(x, plot.min.y), ImVec2(x, plot.max.y), theme.grid);
    const float half = ImGui::GetFontSize() * 0.5f;
    for (double v : nice_ticks(lo, hi, max_ticks)) {
        const float f = static_cast<float>((v - lo) / (hi - lo)) * plot.height();
        const float y = top_down ? plot.min.y + f : plot.max.y - f;
        canvas.line(ImVec2(x - 4, y), ImVec2(x, y), theme.text_dim);
        const std::string s = format_number(v);
        const float w = ImGui::CalcTextSize(s.c_str()).x;
        canvas.text(ImVec2(x - 6 - w, y - half), theme.text_dim, s);
    }
    if (label && *label) {
        canvas.text(ImVec2(plot.min.x + 4, plot.min.y - ImGui::GetFontSize() - 2), theme.text_dim,
                    label);
    }
}

void draw_colour_bar(Canvas& canvas, const Theme& theme, const PlotRect& bar, double lo, double hi,
                     bool diverging, const char* label) {
    const int steps = std::max(8, static_cast<int>(bar.height() / 3.0f));
    for (int i = 0; i < steps; ++i) {
        const float t0 = static_cast<float>(i) / static_cast<float>(steps);
        const float t1 = static_cast<float>(i + 1) / static_cast<float>(steps);
        const float v = diverging ? (t0 + t1) - 1.0f : (t0 + t1) * 0.5f;
        const ImU32 c = diverging ? theme.diverging(v) : theme.heat(v);
        canvas.rect(ImVec2(bar.min.x, bar.max.y - t1 * bar.height()),
                    ImVec2(bar.max.x, bar.max.y - t0 * bar.height()), c);
    }
    canvas.rect_outline(bar.min, bar.max, theme.grid);
    const float half = ImGui::GetFontSize() * 0.5f;
    canvas.text(ImVec2(bar.max.x + 4, bar.min.y - half), theme.text_dim, format_number(hi));
    canvas.text(ImVec2(bar.max.x + 4, bar.max.y - half), theme.text_dim, format_number(lo));
    if (label && *label) {
        canvas.text(ImVec2(bar.min.x, bar.max.y + 4), theme.text_dim, label);
    }
}

void draw_state_legend(const ViewContext& ctx, bool with_bits) {
    const Theme& t = ctx.theme;
    struct Item {
        ImU32 colour;
        const char* name;
    };
    std::vector<Item> items = {{t.held, "kept"}, {t.merged, "merged"}, {t.evicted, "evicted"}};
    if (with_bits) {
        items.insert(items.begin() + 1, {{t.bits_color(8), "8 bit"},
                                         {t.bits_color(4), "4 bit"},
                                         {t.bits_color(2), "2 bit"},
                                         {t.demoted, "demoted"}});
    }
    const float box = ImGui::GetFontSize() * 0.8f;
    Canvas canvas = ctx.canvas();
    for (size_t i = 0; i < items.size(); ++i) {
        const Item& it = items[i];
        // An item that does not fit in the rest of the row starts the next one (narrow docks,
        // presenter scale).
        if (i > 0) {
            ImGui::SameLine(0, 12);
            if (ImGui::GetContentRegionAvail().x < box + 4 + ImGui::CalcTextSize(it.name).x)
                ImGui::NewLine();
        }
        const ImVec2 p = ImGui::GetCursorScreenPos();
        const float y = p.y + (ImGui::GetTextLineHeight() - box) * 0.5f;
        canvas.rect(ImVec2(p.x, y), ImVec2(p.x + box, y + box), it.colour);
        ImGui::Dummy(ImVec2(box, box));
        ImGui::SameLine(0, 4);
        ImGui::TextUnformatted(it.name);
    }
}

void draw_marker_x(Canvas& canvas, float x, float y0, float y1, ImU32 colour) {
    const float px = std::floor(x);
    canvas.line(ImVec2(px, y0), ImVec2(px, y1), colour, 2.0f);
}

// ---- Selection widgets ----------------------------------------------------------------------

void layer_head_selector(ViewContext& ctx, bool allow_all_heads) {
    const TraceSummary& s = ctx.model.summary();
    ImGui::SetNextItemWidth(ImGui::GetFontSize() * 5.5f);
    int layer = ctx.state.layer;
    if (ImGui::BeginCombo("##layer", ("layer " + std::to_string(layer)).c_str())) {
        for (int32_t l = 0; l < s.n_layers; ++l) {
            if (ImGui::Selectable(("layer " + std::to_string(l)).c_str(), l == layer)) {
                ctx.state.select_layer(l);
            }
        }
        ImGui::EndCombo();
    }
    ImGui::SameLine();
    ImGui::SetNextItemWidth(ImGui::GetFontSize() * 6.0f);
    const int head = ctx.state.head;
    const std::string head_name = head < 0 ? "all heads" : "head " + std::to_string(head);
    if (ImGui::BeginCombo("##head", head_name.c_str())) {
        if (allow_all_heads && ImGui::Selectable("all heads", head < 0)) ctx.state.select_head(-1);
        for (int32_t h = 0; h < s.n_heads; ++h) {
            if (ImGui::Selectable(("head " + std::to_string(h)).c_str(), h == head)) {
                ctx.state.select_head(h);
            }
        }
        ImGui::EndCombo();
    }
}

HeadSet layer_heads(const TraceModel& model, int32_t layer, Load load) {
    HeadSet out(static_cast<size_t>(std::max(model.summary().n_heads, 0)));
    for (size_t h = 0; h < out.size(); ++h) {
        out[h] = model.history(layer, static_cast<int32_t>(h), load);
    }
    return out;
}

HeadsState heads_state(const HeadSet& heads, int64_t token, int64_t step) {
    HeadsState out;
    for (const auto& history : heads) {
        if (!history) {
            ++out.missing;
            continue;
        }
        const CacheChange c = history->state_at(token, step);
        switch (c.state) {
            case TokenCacheState::kHeld:
                if (c.bits < 16) {
                    ++out.quantized;
                    out.min_bits = std::min<int>(out.min_bits, c.bits);
                } else {
                    ++out.held;
                }
                break;
            case TokenCacheState::kQuantized:
            case TokenCacheState::kDemoted:
                ++out.quantized;
                out.min_bits = std::min<int>(out.min_bits, c.bits);
                break;
            case TokenCacheState::kMerged:
                ++out.merged;
                break;
            case TokenCacheState::kEvicted:
                ++out.evicted;
                break;
            case TokenCacheState::kAbsent:
                ++out.absent;
                break;
        }
    }
    return out;
}

ImU32 heads_state_color(const Theme& theme, const HeadsState& s) {
    const int known = s.held + s.quantized + s.merged + s.evicted;
    if (known == 0) return s.missing > 0 ? theme.missing : theme.panel;
    int best = s.held;
    ImU32 colour = theme.held;
    if (s.quantized > best) {
        best = s.quantized;
        colour = theme.bits_color(s.min_bits);
    }
    if (s.merged > best) {
        best = s.merged;
        colour = theme.merged;
    }
    if (s.evicted > best) {
        best = s.evicted;
        colour = theme.evicted;
    }
    // Unanimous heads get the full colour; a split is drawn paler (towards the panel).
    const float agreement = static_cast<float>(best) / static_cast<float>(known);
    return mix(theme.panel, colour, 0.45f + 0.55f * agreement);
}

void token_fate_tooltip(const ViewContext& ctx, int64_t token) {
    const TraceModel& m = ctx.model;
    const TraceSummary& s = m.summary();
    if (token < 0 || token >= s.n_tokens) return;
    ImGui::BeginTooltip();
    const bool generated = m.token_role(token) == trace::TokenRole::kGenerated;
    ImGui::Text("token %lld  \"%s\"  id %d  (%s)", static_cast<long long>(token),
                display_piece(m.token_text(token)).c_str(), m.token_id(token),
                generated ? "generated" : "prompt");
    ImGui::TextDisabled("state after step %lld, every layer and head:",
                        static_cast<long long>(ctx.state.step));
    ImDrawList* dl = ImGui::GetWindowDrawList();
    const float box = std::max(6.0f, ImGui::GetFontSize() * 0.7f);
    int missing = 0;
    for (int32_t l = 0; l < s.n_layers; ++l) {
        ImGui::Text("L%-3d", l);
        ImGui::SameLine();
        const ImVec2 p = ImGui::GetCursorScreenPos();
        int held = 0;
        for (int32_t h = 0; h < s.n_heads; ++h) {
            // Record-time states when the trace has them: a row read, not a replayed history.
            std::optional<CacheChange> c;
            if (m.has_head_states()) {
                if (const auto states = m.head_states(l, h, Load::kLater))
                    c = states->state_at(token, ctx.state.step);
            } else if (const auto history = m.history(l, h, Load::kLater)) {
                c = history->state_at(token, ctx.state.step);
            }
            ImU32 colour = ctx.theme.missing;
            if (c) {
                colour = ctx.theme.state_color(*c);
                held += is_held(c->state) ? 1 : 0;
            } else {
                ++missing;
            }
            const ImVec2 a(p.x + static_cast<float>(h) * (box + 2), p.y + 2);
            dl->AddRectFilled(a, ImVec2(a.x + box, a.y + box), colour);
            if (l == ctx.state.layer && h == ctx.state.head) {
                dl->AddRect(ImVec2(a.x - 1, a.y - 1), ImVec2(a.x + box + 1, a.y + box + 1),
                            ctx.theme.selection);
            }
        }
        ImGui::Dummy(ImVec2(static_cast<float>(s.n_heads) * (box + 2), box + 2));
        ImGui::SameLine();
        ImGui::TextDisabled("%d/%d kept", held, s.n_heads);
    }
    if (missing > 0) ImGui::TextDisabled("loading %d head histories...", missing);
    // The selected (layer, head): every change of this token.
    const int32_t head = std::max(ctx.state.head, 0);
    if (const auto history = m.history(ctx.state.layer, head, Load::kLater)) {
        ImGui::Separator();
        ImGui::Text("layer %d head %d:", ctx.state.layer, head);
        for (const CacheChange& c : history->changes(token)) {
            const char* name = trace::token_cache_state_name(c.state);
            if (c.state == TokenCacheState::kMerged) {
                ImGui::BulletText("step %d: merged into %d (weight %.3f)", c.step, c.into,
                                  static_cast<double>(c.weight));
            } else if (is_held(c.state)) {
                ImGui::BulletText("step %d: %s, %d bits", c.step, name, c.bits);
            } else {
                ImGui::BulletText("step %d: %s", c.step, name);
            }
        }
    }
    ImGui::EndTooltip();
}

// ---- TokenAxis ------------------------------------------------------------------------------

void TokenAxis::set_extent(double n) {
    n = std::max(n, 1.0);
    if (n == n_) return;
    n_ = n;
    if (full_) {
        lo_ = 0.0;
        hi_ = n_;
    }
    clamp();
}

void TokenAxis::zoom_to(double lo, double hi) {
    lo_ = lo;
    hi_ = hi;
    clamp();
}

std::pair<int64_t, int64_t> TokenAxis::column_tokens(int x, int columns, int64_t n) const {
    const double per = (hi_ - lo_) / columns;
    int64_t t0 = 0;
    int64_t t1 = 0;
    if (per <= 1.0) {
        t0 = static_cast<int64_t>(std::floor(lo_ + per * (x + 0.5)));
        t1 = t0 + 1;
    } else {
        t0 = static_cast<int64_t>(std::ceil(lo_ + per * x));
        t1 = static_cast<int64_t>(std::ceil(lo_ + per * (x + 1)));
    }
    return {std::clamp<int64_t>(t0, 0, n), std::clamp<int64_t>(t1, 0, n)};
}

void TokenAxis::clamp() {
    const double min_span = std::min(8.0, n_);
    double span = std::clamp(hi_ - lo_, min_span, n_);
    lo_ = std::clamp(lo_, 0.0, n_ - span);
    hi_ = lo_ + span;
    full_ = lo_ <= 0.0 && hi_ >= n_;
}

void TokenAxis::handle_input(const PlotRect& plot, bool hovered, bool active) {
    const ImGuiIO& io = ImGui::GetIO();
    if (hovered && io.MouseWheel != 0.0f) {
        const double at = to_token(plot, io.MousePos.x);
        const double factor = std::pow(1.25, -static_cast<double>(io.MouseWheel));
        lo_ = at - (at - lo_) * factor;
        hi_ = at + (hi_ - at) * factor;
        clamp();
    }
    if (active && (ImGui::IsMouseDragging(ImGuiMouseButton_Left) ||
                   ImGui::IsMouseDragging(ImGuiMouseButton_Middle))) {
        const double shift = -static_cast<double>(io.MouseDelta.x) / plot.width() * (hi_ - lo_);
        lo_ += shift;
        hi_ += shift;
        clamp();
    }
}

}  // namespace kvscope::views
