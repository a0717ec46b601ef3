#include "app/studio/slide_export.h"

#include <algorithm>
#include <cmath>

#include "app/studio/figure_export.h"
#include "app/studio/main_window.h"
#include "app/studio/video_export.h"

namespace kvscope::studio {

namespace {

QSize logical_size(QSize px, double scale) {
    return {std::max(1, static_cast<int>(std::lround(px.width() / scale))),
            std::max(1, static_cast<int>(std::lround(px.height() / scale)))};
}

// The view at the current step, exactly `px` pixels: laid out at px / scale and drawn scale
// times larger (a fractional scale can round the framebuffer a pixel off, which is resized).
QImage render_at(MainWindow& window, int view, QSize px, double scale) {
    QImage image = window.render_view(view, scale, logical_size(px, scale));
    if (!image.isNull() && image.size() != px) {
        image = image.scaled(px, Qt::IgnoreAspectRatio, Qt::SmoothTransformation);
    }
    return image;
}

QString check_common(MainWindow& window, const QString& path, const SlideExportOptions& o) {
    if (!window.model()) return path + ": no trace is open";
    if (o.view < 0 || o.view >= window.view_count()) return path + ": no such view";
    if (o.size.width() < 16 || o.size.height() < 16 || o.scale <= 0) {
        return path + ": the size must be at least 16x16 and the scale > 0";
    }
    return {};
}

}  // namespace

bool export_slide_video(MainWindow& window, const QString& path, const SlideExportOptions& o,
                        QString* error, const SlideExportProgress& progress) {
    *error = check_common(window, path, o);
    const int64_t steps = window.step_count();
    if (error->isEmpty() &&
        (o.first_step < 0 || o.last_step < o.first_step || o.last_step >= steps)) {
        *error = QStringLiteral("%1: steps %2:%3 are not inside the trace's 0:%4")
                     .arg(path)
                     .arg(o.first_step)
                     .arg(o.last_step)
                     .arg(steps - 1);
    }
    if (!error->isEmpty()) return false;
    const int64_t was = window.view_state().step;
    VideoEncoder video;
    bool ok = video.open(path, o.size.width(), o.size.height(), o.fps, o.overwrite);
    const int64_t total = o.last_step - o.first_step + 1;
    for (int64_t s = o.first_step; ok && s <= o.last_step; ++s) {
        window.set_step(s);
        const QImage frame = render_at(window, o.view, o.size, o.scale);
        if (frame.isNull()) {
            *error = path + ": the view could not be drawn at step " + QString::number(s);
            window.set_step(was);
            return false;  // the encoder's destructor removes the unfinished file
        }
        ok = video.add_frame(frame);
        if (ok && progress && !progress(s - o.first_step + 1, total)) {
            *error = path + ": cancelled";
            window.set_step(was);
            return false;
        }
    }
    ok = ok && video.finish();
    if (!ok) *error = video.error();
    window.set_step(was);
    return ok;
}

bool export_slide_figure(MainWindow& window, const QString& path, const SlideExportOptions& o,
                         QString* error) {
    *error = check_common(window, path, o);
    if (error->isEmpty() && (o.step < 0 || o.step >= window.step_count())) {
        *error = QStringLiteral("%1: step %2 is not inside the trace's 0:%3")
                     .arg(path)
                     .arg(o.step)
                     .arg(window.step_count() - 1);
    }
    if (!error->isEmpty()) return false;
    const int64_t was = window.view_state().step;
    window.set_step(o.step);
    FigureContent content;
    content.caption = o.caption;
    const QSize view_px = figure_view_size(o.size, o.caption);
    content.image = render_at(window, o.view, view_px, o.scale);
    if (path.endsWith(".svg", Qt::CaseInsensitive)) {
        content.svg = window.render_view_svg(o.view, logical_size(view_px, o.scale));
    }
    const bool ok = write_figure(path, o.size, content, o.overwrite, error);
    window.set_step(was);
    return ok;
}

}  // namespace kvscope::studio
