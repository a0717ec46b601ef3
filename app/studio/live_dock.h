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
// Errors are shown in the dock; the GUI never waits on the engine.
#include <QDockWidget>
#include <QString>
#include <QTimer>
#include <QWidget>

#include <atomic>
#include <memory>
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
class QProgressBar;
class QPushButton;
class QSlider;
class QSpinBox;
class QWidget;

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
    void set_points(const std::vector<SweepPoint>* points) { points_ = points; update(); }
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
    void set_budget_ratio(double ratio);   // as if the slider moved (ratio mode)
    void set_budget_tokens(int64_t tokens);  // tokens mode
    void set_memory_fraction(double fraction);  // memory mode: fits the budget on the worker
    void release_slider();  // as if the slider was released: re-run
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

  signals:
    void prefill_finished(bool ok);
    void preview_ready();
    void rerun_progress(qint64 done, qint64 total);
    void rerun_finished(const QString& trace, int verdict);
    void rerun_failed(const QString& message);
    void sweep_point_ready(int index);
    void sweep_finished(bool cancelled);
    void error_shown(const QString& message);

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

    MainWindow* window_;
    std::unique_ptr<LiveWorker> worker_;
    std::shared_ptr<LiveContext> ctx_;
    std::shared_ptr<views::TraceModel> base_;  // full-prompt trace for the preview model
    QString base_trace_;                        // the trace the prompt came from ("" scenario)
    std::shared_ptr<const whatif::Preview> last_preview_;
    QString output_dir_;
    QString last_run_;
    QString full_trace_;  // full-cache run of the session's prompt (for compare), once run
    int last_verdict_ = -2;
    int threads_ = 0;
    bool model_auto_ = true;  // the model path follows the open trace
    bool sized_ = false;      // the first show gave the dock its width
    int64_t fitted_tokens_ = -1;  // memory mode: the fitted budget of the last fit
    uint64_t fit_generation_ = 0;
    std::shared_ptr<std::atomic<uint64_t>> latest_fit_ =
        std::make_shared<std::atomic<uint64_t>>(0);
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
};

}  // namespace kvscope::studio
