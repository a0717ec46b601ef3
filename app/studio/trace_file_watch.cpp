// Notices a trace replaced on disk or moved into place (see trace_file_watch.h).
#include "app/studio/trace_file_watch.h"

#include <sys/stat.h>

#include <QAction>
#include <QFile>
#include <QFileInfo>
#include <QFileSystemWatcher>
#include <QLabel>
#include <QMainWindow>
#include <QToolBar>

#include "traces/trace_output.h"

namespace kvscope::studio {

namespace {
std::filesystem::path fs_path(const QString& p) {
    return std::filesystem::path(QFile::encodeName(p).toStdString());
}
QString q_path(const std::filesystem::path& p) {
    return QFile::decodeName(QByteArray::fromStdString(p.string()));
}
}  // namespace

TraceFileWatch::TraceFileWatch(QMainWindow* window) : QObject(window) {
    watcher_ = new QFileSystemWatcher(this);
    // A rename fires several events (the .part vanishes, the target changes): look once they
    // have settled.
    debounce_.setSingleShot(true);
    debounce_.setInterval(150);
    connect(&debounce_, &QTimer::timeout, this, &TraceFileWatch::check);
    connect(watcher_, &QFileSystemWatcher::fileChanged, this, [this] { debounce_.start(); });
    connect(watcher_, &QFileSystemWatcher::directoryChanged, this, [this] { debounce_.start(); });

    bar_ = new QToolBar(tr("File changed"), window);
    bar_->setObjectName("file_notice_bar");
    bar_->setMovable(false);
    bar_->setFloatable(false);
    label_ = new QLabel(bar_);
    label_->setObjectName("file_notice_label");
    label_->setContentsMargins(8, 0, 8, 0);
    bar_->addWidget(label_);
    action_ = bar_->addAction(tr("Reload"), this, [this] {
        bar_->hide();
        emit reload_requested(target_of(opened_));
    });
    action_->setObjectName("file_notice_reload");
    bar_->addAction(tr("Dismiss"), this, [this] {
        dismissed_ = id_of(target_of(opened_));  // not shown again for the same file
        bar_->hide();
    });
    // Own row at the top, above the views; hidden until something changes on disk.
    window->addToolBarBreak(Qt::TopToolBarArea);
    window->addToolBar(Qt::TopToolBarArea, bar_);
    bar_->hide();
}

QString TraceFileWatch::file_to_open(const QString& path) {
    if (!trace::target_of_recording(fs_path(path)).empty()) return path;  // a .part itself
    const std::filesystem::path part = trace::recording_path_for(fs_path(path));
    QString qpart = q_path(part);
    if (!QFileInfo::exists(qpart)) return path;
    if (trace::recording_in_progress(part) || !QFileInfo::exists(path)) return qpart;
    return path;  // a stale .part beside a finished trace: the finished trace
}

QString TraceFileWatch::target_of(const QString& file) {
    const std::filesystem::path t = trace::target_of_recording(fs_path(file));
    return t.empty() ? file : q_path(t);
}

TraceFileWatch::FileId TraceFileWatch::id_of(const QString& path) {
    struct stat st {};
    FileId id;
    if (::stat(QFile::encodeName(path).constData(), &st) == 0) {
        id.dev = static_cast<uint64_t>(st.st_dev);
        id.ino = static_cast<uint64_t>(st.st_ino);
        id.valid = true;
    }
    return id;
}

void TraceFileWatch::watch(const QString& opened) {
    clear();
    opened_ = QFileInfo(opened).absoluteFilePath();
    opened_id_ = id_of(opened_);
    rewatch();
}

void TraceFileWatch::clear() {
    debounce_.stop();
    if (!watcher_->files().isEmpty()) watcher_->removePaths(watcher_->files());
    if (!watcher_->directories().isEmpty()) watcher_->removePaths(watcher_->directories());
    opened_.clear();
    opened_id_ = {};
    dismissed_ = {};
    bar_->hide();
}

// Inotify drops a path whose file was replaced or removed: add what exists again.
void TraceFileWatch::rewatch() {
    if (opened_.isEmpty()) return;
    const QString target = target_of(opened_);
    QStringList paths = {QFileInfo(opened_).absolutePath()};
    for (const QString& p : {opened_, target})
        if (QFileInfo::exists(p)) paths << p;
    QStringList missing;
    for (const QString& p : paths)
        if (!watcher_->files().contains(p) && !watcher_->directories().contains(p)) missing << p;
    if (!missing.isEmpty()) watcher_->addPaths(missing);
}

void TraceFileWatch::check() {
    if (opened_.isEmpty()) return;
    const QString target = target_of(opened_);
    if (target != opened_) {
        // Following a .part: once the recording ends it is renamed to the target, the same file
        // under its final name.
        if (!(id_of(opened_) == opened_id_) && id_of(target) == opened_id_) {
            opened_ = target;
            rewatch();
            emit moved_into_place(target);
        }
        rewatch();
        return;
    }
    const FileId now = id_of(target);
    if (now == dismissed_) {
        // Dismissed for this very file: stay quiet until the next replacement.
    } else if (now.valid && !(now == opened_id_)) {
        show_notice(tr("%1 was replaced on disk (a newer recording). You are looking at the "
                       "previous version.")
                        .arg(QFileInfo(target).fileName()),
                    tr("Reload"));
    } else if (trace::recording_in_progress(trace::recording_path_for(fs_path(target)))) {
        show_notice(tr("A new recording into %1 is in progress.").arg(QFileInfo(target).fileName()),
                    tr("Follow it live"));
    }
    rewatch();
}

void TraceFileWatch::show_notice(const QString& text, const QString& action) {
    label_->setText(text);
    action_->setText(action);
    bar_->show();
}

bool TraceFileWatch::notice_shown() const {
    return !bar_->isHidden();
}

QString TraceFileWatch::notice_text() const {
    return label_->text();
}

}  // namespace kvscope::studio
