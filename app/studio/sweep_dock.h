#pragma once
// SweepDock ("NIAH grid"): a `kvscope niah` sweep folder drawn by views::NiahGridView in its own
// ImGui host, independent of the open trace. The folder is read by load_niah_sweep (no file I/O
// in views/); a running sweep's summary is polled every second and the grid reloaded when it
// changes (rows appear), keeping the chosen policy and budget. A click on a cell resolves the
// row's trace and its cell's full-cache run and asks the window to open them (open_requested);
// every problem (not a sweep, a bad CSV, a missing trace) is reported naming the file.
#include <QDockWidget>
#include <QString>
#include <QTimer>

#include <memory>
#include <string>

#include "views/niah_grid_model.h"
#include "views/niah_grid_view.h"
#include "views/theme.h"

namespace kvscope::studio {

class ImGuiHostWidget;

class SweepDock : public QDockWidget {
    Q_OBJECT

  public:
    explicit SweepDock(QWidget* parent = nullptr);
    ~SweepDock() override;

    // Loads the sweep in `dir`. On failure the sweep shown before stays, error() names the file
    // and the problem, and false is returned.
    bool open(const QString& dir);
    void close_sweep();
    const views::NiahGrid* grid() const { return grid_.get(); }
    const QString& dir() const { return dir_; }
    const QString& error() const { return error_; }
    views::NiahGridView& view() { return view_; }
    ImGuiHostWidget* host() const { return host_; }
    void set_theme(const views::Theme& theme);

    // Resolves rows[row]'s trace and its full-cache run, then emits open_requested; a row
    // without a trace on disk emits error_found instead. False on error.
    bool open_row(int row);
    // Reloads when the summary changed on disk since the last load; true when it did.
    bool reload_if_changed();

  signals:
    // `baseline`: the same cell's full-cache trace, "" when it has none or `trace` is it.
    void open_requested(const QString& trace, const QString& baseline);
    void error_found(const QString& title, const QString& message);

  protected:
    void showEvent(QShowEvent* e) override;

  private:
    void draw(ImGuiHostWidget& host);

    ImGuiHostWidget* host_ = nullptr;
    views::NiahGridView view_;
    std::unique_ptr<views::NiahGrid> grid_;
    QString dir_;
    QString error_;
    std::string message_;  // shown in the view: the last reload or open problem
    std::string stamp_;    // niah_summary_stamp of the loaded summary
    QTimer poll_;
    bool sized_ = false;
};

}  // namespace kvscope::studio
