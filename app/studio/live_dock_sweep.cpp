// The What-if dock's budget sweep: the curve widget and the background sweep (live_dock.h).
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

// ---- SweepPlot ------------------------------------------------------------------------------

SweepPlot::SweepPlot(QWidget* parent) : QWidget(parent) {
    setMinimumHeight(120);
    setToolTip(
        tr("Needle kept (mean: solid, min: dashed) and memory held (grey) per budget "
           "ratio. Click a point to open that budget's run."));
}

QRectF SweepPlot::plot_rect() const {
    return QRectF(30, 8, std::max(width() - 40, 10), std::max(height() - 28, 10));
}

QPointF SweepPlot::point_pos(int i) const {
    const QRectF r = plot_rect();
    const SweepPoint& p = (*points_)[static_cast<size_t>(i)];
    const double y = std::isnan(p.survival_mean) ? p.memory_fraction : p.survival_mean;
    return {r.left() + p.ratio * r.width(), r.bottom() - y * r.height()};
}

int SweepPlot::point_at(QPoint pos) const {
    if (!points_) return -1;
    int best = -1;
    double best_d = 12.0;  // px: a click this close to a point picks it (x distance only)
    for (int i = 0; i < static_cast<int>(points_->size()); ++i) {
        const double d = std::abs(point_pos(i).x() - pos.x());
        if (d < best_d) {
            best_d = d;
            best = i;
        }
    }
    return best;
}

void SweepPlot::paintEvent(QPaintEvent*) {
    QPainter p(this);
    p.setRenderHint(QPainter::Antialiasing);
    const QRectF r = plot_rect();
    p.fillRect(rect(), palette().base());
    p.setPen(QPen(palette().mid().color(), 1));
    p.drawRect(r);
    p.setPen(palette().text().color());
    QFont f = font();
    f.setPointSizeF(f.pointSizeF() * 0.8);
    p.setFont(f);
    p.drawText(QRectF(0, r.top() - 6, 28, 12), Qt::AlignRight | Qt::AlignVCenter, "1");
    p.drawText(QRectF(0, r.bottom() - 6, 28, 12), Qt::AlignRight | Qt::AlignVCenter, "0");
    p.drawText(QRectF(r.left(), r.bottom() + 2, r.width(), 14), Qt::AlignLeft, "ratio 0");
    p.drawText(QRectF(r.left(), r.bottom() + 2, r.width(), 14), Qt::AlignRight, "1");
    if (!points_ || points_->empty()) {
        p.drawText(r, Qt::AlignCenter, tr("Sweep: needle kept and memory per budget"));
        return;
    }
    auto curve = [&](auto value, const QPen& pen) {
        QPainterPath path;
        bool first = true;
        for (const SweepPoint& s : *points_) {
            const double v = value(s);
            if (std::isnan(v)) continue;
            const QPointF q(r.left() + s.ratio * r.width(), r.bottom() - v * r.height());
            if (first)
                path.moveTo(q);
            else
                path.lineTo(q);
            first = false;
        }
        p.setPen(pen);
        p.drawPath(path);
    };
    p.setPen(palette().text().color());
    p.drawText(r.adjusted(6, 2, -4, 0), Qt::AlignLeft | Qt::AlignTop,
               tr("needle kept: mean (solid), min (dashed); memory held (grey)"));
    curve([](const SweepPoint& s) { return s.memory_fraction; }, QPen(QColor(140, 140, 140), 1.5));
    curve([](const SweepPoint& s) { return s.survival_min; },
          QPen(QColor(70, 150, 230), 1.5, Qt::DashLine));
    curve([](const SweepPoint& s) { return s.survival_mean; }, QPen(QColor(70, 150, 230), 2.0));
    for (int i = 0; i < static_cast<int>(points_->size()); ++i) {
        const SweepPoint& s = (*points_)[static_cast<size_t>(i)];
        const QPointF q = point_pos(i);
        const QColor c = s.verdict == 1   ? QColor(60, 190, 90)
                         : s.verdict == 0 ? QColor(220, 70, 60)
                                          : QColor(70, 150, 230);
        p.setPen(Qt::NoPen);
        p.setBrush(c);
        p.drawEllipse(q, s.verdict >= 0 ? 4.0 : 2.5, s.verdict >= 0 ? 4.0 : 2.5);
    }
}

void SweepPlot::mousePressEvent(QMouseEvent* e) {
    const int i = point_at(e->pos());
    if (i >= 0) emit point_clicked(i);
}

// ---- Sweep ----------------------------------------------------------------------------------

void LiveDock::sweep(bool with_answers) {
    if (!ctx_) {
        show_error(tr("Nothing prefilled yet: Load and prefill first."));
        emit sweep_finished(true);
        return;
    }
    record::PolicyChoice base_choice = current_choice();
    const PolicyEntry* e = PolicyRegistry::global().find(base_choice.name);
    if (!e || !e->info.needs_budget) {
        show_error(tr("%1 takes no budget: nothing to sweep").arg(policy()));
        emit sweep_finished(true);
        return;
    }
    const QString out = output_dir();
    if (with_answers) QDir().mkpath(out);
    sweep_.clear();
    plot_->update();
    clear_error();
    set_busy_ui(true, tr("sweeping %1…").arg(policy()));
    progress_->setRange(0, kSweepPoints);
    progress_->setValue(0);
    auto ctx = ctx_;
    const int max_new = max_new_spin_->value();
    // Paths are chosen on the GUI thread (unique_trace_path reads the folder) before the job.
    std::vector<record::PolicyChoice> choices;
    std::vector<QString> paths;
    for (int i = 1; i <= kSweepPoints; ++i) {
        record::PolicyChoice c = base_choice;
        c.budget = Budget{};
        c.budget.ratio = static_cast<double>(i) / kSweepPoints;
        choices.push_back(c);
        QString p = unique_trace_path(c);
        // Several new names in one folder: unique among themselves too.
        while (std::find(paths.begin(), paths.end(), p) != paths.end())
            p.replace(".kvtrace", "b.kvtrace");
        paths.push_back(p);
    }
    worker_->post([this, ctx, choices, paths, with_answers, max_new] {
        worker_->stop_flag() = false;
        bool cancelled = false;
        for (size_t i = 0; i < choices.size(); ++i) {
            if (worker_->stop_flag()) {
                cancelled = true;
                break;
            }
            SweepPoint pt;
            pt.ratio = choices[i].budget.ratio;
            QString error;
            try {
                if (ctx->session->blocker(choices[i]).empty()) {
                    const whatif::Preview pv = ctx->session->preview(choices[i]);
                    pt.tokens_held = pv.tokens_held;
                    pt.memory_fraction = pv.memory_fraction();
                    pt.survival_mean = pv.survival.empty() ? std::nan("") : pv.survival_mean(0);
                    pt.survival_min = pv.survival.empty() ? std::nan("") : pv.survival_min(0);
                } else {
                    pt.survival_mean = pt.survival_min = std::nan("");
                }
                if (with_answers) {
                    record::RerunRequest req;
                    req.policy = choices[i];
                    req.sampling.max_new = max_new;
                    req.trace = QFile::encodeName(paths[i]).toStdString();
                    const record::RerunResult r = ctx->session->rerun(req, &worker_->stop_flag());
                    if (r.reason == "interrupted" || r.reason == "cancelled") {
                        cancelled = true;
                    } else {
                        pt.verdict = r.answer_found;
                        pt.trace = QString::fromStdString(r.trace.string());
                        if (!ctx->session->blocker(choices[i]).empty())
                            pt.memory_fraction =
                                static_cast<double>(r.bytes_held_final) /
                                std::max<int64_t>(ctx->session->state().bytes_full(), 1);
                    }
                }
            } catch (const std::exception& ex) {
                error = QString::fromUtf8(ex.what());
            }
            const bool stop_now = cancelled;
            LiveWorker::deliver(this, [this, ctx, pt, error, stop_now] {
                if (ctx != ctx_) return;
                if (!error.isEmpty()) {
                    show_error(error);
                    return;
                }
                if (stop_now) return;
                sweep_.push_back(pt);
                progress_->setValue(static_cast<int>(sweep_.size()));
                plot_->update();
                emit sweep_point_ready(static_cast<int>(sweep_.size()) - 1);
            });
            if (cancelled || !error.isEmpty()) break;
        }
        LiveWorker::deliver(this, [this, cancelled] {
            set_busy_ui(false, QString());
            emit sweep_finished(cancelled);
        });
    });
}

void LiveDock::open_sweep_point(int index) {
    if (!ctx_ || index < 0 || index >= static_cast<int>(sweep_.size())) return;
    record::PolicyChoice c = current_choice();
    c.budget = Budget{};
    c.budget.ratio = sweep_[static_cast<size_t>(index)].ratio;
    const QString point_trace = sweep_[static_cast<size_t>(index)].trace;
    QString point_path = point_trace.isEmpty() ? unique_trace_path(c) : point_trace;
    record::PolicyChoice full;
    full.name = "full";
    QString full_path = full_trace_.isEmpty() ? unique_trace_path(full) : full_trace_;
    if (point_path == full_path) full_path.replace(".kvtrace", "b.kvtrace");
    const bool need_point = point_trace.isEmpty(), need_full = full_trace_.isEmpty();
    QDir().mkpath(output_dir());
    set_busy_ui(true, tr("running %1…").arg(QString::fromStdString(c.describe())));
    auto ctx = ctx_;
    const int max_new = max_new_spin_->value();
    worker_->post([this, ctx, c, point_path, full_path, need_point, need_full, max_new, index] {
        worker_->stop_flag() = false;
        record::RerunResult point_res;
        QString error;
        try {
            record::RerunRequest req;
            req.sampling.max_new = max_new;
            if (need_full) {
                req.policy.name = "full";
                req.trace = QFile::encodeName(full_path).toStdString();
                ctx->session->rerun(req, &worker_->stop_flag());
            }
            if (need_point) {
                req.policy = c;
                req.trace = QFile::encodeName(point_path).toStdString();
                point_res = ctx->session->rerun(req, &worker_->stop_flag());
            }
        } catch (const std::exception& e) {
            error = QString::fromUtf8(e.what());
        }
        LiveWorker::deliver(
            this, [this, ctx, point_res, error, point_path, full_path, need_point, index] {
                set_busy_ui(false, QString());
                if (ctx != ctx_) return;
                if (!error.isEmpty()) {
                    show_error(error);
                    return;
                }
                full_trace_ = full_path;
                if (need_point && index < static_cast<int>(sweep_.size())) {
                    sweep_[static_cast<size_t>(index)].trace = point_path;
                    sweep_[static_cast<size_t>(index)].verdict = point_res.answer_found;
                    plot_->update();
                }
                if (!window_->open_trace(point_path)) {
                    show_error(window_->last_error());
                    return;
                }
                // A = the budget's run, B = the full cache on the same prompt.
                if (!window_->open_compare(full_path)) show_error(window_->last_error());
                last_run_ = point_path;
                last_verdict_ = need_point ? point_res.answer_found
                                           : sweep_[static_cast<size_t>(index)].verdict;
                verdict_label_->setText(tr("<b>%1</b> — %2 (compared with the full cache)")
                                            .arg(verdict_name(last_verdict_))
                                            .arg(QFileInfo(point_path).fileName()));
                emit rerun_finished(point_path, last_verdict_);
            });
    });
}

}  // namespace kvscope::studio
