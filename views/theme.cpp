#include "views/theme.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace kvscope::views {

namespace {

constexpr ImU32 rgb(int r, int g, int b) {
    return IM_COL32(r, g, b, 255);
}

struct Rgb {
    float r, g, b;
};

Rgb unpack(ImU32 c) {
    return {static_cast<float>((c >> IM_COL32_R_SHIFT) & 0xFF),
            static_cast<float>((c >> IM_COL32_G_SHIFT) & 0xFF),
            static_cast<float>((c >> IM_COL32_B_SHIFT) & 0xFF)};
}

ImU32 pack(Rgb c, float alpha = 255.0f) {
    auto q = [](float v) { return static_cast<int>(std::lround(std::clamp(v, 0.0f, 255.0f))); };
    return IM_COL32(q(c.r), q(c.g), q(c.b), q(alpha));
}

// Piecewise-linear map through evenly spaced stops.
template <size_t N>
ImU32 ramp(const std::array<ImU32, N>& stops, float t) {
    t = std::clamp(t, 0.0f, 1.0f) * static_cast<float>(N - 1);
    const size_t i = std::min(static_cast<size_t>(t), N - 2);
    return mix(stops[i], stops[i + 1], t - static_cast<float>(i));
}

// Sequential: deep blue -> teal -> green -> pale yellow (monotone in lightness).
constexpr std::array<ImU32, 5> kHeatStops = {rgb(28, 36, 96), rgb(38, 104, 160), rgb(48, 164, 146),
                                             rgb(150, 206, 84), rgb(248, 236, 120)};

Theme make_dark() {
    Theme t;
    t.kind = ThemeKind::kDark;
    t.background = rgb(30, 32, 36);
    t.panel = rgb(22, 24, 28);
    t.text = rgb(226, 228, 232);
    t.text_dim = rgb(140, 146, 156);
    t.grid = rgb(64, 68, 76);
    t.selection = rgb(255, 214, 10);
    t.hover = rgb(255, 255, 255);
    t.step_marker = rgb(255, 214, 10);
    t.held = rgb(52, 168, 83);
    t.demoted = rgb(160, 110, 230);
    t.merged = rgb(66, 133, 244);
    t.evicted = rgb(110, 48, 52);
    t.missing = rgb(52, 54, 60);
    t.needle = rgb(255, 120, 200);
    t.only_a = rgb(255, 146, 28);
    t.only_b = rgb(40, 214, 236);
    return t;
}

Theme make_light() {
    Theme t;
    t.kind = ThemeKind::kLight;
    t.background = rgb(244, 245, 247);
    t.panel = rgb(255, 255, 255);
    t.text = rgb(28, 30, 34);
    t.text_dim = rgb(110, 116, 126);
    t.grid = rgb(210, 214, 220);
    t.selection = rgb(220, 40, 120);
    t.hover = rgb(20, 20, 20);
    t.step_marker = rgb(220, 40, 120);
    t.held = rgb(46, 150, 74);
    t.demoted = rgb(140, 90, 210);
    t.merged = rgb(50, 110, 220);
    t.evicted = rgb(232, 188, 188);
    t.missing = rgb(228, 230, 234);
    t.needle = rgb(214, 60, 150);
    t.only_a = rgb(232, 112, 0);
    t.only_b = rgb(0, 150, 186);
    return t;
}

Theme make_high_contrast() {
    Theme t;
    t.kind = ThemeKind::kHighContrast;
    t.background = rgb(255, 255, 255);
    t.panel = rgb(255, 255, 255);
    t.text = rgb(0, 0, 0);
    t.text_dim = rgb(40, 40, 40);  // still near-black: dim grey vanishes on a projector
    t.grid = rgb(120, 120, 120);
    t.selection = rgb(200, 0, 90);
    t.hover = rgb(0, 0, 0);
    t.step_marker = rgb(200, 0, 90);
    t.held = rgb(0, 130, 40);
    t.demoted = rgb(110, 40, 200);
    t.merged = rgb(0, 80, 220);
    t.evicted = rgb(215, 150, 150);
    t.missing = rgb(215, 215, 215);
    t.needle = rgb(220, 0, 140);
    t.only_a = rgb(220, 100, 0);
    t.only_b = rgb(0, 140, 175);
    return t;
}

}  // namespace

ImU32 mix(ImU32 a, ImU32 b, float t) {
    t = std::clamp(t, 0.0f, 1.0f);
    const Rgb x = unpack(a);
    const Rgb y = unpack(b);
    const float aa = static_cast<float>((a >> IM_COL32_A_SHIFT) & 0xFF);
    const float ab = static_cast<float>((b >> IM_COL32_A_SHIFT) & 0xFF);
    return pack({x.r + (y.r - x.r) * t, x.g + (y.g - x.g) * t, x.b + (y.b - x.b) * t},
                aa + (ab - aa) * t);
}

ImU32 with_alpha(ImU32 c, float alpha) {
    return (c & ~IM_COL32_A_MASK) |
           (static_cast<ImU32>(std::lround(std::clamp(alpha, 0.0f, 1.0f) * 255.0f))
            << IM_COL32_A_SHIFT);
}

ImU32 Theme::bits_color(int bits) const {
    // Full precision is `held`; fewer bits move through yellow to orange-red.
    if (bits >= 16 || bits <= 0) return held;
    static constexpr std::array<ImU32, 4> kBits = {rgb(226, 84, 44), rgb(240, 128, 40),
                                                   rgb(244, 190, 40), rgb(164, 204, 60)};
    // 1-2 bits -> 0, 3-4 -> ~1-1.6, 8 -> 3.
    const float t = std::log2(static_cast<float>(std::max(bits, 2))) - 1.0f;  // 2->0, 4->1, 8->2
    return ramp(kBits, std::clamp(t / 2.0f, 0.0f, 1.0f));
}

ImU32 Theme::state_color(TokenCacheState state, int bits) const {
    switch (state) {
        case TokenCacheState::kHeld:
            return bits_color(bits);
        case TokenCacheState::kQuantized:
            return bits_color(bits);
        case TokenCacheState::kDemoted:
            return demoted;
        case TokenCacheState::kMerged:
            return merged;
        case TokenCacheState::kEvicted:
            return evicted;
        case TokenCacheState::kAbsent:
            break;
    }
    return panel;
}

ImU32 Theme::heat(float t) const {
    if (std::isnan(t)) return missing;
    return ramp(kHeatStops, t);
}

ImU32 Theme::diverging(float t) const {
    if (std::isnan(t)) return missing;
    const ImU32 neutral = light_background() ? rgb(236, 236, 236) : rgb(70, 72, 80);
    t = std::clamp(t, -1.0f, 1.0f);
    return t < 0 ? mix(neutral, rgb(52, 112, 224), -t) : mix(neutral, rgb(226, 72, 58), t);
}

void Theme::apply_to_imgui(ImGuiStyle& style) const {
    if (light_background()) {
        ImGui::StyleColorsLight(&style);
    } else {
        ImGui::StyleColorsDark(&style);
    }
    style.WindowRounding = 0.0f;
    style.FrameRounding = 3.0f;
    style.GrabRounding = 3.0f;
    style.WindowBorderSize = 0.0f;
    style.WindowPadding = ImVec2(8, 6);
    style.ItemSpacing = ImVec2(8, 5);
    style.Colors[ImGuiCol_WindowBg] = ImGui::ColorConvertU32ToFloat4(background);
    style.Colors[ImGuiCol_ChildBg] = ImGui::ColorConvertU32ToFloat4(background);
    style.Colors[ImGuiCol_Text] = ImGui::ColorConvertU32ToFloat4(text);
    style.Colors[ImGuiCol_TextDisabled] = ImGui::ColorConvertU32ToFloat4(text_dim);
    style.Colors[ImGuiCol_PopupBg] = ImGui::ColorConvertU32ToFloat4(with_alpha(panel, 0.97f));
    style.Colors[ImGuiCol_Border] = ImGui::ColorConvertU32ToFloat4(grid);
    if (kind == ThemeKind::kHighContrast) {
        // Frames and buttons outlined and filled darker than Light's near-white, so sliders,
        // combo boxes and buttons stay visible when projected.
        style.FrameBorderSize = 1.0f;
        style.Colors[ImGuiCol_FrameBg] = ImVec4(0.88f, 0.88f, 0.88f, 1.0f);
        style.Colors[ImGuiCol_Button] = ImVec4(0.80f, 0.84f, 0.92f, 1.0f);
        style.Colors[ImGuiCol_Header] = ImVec4(0.72f, 0.80f, 0.95f, 1.0f);
        style.Colors[ImGuiCol_TableBorderStrong] = ImGui::ColorConvertU32ToFloat4(text_dim);
        style.Colors[ImGuiCol_TableBorderLight] = ImGui::ColorConvertU32ToFloat4(grid);
    }
}

const Theme& theme(ThemeKind kind) {
    static const Theme dark = make_dark();
    static const Theme light = make_light();
    static const Theme contrast = make_high_contrast();
    switch (kind) {
        case ThemeKind::kDark:
            return dark;
        case ThemeKind::kLight:
            return light;
        case ThemeKind::kHighContrast:
            break;
    }
    return contrast;
}

}  // namespace kvscope::views
