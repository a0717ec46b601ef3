#pragma once
// The Studio under Xvfb (Qt Test), one QObject whose slots run in order in one window (starting a
// window per file would cost more than the tests); ctest runs it as 4 shards (gui_studio_1..4).
// The slots are defined by part of the Studio: studio_test.cpp (views, compare, reload, NIAH
// grid) and studio_test_live.cpp (the What-if dock and needle forensics). Declaration order is
// the run order and the shards' split: keep it.
// KVScope Studio under Xvfb (Qt Test): open the sample trace, switch views, click, scrub, export;
// screenshots of every view (grabFramebuffer) checked for real content and for the expected
// colours at known places, the expected colours computed from the trace reader, independently of
// the views' own data layer.
#include <QAction>
#include <QApplication>
#include <QCursor>
#include <QDockWidget>
#include <QFile>
#include <QImage>
#include <QLabel>
#include <QListWidget>
#include <QMimeData>
#include <QProcess>
#include <QProgressBar>
#include <QSettings>
#include <QSignalSpy>
#include <QStatusBar>
#include <QTemporaryDir>
#include <QToolBar>
#include <QtTest/QtTest>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <set>

#include "app/studio/imgui_host_widget.h"
#include "app/studio/live_dock.h"
#include "app/studio/live_worker.h"
#include "app/studio/main_window.h"
#include "app/studio/step_scrubber.h"
#include "app/studio/sweep_dock.h"
#include "app/studio/trace_file_watch.h"
#include "tests/gui/studio_test_harness.h"
#include "traces/trace_reader.h"
#include "views/budget_view.h"
#include "views/compare_view.h"
#include "views/eviction_timeline_view.h"
#include "views/layer_head_view.h"
#include "views/needle_view.h"
#include "views/precision_view.h"
#include "views/token_strip_view.h"

using namespace kvscope;
using studio::ImGuiHostWidget;
using studio::LiveDock;
using studio::MainWindow;

namespace studio_gui_test {

// The sample traces recorded by resources/sample/make_sample.sh from the demo model (2 cache heads
// per layer, 8 layers): D2O (evictions, merges, budgets) and MiKV (mixed precision).
inline const QString kSample =
    QStringLiteral(KVSCOPE_SOURCE_DIR "/resources/sample/sample.kvtrace.h5");
inline const QString kSampleMikv =
    QStringLiteral(KVSCOPE_SOURCE_DIR "/resources/sample/sample_mikv.kvtrace.h5");

inline QColor to_qcolor(ImU32 c) {
    return QColor((c >> IM_COL32_R_SHIFT) & 0xFF, (c >> IM_COL32_G_SHIFT) & 0xFF,
                  (c >> IM_COL32_B_SHIFT) & 0xFF);
}

inline int colour_distance(QColor a, QColor b) {
    return std::max({std::abs(a.red() - b.red()), std::abs(a.green() - b.green()),
                     std::abs(a.blue() - b.blue())});
}

inline ImU32 expected_state_colour(const views::Theme& theme, const trace::TokenState& s) {
    return theme.state_color(s.state, s.bits);
}

}  // namespace studio_gui_test
using namespace studio_gui_test;

class StudioTest : public QObject {
    Q_OBJECT
    // What later functions use (an open trace, a prefilled live dock): every shard of ctest's
    // gui_studio_N runs those declared before its block first (studio_test_harness.h).
    Q_CLASSINFO("shard_setup", "opensTheSampleTrace liveDockPrefillsTheOpenTrace")

  private:
    MainWindow* window_ = nullptr;
    QTemporaryDir out_;
    std::unique_ptr<trace::TraceReader> reader_;

    ImGuiHostWidget* host(const char* id) { return window_->host(window_->view_index(id)); }
    template <typename V>
    V* view(const char* id) {
        return dynamic_cast<V*>(window_->view(window_->view_index(id)));
    }
    // Shows a view and draws it until its data has loaded; returns its screenshot (null image
    // when it never drew).
    QImage show_and_grab(const char* id) {
        const int i = window_->view_index(id);
        window_->show_view(i);
        ImGuiHostWidget* h = window_->host(i);
        if (!QTest::qWaitFor([&] { return h->isVisible() && h->gl_ready(); }, 5000)) return {};
        for (int k = 0; k < 40; ++k) {
            const int before = h->frame_count();
            h->update();
            if (!QTest::qWaitFor([&] { return h->frame_count() > before; }, 5000)) return {};
            if (k >= 2 && (!window_->model() || !window_->model()->has_pending())) break;
        }
        QImage img = h->grabFramebuffer();
        if (!qEnvironmentVariableIsEmpty("KVSCOPE_GUI_SHOTS")) {
            img.save(qEnvironmentVariable("KVSCOPE_GUI_SHOTS") + "/" + id + ".png");
        }
        return img;
    }
    QColor pixel(const QImage& img, const ImGuiHostWidget* h, ImVec2 p) {
        const double sx = static_cast<double>(img.width()) / h->width();
        const double sy = static_cast<double>(img.height()) / h->height();
        return img.pixelColor(static_cast<int>(p.x * sx), static_cast<int>(p.y * sy));
    }
    const views::Theme& theme() { return views::theme(window_->theme_kind()); }
    void expect_colour(const QImage& img, const ImGuiHostWidget* h, ImVec2 p, ImU32 expected,
                       int tolerance, const QString& what) {
        const QColor got = pixel(img, h, p);
        QVERIFY2(colour_distance(got, to_qcolor(expected)) <= tolerance,
                 qPrintable(QString("%1 at (%2,%3): got %4, expected %5")
                                .arg(what)
                                .arg(p.x)
                                .arg(p.y)
                                .arg(got.name(), to_qcolor(expected).name())));
    }
    // Real content: many colours and a good share of pixels unlike the background.
    void expect_content(const QImage& img, const char* id) {
        const QColor bg = to_qcolor(theme().background);
        std::set<QRgb> colours;
        int64_t differ = 0;
        for (int y = 0; y < img.height(); y += 2) {
            for (int x = 0; x < img.width(); x += 2) {
                const QColor c = img.pixelColor(x, y);
                colours.insert(c.rgb());
                differ += colour_distance(c, bg) > 12 ? 1 : 0;
            }
        }
        // Pixels sampled on the step-2 grid, counted as whole halves (integer division on purpose).
        const int64_t sampled = int64_t{img.width() / 2} * (img.height() / 2);
        const double share = static_cast<double>(differ) / static_cast<double>(sampled);
        QVERIFY2(colours.size() >= 24,
                 qPrintable(QString("%1: only %2 colours").arg(id).arg(colours.size())));
        QVERIFY2(
            share >= 0.08,
            qPrintable(
                QString("%1: only %2 of pixels differ from the background").arg(id).arg(share)));
    }
    // The pointer leaves every view (no hover, no tooltip left over from a click).
    void park_pointer() {
        for (int i = 0; i < window_->view_count(); ++i) {
            QEvent leave(QEvent::Leave);
            QApplication::sendEvent(window_->host(i), &leave);
        }
        QTest::qWait(50);
    }
    void select(int64_t step, int32_t layer, int32_t head) {
        views::ViewState& s = window_->view_state();
        s.select_layer_head(layer, head);
        window_->set_step(step);
        s.set_hover_token(-1);
        window_->repaint_views();
    }

    // The sample's scenario (resources/sample/make_sample.sh) under another policy / seed.
    QString record_sample_run(const QString& name, const QStringList& policy_args, int seed = 1,
                              int max_new = 16) {
        QString trace = out_.filePath(name + ".kvtrace.h5");
        if (QFile::exists(trace)) return trace;
        QProcess run;
        run.start(QStringLiteral(KVSCOPE_CLI_EXE),
                  QStringList{"run", "--quiet", "--model",
                              QStringLiteral(KVSCOPE_SOURCE_DIR "/resources/models/kvscope-demo"),
                              "--scenario", "niah", "--length", "512", "--depth", "0.5",
                              "--scenario-seed", QString::number(seed), "--max-new",
                              QString::number(max_new), "--threads", "2", "--trace", trace} +
                      policy_args);
        if (!run.waitForFinished(120000) || run.exitCode() != 0) {
            qWarning() << "kvscope run failed:" << run.readAllStandardError();
            return {};
        }
        return trace;
    }
    // A trace of another model shape: the synthetic trace tool's 4 layers x 3 heads.
    QString synthetic_shape_trace() {
        QString trace = out_.filePath("synthetic_shape.kvtrace.h5");
        if (QFile::exists(trace)) return trace;
        QProcess tool;
        tool.start(QStringLiteral(KVSCOPE_SYNTHETIC_TOOL),
                   {"--out", trace, "--layers", "4", "--heads", "3", "--steps", "4"});
        if (!tool.waitForFinished(60000) || tool.exitCode() != 0) return {};
        return trace;
    }
    QString status_bar_text() {
        QString text;
        for (QLabel* l : window_->statusBar()->findChildren<QLabel*>()) text += l->text() + "\n";
        return text;
    }

    // Needle forensics: scores compared exactly up to 1e-12 (both sides are doubles computed
    // the same way on independent sessions); NaN equals NaN, infinities must match.
    static bool same_score(double a, double b) {
        if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
        if (std::isinf(a) || std::isinf(b)) return a == b;
        return std::abs(a - b) <= 1e-12;
    }
  private slots:
    void initTestCase();
    void cleanupTestCase();
    void opensTheSampleTrace();
    void everyViewShowsRealContent();
    void layerHeadCellsHaveTheExpectedColours();
    void tokenStripColoursTokensByState();
    void timelineAndPrecisionShowStatesWhereExpected();
    void needleMatrixShowsSurvival();
    void clickingSelectsEverywhere();
    void scrubbingDrivesEveryView();
    void exportsPngAndSvg();
    void themeSwitches();
    void invalidTracesGiveAMessageNotACrash();
    void dropsOpenATrace();
    void followsATraceWhileItIsWritten();
    void opensTheTraceOfEveryPolicy();
    void compareModeSharesTheSelection();
    void compareRefusesAnotherModelOrPrompt();
    void noticesAReplacedTraceAndReloads();
    void niahGridClickOpensTheCellAgainstTheFullCache();
    void niahGridRefusesBadFoldersAndFollowsARunningSweep();
    void commandLineOpensAndExports();
    void liveDockPrefillsTheOpenTrace();
    void liveDockPreviewMatchesAnIndependentSession();
    void liveDockReleaseRerunsAndOpensTheTrace();
    void liveDockCancelStopsARerun();
    void liveDockSweepsAndOpensAPoint();
    void liveDockMemoryFractionFitsTheBudget();
    void liveDockBlockedPolicyGoesStraightToARun();
    void liveDockTimings();
    void liveDockShowsABadModelPath();
    void needleExplainUsesThePolicysOwnScore();
    void rescueFindsTheLayersAndOpensARunInCompare();
    void rescueManualLayersAndCancel();
    void forensicsWithoutTheModelShowAnError();
};
