#include "views/text_fit.h"

#include <cstdarg>
#include <cstdio>

namespace kvscope::views {

void fitted_text(const char* text, ImU32 colour) {
    const float need = ImGui::CalcTextSize(text).x;
    if (need > ImGui::GetContentRegionAvail().x) ImGui::NewLine();
    ImGui::PushStyleColor(ImGuiCol_Text, colour != 0
                                             ? ImGui::ColorConvertU32ToFloat4(colour)
                                             : ImGui::GetStyleColorVec4(ImGuiCol_TextDisabled));
    ImGui::PushTextWrapPos(0.0f);  // wrap at the window's edge
    ImGui::TextUnformatted(text);
    ImGui::PopTextWrapPos();
    ImGui::PopStyleColor();
}

void fitted_textf(ImU32 colour, const char* fmt, ...) {
    char buf[1024];
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, args);
    va_end(args);
    fitted_text(buf, colour);
}

}  // namespace kvscope::views
