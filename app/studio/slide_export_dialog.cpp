#include "app/studio/slide_export_dialog.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QDir>
#include <QFileDialog>
#include <QFormLayout>
#include <QLineEdit>
#include <QMenu>
#include <QMessageBox>
#include <QProgressDialog>
#include <QRegularExpressionValidator>
#include <QSettings>
#include <QSpinBox>

#include <algorithm>

#include "app/studio/main_window.h"
#include "app/studio/slide_export.h"

namespace kvscope::studio {

SlideExportDialog::SlideExportDialog(MainWindow& window, Kind kind)
    : QDialog(&window), window_(window), kind_(kind) {
    const bool video = kind == Kind::kVideo;
    setWindowTitle(video ? tr("Export video") : tr("Export figure"));
    setObjectName(video ? "exportVideoDialog" : "exportFigureDialog");
    auto* form = new QFormLayout(this);
    view_ = new QComboBox(this);
    for (int i = 0; i < window.view_count(); ++i) {
        view_->addItem(QString::fromUtf8(window.view(i)->title()));
    }
    view_->setCurrentIndex(window.current_view());
    form->addRow(tr("View:"), view_);
    const int last_step = static_cast<int>(std::max<int64_t>(window.step_count() - 1, 0));
    const int step = static_cast<int>(std::clamp<int64_t>(window.view_state().step, 0, last_step));
    first_ = new QSpinBox(this);
    first_->setRange(0, last_step);
    if (video) {
        last_ = new QSpinBox(this);
        last_->setRange(0, last_step);
        first_->setValue(0);
        last_->setValue(last_step);
        fps_ = new QSpinBox(this);
        fps_->setRange(1, 60);
        fps_->setValue(4);
        fps_->setSuffix(tr(" steps/s"));
        form->addRow(tr("First step:"), first_);
        form->addRow(tr("Last step:"), last_);
        form->addRow(tr("Rate:"), fps_);
    } else {
        first_->setValue(step);
        form->addRow(tr("Step:"), first_);
    }
    size_ = new QLineEdit(video ? "1280x720" : "1920x1080", this);
    size_->setValidator(
        new QRegularExpressionValidator(QRegularExpression("[0-9]{2,4}x[0-9]{2,4}"), size_));
    form->addRow(tr("Size (pixels):"), size_);
    if (!video) {
        caption_ = new QLineEdit(this);
        caption_->setPlaceholderText(tr("optional, drawn under the view"));
        form->addRow(tr("Caption:"), caption_);
    }
    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
    connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    form->addRow(buttons);
}

void SlideExportDialog::run() {
    if (!window_.model()) {
        QMessageBox::information(&window_, windowTitle(), tr("Open a trace first."));
        return;
    }
    if (exec() != QDialog::Accepted) return;
    const bool video = kind_ == Kind::kVideo;
    const QString id = QString::fromUtf8(window_.view(view_->currentIndex())->id());
    const QString path = QFileDialog::getSaveFileName(
        &window_, windowTitle(),
        QDir(QSettings().value("last_dir").toString()).filePath(id + (video ? ".mp4" : ".png")),
        video ? tr("MP4 video (*.mp4);;Animated GIF (*.gif)")
              : tr("PNG image (*.png);;PDF (*.pdf);;SVG (*.svg)"));
    if (!path.isEmpty()) export_to(path);
}

bool SlideExportDialog::export_to(const QString& path) {
    SlideExportOptions o;
    o.view = view_->currentIndex();
    const QStringList wh = size_->text().split('x');
    if (wh.size() == 2) o.size = QSize(wh[0].toInt(), wh[1].toInt());
    // The file dialog has asked before replacing an existing file.
    o.overwrite = true;
    QString error;
    bool ok = false;
    if (kind_ == Kind::kVideo) {
        o.first_step = std::min(first_->value(), last_->value());
        o.last_step = std::max(first_->value(), last_->value());
        o.fps = fps_->value();
        QProgressDialog progress(tr("Encoding %1...").arg(path), tr("Cancel"), 0,
                                 static_cast<int>(o.last_step - o.first_step + 1), &window_);
        progress.setWindowModality(Qt::WindowModal);
        progress.setMinimumDuration(500);
        ok = export_slide_video(window_, path, o, &error, [&](int64_t done, int64_t) {
            progress.setValue(static_cast<int>(done));
            return !progress.wasCanceled();
        });
    } else {
        o.step = first_->value();
        o.caption = caption_->text();
        ok = export_slide_figure(window_, path, o, &error);
    }
    if (!ok) {
        auto* box = new QMessageBox(QMessageBox::Warning, tr("Export failed"), error,
                                    QMessageBox::Ok, &window_);
        box->setAttribute(Qt::WA_DeleteOnClose);
        box->setObjectName("errorBox");
        box->open();
    }
    return ok;
}

void add_slide_export_actions(MainWindow* window, QMenu* file) {
    file->addAction(QObject::tr("Export &video (MP4, GIF)..."), window, [window] {
        SlideExportDialog(*window, SlideExportDialog::Kind::kVideo).run();
    });
    file->addAction(QObject::tr("Export &figure for slides (PNG, PDF, SVG)..."), window, [window] {
        SlideExportDialog(*window, SlideExportDialog::Kind::kFigure).run();
    });
}

}  // namespace kvscope::studio
