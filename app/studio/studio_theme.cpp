#include "app/studio/studio_theme.h"

#include <QApplication>
#include <QPalette>
#include <QStyle>

namespace kvscope::studio {

namespace {

QColor colour(ImU32 c) {
    return QColor((c >> IM_COL32_R_SHIFT) & 0xFF, (c >> IM_COL32_G_SHIFT) & 0xFF,
                  (c >> IM_COL32_B_SHIFT) & 0xFF);
}

}  // namespace

void apply_qt_palette(const views::Theme& t) {
    static const QPalette system_palette = QApplication::palette();
    if (QApplication::style()->name() != "fusion") QApplication::setStyle("Fusion");
    if (t.kind == views::ThemeKind::kLight) {
        QApplication::setPalette(system_palette);
        return;
    }
    QPalette p;
    p.setColor(QPalette::Window, colour(t.background));
    p.setColor(QPalette::WindowText, colour(t.text));
    p.setColor(QPalette::Base, colour(t.panel));
    p.setColor(QPalette::AlternateBase, colour(t.background));
    p.setColor(QPalette::Text, colour(t.text));
    // Buttons a step off the background: lighter on dark, darker on the high-contrast white.
    p.setColor(QPalette::Button, t.light_background() ? colour(t.background).darker(112)
                                                      : colour(t.background).lighter(120));
    p.setColor(QPalette::ButtonText, colour(t.text));
    p.setColor(QPalette::ToolTipBase, colour(t.panel));
    p.setColor(QPalette::ToolTipText, colour(t.text));
    p.setColor(QPalette::Highlight,
               t.light_background() ? QColor(0, 70, 200) : QColor(66, 133, 244));
    p.setColor(QPalette::HighlightedText, Qt::white);
    p.setColor(QPalette::PlaceholderText, colour(t.text_dim));
    p.setColor(QPalette::Disabled, QPalette::Text, colour(t.text_dim));
    p.setColor(QPalette::Disabled, QPalette::ButtonText, colour(t.text_dim));
    p.setColor(QPalette::Disabled, QPalette::WindowText, colour(t.text_dim));
    QApplication::setPalette(p);
}

QString theme_name(views::ThemeKind kind) {
    switch (kind) {
        case views::ThemeKind::kDark:
            return "dark";
        case views::ThemeKind::kLight:
            return "light";
        case views::ThemeKind::kHighContrast:
            break;
    }
    return "contrast";
}

views::ThemeKind theme_from_name(const QString& name) {
    if (name == "light") return views::ThemeKind::kLight;
    if (name == "contrast") return views::ThemeKind::kHighContrast;
    return views::ThemeKind::kDark;
}

}  // namespace kvscope::studio
