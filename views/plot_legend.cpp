#include "views/plot_legend.h"

namespace kvscope::views {

namespace {

float swatch_width() {
    return ImGui::GetFontSize() * 1.4f;
}
constexpr float kGap = 4.0f;       // swatch to name
constexpr float kItemGap = 14.0f;  // name to next swatch

}  // namespace

float legend_width(const std::vector<LegendItem>& items) {
    float w = 0.0f;
    for (const LegendItem& it : items) {
        if (w > 0.0f) w += kItemGap;
        w += swatch_width() + kGap + ImGui::CalcTextSize(it.name.c_str()).x;
    }
    return w;
}

void draw_legend(Canvas& canvas, const Theme& theme, ImVec2 pos,
                 const std::vector<LegendItem>& items) {
    const float font = ImGui::GetFontSize();
    const float mid = pos.y + font * 0.5f;
    float x = pos.x;
    for (const LegendItem& it : items) {
        const float sw = swatch_width();
        switch (it.mark) {
            case LegendItem::Mark::kLine:
                canvas.line(ImVec2(x, mid), ImVec2(x + sw, mid), it.colour, 2.0f);
                break;
            case LegendItem::Mark::kDot:
                canvas.circle(ImVec2(x + sw * 0.5f, mid), 3.5f, it.colour);
                break;
            case LegendItem::Mark::kRing:
                canvas.draw_list()->AddCircle(ImVec2(x + sw * 0.5f, mid), 6.0f, it.colour, 16,
                                              2.0f);
                break;
        }
        x += sw + kGap;
        canvas.text(ImVec2(x, pos.y), theme.text_dim, it.name);
        x += ImGui::CalcTextSize(it.name.c_str()).x + kItemGap;
    }
}

}  // namespace kvscope::views
