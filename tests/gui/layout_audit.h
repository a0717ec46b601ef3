#pragma once
// Layout audit for the GUI tests: finds labels the layout gives less width than their text needs
// (issue 16: "no clipped labels at 1280x720"). It reads the widths the layouts computed in the
// last frame:
//  - Dear ImGui: per window, the right-most extent its items reached (DC.CursorMaxPos: text,
//    buttons, combos, child windows) against the right edge of what the window shows
//    (InnerClipRect), unless the window scrolls horizontally; per table column, the widest cell
//    and header content against the column's right edge.
//  - Qt: labels, buttons, spin and combo boxes against their text's advance in their font; dock
//    tabs against their title's advance; dock title bars; menu-bar entries inside the bar.
#include <QString>
#include <QStringList>

struct ImGuiContext;
class QWidget;

namespace kvscope::studio::testing {

// One line per clipped label: "<where>: needs N px, has M px". Empty when everything fits.
// `tolerance_px` absorbs rounding of sub-pixel layouts.
QStringList imgui_clipped(ImGuiContext* ctx, const QString& where, float tolerance_px = 1.0f);
QStringList qt_clipped(QWidget* root, int tolerance_px = 1);

}  // namespace kvscope::studio::testing
