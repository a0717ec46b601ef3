#pragma once
// The playback bar's icons, painted in the palette's text colour. The style's standard media icons
// are dark glyphs that all but vanish on the dark theme until hovered (issue 16); these follow
// the palette, so they read on every theme and at presenter size.
#include <QColor>
#include <QIcon>

namespace kvscope::studio {

enum class TransportIcon { kFirst, kPrevious, kPlay, kPause, kNext, kLast };

// An icon of `size` logical pixels (drawn at 2x for high-DPI screens and projectors).
QIcon transport_icon(TransportIcon kind, const QColor& colour, int size);

}  // namespace kvscope::studio
