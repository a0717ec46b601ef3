#include "app/studio/transport_icons.h"

#include <QPainter>
#include <QPainterPath>
#include <QPixmap>

namespace kvscope::studio {

namespace {

// Glyphs on a 0..1 square: triangles pointing left or right and bars.
void add_triangle(QPainterPath& p, double x0, double x1, bool right) {
    const double tip = right ? x1 : x0;
    const double base = right ? x0 : x1;
    p.moveTo(base, 0.2);
    p.lineTo(tip, 0.5);
    p.lineTo(base, 0.8);
    p.closeSubpath();
}

void add_bar(QPainterPath& p, double x0, double x1) {
    p.addRect(QRectF(x0, 0.2, x1 - x0, 0.6));
}

QPainterPath glyph(TransportIcon kind) {
    QPainterPath p;
    switch (kind) {
        case TransportIcon::kFirst:
            add_bar(p, 0.18, 0.28);
            add_triangle(p, 0.30, 0.82, false);
            break;
        case TransportIcon::kPrevious:
            add_triangle(p, 0.12, 0.50, false);
            add_triangle(p, 0.48, 0.86, false);
            break;
        case TransportIcon::kPlay:
            add_triangle(p, 0.26, 0.80, true);
            break;
        case TransportIcon::kPause:
            add_bar(p, 0.26, 0.42);
            add_bar(p, 0.58, 0.74);
            break;
        case TransportIcon::kNext:
            add_triangle(p, 0.14, 0.52, true);
            add_triangle(p, 0.50, 0.88, true);
            break;
        case TransportIcon::kLast:
            add_triangle(p, 0.18, 0.70, true);
            add_bar(p, 0.72, 0.82);
            break;
    }
    return p;
}

}  // namespace

QIcon transport_icon(TransportIcon kind, const QColor& colour, int size) {
    QIcon icon;
    for (const QIcon::Mode mode : {QIcon::Normal, QIcon::Disabled}) {
        QPixmap pixmap(size * 2, size * 2);
        pixmap.setDevicePixelRatio(2.0);
        pixmap.fill(Qt::transparent);
        QPainter painter(&pixmap);
        painter.setRenderHint(QPainter::Antialiasing);
        painter.scale(size, size);
        QColor c = colour;
        if (mode == QIcon::Disabled) c.setAlphaF(0.35f);
        painter.fillPath(glyph(kind), c);
        painter.end();
        icon.addPixmap(pixmap, mode);
    }
    return icon;
}

}  // namespace kvscope::studio
