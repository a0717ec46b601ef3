#include "app/studio/sweep_dock.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QMainWindow>

#include <algorithm>
#include <exception>

#include "app/studio/imgui_host_widget.h"
#include "app/studio/sweep_loader.h"

namespace kvscope::studio {

SweepDock::SweepDock(QWidget* parent) : QDockWidget(tr("NIAH grid"), parent) {
    setObjectName("niah_grid");
    setFeatures(QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetFloatable |
                QDockWidget::DockWidgetClosable);
    host_ = new ImGuiHostWidget(this);
    host_->setObjectName("niah_grid_host");
    host_->set_draw([this](ImGuiHostWidget& h) { draw(h); });
    setWidget(host_);
    // A sweep appends a row every few hundred ms to seconds: once a second is live enough, and a
    // stat of one or a few files costs nothing. (QFileSystemWatcher misses files replaced by
    // rename, as niah-merge does.)
    poll_.setInterval(1000);
    connect(&poll_, &QTimer::timeout, this, [this] { reload_if_changed(); });
}

SweepDock::~SweepDock() = default;

void SweepDock::showEvent(QShowEvent* e) {
    QDockWidget::showEvent(e);
    auto* window = qobject_cast<QMainWindow*>(parentWidget());
    if (!sized_ && window && !isFloating()) {
        sized_ = true;
        // Room for a heatmap with readable cells next to the trace views; once the dock has
        // joined the layout (a resize from its own show event is not applied).
        QTimer::singleShot(0, this, [this, window] {
            window->resizeDocks({this}, {std::max(window->width() * 45 / 100, 420)},
                                Qt::Horizontal);
        });
    }
}

void SweepDock::set_theme(const views::Theme& theme) {
    host_->set_theme(theme);
    host_->update();
}

bool SweepDock::open(const QString& dir) {
    const std::filesystem::path path(QFile::encodeName(dir).toStdString());
    try {
        const std::string stamp = niah_summary_stamp(path);
        auto grid = std::make_unique<views::NiahGrid>(load_niah_sweep(path));
        // A new folder starts on its first policy; a reload keeps the choice (by name).
        if (QFileInfo(dir).absoluteFilePath() != dir_) view_ = views::NiahGridView();
        grid_ = std::move(grid);
        stamp_ = stamp;
    } catch (const std::exception& e) {
        error_ = QString::fromUtf8(e.what());
        return false;
    }
    dir_ = QFileInfo(dir).absoluteFilePath();
    error_.clear();
    message_.clear();
    setWindowTitle(tr("NIAH grid - %1").arg(QFileInfo(dir_).fileName()));
    poll_.start();
    host_->update();
    return true;
}

void SweepDock::close_sweep() {
    grid_.reset();
    dir_.clear();
    stamp_.clear();
    message_.clear();
    poll_.stop();
    setWindowTitle(tr("NIAH grid"));
    host_->update();
}

bool SweepDock::reload_if_changed() {
    if (!grid_ || dir_.isEmpty()) return false;
    const std::filesystem::path path(QFile::encodeName(dir_).toStdString());
    if (niah_summary_stamp(path) == stamp_) return false;
    if (!open(dir_)) {
        // Keep the rows shown; say why they are not refreshed (and try again next tick).
        message_ = "reload failed: " + error_.toStdString();
        host_->update();
        return false;
    }
    return true;
}

bool SweepDock::open_row(int row) {
    if (!grid_ || row < 0 || static_cast<size_t>(row) >= grid_->rows.size()) return false;
    const views::NiahRow& r = grid_->rows[static_cast<size_t>(row)];
    const QDir dir(dir_);
    const QString what =
        tr("summary row: cell %1, %2 %3")
            .arg(r.cell)
            .arg(QString::fromStdString(r.policy), QString::fromStdString(r.budget));
    auto fail = [&](const QString& message) {
        error_ = message;
        message_ = message.toStdString();
        host_->update();
        emit error_found(tr("Cannot open the cell's run"), message);
        return false;
    };
    if (r.trace.empty())
        return fail(tr("%1: this sweep was run without traces (--no-traces), so %2 has none")
                        .arg(dir.filePath("summary.csv"), what));
    const QString trace = QDir::cleanPath(dir.filePath(QString::fromStdString(r.trace)));
    if (!QFileInfo::exists(trace) && !QFileInfo::exists(trace + ".part"))
        return fail(tr("%1: missing (%2)").arg(trace, what));
    QString baseline;
    const int b = grid_->baseline_row(row);
    if (b >= 0 && b != row && !grid_->rows[static_cast<size_t>(b)].trace.empty()) {
        const QString full = QDir::cleanPath(
            dir.filePath(QString::fromStdString(grid_->rows[static_cast<size_t>(b)].trace)));
        if (QFileInfo::exists(full)) baseline = full;
    }
    message_.clear();
    emit open_requested(trace, baseline);
    return true;
}

void SweepDock::draw(ImGuiHostWidget& host) {
    const QString message = error_.isEmpty() || grid_ ? QString::fromStdString(message_) : error_;
    view_.draw(grid_.get(), host.theme(), host.svg(), message.toStdString());
    const int row = view_.take_open_request();
    // Opening a trace rebuilds docks and repaints: not from inside this widget's frame.
    if (row >= 0)
        QMetaObject::invokeMethod(
            this, [this, row] { open_row(row); }, Qt::QueuedConnection);
}

}  // namespace kvscope::studio
