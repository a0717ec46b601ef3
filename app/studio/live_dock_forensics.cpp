// The What-if dock's needle forensics: explain by the policy's own score, and rescue (live_dock.h).
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

// ---- Needle forensics -----------------------------------------------------------------------

views::NeedleView* LiveDock::needle_view() const {
    const int i = window_->view_index("needle");
    return i >= 0 ? dynamic_cast<views::NeedleView*>(window_->view(i)) : nullptr;
}

void LiveDock::set_forensics_busy(bool busy, const std::string& what, int64_t total) {
    forensics_.busy = busy;
    forensics_.what = what;
    forensics_.done = 0;
    forensics_.total = total;
    if (busy) forensics_.error.clear();
    window_->repaint_views();
}

void LiveDock::forensics_failed(const QString& message) {
    forensics_.busy = false;
    forensics_.error = message.toStdString();
    show_error(message);
    window_->repaint_views();
}

void LiveDock::with_trace_session(const std::function<void()>& then,
                                  const std::function<void(QString)>& fail) {
    const QString trace = window_->trace_path();
    if (trace.isEmpty()) {
        fail(tr("no trace is open"));
        return;
    }
    if (busy()) {
        if (!prefilling_) {
            fail(tr("the What-if worker is busy: wait for it or cancel"));
            return;
        }
        // The dock's own prefill is under way (showing the dock starts one): go on once it is
        // done, checking again that it was of this trace.
        auto wait = std::make_shared<QMetaObject::Connection>();
        *wait = connect(this, &LiveDock::prefill_finished, this, [this, wait, then, fail](bool ok) {
            disconnect(*wait);
            if (ok)
                with_trace_session(then, fail);
            else
                fail(error_text());
        });
        return;
    }
    if (ctx_ && !ctx_->setup.scenario && ctx_->setup.trace == trace.toStdString()) {
        then();
        return;
    }
    // The trace's own model: only the model that made the decisions reproduces them.
    auto* reader = dynamic_cast<const views::ReaderTraceModel*>(window_->model());
    const std::string recorded = reader ? reader->reader().metadata().model_path : std::string();
    if (recorded.empty()) {
        fail(tr("%1 does not name the model it was recorded with, so its run cannot be "
                "repeated")
                 .arg(QFileInfo(trace).fileName()));
        return;
    }
    model_auto_ = true;
    model_edit_->setText(
        QString::fromStdString(resolve_trace_model_path(trace.toStdString(), recorded)));
    prompt_combo_->setCurrentIndex(0);
    auto conn = std::make_shared<QMetaObject::Connection>();
    *conn = connect(this, &LiveDock::prefill_finished, this, [this, conn, then, fail](bool ok) {
        disconnect(*conn);
        if (ok) {
            then();
        } else {
            fail(error_text());
        }
    });
    prefill();
}

void LiveDock::explain_needle() {
    const QString trace = window_->trace_path();
    const std::string view_path = window_->model() ? window_->model()->summary().path : "";
    set_forensics_busy(true, "preparing the model and prompt...", 0);
    with_trace_session(
        [this, trace, view_path] {
            auto ctx = ctx_;
            set_forensics_busy(true, "explaining: re-running the policy", 0);
            set_busy_ui(true, tr("explaining the needle…"));
            worker_->post([this, ctx, trace, view_path] {
                worker_->stop_flag() = false;
                std::shared_ptr<const views::NeedleExplanation> e;
                QString error;
                try {
                    e = std::make_shared<const views::NeedleExplanation>(explain_trace_needle(
                        *ctx->session, QFile::encodeName(trace).toStdString(), view_path,
                        &worker_->stop_flag(), [this](int64_t d, int64_t t) {
                            LiveWorker::deliver(this, [this, d, t] {
                                forensics_.done = d;
                                forensics_.total = t;
                                progress_->setRange(0, static_cast<int>(t));
                                progress_->setValue(static_cast<int>(d));
                                window_->repaint_views();
                            });
                        }));
                } catch (const std::exception& ex) {
                    error = QString::fromUtf8(ex.what());
                }
                LiveWorker::deliver(this, [this, e, error] {
                    set_busy_ui(false, QString());
                    set_forensics_busy(false, std::string(), 0);
                    if (!e) {
                        forensics_failed(tr("Explain failed: %1").arg(error));
                        emit explain_finished(false);
                        return;
                    }
                    explanation_ = e;
                    if (views::NeedleView* v = needle_view()) v->set_explanation(e);
                    // The views show the trace explained, not a what-if preview.
                    window_->clear_preview();
                    window_->show_view(window_->view_index("needle"));
                    window_->repaint_views();
                    emit explain_finished(true);
                });
            });
        },
        [this](const QString& why) {
            forensics_failed(tr("Explain failed: %1").arg(why));
            emit explain_finished(false);
        });
}

void LiveDock::rebuild_rescue_layers(int64_t n_layers) {
    if (static_cast<int64_t>(rescue_checks_.size()) == n_layers) return;
    for (QCheckBox* c : rescue_checks_) delete c;
    rescue_checks_.clear();
    auto* grid = static_cast<QGridLayout*>(rescue_layers_box_->layout());
    constexpr int kColumns = 8;  // checkboxes per row: "L12" fits eight in the dock's width
    for (int64_t l = 0; l < n_layers; ++l) {
        auto* c = new QCheckBox(QString("L%1").arg(l), rescue_layers_box_);
        c->setToolTip(tr("Keep the needle in layer %1").arg(l));
        grid->addWidget(c, static_cast<int>(l / kColumns), static_cast<int>(l % kColumns));
        rescue_checks_.push_back(c);
    }
}

void LiveDock::set_rescue_layer_checked(int64_t layer, bool on) {
    if (window_->model()) rebuild_rescue_layers(window_->model()->summary().n_layers);
    if (layer >= 0 && layer < static_cast<int64_t>(rescue_checks_.size()))
        rescue_checks_[static_cast<size_t>(layer)]->setChecked(on);
}

void LiveDock::rescue_with_checked_layers() {
    std::set<int64_t> layers;
    for (size_t l = 0; l < rescue_checks_.size(); ++l)
        if (rescue_checks_[l]->isChecked()) layers.insert(static_cast<int64_t>(l));
    rescue_with_layers(layers);
}

void LiveDock::rescue_search() {
    start_rescue(true, {});
}

void LiveDock::rescue_with_layers(const std::set<int64_t>& layers) {
    start_rescue(false, layers);
}

QString LiveDock::rescue_summary() const {
    return rescue_label_->text();
}

void LiveDock::show_rescue_summary(const QString& text) {
    rescue_label_->setText(text);
    forensics_.rescue_summary = text.toStdString();
    window_->repaint_views();
}

void LiveDock::add_rescue_row(const RescueRow& row) {
    rescue_runs_.push_back(row);
    std::string layers = record::layer_list(row.layers);
    auto* item =
        new QListWidgetItem(tr("%1 — needle kept in layers %2")
                                .arg(verdict_name(row.found), QString::fromStdString(layers)),
                            rescue_list_);
    item->setToolTip(row.trace);
}

void LiveDock::start_rescue(bool search, const std::set<int64_t>& layers) {
    const QString trace = window_->trace_path();
    set_forensics_busy(true, "preparing the model and prompt...", 0);
    with_trace_session(
        [this, trace, search, layers] {
            auto ctx = ctx_;
            const int64_t L = ctx->session->model().spec.n_layers;
            const int max_runs = static_cast<int>(2 + L);
            const QString dir = output_dir();
            if (!QDir().mkpath(dir)) {
                forensics_failed(tr("Cannot create the folder %1 for the runs").arg(dir));
                emit rescue_finished(false);
                return;
            }
            rescue_runs_.clear();
            rescue_found_.clear();
            rescue_list_->clear();
            rescue_trace_ = trace;
            show_rescue_summary(search ? tr("searching…") : tr("running…"));
            // The list is near the end of the dock: show it (vertically only; the dock's content
            // follows its width).
            if (auto* scroll = qobject_cast<QScrollArea*>(widget()))
                scroll->verticalScrollBar()->setValue(scroll->verticalScrollBar()->maximum());
            clear_error();
            set_forensics_busy(true, search ? "rescue runs" : "rescue run", search ? max_runs : 1);
            set_busy_ui(true, search ? tr("rescue: searching layers…") : tr("rescue: one run…"));
            progress_->setRange(0, search ? max_runs : 1);
            progress_->setValue(0);
            const std::string dir_s = QFile::encodeName(dir).toStdString();
            const std::string trace_s = QFile::encodeName(trace).toStdString();
            worker_->post([this, ctx, trace_s, dir_s, search, layers, max_runs] {
                namespace fs = std::filesystem;
                worker_->stop_flag() = false;
                struct Cancelled {};
                record::RescueResult result;
                QString error;
                bool cancelled = false;
                // Each run's trace gets a fresh name in the what-if folder (never replacing one).
                auto place = [&](const record::RescueRun& r) {
                    std::string stem = "rescue-layers";
                    for (int64_t l : r.layers) stem += "-" + std::to_string(l);
                    if (r.layers.empty()) stem = "rescue-policy-as-is";
                    // Manual runs are recorded under a fresh name already; search runs move.
                    const fs::path dest = r.trace.parent_path() == fs::path(dir_s)
                                              ? r.trace
                                              : trace::fresh_output_path(dir_s, stem);
                    if (r.trace != dest) fs::rename(r.trace, dest);
                    RescueRow row{r.layers, r.found, QString::fromStdString(dest.string())};
                    LiveWorker::deliver(this, [this, row] {
                        add_rescue_row(row);
                        forensics_.done = static_cast<int64_t>(rescue_runs_.size());
                        progress_->setValue(static_cast<int>(rescue_runs_.size()));
                        emit rescue_run_ready(static_cast<int>(rescue_runs_.size()) - 1);
                        window_->repaint_views();
                    });
                };
                fs::path scratch;
                try {
                    trace::TraceReader reader(trace_s);
                    const trace::RunMetadata& meta = reader.metadata();
                    const auto [b, e] = needle_of(reader.spans());
                    if (b < 0) throw InputError(trace_s, "has no marked needle to rescue");
                    const record::PolicyChoice choice = record::policy_from_trace(meta);
                    const record::SamplingOptions so = record::sampling_from_trace(meta);
                    if (search) {
                        // rescue_needle names its runs rescue-NN in a folder of its own (and
                        // replaces them): a fresh scratch folder, emptied into `dir` run by run.
                        scratch = trace::fresh_output_path(dir_s, "rescue-search", ".tmp");
                        result = record::rescue_needle(*ctx->session, choice, so, b, e, scratch,
                                                       max_runs, [&](const record::RescueRun& r) {
                                                           place(r);
                                                           // Cancel between runs: leave the search
                                                           // here.
                                                           if (worker_->stop_flag())
                                                               throw Cancelled{};
                                                       });
                    } else {
                        std::string stem = "rescue-layers";
                        for (int64_t l : layers) stem += "-" + std::to_string(l);
                        const fs::path t = trace::fresh_output_path(dir_s, stem);
                        const record::RescueRun r = record::run_with_needle_kept(
                            *ctx->session, choice, so, b, e, layers, t);
                        place(r);
                        result.outcome = r.found == 1
                                             ? record::RescueResult::Outcome::kRescued
                                             : record::RescueResult::Outcome::kNotRescuable;
                        result.summary =
                            std::string(r.found == 1 ? "answer restored" : "answer still wrong") +
                            " with the needle kept in layers " + record::layer_list(layers);
                    }
                } catch (const Cancelled&) {
                    cancelled = true;
                } catch (const std::exception& ex) {
                    error = QString::fromUtf8(ex.what());
                }
                if (!scratch.empty()) {
                    std::error_code ec;
                    fs::remove_all(scratch, ec);
                }
                LiveWorker::deliver(this, [this, result, error, cancelled, search] {
                    set_busy_ui(false, QString());
                    set_forensics_busy(false, std::string(), 0);
                    if (!error.isEmpty()) {
                        show_rescue_summary(QString());
                        forensics_failed(tr("Rescue failed: %1").arg(error));
                        emit rescue_finished(false);
                        return;
                    }
                    if (cancelled) {
                        show_rescue_summary(tr("cancelled after %1 runs").arg(rescue_runs_.size()));
                        emit rescue_finished(false);
                        return;
                    }
                    // The views show the trace rescued, not a what-if preview of the session.
                    window_->clear_preview();
                    if (search &&
                        (result.outcome == record::RescueResult::Outcome::kRescued ||
                         result.outcome == record::RescueResult::Outcome::kBudgetExhausted))
                        rescue_found_ = result.layers;
                    show_rescue_summary(QString::fromStdString(result.summary));
                    emit rescue_finished(true);
                });
            });
        },
        [this](const QString& why) {
            forensics_failed(tr("Rescue failed: %1").arg(why));
            emit rescue_finished(false);
        });
}

void LiveDock::open_rescue_run(int index) {
    if (index < 0 || index >= static_cast<int>(rescue_runs_.size())) return;
    const QString run = rescue_runs_[static_cast<size_t>(index)].trace;
    if (window_->trace_path() != rescue_trace_ && !window_->open_trace(rescue_trace_)) {
        show_error(window_->last_error());
        return;
    }
    if (!window_->open_compare(run)) show_error(window_->last_error());
}

}  // namespace kvscope::studio
