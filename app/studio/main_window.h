#pragma once
// MainWindow: the Studio shell. Qt owns the window, menus, docks (one ImGuiHostWidget per view),
// dialogs, settings (QSettings: geometry, dock layout, theme, recent files, playback speed),
// drag-and-drop, shortcuts, the status bar with the trace summary and the step scrubber; the
// views draw inside the docks. All views share one TraceModel and one ViewState, so a selection
// made in one view shows in every view. In compare mode a second trace (B) is shown against the
// open one (A) with the same ViewState.
#include <QImage>
#include <QMainWindow>
#include <QString>
#include <QStringList>
#include <QTimer>

#include <memory>
#include <string>
#include <vector>

#include "views/trace_model.h"
#include "views/view.h"
#include "views/view_state.h"

class QAction;
class QActionGroup;
class QDockWidget;
class QLabel;
class QMenu;

namespace kvscope::studio {

class ImGuiHostWidget;
class StepScrubber;
class LiveDock;
class PresenterMode;
class SweepDock;
class TraceFileWatch;

class MainWindow : public QMainWindow {
    Q_OBJECT

  public:
    explicit MainWindow(QWidget* parent = nullptr);
    ~MainWindow() override;

    // Opens a trace; on failure keeps the current one, shows a (non-modal) message naming the
    // file and the problem, and returns false (the message is also in last_error()).
    bool open_trace(const QString& path);
    void close_trace();
    // Compare mode: opens a second trace "B", drawn against the open one ("A") at the shared
    // selection (views get it as ViewContext::compare). B must have A's model shape (layers x
    // heads) and prompt tokens; otherwise, or when it cannot be read or no A is open, nothing
    // changes, the error names both files and what differs, and false is returned.
    bool open_compare(const QString& path);
    void close_compare();
    const views::TraceModel* compare_model() const { return compare_.get(); }
    const QString& compare_path() const { return compare_path_; }
    // Steps the scrubber offers: A's, or those both A and B have in compare mode.
    int64_t step_count() const;
    const QString& last_error() const { return last_error_; }
    const QString& trace_path() const { return path_; }
    const views::TraceModel* model() const { return model_.get(); }
    // What-if preview (the live run dock): the views draw `preview` (a one-step model of the
    // same prompt) instead of the open trace until clear_preview() or another trace opens.
    void show_preview(std::shared_ptr<views::TraceModel> preview);
    void clear_preview();
    const views::TraceModel* preview_model() const { return preview_.get(); }
    LiveDock* live_dock() const { return live_dock_; }
    // NIAH grid: opens a `kvscope niah` sweep folder in the grid dock (shown and raised). A click
    // on a cell opens its run with open_trace and, when the cell has one, compare mode against
    // its full-cache run. On failure: a message naming the file, last_error(), false.
    bool open_sweep(const QString& dir);
    SweepDock* sweep_dock() const { return sweep_dock_; }
    views::ViewState& view_state() { return state_; }

    int view_count() const { return static_cast<int>(views_.size()); }
    views::View* view(int i) const { return views_[static_cast<size_t>(i)].get(); }
    ImGuiHostWidget* host(int i) const { return hosts_[static_cast<size_t>(i)]; }
    QDockWidget* dock(int i) const { return docks_[static_cast<size_t>(i)]; }
    int view_index(const QString& id) const;  // -1 when unknown
    // Shows and raises a view's dock and gives it the keyboard focus.
    void show_view(int i);
    int current_view() const;

    // One frame of view i once the data it asked for is loaded, `scale` x its dock's size or x
    // `logical` when given (a fixed layout size for slides and videos). Null when not drawable.
    QImage render_view(int i, double scale, QSize logical = {});
    // The same frame as an SVG document of the view's plot ("" when not drawable).
    std::string render_view_svg(int i, QSize logical = {});
    // Export at `scale` x the dock's size (2 = presentation resolution). False + last_error().
    bool export_view_png(int i, const QString& path, double scale = 2.0);
    bool export_view_svg(int i, const QString& path);
    // Writes <view id>.png of every view into `dir`.
    bool export_all_views(const QString& dir, double scale = 2.0);

    void set_theme(views::ThemeKind kind);
    views::ThemeKind theme_kind() const { return theme_kind_; }
    void set_step(int64_t step);
    StepScrubber* scrubber() const { return scrubber_; }
    // Notices the open trace replaced on disk / its .part moved into place (trace_file_watch.h).
    TraceFileWatch* file_watch() const { return file_watch_; }
    void set_follow_live(bool follow);
    bool follow_live() const { return follow_live_; }
    // Full screen, UI scale, presenter mode (presenter_mode.h).
    PresenterMode* presenter() const { return presenter_; }
    QStringList recent_files() const;
    QString summary_text() const;
    // Repaints every view (after the shared state changed outside a view).
    void repaint_views();

  protected:
    void dragEnterEvent(QDragEnterEvent* e) override;
    void dropEvent(QDropEvent* e) override;
    void closeEvent(QCloseEvent* e) override;
    void showEvent(QShowEvent* e) override;

  private:
    void build_views();
    void apply_default_sizes();
    void build_menus();
    void draw_view(int i, ImGuiHostWidget& host);
    void after_state_change(int source);
    void update_status();
    void update_recent_menu();
    void add_recent(const QString& path);
    void show_error(const QString& title, const QString& message);
    void poll_live();
    void open_dialog();
    void open_sweep_dialog();
    void open_sweep_cell(const QString& trace, const QString& baseline);
    void compare_dialog();
    void clamp_state();  // the selection inside A (and B's steps in compare mode)
    void export_current_png();
    void export_current_svg();
    void export_all_dialog();
    void go_to_step_dialog();
    void step_layer(int delta);
    void step_head(int delta);

    std::shared_ptr<views::TraceModel> model_;
    std::shared_ptr<views::TraceModel> compare_;  // trace B in compare mode
    std::shared_ptr<views::TraceModel> preview_;  // what-if preview shown instead of model_
    LiveDock* live_dock_ = nullptr;
    SweepDock* sweep_dock_ = nullptr;
    QString compare_path_;
    views::ViewState state_;
    views::ThemeKind theme_kind_ = views::ThemeKind::kDark;
    QString path_;
    QString last_error_;
    bool follow_live_ = true;
    uint64_t painted_revision_ = 0;
    int last_focused_view_ = 0;
    bool layout_restored_ = false;
    bool shown_once_ = false;

    std::vector<std::unique_ptr<views::View>> views_;
    std::vector<ImGuiHostWidget*> hosts_;
    std::vector<QDockWidget*> docks_;
    StepScrubber* scrubber_ = nullptr;
    QLabel* summary_label_ = nullptr;
    QLabel* selection_label_ = nullptr;
    QLabel* notice_label_ = nullptr;
    QLabel* compare_label_ = nullptr;
    QAction* close_compare_action_ = nullptr;
    QMenu* recent_menu_ = nullptr;
    QAction* follow_action_ = nullptr;
    QActionGroup* theme_group_ = nullptr;  // dark, light, high contrast (data: ThemeKind)
    PresenterMode* presenter_ = nullptr;
    QTimer live_timer_;
    TraceFileWatch* file_watch_ = nullptr;
};

}  // namespace kvscope::studio
