// Over 800 lines on purpose: the window's menus, docks and their wiring are one unit that Qt
// builds in one constructor; the views, docks and dialogs themselves live in their own files.
#include "app/studio/main_window.h"

#include <QAction>
#include <QActionGroup>
#include <QApplication>
#include <QCloseEvent>
#include <QDir>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QInputDialog>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QSettings>
#include <QStatusBar>
#include <QToolBar>
#include <QUrl>

#include <algorithm>
#include <exception>

#include "app/studio/help_dialogs.h"
#include "app/studio/imgui_host_widget.h"
#include "app/studio/live_dock.h"
#include "app/studio/presenter_mode.h"
#include "app/studio/slide_export_dialog.h"
#include "app/studio/step_scrubber.h"
#include "app/studio/story_dock.h"
#include "app/studio/studio_theme.h"
#include "app/studio/sweep_dock.h"
#include "app/studio/trace_file_watch.h"
#include "views/compare_diff.h"
#include "views/reader_trace_model.h"
#include "views/view_help.h"

namespace kvscope::studio {

namespace {

constexpr int kMaxRecent = 10;
constexpr const char* kEmptyMessage =
    "Open a trace: File > Open (Ctrl+O), drop a .kvtrace.h5 file here, or pass its path on the "
    "command line.";

QString state_name(trace::RunState s) {
    switch (s) {
        case trace::RunState::kComplete:
            return QObject::tr("complete");
        case trace::RunState::kAborted:
            return QObject::tr("aborted");
        case trace::RunState::kRunning:
            break;
    }
    return QObject::tr("still being written");
}

}  // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
    setWindowTitle(tr("KVScope Studio"));
    setAcceptDrops(true);
    setDockNestingEnabled(true);
    setDockOptions(AnimatedDocks | AllowNestedDocks | AllowTabbedDocks);
    resize(1440, 900);

    QSettings settings;
    theme_kind_ = theme_from_name(settings.value("theme", "dark").toString());
    follow_live_ = settings.value("live/follow", true).toBool();

    scrubber_ = new StepScrubber(this);
    scrubber_->set_steps_per_second(settings.value("playback/speed", 5.0).toDouble());
    auto* bar = new QToolBar(tr("Steps"), this);
    bar->setObjectName("steps_toolbar");
    bar->setMovable(false);
    bar->addWidget(scrubber_);
    addToolBar(Qt::BottomToolBarArea, bar);
    connect(scrubber_, &StepScrubber::step_changed, this, [this](int64_t s) {
        state_.set_step(s);
        painted_revision_ = state_.revision;
        repaint_views();
        update_status();
    });

    summary_label_ = new QLabel(this);
    notice_label_ = new QLabel(this);
    notice_label_->setStyleSheet("color: #e0803a;");
    selection_label_ = new QLabel(this);
    compare_label_ = new QLabel(this);
    statusBar()->addWidget(summary_label_, 1);
    statusBar()->addWidget(compare_label_);
    statusBar()->addWidget(notice_label_);
    statusBar()->addPermanentWidget(selection_label_);

    build_views();
    live_dock_ = new LiveDock(this);
    // The what-if dock is a full-height column on the right (the right area takes no room while
    // it is empty, so the views' layout is unchanged until the dock is shown).
    setCorner(Qt::TopRightCorner, Qt::RightDockWidgetArea);
    setCorner(Qt::BottomRightCorner, Qt::RightDockWidgetArea);
    addDockWidget(Qt::RightDockWidgetArea, live_dock_);
    live_dock_->hide();
    // The NIAH grid shares the right column; hidden until a sweep is opened.
    sweep_dock_ = new SweepDock(this);
    addDockWidget(Qt::RightDockWidgetArea, sweep_dock_);
    sweep_dock_->hide();
    connect(sweep_dock_, &SweepDock::open_requested, this, &MainWindow::open_sweep_cell);
    connect(sweep_dock_, &SweepDock::error_found, this,
            [this](const QString& title, const QString& message) { show_error(title, message); });
    presenter_ = new PresenterMode(this);
    build_menus();
    install_teaching(this);  // Story dock, Help > Lessons / Policy explainers
    if (!restoreGeometry(settings.value("window/geometry").toByteArray())) resize(1440, 900);
    layout_restored_ = restoreState(settings.value("window/state").toByteArray());
    set_theme(theme_kind_);

    live_timer_.setInterval(500);
    connect(&live_timer_, &QTimer::timeout, this, &MainWindow::poll_live);
    // Created after restoreState: the notice bar starts hidden whatever the saved layout says.
    file_watch_ = new TraceFileWatch(this);
    connect(file_watch_, &TraceFileWatch::reload_requested, this,
            [this](const QString& target) { open_trace(target); });
    connect(file_watch_, &TraceFileWatch::moved_into_place, this, [this](const QString& target) {
        path_ = target;  // the followed .part, complete, under its final name
        setWindowTitle(tr("KVScope Studio - %1").arg(QFileInfo(path_).fileName()));
    });
    update_status();
}

MainWindow::~MainWindow() = default;

// ---- Construction ---------------------------------------------------------------------------

void MainWindow::build_views() {
    views_ = views::make_all_views();
    for (size_t i = 0; i < views_.size(); ++i) {
        // Short titles, so the tabs fit at 1280 px and presenter scale (views/view_help.h).
        const views::ViewHelp* help = views::view_help(views_[i]->id());
        auto* dock =
            new QDockWidget(QString::fromUtf8(help ? help->short_title : views_[i]->title()), this);
        dock->setObjectName(QString::fromUtf8(views_[i]->id()));
        dock->setFeatures(QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetFloatable |
                          QDockWidget::DockWidgetClosable);
        auto* host = new ImGuiHostWidget(dock);
        host->setObjectName(QString::fromUtf8(views_[i]->id()) + "_host");
        const int index = static_cast<int>(i);
        host->set_draw([this, index](ImGuiHostWidget& h) { draw_view(index, h); });
        dock->setWidget(host);
        docks_.push_back(dock);
        hosts_.push_back(host);
    }
    // Default layout: token strip on top; timeline and layer x head side by side; the rest
    // tabbed in a full-width row at the bottom (as a third column, its tabs were cut at 960 px).
    addDockWidget(Qt::TopDockWidgetArea, docks_[0]);
    addDockWidget(Qt::TopDockWidgetArea, docks_[1], Qt::Vertical);
    splitDockWidget(docks_[1], docks_[2], Qt::Horizontal);
    addDockWidget(Qt::BottomDockWidgetArea, docks_[3]);
    for (size_t i = 4; i < docks_.size(); ++i) tabifyDockWidget(docks_[3], docks_[i]);
    docks_[3]->raise();
}

void MainWindow::apply_default_sizes() {
    // Dock sizes only take once the window has its size, hence after the first show.
    const int h = std::max(height() - 120, 400);
    // The tabbed row gets the most: its views (density, needle) stack several plots.
    resizeDocks({docks_[0], docks_[1], docks_[3]}, {h * 24 / 100, h * 32 / 100, h * 44 / 100},
                Qt::Vertical);
    resizeDocks({docks_[1], docks_[2]}, {width() * 58 / 100, width() * 42 / 100}, Qt::Horizontal);
}

void MainWindow::showEvent(QShowEvent* e) {
    QMainWindow::showEvent(e);
    if (!shown_once_) {
        shown_once_ = true;
        if (!layout_restored_) apply_default_sizes();
    }
}

void MainWindow::build_menus() {
    QMenu* file = menuBar()->addMenu(tr("&File"));
    QAction* open = file->addAction(tr("&Open trace..."), this, &MainWindow::open_dialog);
    open->setShortcut(QKeySequence::Open);
    file->addAction(tr("Open NIAH s&weep..."), this, &MainWindow::open_sweep_dialog)
        ->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_N));
    recent_menu_ = file->addMenu(tr("Open &recent"));
    QAction* reload = file->addAction(tr("&Reload"), this, [this] {
        if (!path_.isEmpty()) open_trace(path_);
    });
    reload->setShortcut(QKeySequence::Refresh);
    QAction* close = file->addAction(tr("&Close trace"), this, &MainWindow::close_trace);
    close->setShortcut(QKeySequence::Close);
    file->addSeparator();
    file->addAction(tr("Compare &with..."), this, &MainWindow::compare_dialog)
        ->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_O));
    close_compare_action_ = file->addAction(tr("Close co&mpare"), this, &MainWindow::close_compare);
    close_compare_action_->setEnabled(false);
    file->addSeparator();
    file->addAction(tr("&Export view as PNG..."), this, &MainWindow::export_current_png)
        ->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_E));
    file->addAction(tr("Export view as &SVG..."), this, &MainWindow::export_current_svg)
        ->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_E));
    file->addAction(tr("Export &all views as PNG..."), this, &MainWindow::export_all_dialog)
        ->setShortcut(QKeySequence(Qt::CTRL | Qt::ALT | Qt::Key_E));
    add_slide_export_actions(this, file);
    file->addSeparator();
    file->addAction(tr("&Quit"), this, &QWidget::close)->setShortcut(QKeySequence::Quit);
    update_recent_menu();

    QMenu* view = menuBar()->addMenu(tr("&View"));
    for (size_t i = 0; i < docks_.size(); ++i) {
        QAction* a = docks_[i]->toggleViewAction();
        a->setText(QString::fromUtf8(views_[i]->title()).replace("&", "&&"));
        a->setShortcut(
            QKeySequence(Qt::CTRL | static_cast<Qt::Key>(Qt::Key_1 + static_cast<int>(i))));
        view->addAction(a);
        // The shortcut should bring the view forward, not hide it when it is already shown.
        disconnect(a, &QAction::triggered, nullptr, nullptr);
        const int index = static_cast<int>(i);
        connect(a, &QAction::triggered, this, [this, index] { show_view(index); });
    }
    view->addSeparator();
    theme_group_ = new QActionGroup(this);
    for (const auto& [name, kind] :
         {std::pair{tr("&Dark theme"), views::ThemeKind::kDark},
          {tr("&Light theme"), views::ThemeKind::kLight},
          {tr("&High-contrast theme"), views::ThemeKind::kHighContrast}}) {
        const views::ThemeKind theme = kind;  // clang 14 cannot capture a structured binding
        QAction* a = view->addAction(name, this, [this, theme] { set_theme(theme); });
        a->setCheckable(true);
        a->setData(static_cast<int>(theme));
        theme_group_->addAction(a);
    }
    view->addAction(tr("&Toggle theme"), this,
                    [this] {
                        set_theme(theme_kind_ == views::ThemeKind::kDark ? views::ThemeKind::kLight
                                                                         : views::ThemeKind::kDark);
                    })
        ->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_T));
    follow_action_ =
        view->addAction(tr("&Follow a live trace"), this, [this](bool on) { set_follow_live(on); });
    follow_action_->setCheckable(true);
    follow_action_->setChecked(follow_live_);
    follow_action_->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_L));
    view->addSeparator();
    QAction* live = live_dock_->toggleViewAction();
    live->setText(tr("&What-if (live run)"));
    live->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_W));
    view->addAction(live);
    QAction* grid = sweep_dock_->toggleViewAction();
    grid->setText(tr("&NIAH grid (sweep)"));
    view->addAction(grid);
    presenter_->add_actions(view);

    QMenu* play = menuBar()->addMenu(tr("&Playback"));
    auto add = [&](const QString& name, const QKeySequence& key, auto fn) {
        QAction* a = play->addAction(name, this, fn);
        a->setShortcut(key);
        a->setShortcutContext(Qt::WindowShortcut);
        return a;
    };
    add(tr("Play / pause"), QKeySequence(Qt::Key_Space), [this] { scrubber_->toggle_play(); });
    add(tr("Previous step"), QKeySequence(Qt::Key_Left), [this] { scrubber_->step_by(-1); });
    add(tr("Next step"), QKeySequence(Qt::Key_Right), [this] { scrubber_->step_by(1); });
    add(tr("First step"), QKeySequence(Qt::Key_Home), [this] { scrubber_->first(); });
    add(tr("Last step"), QKeySequence(Qt::Key_End), [this] { scrubber_->last(); });
    add(tr("Go to step..."), QKeySequence(Qt::CTRL | Qt::Key_G), [this] { go_to_step_dialog(); });
    play->addSeparator();
    add(tr("Previous layer"), QKeySequence(Qt::Key_PageUp), [this] { step_layer(-1); });
    add(tr("Next layer"), QKeySequence(Qt::Key_PageDown), [this] { step_layer(1); });
    add(tr("Previous head"), QKeySequence(Qt::Key_BracketLeft), [this] { step_head(-1); });
    add(tr("Next head"), QKeySequence(Qt::Key_BracketRight), [this] { step_head(1); });

    QMenu* help = menuBar()->addMenu(tr("&Help"));
    add_help_actions(help, this);
    help->addAction(tr("&About KVScope Studio"), this, [this] {
        QMessageBox::about(this, tr("About KVScope Studio"),
                           tr("KVScope Studio replays KV-cache traces recorded by kvscope run: "
                              "which tokens each layer and head kept, evicted, merged or "
                              "quantised, budgets, attention density and needle survival."));
    });
}

// ---- Drawing --------------------------------------------------------------------------------

void MainWindow::draw_view(int i, ImGuiHostWidget& host) {
    const views::Theme& theme = views::theme(theme_kind_);
    if (!model_ && !preview_) {
        views::draw_empty_view(theme, kEmptyMessage);
        return;
    }
    views::TraceModel& shown = preview_ ? *preview_ : *model_;
    shown.load_pending(4.0);
    if (compare_) compare_->load_pending(2.0);
    views::ViewContext ctx{shown, state_, theme, &host, host.svg(), 0.0, compare_.get()};
    ImGui::PushTextWrapPos(0.0f);  // text wraps at the dock's edge instead of being cut off
    views_[static_cast<size_t>(i)]->draw(ctx);
    ImGui::PopTextWrapPos();
    if (shown.has_pending() || (compare_ && compare_->has_pending())) host.request_frame();
    if (state_.revision != painted_revision_) {
        painted_revision_ = state_.revision;
        QMetaObject::invokeMethod(
            this, [this, i] { after_state_change(i); }, Qt::QueuedConnection);
    }
    std::string error = shown.take_error();
    if (error.empty() && compare_) error = compare_->take_error();
    if (!error.empty()) {
        const QString message = QString::fromStdString(error);
        QMetaObject::invokeMethod(
            this,
            [this, message] {
                last_error_ = message;
                notice_label_->setText(tr("read error: %1").arg(message));
            },
            Qt::QueuedConnection);
    }
}

void MainWindow::repaint_views() {
    for (ImGuiHostWidget* h : hosts_) h->update();
}

void MainWindow::after_state_change(int source) {
    if (scrubber_->step() != state_.step) scrubber_->set_step(state_.step);
    for (size_t j = 0; j < hosts_.size(); ++j) {
        if (static_cast<int>(j) != source) hosts_[j]->update();
    }
    update_status();
}

void MainWindow::set_step(int64_t step) {
    scrubber_->go_to(step);
}

void MainWindow::step_layer(int delta) {
    if (!model_) return;
    const int32_t n = model_->summary().n_layers;
    state_.select_layer(std::clamp(state_.layer + delta, 0, std::max(n - 1, 0)));
    painted_revision_ = state_.revision;
    after_state_change(-1);
}

void MainWindow::step_head(int delta) {
    if (!model_) return;
    const int32_t n = model_->summary().n_heads;
    state_.select_head(std::clamp(state_.head + delta, -1, n - 1));
    painted_revision_ = state_.revision;
    after_state_change(-1);
}

// ---- Opening --------------------------------------------------------------------------------

bool MainWindow::open_trace(const QString& requested) {
    // A trace being recorded lives in <trace>.part until it is complete: follow that.
    const QString path = TraceFileWatch::file_to_open(requested);
    std::shared_ptr<views::TraceModel> model;
    try {
        model = std::make_shared<views::ReaderTraceModel>(QFile::encodeName(path).toStdString());
    } catch (const std::exception& e) {
        show_error(tr("Could not open the trace"), QString::fromUtf8(e.what()));
        return false;
    }
    model_ = std::move(model);
    preview_.reset();
    path_ = QFileInfo(path).absoluteFilePath();
    last_error_.clear();
    for (auto& v : views_) v->reset();
    const views::TraceSummary& s = model_->summary();
    state_ = views::ViewState();
    state_.step = std::max<int64_t>(s.n_steps - 1, 0);
    // Start on the layer with the smallest budget: the one where compression shows most.
    if (model_->has_budgets()) {
        double best = -1.0;
        for (int32_t l = 0; l < s.n_layers; ++l) {
            double sum = 0.0;
            for (int32_t h = 0; h < s.n_heads; ++h) sum += model_->budget(state_.step, l, h);
            if (best < 0.0 || sum < best) {
                best = sum;
                state_.layer = l;
            }
        }
    }
    // Compare mode survives a new A only when B still matches it.
    if (compare_ && !views::compare_mismatch(*model_, *compare_).empty()) {
        statusBar()->showMessage(
            tr("Compare closed: %1 does not match %2")
                .arg(QFileInfo(compare_path_).fileName(), QFileInfo(path_).fileName()),
            10000);
        compare_.reset();
        compare_path_.clear();
        close_compare_action_->setEnabled(false);
    }
    clamp_state();
    painted_revision_ = state_.revision;
    scrubber_->set_step_count(step_count());
    scrubber_->set_step(state_.step);
    add_recent(TraceFileWatch::target_of(path_));
    setWindowTitle(tr("KVScope Studio - %1").arg(QFileInfo(path_).fileName()));
    file_watch_->watch(path_);
    // A running trace is followed; one caught before its writer switched to SWMR is re-opened.
    if (s.live || s.state == trace::RunState::kRunning) {
        live_timer_.start();
    } else {
        live_timer_.stop();
    }
    update_status();
    repaint_views();
    return true;
}

void MainWindow::close_trace() {
    model_.reset();
    preview_.reset();
    path_.clear();
    compare_.reset();
    compare_path_.clear();
    close_compare_action_->setEnabled(false);
    live_timer_.stop();
    file_watch_->clear();
    for (auto& v : views_) v->reset();
    state_ = views::ViewState();
    scrubber_->set_step_count(0);
    setWindowTitle(tr("KVScope Studio"));
    update_status();
    repaint_views();
}

void MainWindow::show_preview(std::shared_ptr<views::TraceModel> preview) {
    if (!preview) return clear_preview();
    preview_ = std::move(preview);
    // Histories and rasters belong to the previous model.
    for (auto& v : views_) v->reset();
    state_.clamp_to(preview_->summary());  // one step: step 0
    painted_revision_ = state_.revision;
    scrubber_->set_step_count(1);
    scrubber_->set_step(0);
    update_status();
    repaint_views();
}

void MainWindow::clear_preview() {
    if (!preview_) return;
    preview_.reset();
    for (auto& v : views_) v->reset();
    clamp_state();
    painted_revision_ = state_.revision;
    scrubber_->set_step_count(step_count());
    scrubber_->set_step(state_.step);
    update_status();
    repaint_views();
}

int64_t MainWindow::step_count() const {
    if (!model_) return 0;
    const int64_t a = model_->summary().n_steps;
    return compare_ ? std::min(a, compare_->summary().n_steps) : a;
}

void MainWindow::clamp_state() {
    if (!model_) return;
    state_.clamp_to(model_->summary());
    // Every view shows A and B at the same step: one both traces have.
    if (compare_) state_.set_step(std::min(state_.step, std::max<int64_t>(step_count() - 1, 0)));
}

bool MainWindow::open_compare(const QString& path) {
    const QString name = QFileInfo(path).fileName();
    if (!model_) {
        show_error(
            tr("Cannot compare"),
            tr("%1: open a trace first (File > Open), then compare it with another").arg(name));
        return false;
    }
    std::shared_ptr<views::TraceModel> b;
    try {
        b = std::make_shared<views::ReaderTraceModel>(QFile::encodeName(path).toStdString());
    } catch (const std::exception& e) {
        show_error(tr("Could not open the trace to compare"), QString::fromUtf8(e.what()));
        return false;
    }
    const std::string mismatch = views::compare_mismatch(*model_, *b);
    if (!mismatch.empty()) {
        show_error(tr("Cannot compare"),
                   tr("Cannot compare %1 (A) with %2 (B): %3. Compare mode needs two runs of the "
                      "same model on the same prompt.")
                       .arg(QFileInfo(path_).fileName(), name, QString::fromStdString(mismatch)));
        return false;
    }
    compare_ = std::move(b);
    compare_path_ = QFileInfo(path).absoluteFilePath();
    last_error_.clear();
    close_compare_action_->setEnabled(true);
    for (auto& v : views_) v->reset();
    clamp_state();
    painted_revision_ = state_.revision;
    scrubber_->set_step_count(step_count());
    scrubber_->set_step(state_.step);
    setWindowTitle(tr("KVScope Studio - %1 vs %2")
                       .arg(QFileInfo(path_).fileName(), QFileInfo(compare_path_).fileName()));
    update_status();
    repaint_views();
    show_view(view_index("compare"));
    return true;
}

void MainWindow::close_compare() {
    if (!compare_) return;
    compare_.reset();
    compare_path_.clear();
    close_compare_action_->setEnabled(false);
    for (auto& v : views_) v->reset();
    scrubber_->set_step_count(step_count());
    scrubber_->set_step(state_.step);
    if (model_) setWindowTitle(tr("KVScope Studio - %1").arg(QFileInfo(path_).fileName()));
    update_status();
    repaint_views();
}

void MainWindow::compare_dialog() {
    if (!model_) {
        show_error(tr("Cannot compare"), tr("Open a trace first (File > Open)."));
        return;
    }
    QSettings settings;
    const QString path =
        QFileDialog::getOpenFileName(this, tr("Compare with (trace B: same model and prompt)"),
                                     settings.value("last_dir").toString(),
                                     tr("KVScope traces (*.kvtrace.h5 *.h5);;All files (*)"));
    if (path.isEmpty()) return;
    settings.setValue("last_dir", QFileInfo(path).absolutePath());
    open_compare(path);
}

void MainWindow::poll_live() {
    if (path_.isEmpty()) return;
    const int64_t old_steps = model_ ? model_->summary().n_steps : 0;
    if (!model_ || !model_->summary().live) {
        // Opened while its writer was still setting the file up (before SWMR): plain read mode
        // cannot see new steps, and HDF5 hands a second open of a file this process holds the
        // same plain handle, so close it and open it again.
        model_.reset();
        try {
            model_ =
                std::make_shared<views::ReaderTraceModel>(QFile::encodeName(path_).toStdString());
        } catch (const std::exception& e) {
            notice_label_->setText(tr("re-opening %1: %2").arg(path_, QString::fromUtf8(e.what())));
            repaint_views();
            return;  // try again at the next tick
        }
        for (auto& v : views_) v->reset();
    } else if (!model_->refresh()) {
        return;
    }
    const views::TraceSummary& s = model_->summary();
    const bool at_end = state_.step >= old_steps - 1;
    scrubber_->set_step_count(step_count());
    if (follow_live_ && at_end) state_.set_step(std::max<int64_t>(s.n_steps - 1, 0));
    clamp_state();
    painted_revision_ = state_.revision;
    scrubber_->set_step(state_.step);
    if (s.state != trace::RunState::kRunning) live_timer_.stop();
    update_status();
    repaint_views();
}

void MainWindow::set_follow_live(bool follow) {
    follow_live_ = follow;
    if (follow_action_) follow_action_->setChecked(follow);
    QSettings().setValue("live/follow", follow);
}

void MainWindow::show_error(const QString& title, const QString& message) {
    last_error_ = message;
    statusBar()->showMessage(title + ": " + message, 10000);
    if (property("quiet").toBool()) return;
    auto* box = new QMessageBox(QMessageBox::Warning, title, message, QMessageBox::Ok, this);
    box->setAttribute(Qt::WA_DeleteOnClose);
    box->setObjectName("errorBox");
    box->open();  // non-modal to the event loop: the window stays usable
}

bool MainWindow::open_sweep(const QString& dir) {
    if (!sweep_dock_->open(dir)) {
        show_error(tr("Could not open the NIAH sweep"), sweep_dock_->error());
        return false;
    }
    last_error_.clear();
    sweep_dock_->show();  // sizes itself on its first show (SweepDock::showEvent)
    sweep_dock_->raise();
    return true;
}

void MainWindow::open_sweep_cell(const QString& trace, const QString& baseline) {
    if (!open_trace(trace)) return;
    if (baseline.isEmpty()) {
        close_compare();
    } else {
        open_compare(baseline);
    }
}

void MainWindow::open_sweep_dialog() {
    QSettings settings;
    const QString dir = QFileDialog::getExistingDirectory(
        this, tr("Open NIAH sweep (the folder kvscope niah --out wrote)"),
        settings.value("last_dir").toString());
    if (dir.isEmpty()) return;
    settings.setValue("last_dir", dir);
    open_sweep(dir);
}

void MainWindow::open_dialog() {
    QSettings settings;
    const QString path =
        QFileDialog::getOpenFileName(this, tr("Open trace"), settings.value("last_dir").toString(),
                                     tr("KVScope traces (*.kvtrace.h5 *.h5);;All files (*)"));
    if (path.isEmpty()) return;
    settings.setValue("last_dir", QFileInfo(path).absolutePath());
    open_trace(path);
}

// ---- Recent files ---------------------------------------------------------------------------

QStringList MainWindow::recent_files() const {
    return QSettings().value("recent").toStringList();
}

void MainWindow::add_recent(const QString& path) {
    QStringList list = recent_files();
    list.removeAll(path);
    list.prepend(path);
    while (list.size() > kMaxRecent) list.removeLast();
    QSettings().setValue("recent", list);
    update_recent_menu();
}

void MainWindow::update_recent_menu() {
    recent_menu_->clear();
    const QStringList list = recent_files();
    for (const QString& p : list) {
        recent_menu_->addAction(QFileInfo(p).fileName() + "  (" + QFileInfo(p).absolutePath() + ")",
                                this, [this, p] { open_trace(p); });
    }
    recent_menu_->setEnabled(!list.isEmpty());
}

// ---- Views and export -----------------------------------------------------------------------

int MainWindow::view_index(const QString& id) const {
    for (size_t i = 0; i < views_.size(); ++i) {
        if (id == QString::fromUtf8(views_[i]->id())) return static_cast<int>(i);
    }
    return -1;
}

void MainWindow::show_view(int i) {
    if (i < 0 || i >= view_count()) return;
    docks_[static_cast<size_t>(i)]->show();
    docks_[static_cast<size_t>(i)]->raise();
    hosts_[static_cast<size_t>(i)]->setFocus(Qt::OtherFocusReason);
    last_focused_view_ = i;
}

int MainWindow::current_view() const {
    for (size_t i = 0; i < hosts_.size(); ++i) {
        if (hosts_[i]->hasFocus()) return static_cast<int>(i);
    }
    return last_focused_view_;
}

QImage MainWindow::render_view(int i, double scale, QSize logical) {
    if (i < 0 || i >= view_count()) return {};
    show_view(i);
    QApplication::processEvents();
    ImGuiHostWidget* host = hosts_[static_cast<size_t>(i)];
    // Draw until the data the view asked for is loaded (and at least twice: ImGui sizes tables
    // and child windows in their first frame).
    QImage image;
    for (int frame = 0; frame < 40; ++frame) {
        image = host->render_image(scale, logical);
        const bool pending =
            model_ && (model_->has_pending() || (compare_ && compare_->has_pending()));
        if (image.isNull() || (frame >= 1 && !pending)) break;
        if (model_) model_->load_pending(1000.0);
        if (compare_) compare_->load_pending(1000.0);
    }
    return image;
}

std::string MainWindow::render_view_svg(int i, QSize logical) {
    if (render_view(i, 1.0, logical).isNull()) return {};
    return hosts_[static_cast<size_t>(i)]->render_svg(logical);
}

bool MainWindow::export_view_png(int i, const QString& path, double scale) {
    if (i < 0 || i >= view_count()) return false;
    const QImage image = render_view(i, scale);
    if (image.isNull()) {
        show_error(tr("Export failed"), tr("%1: the view has not been drawn yet").arg(path));
        return false;
    }
    if (!image.save(path, "PNG")) {
        show_error(tr("Export failed"), tr("%1: cannot write the file").arg(path));
        return false;
    }
    return true;
}

bool MainWindow::export_view_svg(int i, const QString& path) {
    if (i < 0 || i >= view_count()) return false;
    const std::string svg = render_view_svg(i);
    QFile f(path);
    if (svg.empty() || !f.open(QIODevice::WriteOnly | QIODevice::Truncate) ||
        f.write(svg.data(), static_cast<qint64>(svg.size())) != static_cast<qint64>(svg.size())) {
        show_error(tr("Export failed"), tr("%1: cannot write the SVG").arg(path));
        return false;
    }
    return true;
}

bool MainWindow::export_all_views(const QString& dir, double scale) {
    if (!QDir().mkpath(dir)) {
        show_error(tr("Export failed"), tr("%1: cannot create the folder").arg(dir));
        return false;
    }
    const int current = current_view();
    // Each export raises its view: the tabs in front before are put in front again after.
    std::vector<QDockWidget*> in_front;
    for (QDockWidget* d : docks_)
        if (d->isVisible() && !d->visibleRegion().isEmpty()) in_front.push_back(d);
    bool ok = true;
    for (int i = 0; i < view_count(); ++i) {
        ok = export_view_png(i, QDir(dir).filePath(QString::fromUtf8(view(i)->id()) + ".png"),
                             scale) &&
             ok;
    }
    for (QDockWidget* d : in_front) d->raise();
    show_view(current);
    return ok;
}

void MainWindow::export_current_png() {
    const int i = current_view();
    const QString path =
        QFileDialog::getSaveFileName(this, tr("Export view as PNG"),
                                     QDir(QSettings().value("last_dir").toString())
                                         .filePath(QString::fromUtf8(view(i)->id()) + ".png"),
                                     tr("PNG images (*.png)"));
    if (!path.isEmpty()) export_view_png(i, path, 2.0);
}

void MainWindow::export_current_svg() {
    const int i = current_view();
    const QString path =
        QFileDialog::getSaveFileName(this, tr("Export view as SVG"),
                                     QDir(QSettings().value("last_dir").toString())
                                         .filePath(QString::fromUtf8(view(i)->id()) + ".svg"),
                                     tr("SVG images (*.svg)"));
    if (!path.isEmpty()) export_view_svg(i, path);
}

void MainWindow::export_all_dialog() {
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Export all views into"),
                                                          QSettings().value("last_dir").toString());
    if (!dir.isEmpty()) export_all_views(dir, 2.0);
}

void MainWindow::go_to_step_dialog() {
    if (!model_ || scrubber_->step_count() <= 0) return;
    bool ok = false;
    const int s =
        QInputDialog::getInt(this, tr("Go to step"), tr("Step:"), static_cast<int>(state_.step), 0,
                             static_cast<int>(scrubber_->step_count() - 1), 1, &ok);
    if (ok) set_step(s);
}

// ---- Theme, status, events ------------------------------------------------------------------

void MainWindow::set_theme(views::ThemeKind kind) {
    theme_kind_ = kind;
    const views::Theme& theme = views::theme(kind);
    apply_qt_palette(theme);
    for (ImGuiHostWidget* h : hosts_) h->set_theme(theme);
    if (sweep_dock_) sweep_dock_->set_theme(theme);
    for (QAction* a : theme_group_ ? theme_group_->actions() : QList<QAction*>())
        a->setChecked(a->data().toInt() == static_cast<int>(kind));
    // Presenter mode's theme is its own: the one to come back to stays stored.
    if (!presenter_ || !presenter_->active()) QSettings().setValue("theme", theme_name(kind));
    repaint_views();
}

QString MainWindow::summary_text() const {
    if (!model_) return tr("No trace open");
    const views::TraceSummary& s = model_->summary();
    QString text = tr("%1  ·  %2")
                       .arg(QString::fromStdString(s.model_name.empty() ? "model ?" : s.model_name),
                            QString::fromStdString(s.policy));
    text += tr("  ·  %1 layers × %2 heads  ·  %3 prompt tokens + %4 steps  ·  %5")
                .arg(s.n_layers)
                .arg(s.n_heads)
                .arg(s.n_prompt_tokens)
                .arg(s.n_steps)
                .arg(state_name(s.state));
    return text;
}

void MainWindow::update_status() {
    summary_label_->setText(summary_text());
    summary_label_->setToolTip(
        model_ ? QString::fromStdString(model_->summary().path +
                                        "\npolicy parameters: " + model_->summary().policy_params)
               : QString());
    if (compare_) {
        const views::TraceSummary& b = compare_->summary();
        compare_label_->setText(
            tr("compare B: %1  ·  %2")
                .arg(QFileInfo(compare_path_).fileName(), QString::fromStdString(b.policy)));
        compare_label_->setToolTip(
            QString::fromStdString(b.path + "\npolicy parameters: " + b.policy_params));
    } else {
        compare_label_->clear();
        compare_label_->setToolTip(QString());
    }
    if (model_) {
        const views::TraceSummary& s = model_->summary();
        if (last_error_.isEmpty())
            notice_label_->setText(
                QString::fromStdString(preview_ ? preview_->summary().notice : s.notice));
        QString sel = tr("step %1  ·  layer %2  ·  %3")
                          .arg(state_.step)
                          .arg(state_.layer)
                          .arg(state_.head < 0 ? tr("all heads") : tr("head %1").arg(state_.head));
        if (state_.token >= 0) sel += tr("  ·  token %1").arg(state_.token);
        selection_label_->setText(sel);
    } else {
        notice_label_->clear();
        selection_label_->clear();
    }
}

void MainWindow::dragEnterEvent(QDragEnterEvent* e) {
    if (e->mimeData()->hasUrls()) {
        for (const QUrl& url : e->mimeData()->urls()) {
            if (url.isLocalFile()) {
                e->acceptProposedAction();
                return;
            }
        }
    }
}

void MainWindow::dropEvent(QDropEvent* e) {
    for (const QUrl& url : e->mimeData()->urls()) {
        if (url.isLocalFile()) {
            // A folder is a NIAH sweep (sweep.json + summary.csv).
            if (QFileInfo(url.toLocalFile()).isDir()) {
                open_sweep(url.toLocalFile());
            } else {
                open_trace(url.toLocalFile());
            }
            e->acceptProposedAction();
            return;
        }
    }
}

void MainWindow::closeEvent(QCloseEvent* e) {
    QSettings settings;
    settings.setValue("window/geometry", saveGeometry());
    settings.setValue("window/state", saveState());
    settings.setValue("playback/speed", scrubber_->steps_per_second());
    QMainWindow::closeEvent(e);
}

}  // namespace kvscope::studio
