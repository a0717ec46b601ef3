#include "app/studio/presenter_mode.h"

#include <QAction>
#include <QApplication>
#include <QDockWidget>
#include <QMenu>
#include <QScreen>
#include <QSettings>
#include <QWheelEvent>

#include <algorithm>
#include <array>
#include <cmath>

#include "app/studio/imgui_host_widget.h"
#include "app/studio/main_window.h"
#include "app/studio/step_scrubber.h"

namespace kvscope::studio {

namespace {

// Zoom stops, like a browser's: small steps near 1, larger ones beyond.
constexpr std::array<float, 11> kLadder = {0.75f, 0.85f, 1.0f,  1.1f, 1.25f, 1.5f,
                                           1.75f, 2.0f,  2.25f, 2.5f, 3.0f};
constexpr int kTransportIconPx = 18;
// Presenter mode's transport buttons: this much larger again than the scaled chrome.
constexpr float kPresenterTransport = 1.6f;

}  // namespace

PresenterMode::PresenterMode(MainWindow* window)
    : QObject(window), window_(window), base_font_(QApplication::font()) {
    qApp->installEventFilter(this);
    scale_ = std::clamp(QSettings().value("ui/scale", 1.0).toFloat(), kMinScale, kMaxScale);
    apply();
}

void PresenterMode::add_actions(QMenu* menu) {
    menu->addSeparator();
    QAction* in = menu->addAction(tr("Zoom &in"), this, [this] { zoom(+1); });
    // Ctrl+= too: on most keyboards '+' is Shift+'='.
    in->setShortcuts({QKeySequence::ZoomIn, QKeySequence(Qt::CTRL | Qt::Key_Equal)});
    menu->addAction(tr("Zoom &out"), this, [this] { zoom(-1); })
        ->setShortcut(QKeySequence::ZoomOut);
    menu->addAction(tr("&Reset zoom"), this, [this] { set_ui_scale(1.0f); })
        ->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_0));
    full_screen_action_ =
        menu->addAction(tr("F&ull screen"), this, [this](bool on) { set_full_screen(on); });
    full_screen_action_->setCheckable(true);
    full_screen_action_->setShortcut(QKeySequence(Qt::Key_F11));
    presenter_action_ =
        menu->addAction(tr("&Presenter mode"), this, [this](bool on) { set_active(on); });
    presenter_action_->setCheckable(true);
    // F5 is Reload (QKeySequence::Refresh); P for presenter.
    presenter_action_->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_P));
    presenter_action_->setToolTip(
        tr("Full screen, high-contrast theme, large text and controls, one view at a time"));
}

void PresenterMode::set_ui_scale(float scale) {
    scale_ = std::clamp(scale, kMinScale, kMaxScale);
    QSettings().setValue("ui/scale", static_cast<double>(scale_));
    if (active_) QSettings().setValue("presenter/scale", static_cast<double>(scale_));
    apply();
}

void PresenterMode::zoom(int steps) {
    // The stop after (or before) the current scale, which need not be on the ladder.
    float next = scale_;
    if (steps > 0) {
        const auto it = std::upper_bound(kLadder.begin(), kLadder.end(), scale_ + 1e-3f);
        next = it == kLadder.end() ? kLadder.back() : *it;
    } else if (steps < 0) {
        const auto it = std::lower_bound(kLadder.begin(), kLadder.end(), scale_ - 1e-3f);
        next = it == kLadder.begin() ? kLadder.front() : *(it - 1);
    }
    set_ui_scale(next);
}

int PresenterMode::transport_icon_px() const {
    const float k = active_ ? kPresenterTransport : 1.0f;
    return static_cast<int>(std::lround(kTransportIconPx * scale_ * k));
}

void PresenterMode::apply() {
    QFont font = base_font_;
    if (base_font_.pointSizeF() > 0) {
        font.setPointSizeF(base_font_.pointSizeF() * scale_);
    } else {
        font.setPixelSize(static_cast<int>(std::lround(base_font_.pixelSize() * scale_)));
    }
    QApplication::setFont(font);
    for (ImGuiHostWidget* h : window_->findChildren<ImGuiHostWidget*>()) h->set_ui_scale(scale_);
    window_->scrubber()->set_icon_size(transport_icon_px());
}

void PresenterMode::set_full_screen(bool on) {
    if (on) {
        window_->showFullScreen();
        // Without a window manager (Xvfb, some kiosk setups) the full-screen request is not acted
        // on: take the screen's geometry ourselves.
        if (QScreen* s = window_->screen()) window_->setGeometry(s->geometry());
    } else {
        window_->showNormal();
    }
    if (full_screen_action_) full_screen_action_->setChecked(on);
}

void PresenterMode::set_active(bool on) {
    if (on == active_) return;
    if (on) {
        before_.scale = scale_;
        before_.theme = window_->theme_kind();
        before_.state = window_->saveState();
        before_.geometry = window_->saveGeometry();
        before_.full_screen = window_->isFullScreen();
        active_ = true;
        const float presenter =
            QSettings().value("presenter/scale", static_cast<double>(kPresenterScale)).toFloat();
        window_->set_theme(views::ThemeKind::kHighContrast);
        set_full_screen(true);
        apply_presenter_layout();
        scale_ = std::clamp(std::max(scale_, presenter), kMinScale, kMaxScale);
        apply();  // not stored as "ui/scale": leaving presenter mode goes back to the old one
    } else {
        active_ = false;
        window_->set_theme(before_.theme);
        if (!before_.full_screen) set_full_screen(false);
        window_->restoreGeometry(before_.geometry);
        window_->restoreState(before_.state);
        scale_ = before_.scale;
        apply();
    }
    if (presenter_action_) presenter_action_->setChecked(on);
}

void PresenterMode::apply_presenter_layout() {
    // One view at a time, at the full size of the window: at 1280x720 and 1.5x text, any split
    // leaves the plots too small to read from the back of a room.
    for (QDockWidget* d : window_->findChildren<QDockWidget*>()) {
        if (window_->view_index(d->objectName()) < 0) d->hide();  // what-if, NIAH grid
    }
    const int current = window_->current_view();
    QDockWidget* first = window_->dock(0);
    window_->addDockWidget(Qt::TopDockWidgetArea, first);
    first->setFloating(false);
    first->show();
    for (int i = 1; i < window_->view_count(); ++i) {
        QDockWidget* d = window_->dock(i);
        d->setFloating(false);
        d->show();
        window_->tabifyDockWidget(first, d);
    }
    window_->show_view(current);
}

bool PresenterMode::eventFilter(QObject* watched, QEvent* event) {
    if (event->type() == QEvent::Wheel && watched->isWidgetType()) {
        auto* w = static_cast<QWidget*>(watched);
        auto* wheel = static_cast<QWheelEvent*>(event);
        if (wheel->modifiers().testFlag(Qt::ControlModifier) &&
            (w == window_ || window_->isAncestorOf(w))) {
            // Touchpads send many small deltas: one zoom step per notch (120) of travel.
            wheel_travel_ += wheel->angleDelta().y();
            for (; wheel_travel_ >= 120; wheel_travel_ -= 120) zoom(+1);
            for (; wheel_travel_ <= -120; wheel_travel_ += 120) zoom(-1);
            return true;  // views do not also zoom their plots
        }
    }
    return QObject::eventFilter(watched, event);
}

}  // namespace kvscope::studio
