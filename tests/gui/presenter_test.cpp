// Presenter mode and help (issue 16, items 1 and 5) under Xvfb (Qt Test), on a 1280x720 screen:
// the UI scale (keys, Ctrl+wheel, stored in QSettings), presenter mode (full screen, high
// contrast, large transport buttons, one view at a time) with no clipped label in any view or in
// the Qt chrome (tests/gui/layout_audit.h reads the widths the layouts computed), the shortcuts
// sheet against the menus, and the "how to read" help and title tooltips. With KVSCOPE_GUI_SHOTS
// set, writes presenter_*.png there (docs/screenshots/ are made this way).
#include <QApplication>
#include <QDockWidget>
#include <QHelpEvent>
#include <QMenuBar>
#include <QSettings>
#include <QSignalSpy>
#include <QTabBar>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QTextBrowser>
#include <QToolButton>
#include <QToolTip>
#include <QtTest/QtTest>

#include <cmath>
#include <memory>

#include <imgui.h>

#include "app/studio/help_dialogs.h"
#include "app/studio/imgui_host_widget.h"
#include "app/studio/main_window.h"
#include "app/studio/presenter_mode.h"
#include "app/studio/step_scrubber.h"
#include "tests/gui/layout_audit.h"
#include "tests/gui/studio_test_harness.h"
#include "views/view_help.h"

using namespace kvscope;
using studio::ImGuiHostWidget;
using studio::MainWindow;
using studio::PresenterMode;

namespace {

const QString kSample = QStringLiteral(KVSCOPE_SOURCE_DIR "/resources/sample/sample.kvtrace.h5");
constexpr float kScaleTol = 1e-3f;  // scales are stored as doubles and read back as floats

int luminance(QRgb c) {
    return (qRed(c) * 299 + qGreen(c) * 587 + qBlue(c) * 114) / 1000;
}

}  // namespace

class PresenterTest : public QObject {
    Q_OBJECT

  private:
    MainWindow* window_ = nullptr;

    PresenterMode* presenter() { return window_->presenter(); }
    // Draws view i until its data is loaded (and 3 frames more: ImGui sizes tables and child
    // windows from the previous frame). False when it never drew.
    bool settle(int i) {
        window_->show_view(i);
        ImGuiHostWidget* h = window_->host(i);
        if (!QTest::qWaitFor([&] { return h->isVisible() && h->gl_ready(); }, 5000)) return false;
        int quiet = 0;
        for (int k = 0; k < 60 && quiet < 3; ++k) {
            const int before = h->frame_count();
            h->update();
            if (!QTest::qWaitFor([&] { return h->frame_count() > before; }, 5000)) return false;
            quiet = window_->model()->has_pending() ? 0 : quiet + 1;
        }
        return true;
    }
    void shot(const QImage& image, const QString& name) {
        const QString dir = qEnvironmentVariable("KVSCOPE_GUI_SHOTS");
        if (!dir.isEmpty()) QVERIFY(image.save(dir + "/" + name, "PNG"));
    }
    // Every view, then the Qt chrome: no label narrower than its text.
    void expect_nothing_clipped(const QString& mode) {
        QStringList clipped;
        for (int i = 0; i < window_->view_count(); ++i) {
            QVERIFY2(settle(i), window_->view(i)->id());
            clipped << studio::testing::imgui_clipped(window_->host(i)->imgui_context(),
                                                      QString::fromUtf8(window_->view(i)->id()));
        }
        QApplication::processEvents();
        clipped << studio::testing::qt_clipped(window_);
        QVERIFY2(clipped.isEmpty(), qPrintable(mode + ":\n" + clipped.join("\n")));
    }

  private slots:
    void initTestCase() {
        QCursor::setPos(0, 0);
        window_ = new MainWindow();
        QVERIFY(studio::testing::show_quiet(*window_, QSize(1280, 720)));
        // Shortcuts reach only the active window.
        window_->activateWindow();
        QVERIFY(QTest::qWaitForWindowActive(window_));
        QVERIFY2(window_->open_trace(kSample), qPrintable(window_->last_error()));
        // The needle's digits at the last step in layer 4 head 0 (as the docs screenshots).
        window_->view_state().select_layer(4);
        window_->view_state().select_head(0);
        window_->view_state().select_token(252);
        window_->repaint_views();
    }

    void cleanupTestCase() {
        delete window_;
        window_ = nullptr;
    }

    void transportButtonsReadOnTheDarkTheme() {
        window_->set_theme(views::ThemeKind::kDark);
        QApplication::processEvents();
        for (const char* name :
             {"firstStep", "previousStep", "playPause", "nextStep", "lastStep"}) {
            auto* b = window_->scrubber()->findChild<QToolButton*>(name);
            QVERIFY2(b, name);
            const QImage img = b->grab().toImage();
            // The glyph: pixels at least 100 levels of luminance off the button's middle-left
            // edge colour (the old style icons were ~30 levels off the dark background).
            const int bg = luminance(img.pixel(2, img.height() / 2));
            int strong = 0;
            for (int y = 0; y < img.height(); ++y)
                for (int x = 0; x < img.width(); ++x)
                    strong += std::abs(luminance(img.pixel(x, y)) - bg) >= 100 ? 1 : 0;
            // At 18 px an icon's glyph covers about a fifth of its square: ask for 30 pixels.
            QVERIFY2(strong >= 30,
                     qPrintable(QString("%1: %2 strong pixels").arg(name).arg(strong)));
        }
    }

    void uiScaleFollowsKeysWheelAndIsStored() {
        presenter()->set_ui_scale(1.0f);
        const double base_pt = QApplication::font().pointSizeF();
        QTest::keyClick(window_, Qt::Key_Equal, Qt::ControlModifier);
        QVERIFY(std::abs(presenter()->ui_scale() - 1.1f) < kScaleTol);
        QTest::keyClick(window_, Qt::Key_Minus, Qt::ControlModifier);
        QTest::keyClick(window_, Qt::Key_Minus, Qt::ControlModifier);
        QVERIFY(std::abs(presenter()->ui_scale() - 0.85f) < kScaleTol);
        QTest::keyClick(window_, Qt::Key_0, Qt::ControlModifier);
        QVERIFY(std::abs(presenter()->ui_scale() - 1.0f) < kScaleTol);

        // Ctrl+wheel over a view: one notch up = one stop (1.1); the view itself does not zoom.
        const int i = window_->view_index("eviction_timeline");
        QVERIFY(settle(i));
        ImGuiHostWidget* h = window_->host(i);
        const QPointF at(h->width() / 2.0, h->height() / 2.0);
        QWheelEvent wheel(at, h->mapToGlobal(at), QPoint(), QPoint(0, 120), Qt::NoButton,
                          Qt::ControlModifier, Qt::NoScrollPhase, false);
        QApplication::sendEvent(h, &wheel);
        QVERIFY(std::abs(presenter()->ui_scale() - 1.1f) < kScaleTol);
        QVERIFY(std::abs(h->ui_scale() - 1.1f) < kScaleTol);
        // The Qt chrome's font follows (point sizes: 0.05 pt of rounding).
        QVERIFY(std::abs(QApplication::font().pointSizeF() - base_pt * 1.1) < 0.05);
        // ImGui lays out in 1/scale of the widget (half a pixel of rounding).
        QVERIFY(settle(i));
        ImGui::SetCurrentContext(h->imgui_context());
        QVERIFY(std::abs(ImGui::GetIO().DisplaySize.x - h->width() / 1.1f) < 0.5f);
        ImGui::SetCurrentContext(nullptr);
        // Stored, and read by the next window.
        QVERIFY(std::abs(QSettings().value("ui/scale").toFloat() - 1.1f) < kScaleTol);
        {
            MainWindow second;
            QVERIFY(std::abs(second.presenter()->ui_scale() - 1.1f) < kScaleTol);
        }
        presenter()->set_ui_scale(1.0f);
        QVERIFY(std::abs(QSettings().value("ui/scale").toFloat() - 1.0f) < kScaleTol);
    }

    void normalModeFits1280x720() {
        window_->showNormal();
        window_->resize(1280, 720);
        QTest::qWait(200);
        expect_nothing_clipped("dark theme, scale 1, 1280x720");
        // Issue 16 saw the dock tabs cut at 960 px.
        window_->resize(960, 720);
        QTest::qWait(200);
        expect_nothing_clipped("dark theme, scale 1, 960x720");
        window_->resize(1280, 720);
    }

    // The audit itself: a window too narrow for its labels is reported (tabs elided, header
    // rows of combo boxes and buttons past the dock's edge).
    void auditReportsClippedLabels() {
        window_->resize(420, 720);
        QTest::qWait(200);
        QStringList clipped;
        for (int i = 0; i < window_->view_count(); ++i) {
            QVERIFY(settle(i));
            clipped << studio::testing::imgui_clipped(window_->host(i)->imgui_context(), "view");
        }
        const QStringList qt = studio::testing::qt_clipped(window_);
        window_->resize(1280, 720);
        QTest::qWait(200);
        QVERIFY2(!clipped.isEmpty(), "no ImGui label reported clipped at 420 px");
        QVERIFY2(!qt.isEmpty(), "no Qt label reported clipped at 420 px");
    }

    void presenterModeFits1280x720() {
        QTest::keyClick(window_, Qt::Key_P, Qt::ControlModifier | Qt::ShiftModifier);
        QVERIFY(presenter()->active());
        QVERIFY(QTest::qWaitFor([&] { return window_->size() == QSize(1280, 720); }, 5000));
        QCOMPARE(window_->theme_kind(), views::ThemeKind::kHighContrast);
        QVERIFY(std::abs(presenter()->ui_scale() - PresenterMode::kPresenterScale) < kScaleTol);
        // Large transport: 18 px x 1.5 (scale) x 1.6 (presenter) = 43 px icons.
        QCOMPARE(window_->scrubber()->icon_size(), 43);
        // One view at a time: every view dock tabbed with the first, the side docks hidden.
        for (int i = 1; i < window_->view_count(); ++i)
            QVERIFY(window_->tabifiedDockWidgets(window_->dock(0)).contains(window_->dock(i)));
        expect_nothing_clipped("presenter mode, 1280x720");
        // The high-contrast background is white (3 levels of tolerance) behind the views.
        const int needle = window_->view_index("needle");
        QVERIFY(settle(needle));
        const QImage view = window_->host(needle)->grabFramebuffer();
        QCOMPARE(view.pixelColor(view.width() - 3, view.height() - 3).lightness() >= 252, true);
        for (const char* id : {"token_strip", "needle", "density", "merges"}) {
            const int i = window_->view_index(id);
            QVERIFY(settle(i));
            shot(window_->grab().toImage(), QString("presenter_%1.png").arg(id));
        }
    }

    void leavingPresenterModeRestores() {
        QTest::keyClick(window_, Qt::Key_P, Qt::ControlModifier | Qt::ShiftModifier);
        QVERIFY(!presenter()->active());
        QCOMPARE(window_->theme_kind(), views::ThemeKind::kDark);
        QVERIFY(std::abs(presenter()->ui_scale() - 1.0f) < kScaleTol);
        QCOMPARE(window_->scrubber()->icon_size(), 18);
        // Presenter mode stored neither its theme nor its scale as the user's.
        QCOMPARE(QSettings().value("theme").toString(), QString("dark"));
        QVERIFY(std::abs(QSettings().value("ui/scale").toFloat() - 1.0f) < kScaleTol);
        QVERIFY(!window_->tabifiedDockWidgets(window_->dock(0)).contains(window_->dock(1)));
    }

    void shortcutsSheetListsEveryMenuShortcut() {
        studio::ShortcutsDialog dialog(*window_);
        dialog.show();
        QVERIFY(QTest::qWaitForWindowExposed(&dialog));
        QTableWidget* t = dialog.table();
        QStringList keys_listed;
        for (int r = 0; r < t->rowCount(); ++r) keys_listed << t->item(r, 2)->text();
        // Every shortcut of every menu action is on the sheet, and no key does two things (Qt
        // then runs neither).
        int menu_shortcuts = 0;
        QSet<QString> seen;
        for (QAction* a : window_->menuBar()->findChildren<QAction*>()) {
            for (const QKeySequence& k : a->shortcuts()) {
                ++menu_shortcuts;
                QVERIFY2(!seen.contains(k.toString()), qPrintable("twice: " + k.toString()));
                seen.insert(k.toString());
                const QString text = k.toString(QKeySequence::NativeText);
                QVERIFY2(keys_listed.join(", ").contains(text), qPrintable(a->text() + " " + text));
            }
        }
        QVERIFY(menu_shortcuts >= 30);
        for (const char* expected : {"Presenter mode", "Zoom in", "Full screen", "Play / pause",
                                     "How to read the views", "Keyboard shortcuts"}) {
            QVERIFY2(!t->findItems(expected, Qt::MatchExactly).isEmpty(), expected);
        }
        QVERIFY(!t->findItems("Ctrl+Wheel", Qt::MatchExactly).isEmpty());
        shot(dialog.grab().toImage(), "help_shortcuts.png");
        // Columns fit their text.
        const QStringList clipped = studio::testing::qt_clipped(&dialog);
        QVERIFY2(clipped.isEmpty(), qPrintable(clipped.join("\n")));
        for (int r = 0; r < t->rowCount(); ++r) {
            for (int c = 0; c < 3; ++c) {
                const int need = t->fontMetrics().horizontalAdvance(t->item(r, c)->text());
                QVERIFY2(need <= t->columnWidth(c), qPrintable(t->item(r, c)->text()));
            }
        }
    }

    void howToReadCoversEveryViewAndTitles() {
        QCOMPARE(views::all_view_help().size(), static_cast<size_t>(window_->view_count() + 1));
        studio::ViewHelpDialog dialog(window_);
        const QString text = dialog.browser()->toPlainText();
        for (int i = 0; i < window_->view_count(); ++i) {
            const views::ViewHelp* h = views::view_help(window_->view(i)->id());
            QVERIFY2(h, window_->view(i)->id());
            QCOMPARE(QString::fromUtf8(h->title), QString::fromUtf8(window_->view(i)->title()));
            QVERIFY(text.contains(QString::fromUtf8(h->how_to_read).left(60)));
            // The dock's title is the short one; its tooltip is the paragraph.
            QCOMPARE(window_->dock(i)->windowTitle(), QString::fromUtf8(h->short_title));
            const QString tip =
                studio::ViewTitleTips::tip_for_title(window_->dock(i)->windowTitle());
            QVERIFY(tip.contains(QString::fromUtf8(h->how_to_read).left(40).toHtmlEscaped()));
        }
        QVERIFY(text.contains("policy explainers"));
        // The link opens the policy explainers (Help > Policy explainers, issue 16 item 3).
        auto* explainers = window_->menuBar()->findChild<QAction*>("policyExplainersAction");
        QVERIFY(explainers);
        QSignalSpy triggered(explainers, &QAction::triggered);
        emit dialog.browser()->anchorClicked(QUrl("kvscope:explainers"));
        QCOMPARE(triggered.count(), 1);
        dialog.show();
        QVERIFY(QTest::qWaitForWindowExposed(&dialog));
        dialog.show_view_help("needle");
        shot(dialog.grab().toImage(), "help_views.png");
        // A real tooltip event on a dock tab shows the paragraph.
        QTabBar* tabs = nullptr;
        for (QTabBar* b : window_->findChildren<QTabBar*>())
            if (b->isVisible() && b->count() > 1 && b->parentWidget() == window_) tabs = b;
        QVERIFY(tabs);
        const QPoint at = tabs->tabRect(0).center();
        QHelpEvent help(QEvent::ToolTip, at, tabs->mapToGlobal(at));
        QApplication::sendEvent(tabs, &help);
        QVERIFY(QTest::qWaitFor([] { return QToolTip::isVisible(); }, 2000));
        QVERIFY2(QToolTip::text().contains("How to read"), qPrintable(QToolTip::text()));
        QToolTip::hideText();
    }
};

int main(int argc, char** argv) {
    return kvscope::studio::testing::run_studio_test<PresenterTest>(
        argc, argv, "KVScope Studio Presenter Test");
}

#include "presenter_test.moc"
