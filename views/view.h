#pragma once
// View: one ImGui visualisation of a trace. draw() fills the current ImGui window (the Studio
// gives each view its own window and ImGui context); it reads the TraceModel, reads and writes
// the shared ViewState (linked selection), and keeps only its own presentation state (zoom, pan,
// caches of rasters) in the view object.
#include <memory>
#include <string>
#include <vector>

#include "views/canvas.h"
#include "views/theme.h"
#include "views/trace_model.h"
#include "views/view_state.h"

namespace kvscope::views {

struct ViewContext {
    const TraceModel& model;
    ViewState& state;
    const Theme& theme;
    TextureHost* textures = nullptr;  // nullptr: rasters draw as rects
    SvgRecorder* svg = nullptr;       // set while an SVG export is recorded
    double time = 0.0;                // seconds, for hover effects only
    // Compare mode: a second trace "B" of the same model shape and prompt (the Studio checks it,
    // see views/compare_diff.h), drawn against `model` ("A") at the shared selection; nullptr
    // when none is open.
    const TraceModel* compare = nullptr;

    Canvas canvas() const { return Canvas(ImGui::GetWindowDrawList(), svg); }
};

class View {
  public:
    virtual ~View() = default;
    virtual const char* id() const = 0;     // stable name: "token_strip", used in files/settings
    virtual const char* title() const = 0;  // "Token strip"
    virtual void draw(ViewContext& ctx) = 0;
    // A different trace was opened: drop caches that depend on the old one.
    virtual void reset() {}
};

// The views, in menu order.
std::vector<std::unique_ptr<View>> make_all_views();

// Placeholder drawn by the Studio when no trace is open.
void draw_empty_view(const Theme& theme, const char* message);

}  // namespace kvscope::views
