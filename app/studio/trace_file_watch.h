#pragma once
// TraceFileWatch: the Studio's side of "never lose a trace" (traces/trace_output.h). A recording
// is written to <trace>.part and renamed over <trace> when it ends, so:
//   - the trace the Studio has open can be replaced on disk by a newer recording: the Studio
//     keeps showing the old file (it holds its inode) and this shows a non-modal notice bar
//     offering to reload (File > Reload, F5, does the same);
//   - a recording in progress lives in <trace>.part: file_to_open() picks it so the Studio
//     follows the run live, and when the .part is renamed into place the window simply carries
//     on with the same file under its final name (moved_into_place).
// A rename replaces the directory entry, not the file, so the watch is on the folder as well as
// on the path; the file's identity is its (device, inode).
#include <QObject>
#include <QString>
#include <QTimer>

#include <cstdint>

class QAction;
class QFileSystemWatcher;
class QLabel;
class QMainWindow;
class QToolBar;

namespace kvscope::studio {

class TraceFileWatch : public QObject {
    Q_OBJECT

  public:
    // Adds the (hidden) notice bar to `window`'s top tool bar area.
    explicit TraceFileWatch(QMainWindow* window);

    // The file to open for `path`: its .part when a recording into it is in progress, or when
    // only the .part exists (a killed run); else `path` itself.
    static QString file_to_open(const QString& path);
    // The trace's final name: the target of a .part, else `file` itself.
    static QString target_of(const QString& file);

    // Starts watching `opened`, the file just opened (a trace or a .part). Hides the notice.
    void watch(const QString& opened);
    void clear();
    // Looks at the disk now (the watcher calls it, debounced, on every change it sees).
    void check();

    const QString& opened() const { return opened_; }
    bool notice_shown() const;
    QString notice_text() const;
    QToolBar* notice_bar() const { return bar_; }

  signals:
    // The user asked to reload (the notice's Reload / Follow action): open `target` again.
    void reload_requested(const QString& target);
    // The .part being followed was renamed to `target` (the recording completed).
    void moved_into_place(const QString& target);

  private:
    struct FileId {
        uint64_t dev = 0, ino = 0;
        bool valid = false;
        bool operator==(const FileId& o) const {
            return valid && o.valid && dev == o.dev && ino == o.ino;
        }
    };
    static FileId id_of(const QString& path);
    void rewatch();
    void show_notice(const QString& text, const QString& action);

    QFileSystemWatcher* watcher_ = nullptr;
    QTimer debounce_;
    QString opened_;  // absolute path of the file opened
    FileId opened_id_;
    FileId dismissed_;  // the replacement whose notice was dismissed
    QToolBar* bar_ = nullptr;
    QLabel* label_ = nullptr;
    QAction* action_ = nullptr;
};

}  // namespace kvscope::studio
