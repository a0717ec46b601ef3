// Over 800 lines on purpose: the What-if dock's form (setup, policy parameters, budget slider,
// preview, re-run) is one widget; its sweep and forensics parts are in live_dock_sweep.cpp and
// live_dock_forensics.cpp.
#include "app/studio/live_dock.h"
#include "app/studio/live_dock_internal.h"

#include <QCheckBox>
#include <QComboBox>
#include <QCoreApplication>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QLocale>
#include <QMouseEvent>
#include <QPainter>
#include <QPainterPath>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollArea>
#include <QScrollBar>
#include <QSlider>
#include <QSpinBox>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>

#include "app/studio/live_worker.h"
#include "app/studio/main_window.h"
#include "core/policies/registry.h"
#include "traces/trace_output.h"
#include "traces/trace_reader.h"
#include "views/needle_view.h"
#include "views/preview_trace_model.h"
#include "views/reader_trace_model.h"

namespace kvscope::studio {

using namespace live_dock_detail;  // kSliderSteps, kSweepPoints, bytes_text, verdict_name

// ---- LiveDock -------------------------------------------------------------------------------

LiveDock::LiveDock(MainWindow* window)
    : QDockWidget(tr("What-if"), window), window_(window), worker_(std::make_unique<LiveWorker>()) {
    setObjectName("live_run");
    setFeatures(QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetFloatable |
                QDockWidget::DockWidgetClosable);
    preview_timer_.setSingleShot(true);
    preview_timer_.setInterval(0);
    connect(&preview_timer_, &QTimer::timeout, this, &LiveDock::update_preview);
    build_ui();
    // The Needle view's buttons start the forensic jobs here (the view only calls them).
    forensics_.explain = [this] { explain_needle(); };
    forensics_.rescue = [this] {
        show();
        raise();
        rescue_search();
    };
    forensics_.cancel = [this] { cancel(); };
    if (views::NeedleView* v = needle_view()) v->set_forensics(&forensics_);
}

LiveDock::~LiveDock() {
    // Stop flag set, the current job finishes (it may still read worker_), the thread joins.
    worker_->shutdown();
    worker_.reset();
}

void LiveDock::build_ui() {
    auto* content = new QWidget(this);
    auto* outer = new QVBoxLayout(content);
    auto* form = new QFormLayout();
    outer->addLayout(form);

    // Model
    auto* model_row = new QHBoxLayout();
    model_edit_ = new QLineEdit(content);
    model_edit_->setObjectName("live_model");
    model_edit_->setPlaceholderText(tr("model folder (default: the open trace's)"));
    connect(model_edit_, &QLineEdit::textEdited, this, [this] { model_auto_ = false; });
    auto* browse = new QPushButton(tr("Browse…"), content);
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString dir =
            QFileDialog::getExistingDirectory(this, tr("Model folder"), model_edit_->text());
        if (!dir.isEmpty()) set_model_dir(dir);
    });
    model_row->addWidget(model_edit_, 1);
    model_row->addWidget(browse);
    form->addRow(tr("Model"), model_row);

    // Prompt
    prompt_combo_ = new QComboBox(content);
    prompt_combo_->addItem(tr("the open trace's prompt"), "trace");
    prompt_combo_->addItem(tr("NIAH scenario"), "niah");
    prompt_combo_->addItem(tr("passkey scenario"), "passkey");
    form->addRow(tr("Prompt"), prompt_combo_);
    auto* scen_row = new QHBoxLayout();
    length_spin_ = new QSpinBox(content);
    length_spin_->setRange(16, 1 << 20);
    length_spin_->setValue(2048);
    length_spin_->setToolTip(tr("Scenario length in tokens"));
    depth_spin_ = new QDoubleSpinBox(content);
    depth_spin_->setRange(0.0, 1.0);
    depth_spin_->setSingleStep(0.05);
    depth_spin_->setValue(0.5);
    depth_spin_->setToolTip(tr("Needle depth: 0 = start of the prompt, 1 = end"));
    seed_spin_ = new QSpinBox(content);
    seed_spin_->setRange(0, 1 << 30);
    seed_spin_->setValue(1);
    seed_spin_->setToolTip(tr("Scenario seed"));
    length_spin_->setPrefix(tr("length "));
    depth_spin_->setPrefix(tr("depth "));
    seed_spin_->setPrefix(tr("seed "));
    for (QWidget* w : std::initializer_list<QWidget*>{length_spin_, depth_spin_, seed_spin_}) {
        w->setMinimumWidth(40);
        w->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Fixed);
        scen_row->addWidget(w, 1);
    }
    form->addRow(QString(), scen_row);
    auto scen_enabled = [this] {
        const bool on = prompt_combo_->currentData().toString() != "trace";
        length_spin_->setEnabled(on);
        depth_spin_->setEnabled(on);
        seed_spin_->setEnabled(on);
    };
    connect(prompt_combo_, &QComboBox::currentIndexChanged, this, scen_enabled);
    scen_enabled();
    prefill_button_ = new QPushButton(tr("Load and prefill"), content);
    prefill_button_->setToolTip(
        tr("Load the model and run the prompt once with the full cache; "
           "previews and re-runs start from that state"));
    connect(prefill_button_, &QPushButton::clicked, this, &LiveDock::prefill);
    session_label_ = new QLabel(tr("no prompt prefilled"), content);
    session_label_->setWordWrap(true);
    form->addRow(prefill_button_, session_label_);

    // Policy + parameters
    policy_combo_ = new QComboBox(content);
    policy_combo_->setObjectName("live_policy");
    for (const PolicyEntry* e : PolicyRegistry::global().list()) {
        policy_combo_->addItem(QString::fromStdString(e->info.name));
        policy_combo_->setItemData(
            policy_combo_->count() - 1,
            QString::fromStdString(e->info.full_name + (e->info.arxiv.empty()
                                                            ? std::string()
                                                            : " (arXiv " + e->info.arxiv + ")")),
            Qt::ToolTipRole);
    }
    const int snap = policy_combo_->findText("snapkv");
    if (snap >= 0) policy_combo_->setCurrentIndex(snap);
    connect(policy_combo_, &QComboBox::currentIndexChanged, this, [this] {
        rebuild_params();
        update_slider_range();
        slider_moved();
    });
    form->addRow(tr("Policy"), policy_combo_);
    params_box_ = new QWidget(content);
    params_form_ = new QFormLayout(params_box_);
    params_form_->setContentsMargins(12, 0, 0, 0);
    form->addRow(params_box_);

    // Budget
    mode_combo_ = new QComboBox(content);
    mode_combo_->addItem(tr("tokens per head"));
    mode_combo_->addItem(tr("ratio of the prompt"));
    mode_combo_->addItem(tr("memory (fraction of the full cache's bytes)"));
    mode_combo_->setCurrentIndex(static_cast<int>(BudgetMode::kRatio));
    connect(mode_combo_, &QComboBox::currentIndexChanged, this, [this] {
        update_slider_range();
        slider_moved();
    });
    form->addRow(tr("Budget as"), mode_combo_);
    auto* slider_row = new QHBoxLayout();
    slider_ = new QSlider(Qt::Horizontal, content);
    slider_->setObjectName("live_budget");
    slider_->setRange(1, kSliderSteps);
    slider_->setValue(kSliderSteps / 4);
    budget_value_ = new QLabel(content);
    budget_value_->setMinimumWidth(110);
    slider_row->addWidget(slider_, 1);
    slider_row->addWidget(budget_value_);
    form->addRow(tr("Budget"), slider_row);
    connect(slider_, &QSlider::valueChanged, this, &LiveDock::slider_moved);
    connect(slider_, &QSlider::sliderReleased, this, &LiveDock::release_slider);
    max_new_spin_ = new QSpinBox(content);
    max_new_spin_->setRange(1, 4096);
    max_new_spin_->setValue(16);
    max_new_spin_->setToolTip(tr("Tokens to generate in a re-run"));
    form->addRow(tr("New tokens"), max_new_spin_);

    summary_label_ = new QLabel(content);
    summary_label_->setObjectName("live_summary");
    summary_label_->setWordWrap(true);
    summary_label_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    outer->addWidget(summary_label_);

    auto* run_row = new QHBoxLayout();
    run_button_ = new QPushButton(tr("Run"), content);
    run_button_->setToolTip(
        tr("Decode from the saved prompt state under this policy and budget, "
           "record a trace and open it"));
    connect(run_button_, &QPushButton::clicked, this, &LiveDock::release_slider);
    cancel_button_ = new QPushButton(tr("Cancel"), content);
    cancel_button_->setEnabled(false);
    connect(cancel_button_, &QPushButton::clicked, this, &LiveDock::cancel);
    progress_ = new QProgressBar(content);
    progress_->setRange(0, 1);
    progress_->setValue(0);
    progress_->setFormat("%v / %m");
    // Its text ("re-running snapkv ratio 0.25…") must not widen the dock.
    progress_->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Fixed);
    progress_->setMinimumWidth(60);
    run_row->addWidget(run_button_);
    run_row->addWidget(cancel_button_);
    run_row->addWidget(progress_, 1);
    outer->addLayout(run_row);
    verdict_label_ = new QLabel(content);
    verdict_label_->setObjectName("live_verdict");
    verdict_label_->setWordWrap(true);
    output_label_ = new QLabel(content);
    output_label_->setWordWrap(true);
    output_label_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    outer->addWidget(verdict_label_);
    outer->addWidget(output_label_);

    auto* sweep_row = new QHBoxLayout();
    sweep_button_ = new QPushButton(tr("Sweep"), content);
    sweep_button_->setToolTip(tr("Needle kept and memory held at %1 budgets of this policy, from "
                                 "the saved state")
                                  .arg(kSweepPoints));
    sweep_answers_ = new QCheckBox(tr("with answers (decodes each; slower)"), content);
    connect(sweep_button_, &QPushButton::clicked, this,
            [this] { sweep(sweep_answers_->isChecked()); });
    sweep_row->addWidget(sweep_button_);
    sweep_row->addWidget(sweep_answers_, 1);
    outer->addLayout(sweep_row);
    plot_ = new SweepPlot(content);
    plot_->set_points(&sweep_);
    connect(plot_, &SweepPlot::point_clicked, this, &LiveDock::open_sweep_point);
    outer->addWidget(plot_, 1);

    // Needle forensics: why the open trace lost its needle, and which layers rescue it.
    auto* forensics_title = new QLabel(tr("<b>Needle forensics</b> (the open trace, its own "
                                          "model and policy)"),
                                       content);
    forensics_title->setWordWrap(true);
    outer->addWidget(forensics_title);
    auto* frow = new QHBoxLayout();
    explain_button_ = new QPushButton(tr("Explain"), content);
    explain_button_->setToolTip(
        tr("Re-run the trace's policy (same decisions) and show in the "
           "Needle view, per layer and head, the policy's own score, rank "
           "and cut-off where each needle token left"));
    connect(explain_button_, &QPushButton::clicked, this, &LiveDock::explain_needle);
    rescue_button_ = new QPushButton(tr("Rescue…"), content);
    rescue_button_->setToolTip(
        tr("Search an irreducible set of layers in which keeping the "
           "needle restores the answer (at most 2 + layers runs)"));
    connect(rescue_button_, &QPushButton::clicked, this, &LiveDock::rescue_search);
    frow->addWidget(explain_button_);
    frow->addWidget(rescue_button_);
    frow->addStretch(1);
    outer->addLayout(frow);
    rescue_layers_box_ = new QWidget(content);
    auto* grid = new QGridLayout(rescue_layers_box_);
    grid->setContentsMargins(0, 0, 0, 0);
    outer->addWidget(rescue_layers_box_);
    rescue_once_button_ =
        new QPushButton(tr("Run with the needle kept in the checked layers"), content);
    connect(rescue_once_button_, &QPushButton::clicked, this,
            &LiveDock::rescue_with_checked_layers);
    outer->addWidget(rescue_once_button_);
    rescue_label_ = new QLabel(content);
    rescue_label_->setObjectName("rescue_summary");
    rescue_label_->setWordWrap(true);
    rescue_label_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    outer->addWidget(rescue_label_);
    rescue_list_ = new QListWidget(content);
    rescue_list_->setObjectName("rescue_runs");
    rescue_list_->setToolTip(tr("Click a run to compare it (B) with the trace (A)"));
    rescue_list_->setMinimumHeight(80);
    connect(rescue_list_, &QListWidget::itemClicked, this,
            [this](QListWidgetItem* item) { open_rescue_run(rescue_list_->row(item)); });
    outer->addWidget(rescue_list_);

    error_label_ = new QLabel(content);
    error_label_->setObjectName("live_error");
    error_label_->setWordWrap(true);
    error_label_->setStyleSheet("color: #e0503a;");
    error_label_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    outer->addWidget(error_label_);

    auto* scroll = new QScrollArea(this);
    scroll->setWidgetResizable(true);
    // Content follows the dock's width (labels wrap) instead of scrolling sideways.
    scroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    for (QComboBox* c : {prompt_combo_, policy_combo_, mode_combo_}) {
        c->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
        c->setMinimumContentsLength(8);
    }
    model_edit_->setMinimumWidth(80);
    scroll->setWidget(content);
    setWidget(scroll);
    rebuild_params();
    update_slider_range();
    slider_moved();
}

// ---- Setup ----------------------------------------------------------------------------------

void LiveDock::set_model_dir(const QString& dir) {
    model_auto_ = false;
    model_edit_->setText(dir);
}

QString LiveDock::model_dir() const {
    return model_edit_->text();
}

void LiveDock::use_trace_prompt() {
    prompt_combo_->setCurrentIndex(0);
}

void LiveDock::use_scenario(const QString& kind, int64_t length, double depth, uint64_t seed) {
    const int i = prompt_combo_->findData(kind);
    prompt_combo_->setCurrentIndex(i >= 0 ? i : 1);
    length_spin_->setValue(static_cast<int>(length));
    depth_spin_->setValue(depth);
    seed_spin_->setValue(static_cast<int>(seed));
}

void LiveDock::set_max_new(int n) {
    max_new_spin_->setValue(n);
}

bool LiveDock::busy() const {
    return worker_->busy();
}

void LiveDock::sync_from_window() {
    if (window_->model()) rebuild_rescue_layers(window_->model()->summary().n_layers);
    if (!model_auto_ || window_->trace_path().isEmpty()) return;
    const views::TraceModel* m = window_->model();
    auto* reader = dynamic_cast<const views::ReaderTraceModel*>(m);
    if (!reader) return;
    const std::string resolved = resolve_trace_model_path(window_->trace_path().toStdString(),
                                                          reader->reader().metadata().model_path);
    model_edit_->setText(QString::fromStdString(resolved));
}

void LiveDock::showEvent(QShowEvent* e) {
    QDockWidget::showEvent(e);
    if (!sized_ && !isFloating()) {
        sized_ = true;
        window_->resizeDocks({this}, {440}, Qt::Horizontal);  // px: the form's natural width
    }
    sync_from_window();
    // First look at the dock with a trace open: prefill its prompt right away.
    if (!ctx_ && !busy() && !window_->trace_path().isEmpty() && !model_edit_->text().isEmpty() &&
        prompt_combo_->currentData().toString() == "trace" && error_label_->text().isEmpty())
        prefill();
}

QString LiveDock::output_dir() const {
    if (!output_dir_.isEmpty()) return output_dir_;
    if (!base_trace_.isEmpty()) {
        const QFileInfo fi(base_trace_);
        QString stem = fi.fileName();
        if (stem.endsWith(".kvtrace.h5")) stem.chop(int(std::strlen(".kvtrace.h5")));
        QString dir = fi.absolutePath() + "/" + stem + ".whatif";
        if (QFileInfo(fi.absolutePath()).isWritable()) return dir;
    }
    return QDir::tempPath() + "/kvscope-whatif-" +
           QString::number(QCoreApplication::applicationPid());
}

void LiveDock::prefill() {
    clear_error();
    sync_from_window();
    LiveSetup setup;
    setup.model_dir = model_edit_->text().toStdString();
    setup.threads = threads_;
    const QString kind = prompt_combo_->currentData().toString();
    if (kind == "trace") {
        if (window_->trace_path().isEmpty()) {
            show_error(
                tr("No trace is open to take the prompt from: open one, or pick a scenario."));
            emit prefill_finished(false);
            return;
        }
        setup.trace = window_->trace_path().toStdString();
    } else {
        setup.scenario = true;
        setup.request.kind = kind.toStdString();
        setup.request.length = length_spin_->value();
        setup.request.depth = depth_spin_->value();
        setup.request.seed = static_cast<uint64_t>(seed_spin_->value());
    }
    // Drop the old session on the GUI side at once; the worker owns the new one until delivered.
    ctx_.reset();
    last_preview_.reset();
    base_.reset();
    base_trace_.clear();
    full_trace_.clear();
    sweep_.clear();
    plot_->update();
    window_->clear_preview();
    set_busy_ui(true, tr("loading the model and prefilling…"));
    progress_->setRange(0, 0);  // busy indicator: the prefill reports no steps
    worker_->stop_flag() = false;
    prefilling_ = true;
    worker_->post([this, setup] {
        std::shared_ptr<LiveContext> ctx;
        QString error;
        try {
            ctx = load_live_context(setup);
        } catch (const std::exception& e) {
            error = QString::fromUtf8(e.what());
        }
        LiveWorker::deliver(this, [this, ctx, error, setup] {
            prefilling_ = false;
            set_busy_ui(false, QString());
            progress_->setRange(0, 1);
            if (!ctx) {
                session_label_->setText(tr("no prompt prefilled"));
                show_error(tr("Prefill failed: %1").arg(error));
                emit prefill_finished(false);
                return;
            }
            ctx_ = ctx;
            const record::LiveSession& s = *ctx_->session;
            if (!setup.trace.empty()) {
                base_trace_ = QString::fromStdString(setup.trace);
                try {
                    base_ = std::make_shared<views::ReaderTraceModel>(setup.trace);
                } catch (const std::exception& e) {
                    show_error(QString::fromUtf8(e.what()));
                }
            }
            session_label_->setText(
                tr("%1 tokens prefilled in %2 s (%3)%4")
                    .arg(QLocale(QLocale::English).toString(qlonglong(s.input().ids.size())))
                    .arg(s.prefill_ms() / 1e3, 0, 'f', 2)
                    .arg(QFileInfo(QString::fromStdString(setup.model_dir)).fileName())
                    .arg(base_ ? QString() : tr("; the views show previews after the first run")));
            update_slider_range();
            emit prefill_finished(true);
            slider_moved();
        });
    });
}

// ---- Policy and parameters ------------------------------------------------------------------

QString LiveDock::policy() const {
    return policy_combo_->currentText();
}

void LiveDock::set_policy(const QString& name) {
    const int i = policy_combo_->findText(name);
    if (i < 0) {
        show_error(tr("Unknown policy '%1'").arg(name));
        return;
    }
    policy_combo_->setCurrentIndex(i);
}

void LiveDock::rebuild_params() {
    for (auto& [spec, w] : param_widgets_) {
        params_form_->removeRow(w);
    }
    param_widgets_.clear();
    const PolicyEntry* e = PolicyRegistry::global().find(policy().toStdString());
    if (!e) return;
    for (const ParamSpec& spec : e->schema) {
        QWidget* w = nullptr;
        const QString tip = QString::fromStdString(spec.help);
        switch (spec.type) {
            case ParamType::kInt: {
                auto* s = new QSpinBox(params_box_);
                s->setRange(spec.min ? static_cast<int>(std::max(*spec.min, -2e9)) : -1000000000,
                            spec.max ? static_cast<int>(std::min(*spec.max, 2e9)) : 1000000000);
                s->setValue(static_cast<int>(std::get<int64_t>(spec.default_value)));
                connect(s, &QSpinBox::valueChanged, this, &LiveDock::slider_moved);
                w = s;
                break;
            }
            case ParamType::kFloat: {
                auto* s = new QDoubleSpinBox(params_box_);
                s->setDecimals(4);
                s->setRange(spec.min.value_or(-1e9), spec.max.value_or(1e9));
                s->setSingleStep(0.05);
                s->setValue(std::get<double>(spec.default_value));
                connect(s, &QDoubleSpinBox::valueChanged, this, &LiveDock::slider_moved);
                w = s;
                break;
            }
            case ParamType::kBool: {
                auto* c = new QCheckBox(params_box_);
                c->setChecked(std::get<bool>(spec.default_value));
                connect(c, &QCheckBox::toggled, this, &LiveDock::slider_moved);
                w = c;
                break;
            }
            case ParamType::kEnum: {
                auto* c = new QComboBox(params_box_);
                for (const auto& ch : spec.choices) c->addItem(QString::fromStdString(ch));
                c->setCurrentText(
                    QString::fromStdString(std::get<std::string>(spec.default_value)));
                connect(c, &QComboBox::currentIndexChanged, this, &LiveDock::slider_moved);
                w = c;
                break;
            }
            case ParamType::kIntList: {
                auto* l = new QLineEdit(params_box_);
                l->setText(QString::fromStdString(param_value_to_string(spec.default_value)));
                l->setPlaceholderText(tr("comma-separated integers"));
                connect(l, &QLineEdit::editingFinished, this, &LiveDock::slider_moved);
                w = l;
                break;
            }
        }
        QString range;
        if (spec.min || spec.max)
            range = tr(" [%1, %2]")
                        .arg(spec.min ? QString::number(*spec.min) : QString("…"))
                        .arg(spec.max ? QString::number(*spec.max) : QString("…"));
        w->setToolTip(tip + range);
        w->setObjectName(QString::fromStdString("param_" + spec.name));
        params_form_->addRow(QString::fromStdString(spec.name), w);
        param_widgets_.emplace_back(spec, w);
    }
}

bool LiveDock::set_param(const QString& name, const QString& value) {
    for (auto& [spec, w] : param_widgets_) {
        if (QString::fromStdString(spec.name) != name) continue;
        if (auto* s = qobject_cast<QSpinBox*>(w))
            s->setValue(value.toInt());
        else if (auto* d = qobject_cast<QDoubleSpinBox*>(w))
            d->setValue(value.toDouble());
        else if (auto* c = qobject_cast<QCheckBox*>(w))
            c->setChecked(value == "true" || value == "1" || value == "on" || value == "yes");
        else if (auto* cb = qobject_cast<QComboBox*>(w))
            cb->setCurrentText(value);
        else if (auto* l = qobject_cast<QLineEdit*>(w)) {
            l->setText(value);
            slider_moved();
        }
        return true;
    }
    return false;
}

std::vector<std::string> LiveDock::param_assignments() const {
    std::vector<std::string> out;
    for (const auto& [spec, w] : param_widgets_) {
        QString text;
        if (auto* s = qobject_cast<QSpinBox*>(w))
            text = QString::number(s->value());
        else if (auto* d = qobject_cast<QDoubleSpinBox*>(w))
            text = QString::number(d->value(), 'g', 6);
        else if (auto* c = qobject_cast<QCheckBox*>(w))
            text = c->isChecked() ? "true" : "false";
        else if (auto* cb = qobject_cast<QComboBox*>(w))
            text = cb->currentText();
        else if (auto* l = qobject_cast<QLineEdit*>(w))
            text = l->text().trimmed();
        // Only what differs from the default, so labels and file names stay short; a value
        // that does not parse is passed on and reported by the registry's validation.
        try {
            if (parse_param_value(policy().toStdString(), spec, text.toStdString()) ==
                spec.default_value)
                continue;
        } catch (const std::exception&) {
        }
        out.push_back(spec.name + "=" + text.toStdString());
    }
    return out;
}

// ---- Budget ---------------------------------------------------------------------------------

LiveDock::BudgetMode LiveDock::budget_mode() const {
    return static_cast<BudgetMode>(mode_combo_->currentIndex());
}

void LiveDock::set_budget_mode(BudgetMode mode) {
    mode_combo_->setCurrentIndex(static_cast<int>(mode));
}

void LiveDock::update_slider_range() {
    const PolicyEntry* e = PolicyRegistry::global().find(policy().toStdString());
    const bool needs = e == nullptr || e->info.needs_budget;
    slider_->setEnabled(needs);
    mode_combo_->setEnabled(needs);
    const QSignalBlocker block(slider_);
    if (budget_mode() == BudgetMode::kTokens) {
        const int P = ctx_ ? static_cast<int>(ctx_->session->input().ids.size()) : 4096;
        const int v = std::min(slider_->value(), P);
        slider_->setRange(1, std::max(P, 1));
        slider_->setValue(v);
    } else {
        slider_->setRange(1, kSliderSteps);
    }
}

void LiveDock::set_budget_ratio(double ratio) {
    if (budget_mode() != BudgetMode::kRatio) set_budget_mode(BudgetMode::kRatio);
    slider_->setValue(static_cast<int>(std::lround(ratio * kSliderSteps)));
}

void LiveDock::set_budget_tokens(int64_t tokens) {
    if (budget_mode() != BudgetMode::kTokens) set_budget_mode(BudgetMode::kTokens);
    slider_->setValue(static_cast<int>(tokens));
}

void LiveDock::set_memory_fraction(double fraction) {
    if (budget_mode() != BudgetMode::kMemory) set_budget_mode(BudgetMode::kMemory);
    slider_->setValue(static_cast<int>(std::lround(fraction * kSliderSteps)));
}

record::PolicyChoice LiveDock::current_choice() const {
    record::PolicyChoice c;
    c.name = policy().toStdString();
    c.params = param_assignments();
    const PolicyEntry* e = PolicyRegistry::global().find(c.name);
    if (e && !e->info.needs_budget) return c;
    switch (budget_mode()) {
        case BudgetMode::kTokens:
            c.budget.tokens = slider_->value();
            break;
        case BudgetMode::kRatio:
            c.budget.ratio = static_cast<double>(slider_->value()) / kSliderSteps;
            break;
        case BudgetMode::kMemory:
            c.budget.tokens = fitted_tokens_;  // -1 until the fit for this fraction is back
            break;
    }
    return c;
}

QString LiveDock::budget_label() const {
    switch (budget_mode()) {
        case BudgetMode::kTokens:
            return tr("%1 tokens").arg(slider_->value());
        case BudgetMode::kRatio:
            return tr("ratio %1")
                .arg(static_cast<double>(slider_->value()) / kSliderSteps, 0, 'f', 3);
        case BudgetMode::kMemory:
            return tr("memory %1")
                .arg(static_cast<double>(slider_->value()) / kSliderSteps, 0, 'f', 3);
    }
    return {};
}

void LiveDock::slider_moved() {
    budget_value_->setText(budget_label());
    if (!ctx_) return;
    if (budget_mode() == BudgetMode::kMemory && slider_->isEnabled()) {
        // The fit runs the engine (first decode step per probe): on the worker, latest only.
        record::PolicyChoice c = current_choice();
        c.budget = Budget{};
        const double fraction = static_cast<double>(slider_->value()) / kSliderSteps;
        const uint64_t gen = ++fit_generation_;
        *latest_fit_ = gen;
        auto ctx = ctx_;
        auto latest = latest_fit_;
        summary_label_->setText(
            tr("fitting the budget to %1 of the full cache's bytes…").arg(fraction, 0, 'f', 3));
        worker_->post([this, ctx, c, fraction, gen, latest] {
            if (latest->load() != gen) return;  // a newer position superseded this one
            int64_t tokens = -1;
            QString error;
            try {
                tokens = ctx->session->fit_memory(c, ctx->session->bytes_for_fraction(fraction))
                             .budget_tokens;
            } catch (const std::exception& e) {
                error = QString::fromUtf8(e.what());
            }
            LiveWorker::deliver(this, [this, ctx, tokens, error, gen] {
                if (ctx != ctx_ || gen != fit_generation_) return;
                if (!error.isEmpty()) {
                    fitted_tokens_ = -1;
                    show_error(error);
                    return;
                }
                fitted_tokens_ = tokens;
                budget_value_->setText(budget_label() + tr(" → %1 tokens").arg(tokens));
                update_preview();
            });
        });
        return;
    }
    preview_timer_.start();
}

void LiveDock::update_preview() {
    if (!ctx_) return;
    const record::PolicyChoice c = current_choice();
    const PolicyEntry* e = PolicyRegistry::global().find(c.name);
    if (budget_mode() == BudgetMode::kMemory && e && e->info.needs_budget && c.budget.tokens < 1)
        return;  // the fit is still running
    try {
        const std::string blocker = ctx_->session->blocker(c);
        if (!blocker.empty()) {
            last_preview_.reset();
            window_->clear_preview();
            summary_label_->setText(
                tr("%1: no preview from the saved state (%2); Run to decode "
                   "it with its own prefill")
                    .arg(QString::fromStdString(c.describe()), QString::fromStdString(blocker)));
            clear_error();
            emit preview_ready();
            return;
        }
        auto pv = std::make_shared<whatif::Preview>(ctx_->session->preview(c));
        last_preview_ = pv;
        clear_error();
        const QLocale en(QLocale::English);
        QString needle;
        if (!pv->survival.empty())
            needle = tr(", needle kept %1% (min %2%)")
                         .arg(std::lround(100.0 * pv->survival_mean(0)))
                         .arg(std::lround(100.0 * pv->survival_min(0)));
        QString text = tr("%1: %2 tokens held, %3 (%4% of full)%5 — preview %6 ms")
                           .arg(QString::fromStdString(c.describe()))
                           .arg(en.toString(qlonglong(pv->tokens_held)))
                           .arg(bytes_text(pv->bytes_total))
                           .arg(100.0 * pv->memory_fraction(), 0, 'f', 1)
                           .arg(needle)
                           .arg(pv->elapsed_ms, 0, 'f', 1);
        if (pv->decode_time) text += tr("\nprefill decision only; release to re-run");
        summary_label_->setText(text);
        if (base_) {
            views::PreviewLabel label;
            label.policy = c.name;
            for (const auto& p : c.params)
                label.policy_params += (label.policy_params.empty() ? "" : " ") + p;
            label.budget_tokens = c.budget.tokens > 0
                                      ? c.budget.tokens
                                      : (pv->heads.empty() ? -1 : pv->heads[0].budget);
            label.budget_ratio = c.budget.ratio;
            window_->show_preview(std::make_shared<views::PreviewTraceModel>(base_, pv, label));
        }
        emit preview_ready();
    } catch (const std::exception& ex) {
        last_preview_.reset();
        show_error(QString::fromUtf8(ex.what()));
    }
}

// ---- Re-runs --------------------------------------------------------------------------------

QString LiveDock::unique_trace_path(const record::PolicyChoice& c) const {
    QString stem = QString::fromStdString(c.name);
    if (c.budget.tokens > 0) stem += QString("-tokens%1").arg(c.budget.tokens);
    if (c.budget.ratio > 0) stem += QString("-ratio%1").arg(c.budget.ratio, 0, 'g', 4);
    for (const auto& p : c.params) stem += "-" + QString::fromStdString(p);
    for (QChar& ch : stem)
        if (!ch.isLetterOrNumber() && ch != '.' && ch != '-' && ch != '_') ch = '_';
    const QDir dir(output_dir());
    for (int n = 1;; ++n) {
        QString path =
            dir.filePath(QString("%1-%2.kvtrace.h5").arg(stem).arg(n, 3, 10, QChar('0')));
        if (!QFile::exists(path) && !QFile::exists(path + ".part")) return path;
    }
}

void LiveDock::release_slider() {
    if (!ctx_) {
        show_error(tr("Nothing prefilled yet: Load and prefill first."));
        emit rerun_failed(error_text());
        return;
    }
    record::RerunRequest req;
    req.policy = current_choice();
    req.sampling.max_new = max_new_spin_->value();
    const QString out = output_dir();
    if (!QDir().mkpath(out)) {
        show_error(tr("Cannot create the folder %1 for the run").arg(out));
        emit rerun_failed(error_text());
        return;
    }
    const QString path = unique_trace_path(req.policy);
    req.trace = QFile::encodeName(path).toStdString();
    clear_error();
    set_busy_ui(true, tr("re-running %1…").arg(QString::fromStdString(req.policy.describe())));
    progress_->setRange(0, req.sampling.max_new);
    progress_->setValue(0);
    auto ctx = ctx_;
    worker_->post([this, ctx, req] {
        worker_->stop_flag() = false;
        record::RerunResult res;
        QString error;
        try {
            res = ctx->session->rerun(req, &worker_->stop_flag(), [this](int64_t d, int64_t t) {
                LiveWorker::deliver(this, [this, d, t] {
                    progress_->setRange(0, static_cast<int>(t));
                    progress_->setValue(static_cast<int>(d));
                    emit rerun_progress(d, t);
                });
            });
        } catch (const std::exception& e) {
            error = QString::fromUtf8(e.what());
        }
        LiveWorker::deliver(this, [this, res, error] {
            set_busy_ui(false, QString());
            if (!error.isEmpty()) {
                show_error(tr("Re-run failed: %1").arg(error));
                emit rerun_failed(error);
                return;
            }
            after_rerun(res, true);
        });
    });
}

void LiveDock::after_rerun(const record::RerunResult& r, bool open) {
    last_run_ = QString::fromStdString(r.trace.string());
    last_verdict_ = r.answer_found;
    verdict_label_->setText(
        tr("<b>%1</b> — %2 steps, %3 ms decode%4 (%5)")
            .arg(verdict_name(r.answer_found))
            .arg(r.steps)
            .arg(r.decode_ms, 0, 'f', 0)
            .arg(r.resumed ? tr(", resumed from the saved state") : tr(", own prefill"))
            .arg(QString::fromStdString(r.reason)));
    output_label_->setText(tr("output: %1").arg(QString::fromStdString(r.text).toHtmlEscaped()));
    if (!base_) {
        // A scenario prompt: the first run gives the views the prompt's tokens and statistics.
        try {
            base_ = std::make_shared<views::ReaderTraceModel>(r.trace);
            // Drop "; the views show previews after the first run" from the session line.
            session_label_->setText(session_label_->text().section(';', 0, 0));
        } catch (const std::exception& e) {
            show_error(QString::fromUtf8(e.what()));
        }
    }
    if (open && !window_->open_trace(last_run_)) show_error(window_->last_error());
    emit rerun_finished(last_run_, r.answer_found);
}

void LiveDock::cancel() {
    worker_->stop_flag() = true;
}

// ---- Status ---------------------------------------------------------------------------------

const record::LiveSession* LiveDock::session() const {
    return ctx_ ? ctx_->session.get() : nullptr;
}

QString LiveDock::summary_text() const {
    return summary_label_->text();
}
QString LiveDock::verdict_text() const {
    return verdict_label_->text();
}
QString LiveDock::error_text() const {
    return error_label_->text();
}

void LiveDock::show_error(const QString& message) {
    error_label_->setText(message);
    emit error_shown(message);
}

void LiveDock::clear_error() {
    error_label_->clear();
}

void LiveDock::set_busy_ui(bool busy, const QString& what) {
    cancel_button_->setEnabled(busy);
    prefill_button_->setEnabled(!busy);
    sweep_button_->setEnabled(!busy);
    for (QPushButton* b : {explain_button_, rescue_button_, rescue_once_button_})
        if (b) b->setEnabled(!busy);
    if (busy) {
        progress_->setFormat(what + "  %v / %m");
    } else {
        progress_->setFormat("%v / %m");
    }
}

}  // namespace kvscope::studio
