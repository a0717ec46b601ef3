#pragma once
// Text placed after ImGui::SameLine() in a view's header row (hints, verdicts, counts): it stays
// on the line when the rest of the line holds it, and otherwise starts a line of its own, wrapped
// at the window's edge. Dear ImGui clips single-line text at the window's edge, which cut the
// answer verdict and the header hints at 1440 px and below (issue 16).
#include <imgui.h>

namespace kvscope::views {

// Call right after ImGui::SameLine(). `colour` 0 = the dim text colour.
void fitted_text(const char* text, ImU32 colour = 0);
// printf-style convenience.
void fitted_textf(ImU32 colour, const char* fmt, ...) IM_FMTARGS(2);

}  // namespace kvscope::views
