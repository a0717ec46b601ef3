#pragma once
// Slide figures: one view at one step, at a fixed pixel size (e.g. 1920x1080), with an optional
// caption in a band under the view, written as PNG, PDF or SVG (chosen by the extension).
//   PNG: the view as rendered (raster) and the caption, at exactly the requested size.
//   PDF: a page of the requested aspect; the view is embedded as that same raster image (ImGui
//        draws with OpenGL, so the PDF holds pixels, not vectors); the caption is vector text.
//   SVG: the view's own vector drawing (views/canvas.h's SvgRecorder: plots, cells, lines and
//        labels, but not ImGui widgets such as combo boxes) nested under the vector caption.
// Files are written to PATH.part and moved onto PATH, never over an existing file unless
// overwrite is set.
#include <QImage>
#include <QSize>
#include <QString>

#include <string>

namespace kvscope::studio {

struct FigureContent {
    QImage image;     // the view, `size` minus the caption band (figure_view_size)
    std::string svg;  // the view as an SVG document (SvgRecorder), for .svg figures
    QString caption;  // empty: no band
};

// The pixel size the view itself gets in a figure of `size` (the caption band is under it).
QSize figure_view_size(QSize size, const QString& caption);

// True for the extensions write_figure understands (png, pdf, svg; any case).
bool is_figure_path(const QString& path);

// Writes the figure; false + *error naming the file and the problem.
bool write_figure(const QString& path, QSize size, const FigureContent& content, bool overwrite,
                  QString* error);

}  // namespace kvscope::studio
