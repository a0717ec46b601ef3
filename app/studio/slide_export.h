#pragma once
// Slide and talk export: renders one view of the open trace at a fixed pixel size, either at one
// step as a figure (figure_export.h) or over a range of steps as a video (video_export.h, one
// frame per step). Used by File > Export video / Export figure and by the command line
// (slide_export_cli.h). The view lays out at size / scale logical pixels and is drawn `scale`
// times larger, so text stays readable on a projector (1920x1080 at scale 2 = a 960x540 layout).
#include <QSize>
#include <QString>

#include <cstdint>
#include <functional>

namespace kvscope::studio {

class MainWindow;

struct SlideExportOptions {
    int view = 0;            // MainWindow::view index
    int64_t first_step = 0;  // video: first and last step shown, both included
    int64_t last_step = 0;
    int64_t step = 0;        // figure: the step shown
    QSize size{1920, 1080};  // pixels of the output
    double scale = 2.0;
    int fps = 4;      // video: steps per second
    QString caption;  // figure: empty = none
    bool overwrite = false;
};

// Called after each video frame with (frames done, frames in all); returning false cancels.
using SlideExportProgress = std::function<bool(int64_t, int64_t)>;

// Both leave the window at the step it showed before. False + *error naming the file.
bool export_slide_video(MainWindow& window, const QString& path, const SlideExportOptions& o,
                        QString* error, const SlideExportProgress& progress = {});
bool export_slide_figure(MainWindow& window, const QString& path, const SlideExportOptions& o,
                         QString* error);

}  // namespace kvscope::studio
