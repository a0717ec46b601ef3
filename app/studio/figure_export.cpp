#include "app/studio/figure_export.h"

#include <QFile>
#include <QFileInfo>
#include <QFont>
#include <QPageSize>
#include <QPainter>
#include <QPdfWriter>

#include <algorithm>
#include <cmath>
#include <exception>

#include "traces/trace_output.h"

namespace kvscope::studio {

namespace {

int caption_band(QSize size, const QString& caption) {
    if (caption.trimmed().isEmpty()) return 0;
    // 8% of the height: one line of text readable from the back of a room (86 px at 1080p).
    return std::max(24, static_cast<int>(std::lround(size.height() * 0.08)));
}

// The view's background (its top-left pixel: every view clears to the theme background) and a
// caption colour that reads on it.
QColor band_colour(const QImage& view) {
    return view.isNull() ? QColor(Qt::white) : QColor(view.pixel(0, 0));
}

QColor text_colour(QColor background) {
    return background.lightnessF() > 0.5 ? QColor(20, 20, 20) : QColor(235, 235, 235);
}

QFont caption_font(int band) {
    QFont font;
    font.setPixelSize(std::max(10, static_cast<int>(std::lround(band * 0.42))));
    return font;
}

// Paints the view and the caption onto `p` over a figure of `size` device pixels (PNG and PDF).
void paint_figure(QPainter& p, QSize size, const FigureContent& content) {
    const int band = caption_band(size, content.caption);
    const QColor bg = band_colour(content.image);
    p.fillRect(QRect(QPoint(0, 0), size), bg);
    p.setRenderHint(QPainter::SmoothPixmapTransform);
    p.drawImage(QRect(0, 0, size.width(), size.height() - band), content.image);
    if (band == 0) return;
    p.setPen(text_colour(bg));
    p.setFont(caption_font(band));
    p.drawText(QRect(band / 4, size.height() - band, size.width() - band / 2, band),
               Qt::AlignCenter | Qt::TextWordWrap, content.caption);
}

// The view's SVG document nested in a figure document with the caption as vector text.
QByteArray figure_svg(QSize size, const FigureContent& content, QString* problem) {
    const QString view = QString::fromStdString(content.svg);
    // SvgRecorder::finish(): an XML declaration, then <svg ... viewBox="0 0 w h">, body, </svg>.
    const qsizetype root = view.indexOf("<svg");
    const qsizetype root_end = root < 0 ? -1 : view.indexOf('>', root);
    const qsizetype vb = root < 0 ? -1 : view.indexOf("viewBox=\"", root);
    if (root_end < 0 || vb < 0 || vb > root_end) {
        *problem = "the view produced no SVG drawing";
        return {};
    }
    const qsizetype vb_end = view.indexOf('"', vb + 9);
    const QString view_box = view.mid(vb + 9, vb_end - vb - 9);
    const int band = caption_band(size, content.caption);
    const QColor bg = band_colour(content.image);
    QString out;
    out += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    out += QStringLiteral(
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%1\" height=\"%2\" "
               "viewBox=\"0 0 %1 %2\">\n")
               .arg(size.width())
               .arg(size.height());
    out += QStringLiteral("<rect width=\"100%\" height=\"100%\" fill=\"%1\"/>\n").arg(bg.name());
    out += QStringLiteral(
               "<svg x=\"0\" y=\"0\" width=\"%1\" height=\"%2\" viewBox=\"%3\" "
               "preserveAspectRatio=\"xMidYMid meet\">\n")
               .arg(size.width())
               .arg(size.height() - band)
               .arg(view_box);
    out += view.mid(root_end + 1).trimmed();  // the body and the closing </svg>
    out += "\n";
    if (band > 0) {
        out += QStringLiteral(
                   "<text x=\"%1\" y=\"%2\" text-anchor=\"middle\" "
                   "dominant-baseline=\"central\" font-family=\"sans-serif\" "
                   "font-size=\"%3\" fill=\"%4\">%5</text>\n")
                   .arg(size.width() / 2)
                   .arg(size.height() - band / 2)
                   .arg(caption_font(band).pixelSize())
                   .arg(text_colour(bg).name(), content.caption.toHtmlEscaped());
    }
    out += "</svg>\n";
    return out.toUtf8();
}

bool write_part(const QString& part, const QString& ext, QSize size, const FigureContent& content,
                QString* problem) {
    if (ext == "png") {
        QImage figure(size, QImage::Format_RGB32);
        QPainter p(&figure);
        paint_figure(p, size, content);
        p.end();
        if (!figure.save(part, "PNG")) *problem = "cannot write the PNG";
    } else if (ext == "pdf") {
        QPdfWriter pdf(part);
        // 96 dots per inch: one figure pixel is one device unit, the page is size x 0.75 points.
        pdf.setResolution(96);
        pdf.setPageSize(
            QPageSize(QSizeF(size) * 0.75, QPageSize::Point, QString(), QPageSize::ExactMatch));
        pdf.setPageMargins(QMarginsF(0, 0, 0, 0));
        pdf.setCreator("KVScope Studio");
        QPainter p;
        if (!p.begin(&pdf)) {
            *problem = "cannot write the PDF";
        } else {
            paint_figure(p, size, content);
            p.end();
        }
    } else {
        const QByteArray svg = figure_svg(size, content, problem);
        QFile f(part);
        if (problem->isEmpty() &&
            (!f.open(QIODevice::WriteOnly | QIODevice::Truncate) || f.write(svg) != svg.size())) {
            *problem = "cannot write the SVG";
        }
    }
    return problem->isEmpty();
}

}  // namespace

QSize figure_view_size(QSize size, const QString& caption) {
    return {size.width(), size.height() - caption_band(size, caption)};
}

bool is_figure_path(const QString& path) {
    const QString ext = QFileInfo(path).suffix().toLower();
    return ext == "png" || ext == "pdf" || ext == "svg";
}

bool write_figure(const QString& path, QSize size, const FigureContent& content, bool overwrite,
                  QString* error) {
    const QString ext = QFileInfo(path).suffix().toLower();
    QString problem;
    if (!is_figure_path(path)) {
        problem = QStringLiteral("unknown figure format '.%1' (use .png, .pdf or .svg)").arg(ext);
    } else if (content.image.isNull()) {
        problem = "the view has not been drawn";
    }
    if (!problem.isEmpty()) {
        *error = path + ": " + problem;
        return false;
    }
    const QString part = path + QString::fromUtf8(trace::kRecordingSuffix);
    try {
        trace::refuse_existing_output(path.toStdString(), overwrite);
        if (!write_part(part, ext, size, content, &problem)) {
            QFile::remove(part);
            *error = path + ": " + problem;
            return false;
        }
        trace::move_into_place(part.toStdString(), path.toStdString(), overwrite);
    } catch (const std::exception& e) {
        QFile::remove(part);
        *error = QString::fromStdString(e.what());
        return false;
    }
    return true;
}

}  // namespace kvscope::studio
