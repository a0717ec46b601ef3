#include "app/studio/step_scrubber.h"

#include <QComboBox>
#include <QEvent>
#include <QHBoxLayout>
#include <QLabel>
#include <QSignalBlocker>
#include <QSlider>
#include <QSpinBox>
#include <QToolButton>

#include <algorithm>

#include "app/studio/transport_icons.h"

namespace kvscope::studio {

namespace {

QToolButton* tool_button(QWidget* parent, const QString& name, const QString& tip) {
    auto* b = new QToolButton(parent);
    b->setObjectName(name);
    b->setToolTip(tip);
    b->setAccessibleName(tip);
    return b;
}

}  // namespace

StepScrubber::StepScrubber(QWidget* parent) : QWidget(parent) {
    auto* row = new QHBoxLayout(this);
    row->setContentsMargins(6, 2, 6, 2);
    row->setSpacing(4);
    first_ = tool_button(this, "firstStep", tr("First step (Home)"));
    prev_ = tool_button(this, "previousStep", tr("Previous step (Left)"));
    play_ = tool_button(this, "playPause", tr("Play / pause (Space)"));
    next_ = tool_button(this, "nextStep", tr("Next step (Right)"));
    last_ = tool_button(this, "lastStep", tr("Last step (End)"));
    slider_ = new QSlider(Qt::Horizontal, this);
    slider_->setObjectName("stepSlider");
    slider_->setToolTip(tr("Step"));
    box_ = new QSpinBox(this);
    box_->setObjectName("stepBox");
    box_->setToolTip(tr("Jump to step (Ctrl+G)"));
    of_ = new QLabel(this);
    speed_ = new QComboBox(this);
    speed_->setToolTip(tr("Playback speed"));
    for (double v : {1.0, 2.0, 5.0, 10.0, 30.0, 60.0}) {
        speed_->addItem(tr("%1 steps/s").arg(v), v);
    }
    speed_->setCurrentIndex(2);
    row->addWidget(first_);
    row->addWidget(prev_);
    row->addWidget(play_);
    row->addWidget(next_);
    row->addWidget(last_);
    row->addWidget(new QLabel(tr("step"), this));
    row->addWidget(box_);
    row->addWidget(of_);
    row->addWidget(slider_, 1);
    row->addWidget(speed_);

    connect(first_, &QToolButton::clicked, this, &StepScrubber::first);
    connect(last_, &QToolButton::clicked, this, &StepScrubber::last);
    connect(prev_, &QToolButton::clicked, this, [this] { step_by(-1); });
    connect(next_, &QToolButton::clicked, this, [this] { step_by(+1); });
    connect(play_, &QToolButton::clicked, this, &StepScrubber::toggle_play);
    connect(slider_, &QSlider::valueChanged, this, [this](int v) { go_to(v); });
    connect(box_, qOverload<int>(&QSpinBox::valueChanged), this, [this](int v) { go_to(v); });
    connect(speed_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this] {
        if (timer_.isActive()) timer_.setInterval(static_cast<int>(1000.0 / steps_per_second()));
    });
    connect(&timer_, &QTimer::timeout, this, &StepScrubber::tick);
    update_icons();
}

void StepScrubber::set_icon_size(int px) {
    icon_px_ = std::max(px, 8);
    update_icons();
}

void StepScrubber::changeEvent(QEvent* e) {
    QWidget::changeEvent(e);
    if (e->type() == QEvent::PaletteChange) update_icons();
}

void StepScrubber::update_icons() {
    const QColor colour = palette().color(QPalette::ButtonText);
    const std::pair<QToolButton*, TransportIcon> buttons[] = {
        {first_, TransportIcon::kFirst},
        {prev_, TransportIcon::kPrevious},
        {next_, TransportIcon::kNext},
        {last_, TransportIcon::kLast},
    };
    for (const auto& [button, kind] : buttons) {
        button->setIcon(transport_icon(kind, colour, icon_px_));
        button->setIconSize(QSize(icon_px_, icon_px_));
    }
    play_->setIconSize(QSize(icon_px_, icon_px_));
    sync_widgets();  // sets the play / pause icon
}

double StepScrubber::steps_per_second() const {
    return speed_->currentData().toDouble();
}

void StepScrubber::set_steps_per_second(double v) {
    int best = 0;
    for (int i = 0; i < speed_->count(); ++i) {
        if (std::abs(speed_->itemData(i).toDouble() - v) <
            std::abs(speed_->itemData(best).toDouble() - v)) {
            best = i;
        }
    }
    speed_->setCurrentIndex(best);
}

void StepScrubber::set_step_count(int64_t n) {
    count_ = std::max<int64_t>(n, 0);
    step_ = std::clamp<int64_t>(step_, 0, std::max<int64_t>(count_ - 1, 0));
    if (count_ <= 1) pause();
    sync_widgets();
}

void StepScrubber::sync_widgets() {
    const QSignalBlocker b1(slider_);
    const QSignalBlocker b2(box_);
    const int max = static_cast<int>(std::max<int64_t>(count_ - 1, 0));
    slider_->setRange(0, max);
    box_->setRange(0, max);
    slider_->setValue(static_cast<int>(step_));
    box_->setValue(static_cast<int>(step_));
    of_->setText(tr("of %1").arg(max));
    const bool any = count_ > 1;
    for (QWidget* w :
         {static_cast<QWidget*>(first_), static_cast<QWidget*>(prev_), static_cast<QWidget*>(play_),
          static_cast<QWidget*>(next_), static_cast<QWidget*>(last_),
          static_cast<QWidget*>(slider_), static_cast<QWidget*>(box_)}) {
        w->setEnabled(any);
    }
    play_->setIcon(transport_icon(playing() ? TransportIcon::kPause : TransportIcon::kPlay,
                                  palette().color(QPalette::ButtonText), icon_px_));
}

void StepScrubber::set_step(int64_t step) {
    step_ = std::clamp<int64_t>(step, 0, std::max<int64_t>(count_ - 1, 0));
    sync_widgets();
}

void StepScrubber::go_to(int64_t step) {
    const int64_t before = step_;
    set_step(step);
    if (step_ != before) emit step_changed(step_);
}

void StepScrubber::step_by(int64_t delta) {
    go_to(step_ + delta);
}
void StepScrubber::first() {
    go_to(0);
}
void StepScrubber::last() {
    go_to(count_ - 1);
}

void StepScrubber::play() {
    if (count_ <= 1 || timer_.isActive()) return;
    if (step_ >= count_ - 1) go_to(0);  // replay from the start
    timer_.start(static_cast<int>(1000.0 / steps_per_second()));
    sync_widgets();
    emit playing_changed(true);
}

void StepScrubber::pause() {
    if (!timer_.isActive()) return;
    timer_.stop();
    sync_widgets();
    emit playing_changed(false);
}

void StepScrubber::toggle_play() {
    playing() ? pause() : play();
}

void StepScrubber::tick() {
    if (step_ >= count_ - 1) {
        pause();
        return;
    }
    step_by(1);
}

}  // namespace kvscope::studio
