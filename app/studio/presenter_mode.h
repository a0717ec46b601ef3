#pragma once
// PresenterMode: what a teacher needs to put the Studio on a projector (issue 16, item 1).
//  - UI scale: Ctrl+plus / Ctrl+minus / Ctrl+0 and Ctrl+wheel anywhere in the window scale the
//    Qt chrome (application font) and every ImGui view (ImGuiHostWidget::set_ui_scale) together;
//    the scale is kept in QSettings ("ui/scale").
//  - Full screen (F11).
//  - Presenter mode (Ctrl+Shift+P): full screen, the high-contrast theme, at least the presenter
//  scale
//    (1.5, or the last one used in presenter mode: "presenter/scale"), large transport buttons,
//    and a layout that fits 1280x720: every view tabbed in one area at full size, the side docks
//    hidden. Leaving it restores the theme, scale, layout and window state from before.
#include <QByteArray>
#include <QFont>
#include <QObject>

#include "views/theme.h"

class QAction;
class QMenu;

namespace kvscope::studio {

class MainWindow;

class PresenterMode : public QObject {
    Q_OBJECT

  public:
    static constexpr float kPresenterScale = 1.5f;
    static constexpr float kMinScale = 0.75f;
    static constexpr float kMaxScale = 3.0f;

    // Reads the stored scale and applies it to the window.
    explicit PresenterMode(MainWindow* window);

    // View menu entries: zoom in / out / reset, full screen, presenter mode, high-contrast theme.
    void add_actions(QMenu* view_menu);

    float ui_scale() const { return scale_; }
    void set_ui_scale(float scale);  // clamped to [kMinScale, kMaxScale], applied and stored
    void zoom(int steps);            // +1 / -1: the next / previous stop of the zoom ladder
    bool active() const { return active_; }
    void set_active(bool on);
    void set_full_screen(bool on);
    // Size of the transport icons at the current scale (larger in presenter mode).
    int transport_icon_px() const;
    // Applies the scale to views created after the last change (e.g. a dock built later).
    void apply();

  protected:
    bool eventFilter(QObject* watched, QEvent* event) override;  // Ctrl+wheel

  private:
    void apply_presenter_layout();

    MainWindow* window_;
    QFont base_font_;
    float scale_ = 1.0f;
    bool active_ = false;
    int wheel_travel_ = 0;  // Ctrl+wheel angle not yet turned into a zoom step
    // What presenter mode changed, restored when it ends.
    struct Before {
        float scale = 1.0f;
        views::ThemeKind theme = views::ThemeKind::kDark;
        QByteArray state;
        QByteArray geometry;
        bool full_screen = false;
    } before_;
    QAction* presenter_action_ = nullptr;
    QAction* full_screen_action_ = nullptr;
};

}  // namespace kvscope::studio
