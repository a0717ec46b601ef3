#pragma once
// HeadlessImGui: runs views without a window or GPU — a Dear ImGui context with the built-in
// font, frames driven by hand, draw lists built but never rendered. Used by the views' tests
// (content, SVG export, input) and the frame-time benchmark.
#include <cstdint>

#include <imgui.h>

#include "views/view.h"

namespace kvscope::views {

class HeadlessImGui {
  public:
    HeadlessImGui(float width, float height);
    ~HeadlessImGui();
    HeadlessImGui(const HeadlessImGui&) = delete;
    HeadlessImGui& operator=(const HeadlessImGui&) = delete;

    // One frame: NewFrame, a full-size window, view.draw(), Render. Returns the CPU time in ms.
    double frame(View& view, const TraceModel& model, ViewState& state, const Theme& theme,
                 TextureHost* textures = nullptr, SvgRecorder* svg = nullptr);
    // Input for the next frame (at most one button change per frame, as with the Studio).
    void set_mouse(ImVec2 pos, bool left_down);
    void set_wheel(float wheel);
    // Compare mode: every following frame draws with `b` as the second trace (nullptr: none).
    void set_compare(const TraceModel* b) { compare_ = b; }

    int64_t vertices() const { return vertices_; }  // of the last frame
    int64_t commands() const { return commands_; }
    ImGuiContext* context() const { return ctx_; }

  private:
    ImGuiContext* ctx_ = nullptr;
    ImVec2 size_;
    const TraceModel* compare_ = nullptr;
    int64_t vertices_ = 0;
    int64_t commands_ = 0;
};

}  // namespace kvscope::views
