#pragma once
// The Studio's themes on the Qt side: the Qt chrome (menus, docks, scrubber) follows the views'
// theme through a Fusion palette, and themes are stored in QSettings by name.
#include <QString>

#include "views/theme.h"

namespace kvscope::studio {

void apply_qt_palette(const views::Theme& theme);

// "dark", "light", "contrast"; unknown names read as dark.
QString theme_name(views::ThemeKind kind);
views::ThemeKind theme_from_name(const QString& name);

}  // namespace kvscope::studio
