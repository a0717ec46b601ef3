#include "views/compare_diff.h"

#include <algorithm>

namespace kvscope::views {

std::string compare_mismatch(const TraceModel& a, const TraceModel& b) {
    const TraceSummary& sa = a.summary();
    const TraceSummary& sb = b.summary();
    if (sa.n_layers != sb.n_layers || sa.n_heads != sb.n_heads) {
        return "the model shape differs: A has " + std::to_string(sa.n_layers) + " layers x " +
               std::to_string(sa.n_heads) + " cache heads, B has " + std::to_string(sb.n_layers) +
               " layers x " + std::to_string(sb.n_heads) + " cache heads";
    }
    if (sa.n_prompt_tokens != sb.n_prompt_tokens) {
        return "the prompt differs: A has " + std::to_string(sa.n_prompt_tokens) +
               " prompt tokens, B has " + std::to_string(sb.n_prompt_tokens);
    }
    for (int64_t t = 0; t < sa.n_prompt_tokens; ++t) {
        if (a.token_id(t) != b.token_id(t)) {
            return "the prompt differs at token " + std::to_string(t) + ": A has \"" +
                   display_piece(a.token_text(t)) + "\" (id " + std::to_string(a.token_id(t)) +
                   "), B has \"" + display_piece(b.token_text(t)) + "\" (id " +
                   std::to_string(b.token_id(t)) + ")";
        }
    }
    return {};
}

HeadSet compare_heads(const TraceModel& model, int32_t layer, int32_t head, Load load) {
    if (head < 0) return layer_heads(model, layer, load);
    return HeadSet{model.history(layer, head, load)};
}

TokenDiff token_diff(const HeadSet& a, const HeadSet& b, int64_t token, int64_t step) {
    TokenDiff d;
    const size_t n = std::min(a.size(), b.size());
    for (size_t h = 0; h < n; ++h) {
        if (!a[h] || !b[h]) continue;
        const bool in_a = is_held(a[h]->state_at(token, step).state);
        const bool in_b = is_held(b[h]->state_at(token, step).state);
        d.only_a += in_a && !in_b ? 1 : 0;
        d.only_b += in_b && !in_a ? 1 : 0;
    }
    return d;
}

HeldDiff held_diff(const HeadSet& a, const HeadSet& b, int64_t step, int64_t n_tokens) {
    HeldDiff d;
    const size_t n = std::min(a.size(), b.size());
    for (size_t h = 0; h < n; ++h) {
        if (!a[h] || !b[h]) {
            ++d.missing;
            continue;
        }
        ++d.heads;
        // Tokens neither history has seen are absent in both: bounded by what was appended.
        const int64_t tokens = std::min(n_tokens, std::max(a[h]->tokens(), b[h]->tokens()));
        for (int64_t t = 0; t < tokens; ++t) {
            const bool in_a = is_held(a[h]->state_at(t, step).state);
            const bool in_b = is_held(b[h]->state_at(t, step).state);
            d.only_a += in_a && !in_b ? 1 : 0;
            d.only_b += in_b && !in_a ? 1 : 0;
            d.both += in_a && in_b ? 1 : 0;
        }
    }
    return d;
}

HeldDiff held_diff(const TraceModel& a, const TraceModel& b, int32_t layer, int32_t head,
                   int64_t step, Load load) {
    const int64_t n_tokens = std::max(a.summary().n_tokens, b.summary().n_tokens);
    return held_diff(compare_heads(a, layer, head, load), compare_heads(b, layer, head, load), step,
                     n_tokens);
}

const HeldDiff& HeldDiffCache::get(const HeadSet& a, const HeadSet& b, int32_t layer, int32_t head,
                                   int64_t step, int64_t n_tokens) {
    Key key;
    key.layer = layer;
    key.head = head;
    key.step = step;
    key.n_tokens = n_tokens;
    for (const auto& h : a) {
        key.a.push_back(h.get());
        key.steps += h ? h->steps() : 0;
    }
    for (const auto& h : b) {
        key.b.push_back(h.get());
        key.steps += h ? h->steps() : 0;
    }
    if (!valid_ || !(key == key_)) {
        key_ = std::move(key);
        diff_ = held_diff(a, b, step, n_tokens);
        valid_ = true;
    }
    return diff_;
}

ImU32 diff_colour(const Theme& theme, const TokenDiff& d, int32_t heads, ImU32 base) {
    if (d.only_a == 0 && d.only_b == 0) return mix(theme.panel, base, 0.35f);
    const bool a = d.only_a >= d.only_b;
    const float share =
        static_cast<float>(a ? d.only_a : d.only_b) / static_cast<float>(std::max(heads, 1));
    // Every head differing: the full colour; fewer: paler, as heads_state_color does for splits.
    return mix(theme.panel, a ? theme.only_a : theme.only_b, 0.45f + 0.55f * share);
}

bool diff_toggle(ViewContext& ctx) {
    if (!ctx.compare) return false;
    bool on = ctx.state.compare_diff;
    if (ImGui::Checkbox("diff A/B", &on)) ctx.state.set_compare_diff(on);
    if (ImGui::IsItemHovered()) {
        ImGui::SetTooltip("Colour the tokens held in one trace and not the other\n(A: %s\nB: %s)",
                          ctx.model.summary().path.c_str(), ctx.compare->summary().path.c_str());
    }
    return on;
}

void draw_diff_legend(const ViewContext& ctx, const HeldDiff& diff) {
    const Theme& t = ctx.theme;
    const float box = ImGui::GetFontSize() * 0.8f;
    Canvas canvas = ctx.canvas();
    auto item = [&](ImU32 colour, const std::string& label) {
        const ImVec2 p = ImGui::GetCursorScreenPos();
        const float y = p.y + (ImGui::GetTextLineHeight() - box) * 0.5f;
        canvas.rect(ImVec2(p.x, y), ImVec2(p.x + box, y + box), colour);
        ImGui::Dummy(ImVec2(box, box));
        ImGui::SameLine(0, 4);
        ImGui::TextUnformatted(label.c_str());
        ImGui::SameLine(0, 12);
    };
    item(t.only_a, "held only in A: " + std::to_string(diff.only_a));
    item(t.only_b, "only in B: " + std::to_string(diff.only_b));
    if (ctx.state.head < 0) {
        ImGui::TextDisabled("(token x head pairs, %d heads%s)", diff.heads,
                            diff.missing > 0 ? ", loading" : "");
    } else if (diff.missing > 0) {
        ImGui::TextDisabled("(loading)");
    } else {
        ImGui::TextDisabled("(in both: %lld)", static_cast<long long>(diff.both));
    }
}

}  // namespace kvscope::views
