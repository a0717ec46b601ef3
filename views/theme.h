#pragma once
// Colours of the views: dark, light and high-contrast (projector) palettes, the token-state colours
// (shared by every view, so "kept" is the same green everywhere), a sequential and a diverging
// colour map, and the matching Dear ImGui style. Colours are 0xAABBGGRR (ImU32).
#include <cstdint>

#include <imgui.h>

#include "views/head_history.h"

namespace kvscope::views {

// kHighContrast is for projectors: they wash out dark greys and pastel hues, so it is black on
// white with saturated, darker state colours and a grid dark enough to survive the projection.
enum class ThemeKind { kDark, kLight, kHighContrast };

struct Theme {
    ThemeKind kind = ThemeKind::kDark;
    ImU32 background = 0;
    ImU32 panel = 0;  // plot area background
    ImU32 text = 0;
    ImU32 text_dim = 0;
    ImU32 grid = 0;
    ImU32 selection = 0;    // outline of the selected token / layer / head
    ImU32 hover = 0;        // outline of the hovered item
    ImU32 step_marker = 0;  // the current step line in step-axis plots
    // Token states.
    ImU32 held = 0;
    ImU32 demoted = 0;
    ImU32 merged = 0;
    ImU32 evicted = 0;
    ImU32 missing = 0;  // not recorded / not loaded yet
    ImU32 needle = 0;   // marked spans
    // Compare mode: tokens held only in trace A / only in trace B. Hues no token state uses
    // (orange, cyan), so the diff overlay reads apart from the state colours it sits on.
    ImU32 only_a = 0;
    ImU32 only_b = 0;

    // Dark text on a light background (light and high-contrast themes).
    bool light_background() const { return kind != ThemeKind::kDark; }

    // Colour of a held token at `bits` (16 or more = full precision = `held`).
    ImU32 bits_color(int bits) const;
    // Colour of a token state; `absent` tokens get the panel colour.
    ImU32 state_color(TokenCacheState state, int bits) const;
    ImU32 state_color(const CacheChange& c) const { return state_color(c.state, c.bits); }
    // Sequential map, t in [0, 1] (clamped; NaN -> missing).
    ImU32 heat(float t) const;
    // Diverging map, t in [-1, 1] (clamped; NaN -> missing).
    ImU32 diverging(float t) const;

    void apply_to_imgui(ImGuiStyle& style) const;
};

const Theme& theme(ThemeKind kind);

// Linear blend of two colours, t in [0, 1].
ImU32 mix(ImU32 a, ImU32 b, float t);
ImU32 with_alpha(ImU32 c, float alpha);

}  // namespace kvscope::views
