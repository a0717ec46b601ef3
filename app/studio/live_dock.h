#pragma once
// LiveDock ("What-if"): interactive budgets on a live model. The user picks a model, a prompt
// (the open trace's, or a NIAH / passkey scenario), a policy with its parameters (widgets made
// from the policy's ParamSchema) and a budget (tokens, ratio or memory fraction). The prompt is
// prefilled once with the full cache (record::LiveSession, on the LiveWorker thread); moving the
// budget slider then previews the policy's decision from the saved state on the GUI thread
// (~1-10 ms on the demo model) and shows it in every view through a views::PreviewTraceModel;
// releasing the slider (or Run) decodes from the saved state on the worker, records a new trace
// next to the open one (<trace stem>.whatif/, never overwriting) and opens it. Sweep computes
// needle survival and bytes held for 25 budgets in the background (optionally decoding each) and
// draws them as a curve; a click on a point opens that budget's run against the full cache.
// Needle forensics (the Needle view's buttons and the dock's "Needle forensics" section) run on
// the same worker and session, prefilled for the open trace's prompt with the trace's own model:
// Explain re-runs the trace's policy under whatif::ExplainPolicy and hands the decisions to the
// Needle view; Rescue searches (record::rescue_needle) or tries (chosen layers) keeping the
// needle in some layers, writes the runs next to the what-if runs and lists them; a click on one
// opens it in compare mode against the trace.
// Errors are shown in the dock; the GUI never waits on the engine.
#include <QDockWidget>
#include <QString>
#include <QTimer>
#include <QWidget>

#include <atomic>
#include <functional>
#include <memory>
#include <set>
#include <vector>

// Qt defines `emit`, `slots` and `signals` as macros; core headers use these words as names
// (KVCache::emit, Plan's slots), so they are included with the macros suspended.
#pragma push_macro("emit")
#pragma push_macro("slots")
#pragma push_macro("signals")
#undef emit
#undef slots
#undef signals
#include "app/recorder/live_session.h"
#include "core/policies/param_schema.h"
#include "views/needle_explanation.h"
#include "views/trace_model.h"
#pragma pop_macro("signals")
#pragma pop_macro("slots")
#pragma pop_macro("emit")

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QFormLayout;
class QLabel;
class QLineEdit;
class QListWidget;
class QProgressBar;
class QPushButton;
class QSlider;
class QSpinBox;
class QWidget;

namespace kvscope::views {
class NeedleView;
}

namespace kvscope::studio {

class MainWindow;
class LiveWorker;
struct LiveContext;

// One budget of a sweep.
struct SweepPoint {
    double ratio = 0.0;
    int64_t tokens_held = 0;
    double survival_mean = 0.0;  // needle (span 0); NaN without a needle
    double survival_min = 0.0;
    double memory_fraction = 0.0;  // bytes held / full cache
    int verdict = -2;              // -2 not run, else RerunResult::answer_found
    QString trace;                 // its run, once decoded
};

// The sweep's curve: x = budget ratio; needle survival mean (solid) and min (dashed), memory
// fraction (grey); decoded points as green (found) / red (wrong) dots. Click: point_clicked.
class SweepPlot : public QWidget {
    Q_OBJECT
  public:
    explicit SweepPlot(QWidget* parent = nullptr);
    void set_points(const std::vector<SweepPoint>* points) {
        points_ = points;
        update();
    }
    int point_at(QPoint p) const;  // -1 none
    QPointF point_pos(int i) const;
    QSize sizeHint() const override { return {280, 140}; }

  signals:
    void point_clicked(int index);

  protected:
    void paintEvent(QPaintEvent* e) override;
    void mousePressEvent(QMouseEvent* e) override;

  private:
    QRectF plot_rect() const;
    const std::vector<SweepPoint>* points_ = nullptr;
};

class LiveDock : public QDockWidget {
    Q_OBJECT

  public:
    enum class BudgetMode { kTokens = 0, kRatio = 1, kMemory = 2 };

    explicit LiveDock(MainWindow* window);
    ~LiveDock() override;

    // ---- Setup ----
    void set_model_dir(const QString& dir);  // the user's choice (no longer follows the trace)
    QString model_dir() const;
    void use_trace_prompt();
    void use_scenario(const QString& kind, int64_t length, double depth, uint64_t seed);
    void set_threads(int threads) { threads_ = threads; }
    // Folder for re-run traces (default: <open trace stem>.whatif/ next to it, else a temp dir).
    void set_output_dir(const QString& dir) { output_dir_ = dir; }
    QString output_dir() const;
    void set_max_new(int n);
    // Loads the model and prefills the chosen prompt on the worker (prefill_finished when done).
    void prefill();
    bool prefilled() const { return ctx_ != nullptr; }
    bool busy() const;

    // ---- Policy and budget (as the widgets would) ----
    void set_policy(const QString& name);
    QString policy() const;
    // Sets a parameter widget from text ("32", "0.5", "true", "max"); false when unknown.
    bool set_param(const QString& name, const QString& value);
    void set_budget_mode(BudgetMode mode);
    BudgetMode budget_mode() const;
    void set_budget_ratio(double ratio);        // as if the slider moved (ratio mode)
    void set_budget_tokens(int64_t tokens);     // tokens mode
    void set_memory_fraction(double fraction);  // memory mode: fits the budget on the worker
    void release_slider();                      // as if the slider was released: re-run
    void run() { release_slider(); }
    void cancel();
    void sweep(bool with_answers);
    void open_sweep_point(int index);

    // ---- State for the window and tests ----
    record::PolicyChoice current_choice() const;
    const whatif::Preview* last_preview() const { return last_preview_.get(); }
    const record::LiveSession* session() const;
    QString summary_text() const;
    QString verdict_text() const;
    QString error_text() const;
    QString last_run_trace() const { return last_run_; }
    int last_verdict() const { return last_verdict_; }
    const std::vector<SweepPoint>& sweep_points() const { return sweep_; }
    SweepPlot* sweep_plot() const { return plot_; }
    QProgressBar* progress_bar() const { return progress_; }
    QSlider* budget_slider() const { return slider_; }

    // ---- Needle forensics (issue 13) ----
    // One run of a rescue: where the needle was kept, the verdict, its trace.
    struct RescueRow {
        std::set<int64_t> layers;
        int found = -1;
        QString trace;
    };
    // The explanation of the open trace's needle, computed on the worker and handed to the
    // Needle view (explain_finished when done).
    void explain_needle();
    // record::rescue_needle on the open trace (progress per run; cancel() stops between runs).
    void rescue_search();
    // One run with the needle kept in `layers` (the manual mode of the dock's checkboxes).
    void rescue_with_layers(const std::set<int64_t>& layers);
    void rescue_with_checked_layers();
    void set_rescue_layer_checked(int64_t layer, bool on);
    // Compare mode: A = the trace rescued, B = the run.
    void open_rescue_run(int index);
    const std::vector<RescueRow>& rescue_runs() const { return rescue_runs_; }
    QString rescue_summary() const;
    // The irreducible set of the last search when it rescued the answer, else empty.
    const std::set<int64_t>& rescue_layers_found() const { return rescue_found_; }
    std::shared_ptr<const views::NeedleExplanation> explanation() const { return explanation_; }
    const views::NeedleForensics& forensics() const { return forensics_; }
    QListWidget* rescue_list() const { return rescue_list_; }

  signals:
    void prefill_finished(bool ok);
    void preview_ready();
    void rerun_progress(qint64 done, qint64 total);
    void rerun_finished(const QString& trace, int verdict);
    void rerun_failed(const QString& message);
    void sweep_point_ready(int index);
    void sweep_finished(bool cancelled);
    void error_shown(const QString& message);
    void explain_finished(bool ok);
    void rescue_run_ready(int index);
    void rescue_finished(bool ok);  // false: failed or cancelled

  protected:
    void showEvent(QShowEvent* e) override;

  private:
    void build_ui();
    void rebuild_params();
    void update_slider_range();
    void slider_moved();
    void update_preview();
    void show_error(const QString& message);
    void clear_error();
    void set_busy_ui(bool busy, const QString& what);
    void sync_from_window();
    QString unique_trace_path(const record::PolicyChoice& c) const;
    QString budget_label() const;
    void after_rerun(const record::RerunResult& r, bool open);
    std::vector<std::string> param_assignments() const;
    // Runs `then` once the session holds the open trace's prompt and model (prefilling it first
    // when it does not), else `fail` with the reason.
    void with_trace_session(const std::function<void()>& then,
                            const std::function<void(QString)>& fail);
    void forensics_failed(const QString& message);
    void start_rescue(bool search, const std::set<int64_t>& layers);
    void set_forensics_busy(bool busy, const std::string& what, int64_t total);
    void rebuild_rescue_layers(int64_t n_layers);
    void add_rescue_row(const RescueRow& row);
    void show_rescue_summary(const QString& text);
    QString rescue_output_dir() const;
    views::NeedleView* needle_view() const;

    MainWindow* window_;
    std::unique_ptr<LiveWorker> worker_;
    std::shared_ptr<LiveContext> ctx_;
    std::shared_ptr<views::TraceModel> base_;  // full-prompt trace for the preview model
    QString base_trace_;                       // the trace the prompt came from ("" scenario)
    std::shared_ptr<const whatif::Preview> last_preview_;
    QString output_dir_;
    QString last_run_;
    QString full_trace_;  // full-cache run of the session's prompt (for compare), once run
    int last_verdict_ = -2;
    int threads_ = 0;
    bool model_auto_ = true;      // the model path follows the open trace
    bool sized_ = false;          // the first show gave the dock its width
    bool prefilling_ = false;     // the worker's job is this dock's prefill (forensics wait for it)
    int64_t fitted_tokens_ = -1;  // memory mode: the fitted budget of the last fit
    uint64_t fit_generation_ = 0;
    std::shared_ptr<std::atomic<uint64_t>> latest_fit_ = std::make_shared<std::atomic<uint64_t>>(0);
    std::vector<SweepPoint> sweep_;
    QTimer preview_timer_;  // 0 ms single shot: coalesces slider moves

    QLineEdit* model_edit_ = nullptr;
    QComboBox* prompt_combo_ = nullptr;
    QSpinBox* length_spin_ = nullptr;
    QDoubleSpinBox* depth_spin_ = nullptr;
    QSpinBox* seed_spin_ = nullptr;
    QPushButton* prefill_button_ = nullptr;
    QLabel* session_label_ = nullptr;
    QComboBox* policy_combo_ = nullptr;
    QWidget* params_box_ = nullptr;
    QFormLayout* params_form_ = nullptr;
    std::vector<std::pair<ParamSpec, QWidget*>> param_widgets_;
    QComboBox* mode_combo_ = nullptr;
    QSlider* slider_ = nullptr;
    QLabel* budget_value_ = nullptr;
    QSpinBox* max_new_spin_ = nullptr;
    QLabel* summary_label_ = nullptr;
    QPushButton* run_button_ = nullptr;
    QPushButton* cancel_button_ = nullptr;
    QProgressBar* progress_ = nullptr;
    QLabel* verdict_label_ = nullptr;
    QLabel* output_label_ = nullptr;
    QLabel* error_label_ = nullptr;
    QPushButton* sweep_button_ = nullptr;
    QCheckBox* sweep_answers_ = nullptr;
    SweepPlot* plot_ = nullptr;

    std::shared_ptr<const views::NeedleExplanation> explanation_;
    views::NeedleForensics forensics_;
    std::vector<RescueRow> rescue_runs_;
    std::set<int64_t> rescue_found_;
    QString rescue_trace_;  // the trace the rescue runs are of (A in compare mode)
    QWidget* rescue_layers_box_ = nullptr;
    std::vector<QCheckBox*> rescue_checks_;
    QListWidget* rescue_list_ = nullptr;
    QLabel* rescue_label_ = nullptr;
    QPushButton* explain_button_ = nullptr;
    QPushButton* rescue_button_ = nullptr;
    QPushButton* rescue_once_button_ = nullptr;
};

}  // namespace kvscope::studio
