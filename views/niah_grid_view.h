#pragma once
// NIAH grid: the needle-in-a-haystack sweep heatmap of one policy at one budget (combos pick
// them): rows = needle depth, columns = context length, each cell the fraction of its trials whose
// answer was found (red 0 -> green 1, the number in the cell when it fits), or, toggled, the
// needle's mean survival after the last step. Below it, a row for the full-cache baseline per
// length (over all depths), and a corner mark on every cell whose baseline failed, so a failure of
// the model itself is not read as one of the policy. A header lists the sweep's axes. Hovering a
// cell lists its rows (found, output, bytes held); a click asks to open the cell's run (a chooser
// when the cell has several trials) — the Studio opens it against the cell's full-cache run.
//
// Not a View: it draws a NiahGrid (a sweep), not a TraceModel, so the Studio gives it its own dock
// that works with no trace open.
#include <string>
#include <vector>

#include "views/canvas.h"
#include "views/niah_grid_model.h"
#include "views/plot_util.h"
#include "views/theme.h"

namespace kvscope::views {

class NiahGridView {
  public:
    enum class Metric { kFound, kNeedleKept };

    // Fills the current ImGui window. `grid` nullptr: a placeholder with `message`.
    void draw(const NiahGrid* grid, const Theme& theme, SvgRecorder* svg = nullptr,
              const std::string& message = "");

    // The row (index into grid.rows) the user asked to open since the last call; -1 none.
    int take_open_request() {
        const int r = open_request_;
        open_request_ = -1;
        return r;
    }
    // The rows of the trial chooser opened by the last click on a cell of several rows.
    const std::vector<int>& chooser_rows() const { return chooser_rows_; }
    // The heatmap shown: the job (policy, budget) chosen, kept across reloads of the sweep.
    void select_job(const NiahGrid& grid, int job);
    int selected_job(const NiahGrid& grid) const;
    void set_metric(Metric m) { metric_ = m; }
    Metric metric() const { return metric_; }
    void set_filters(int haystack, int needle_set) {
        haystack_ = haystack;
        needle_set_ = needle_set;
    }

    // Last frame's screen rectangles: a heatmap cell, a baseline-row cell.
    PlotRect cell_rect(int length_i, int depth_i) const;
    PlotRect baseline_rect(int length_i) const;

    // The cell colour: red (0) -> amber (0.5) -> green (1); NaN -> `missing`.
    static ImU32 score_colour(const Theme& theme, double t);

  private:
    void header(const NiahGrid& grid);
    void controls(const NiahGrid& grid);
    void rows_tooltip(const NiahGrid& grid, const NiahCellStats& s, const std::string& title);
    void ask_open(const NiahCellStats& s);
    void trial_chooser(const NiahGrid& grid);

    Metric metric_ = Metric::kFound;
    std::string policy_, budget_;  // the chosen job; "" = the first non-baseline job
    int haystack_ = -1, needle_set_ = -1;
    int open_request_ = -1;
    std::vector<int> chooser_rows_;  // the open trial chooser's rows
    PlotRect grid_;
    float baseline_y_ = 0.0f;
    int lengths_ = 0, depths_ = 0;
};

}  // namespace kvscope::views
