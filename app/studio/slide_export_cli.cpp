#include "app/studio/slide_export_cli.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QFileInfo>
#include <QStringList>
#include <QTimer>

#include <cstdio>
#include <exception>
#include <optional>

#include "app/studio/figure_export.h"
#include "app/studio/main_window.h"
#include "app/studio/slide_export.h"
#include "traces/trace_output.h"

namespace kvscope::studio {

namespace {

constexpr const char* kVideo = "export-video";
constexpr const char* kFigure = "export-figure";

// A usage problem: printed, exit status 2.
struct Usage {
    QString message;
};

int print(const QString& message, int rc) {
    std::fprintf(stderr, "kvscope-studio: %s\n", message.toLocal8Bit().constData());
    return rc;
}

QSize parse_size(const QString& text) {
    const QStringList wh = text.split('x');
    bool ok_w = false, ok_h = false;
    const int w = wh.size() == 2 ? wh[0].toInt(&ok_w) : 0;
    const int h = wh.size() == 2 ? wh[1].toInt(&ok_h) : 0;
    if (!ok_w || !ok_h || w < 16 || h < 16 || w > 8192 || h > 8192) {
        throw Usage{"--size " + text +
                    ": expected WxH between 16x16 and 8192x8192, e.g. 1920x1080"};
    }
    return {w, h};
}

int64_t parse_int(const QString& flag, const QString& text) {
    bool ok = false;
    const qlonglong v = text.toLongLong(&ok);
    if (!ok || v < 0) throw Usage{flag + " " + text + ": expected a whole number >= 0"};
    return v;
}

// An exact view id, else the one view whose id or title contains `name`.
int find_view(const MainWindow& window, const QString& name) {
    QStringList ids;
    std::optional<int> partial;
    int partial_count = 0;
    for (int i = 0; i < window.view_count(); ++i) {
        const QString id = QString::fromUtf8(window.view(i)->id());
        ids << id;
        if (id == name) return i;
        if (id.contains(name, Qt::CaseInsensitive) ||
            QString::fromUtf8(window.view(i)->title()).contains(name, Qt::CaseInsensitive)) {
            partial = i;
            ++partial_count;
        }
    }
    if (partial_count == 1) return *partial;
    throw Usage{"--view " + name +
                (partial_count > 1 ? ": matches several views" : ": no such view") +
                " (views: " + ids.join(", ") + ")"};
}

SlideExportOptions parse_options(const MainWindow& window, const QCommandLineParser& parser,
                                 bool video) {
    SlideExportOptions o;
    o.view = parser.isSet("view") ? find_view(window, parser.value("view")) : window.current_view();
    o.size =
        parse_size(parser.isSet("size") ? parser.value("size")
                                        : (video ? QString("1280x720") : QString("1920x1080")));
    bool ok = false;
    o.scale = parser.value("scale").toDouble(&ok);
    if (!ok || o.scale < 0.25 || o.scale > 8) {
        throw Usage{"--scale " + parser.value("scale") + ": expected a number in [0.25, 8]"};
    }
    o.overwrite = parser.isSet("force");
    o.caption = parser.value("caption");
    const int64_t steps = window.step_count();
    if (video) {
        o.fps = static_cast<int>(parse_int("--fps", parser.value("fps")));
        if (o.fps < 1 || o.fps > 60)
            throw Usage{"--fps " + parser.value("fps") + ": expected 1 to 60"};
        o.first_step = 0;
        o.last_step = steps - 1;
        if (parser.isSet("steps")) {
            const QStringList ab = parser.value("steps").split(':');
            if (ab.size() != 2) throw Usage{"--steps " + parser.value("steps") + ": expected A:B"};
            o.first_step = parse_int("--steps", ab[0]);
            o.last_step = parse_int("--steps", ab[1]);
        }
        if (o.first_step > o.last_step || o.last_step >= steps) {
            throw Usage{QStringLiteral("--steps %1:%2: the trace has steps 0:%3")
                            .arg(o.first_step)
                            .arg(o.last_step)
                            .arg(steps - 1)};
        }
        if (parser.isSet("caption")) throw Usage{"--caption is for --export-figure"};
    } else {
        o.step = parser.isSet("step") ? parse_int("--step", parser.value("step")) : 0;
        if (o.step >= steps) {
            throw Usage{
                QStringLiteral("--step %1: the trace has steps 0:%2").arg(o.step).arg(steps - 1)};
        }
        if (parser.isSet("steps") || parser.isSet("fps")) {
            throw Usage{"--steps and --fps are for --export-video"};
        }
    }
    return o;
}

}  // namespace

void add_slide_export_options(QCommandLineParser& parser) {
    parser.addOptions({
        {kVideo,
         "Write the playback of a view over --steps as FILE (.mp4: H.264 or MPEG-4; .gif), one "
         "frame per step, and exit.",
         "FILE"},
        {kFigure,
         "Write a view at --step as a slide figure FILE (.png; .pdf with the view as a raster "
         "image; .svg with the view's plot as vectors) and exit.",
         "FILE"},
        {"view", "View to export: an id (token_strip, eviction_timeline, ...) or a unique part.",
         "NAME"},
        {"steps", "Video: first and last step, both included (default: all).", "A:B"},
        {"fps", "Video: steps per second (default 4).", "N", "4"},
        {"caption", "Figure: a caption under the view.", "TEXT"},
        {"force", "Replace an existing output file."},
    });
}

bool slide_export_requested(const QCommandLineParser& parser) {
    return parser.isSet(kVideo) || parser.isSet(kFigure);
}

int run_slide_export_cli(MainWindow& window, const QCommandLineParser& parser) {
    const bool video = parser.isSet(kVideo);
    const QString path = parser.value(video ? kVideo : kFigure);
    SlideExportOptions o;
    try {
        if (parser.isSet(kVideo) && parser.isSet(kFigure)) {
            throw Usage{"--export-video and --export-figure: one at a time"};
        }
        if (parser.isSet("export-views"))
            throw Usage{"--export-views cannot be combined with " +
                        QString(video ? "--export-video" : "--export-figure")};
        if (parser.positionalArguments().isEmpty() || !window.model()) {
            throw Usage{QString("--") + (video ? kVideo : kFigure) + " needs a trace"};
        }
        o = parse_options(window, parser, video);
        const QString ext = QFileInfo(path).suffix().toLower();
        if (video && ext != "mp4" && ext != "gif") {
            throw Usage{"--export-video " + path + ": use a .mp4 or .gif file name"};
        }
        if (!video && !is_figure_path(path)) {
            throw Usage{"--export-figure " + path + ": use a .png, .pdf or .svg file name"};
        }
        if (ext == "mp4" && (o.size.width() % 2 != 0 || o.size.height() % 2 != 0)) {
            throw Usage{"--size: an MP4's width and height must be even"};
        }
        trace::refuse_existing_output(path.toStdString(), o.overwrite);
    } catch (const Usage& u) {
        return print(u.message, 2);
    } catch (const std::exception& e) {
        return print(QString::fromStdString(e.what()), 2);
    }
    int rc = 0;
    // As --export-views: the window is shown and its GL contexts exist before the first frame.
    QTimer::singleShot(300, QApplication::instance(), [&] {
        QString error;
        const bool ok = video ? export_slide_video(window, path, o, &error)
                              : export_slide_figure(window, path, o, &error);
        if (!ok) rc = print(error, 1);
        QApplication::quit();
    });
    QApplication::exec();
    return rc;
}

}  // namespace kvscope::studio
