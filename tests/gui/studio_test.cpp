// Over 800 lines on purpose: Qt Test runs one QObject's slots in order in one window (starting a
// window under Xvfb per file would cost more than the tests); sections follow the Studio's parts.
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

namespace {

// The sample traces recorded by resources/sample/make_sample.sh from the demo model (2 cache heads
// per layer, 8 layers): D2O (evictions, merges, budgets) and MiKV (mixed precision).
const QString kSample = QStringLiteral(KVSCOPE_SOURCE_DIR "/resources/sample/sample.kvtrace.h5");
const QString kSampleMikv =
    QStringLiteral(KVSCOPE_SOURCE_DIR "/resources/sample/sample_mikv.kvtrace.h5");

QColor to_qcolor(ImU32 c) {
    return QColor((c >> IM_COL32_R_SHIFT) & 0xFF, (c >> IM_COL32_G_SHIFT) & 0xFF,
                  (c >> IM_COL32_B_SHIFT) & 0xFF);
}

int colour_distance(QColor a, QColor b) {
    return std::max({std::abs(a.red() - b.red()), std::abs(a.green() - b.green()),
                     std::abs(a.blue() - b.blue())});
}

ImU32 expected_state_colour(const views::Theme& theme, const trace::TokenState& s) {
    return theme.state_color(s.state, s.bits);
}

}  // namespace

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

  private slots:
    void initTestCase() {
        QVERIFY(out_.isValid());
        QVERIFY2(QFile::exists(kSample), qPrintable(kSample));
        QCursor::setPos(0, 0);  // keep the pointer (and its tooltips) off the views
        window_ = new MainWindow();
        QVERIFY(studio::testing::show_quiet(*window_, QSize(1260, 780)));
        reader_ = std::make_unique<trace::TraceReader>(kSample.toStdString());
    }

    void cleanupTestCase() {
        delete window_;
        window_ = nullptr;
    }

    void opensTheSampleTrace() {
        QVERIFY2(window_->open_trace(kSample), qPrintable(window_->last_error()));
        const views::TraceSummary& s = window_->model()->summary();
        QCOMPARE(s.n_layers, reader_->info().n_layers);
        QCOMPARE(s.n_steps, reader_->info().n_steps);
        QCOMPARE(window_->scrubber()->step_count(), s.n_steps);
        QCOMPARE(window_->view_state().step, s.n_steps - 1);  // opens on the last step
        QVERIFY(window_->summary_text().contains("d2o"));
        QVERIFY(window_->summary_text().contains(QString("%1 layers").arg(s.n_layers)));
        QVERIFY(window_->windowTitle().contains("sample.kvtrace.h5"));
        QVERIFY(window_->recent_files().contains(QFileInfo(kSample).absoluteFilePath()));
    }

    void everyViewShowsRealContent() {
        select(reader_->info().n_steps - 1, 3, 0);
        for (int i = 0; i < window_->view_count(); ++i) {
            const char* id = window_->view(i)->id();
            const QImage img = show_and_grab(id);
            QVERIFY2(!img.isNull(), id);
            // Without a trace B the compare view is a one-line hint (its content is checked in
            // compareModeSharesTheSelection).
            if (QString(id) == "compare" && !window_->compare_model()) continue;
            expect_content(img, id);
        }
    }

    void layerHeadCellsHaveTheExpectedColours() {
        const int64_t step = reader_->info().n_steps - 1;
        select(step, 3, 0);
        const QImage img = show_and_grab("layer_head");
        auto* v = view<views::LayerHeadView>("layer_head");
        for (int32_t l = 0; l < reader_->info().n_layers; ++l) {
            for (int32_t h = 0; h < reader_->info().n_heads; ++h) {
                const auto states = reader_->token_states(l, h, step);
                int held = 0, seen = 0;
                for (const auto& s : states) {
                    seen += s.state != trace::TokenCacheState::kAbsent;
                    held += views::is_held(s.state);
                }
                const views::PlotRect r = v->cell_rect(l, h);
                expect_colour(img, host("layer_head"), ImVec2(r.min.x + 3, r.min.y + 3),
                              theme().heat(static_cast<float>(held) / seen), 4,
                              QString("cell L%1 H%2").arg(l).arg(h));
            }
        }
    }

    void tokenStripColoursTokensByState() {
        const int64_t step = reader_->info().n_steps - 1;
        select(step, 3, 1);
        const QImage img = show_and_grab("token_strip");
        auto* v = view<views::TokenStripView>("token_strip");
        const auto states = reader_->token_states(3, 1, step);
        std::set<int> kinds;
        int checked = 0;
        for (size_t t = 0; t < states.size(); ++t) {
            const auto rect = v->token_rect(static_cast<int64_t>(t));
            if (!rect || rect->max.y >= img.height()) continue;
            kinds.insert(static_cast<int>(states[t].state));
            expect_colour(img, host("token_strip"), ImVec2(rect->min.x + 1, rect->min.y + 1),
                          expected_state_colour(theme(), states[t]), 4, QString("token %1").arg(t));
            ++checked;
        }
        QVERIFY(checked > 50);
        QVERIFY2(kinds.size() >= 3, "the D2O sample should show kept, merged and evicted tokens");
    }

    void timelineAndPrecisionShowStatesWhereExpected() {
        select(reader_->info().n_steps - 1, 4, 1);
        const QImage tl = show_and_grab("eviction_timeline");
        auto* timeline = view<views::EvictionTimelineView>("eviction_timeline");
        // Not the current (last) step: its row carries the step marker line.
        // Tokens whose two neighbours on each side share their state: with ~1.4 tokens per pixel
        // (500+ tokens in a ~450 px plot) a pixel blends at most two neighbours, and a one-pixel
        // offset cannot change the answer. The prompt / output boundary (token P) carries a marker
        // line, so tokens next to it are skipped.
        const int64_t P = reader_->info().n_prompt_tokens;
        auto uniform = [&](const std::vector<trace::TokenState>& st, size_t t) {
            if (t < 2 || t + 2 >= st.size()) return false;
            if (std::abs(static_cast<int64_t>(t) - P) <= 2) return false;
            const ImU32 c = expected_state_colour(theme(), st[t]);
            for (size_t k = t - 2; k <= t + 2; ++k)
                if (expected_state_colour(theme(), st[k]) != c) return false;
            return true;
        };
        std::set<ImU32> seen;
        int checked = 0;
        for (int64_t step : {int64_t{0}, int64_t{9}, reader_->info().n_steps - 3}) {
            const auto states = reader_->token_states(4, 1, step);
            for (size_t t = 1; t + 1 < states.size(); t += 2) {
                if (!uniform(states, t)) continue;
                seen.insert(expected_state_colour(theme(), states[t]));
                ++checked;
                expect_colour(tl, host("eviction_timeline"),
                              timeline->point_of(static_cast<int64_t>(t), step),
                              expected_state_colour(theme(), states[t]), 4,
                              QString("timeline token %1 step %2").arg(t).arg(step));
            }
        }
        QVERIFY(checked >= 10);
        QVERIFY(seen.size() >= 3);
        // Precision: the MiKV sample holds its tokens at 16 or 3 bits.
        QVERIFY2(window_->open_trace(kSampleMikv), qPrintable(window_->last_error()));
        const trace::TraceReader mikv(kSampleMikv.toStdString());
        const int64_t step = mikv.info().n_steps - 1;
        select(step, 4, 1);
        const QImage pm = show_and_grab("precision");
        auto* precision = view<views::PrecisionView>("precision");
        std::set<int> bits;
        int pchecked = 0;
        for (int32_t l = 0; l < mikv.info().n_layers; l += 2) {
            const auto states = mikv.token_states(l, 1, step);
            for (size_t t = 1; t + 1 < states.size(); t += 3) {
                if (!uniform(states, t)) continue;
                bits.insert(states[t].bits);
                ++pchecked;
                expect_colour(pm, host("precision"),
                              precision->point_of(l, static_cast<int64_t>(t)),
                              expected_state_colour(theme(), states[t]), 4,
                              QString("precision L%1 token %2").arg(l).arg(t));
            }
        }
        QVERIFY(pchecked >= 10);
        QVERIFY2(bits.size() >= 2, "the MiKV sample should hold tokens at two precisions");
        QVERIFY(window_->open_trace(kSample));
    }

    void needleMatrixShowsSurvival() {
        const int64_t step = reader_->info().n_steps - 1;
        select(step, 3, 0);
        const QImage img = show_and_grab("needle");
        auto* v = view<views::NeedleView>("needle");
        const auto survival = reader_->needle_survival(0, step, step + 1);
        const int32_t H = reader_->info().n_heads;
        for (int32_t l = 0; l < reader_->info().n_layers; ++l) {
            for (int32_t h = 0; h < H; ++h) {
                const float s = survival[static_cast<size_t>(l) * H + h];
                const views::PlotRect r = v->cell_rect(l, h);
                expect_colour(img, host("needle"), ImVec2(r.min.x + 2, r.min.y + 2),
                              views::mix(theme().evicted, theme().held, s), 4,
                              QString("needle L%1 H%2").arg(l).arg(h));
            }
        }
    }

    void clickingSelectsEverywhere() {
        select(reader_->info().n_steps - 1, 3, 0);
        show_and_grab("layer_head");
        auto* lh = view<views::LayerHeadView>("layer_head");
        const views::PlotRect cell = lh->cell_rect(5, 1);
        QTest::mouseClick(
            host("layer_head"), Qt::LeftButton, {},
            QPoint(static_cast<int>(cell.min.x + 5), static_cast<int>(cell.min.y + 5)));
        QTRY_COMPARE(window_->view_state().layer, 5);
        QTRY_COMPARE(window_->view_state().head, 1);
        // The strip now colours by layer 5 head 1; click a token there.
        show_and_grab("token_strip");
        auto* strip = view<views::TokenStripView>("token_strip");
        const auto rect = strip->token_rect(40);
        QVERIFY(rect.has_value());
        QTest::mouseClick(
            host("token_strip"), Qt::LeftButton, {},
            QPoint(static_cast<int>(rect->min.x + 4), static_cast<int>(rect->min.y + 4)));
        QTRY_COMPARE(window_->view_state().token, int64_t{40});
        // The timeline draws the selected token as a line in the selection colour. Move the
        // pointer off the token first: a hovered token gets a lighter line over the same place.
        QTest::mouseMove(host("token_strip"), QPoint(2, 2));
        QTest::qWait(50);
        window_->view_state().set_hover_token(-1);
        const QImage tl = show_and_grab("eviction_timeline");
        auto* timeline = view<views::EvictionTimelineView>("eviction_timeline");
        const ImVec2 p = timeline->point_of(40, 3);
        int best = 255;
        for (int dx = -2; dx <= 2; ++dx) {
            best = std::min(
                best, colour_distance(pixel(tl, host("eviction_timeline"), ImVec2(p.x + dx, p.y)),
                                      to_qcolor(theme().selection)));
        }
        QVERIFY2(best <= 40, qPrintable(QString("no selection line near token 40 at (%2,%3) "
                                                "(closest %1, expected %4)")
                                            .arg(best)
                                            .arg(p.x)
                                            .arg(p.y)
                                            .arg(to_qcolor(theme().selection).name())));
        // And the budgets view marks the selected layer (5): its bar is outlined.
        QCOMPARE(window_->view_state().layer, 5);
    }

    void scrubbingDrivesEveryView() {
        park_pointer();
        select(reader_->info().n_steps - 1, 3, 0);
        window_->scrubber()->first();
        QCOMPARE(window_->view_state().step, int64_t{0});
        window_->scrubber()->step_by(1);
        QCOMPARE(window_->view_state().step, int64_t{1});
        // Keyboard shortcuts work while a view has the focus.
        window_->activateWindow();
        QTRY_VERIFY(window_->isActiveWindow());
        ImGuiHostWidget* budgets = host("budgets");
        window_->show_view(window_->view_index("budgets"));
        QTRY_VERIFY(budgets->hasFocus());
        QTest::keyClick(budgets, Qt::Key_Right);
        QTRY_COMPARE(window_->view_state().step, int64_t{2});
        QTest::keyClick(budgets, Qt::Key_End);
        QTRY_COMPARE(window_->view_state().step, reader_->info().n_steps - 1);
        QTest::keyClick(budgets, Qt::Key_Home);
        QTRY_COMPARE(window_->view_state().step, int64_t{0});
        // The layer x head view shows step 0 now.
        const QImage img = show_and_grab("layer_head");
        const auto states = reader_->token_states(4, 1, 0);
        int held = 0, seen = 0;
        for (const auto& s : states) {
            seen += s.state != trace::TokenCacheState::kAbsent;
            held += views::is_held(s.state);
        }
        const views::PlotRect r = view<views::LayerHeadView>("layer_head")->cell_rect(4, 1);
        expect_colour(img, host("layer_head"), ImVec2(r.min.x + 3, r.min.y + 3),
                      theme().heat(static_cast<float>(held) / seen), 4, "cell L4 H1 at step 0");
        // Playback advances on its own and stops at the end.
        window_->scrubber()->set_steps_per_second(60);
        window_->scrubber()->play();
        QVERIFY(window_->scrubber()->playing());
        QTRY_VERIFY2_WITH_TIMEOUT(window_->view_state().step >= 3,
                                  qPrintable(QString("step %1 playing %2 scrubber %3 of %4")
                                                 .arg(window_->view_state().step)
                                                 .arg(window_->scrubber()->playing())
                                                 .arg(window_->scrubber()->step())
                                                 .arg(window_->scrubber()->step_count())),
                                  5000);
        QTRY_VERIFY_WITH_TIMEOUT(!window_->scrubber()->playing(), 30000);
        QCOMPARE(window_->view_state().step, reader_->info().n_steps - 1);
    }

    void exportsPngAndSvg() {
        const int i = window_->view_index("budgets");
        const QString png = out_.filePath("budgets.png");
        QVERIFY2(window_->export_view_png(i, png, 2.0), qPrintable(window_->last_error()));
        QImage img(png);
        QVERIFY(!img.isNull());
        QCOMPARE(img.width(), window_->host(i)->width() * 2);
        QCOMPARE(img.height(), window_->host(i)->height() * 2);
        expect_content(img, "budgets export");
        const QString svg = out_.filePath("budgets.svg");
        QVERIFY(window_->export_view_svg(i, svg));
        QFile f(svg);
        QVERIFY(f.open(QIODevice::ReadOnly));
        const QByteArray doc = f.readAll();
        QVERIFY(doc.startsWith("<?xml"));
        // Two plot panels and one bar per compressed layer (the sample's D2O leaves 3 of 8 whole).
        const auto budgets = reader_->budgets(reader_->info().n_steps - 1);
        int compressed = 0;
        for (int32_t l = 0; l < reader_->info().n_layers; ++l)
            compressed += budgets[static_cast<size_t>(l) * reader_->info().n_heads] >= 0;
        QVERIFY(compressed >= 4);
        QVERIFY2(doc.count("<rect") >= 2 + compressed,
                 qPrintable(QString::number(doc.count("<rect"))));
        QVERIFY(doc.contains("tokens per cache head"));
        const QString dir = out_.filePath("all");
        QVERIFY(window_->export_all_views(dir, 1.0));
        for (int k = 0; k < window_->view_count(); ++k) {
            QVERIFY(QFile::exists(dir + "/" + window_->view(k)->id() + ".png"));
        }
    }

    void themeSwitches() {
        window_->set_theme(views::ThemeKind::kLight);
        QImage img = show_and_grab("budgets");
        expect_colour(img, host("budgets"), ImVec2(2, img.height() - 3.0f),
                      views::theme(views::ThemeKind::kLight).background, 3, "light background");
        window_->set_theme(views::ThemeKind::kDark);
        img = show_and_grab("budgets");
        expect_colour(img, host("budgets"), ImVec2(2, img.height() - 3.0f),
                      views::theme(views::ThemeKind::kDark).background, 3, "dark background");
        QCOMPARE(QSettings().value("theme").toString(), QString("dark"));
    }

    void invalidTracesGiveAMessageNotACrash() {
        const QString before = window_->trace_path();
        QVERIFY(!window_->open_trace(out_.filePath("missing.kvtrace.h5")));
        QVERIFY(window_->last_error().contains("missing.kvtrace.h5"));
        QFile garbage(out_.filePath("garbage.kvtrace.h5"));
        QVERIFY(garbage.open(QIODevice::WriteOnly));
        garbage.write("definitely not HDF5");
        garbage.close();
        QVERIFY(!window_->open_trace(garbage.fileName()));
        QVERIFY(window_->last_error().contains("garbage.kvtrace.h5"));
        QCOMPARE(window_->trace_path(), before);  // the open trace stays
        // A truncated copy either opens (with what is readable) or is refused; never a crash.
        const QString cut = out_.filePath("truncated.kvtrace.h5");
        QVERIFY(QFile::copy(kSample, cut));
        QFile c(cut);
        QVERIFY(c.resize(QFileInfo(kSample).size() / 2));
        if (window_->open_trace(cut)) {
            for (int i = 0; i < window_->view_count(); ++i) show_and_grab(window_->view(i)->id());
        } else {
            QVERIFY(window_->last_error().contains("truncated.kvtrace.h5"));
        }
        QVERIFY(window_->open_trace(kSample));
    }

    void dropsOpenATrace() {
        window_->close_trace();
        QVERIFY(window_->model() == nullptr);
        show_and_grab("token_strip");  // the empty placeholder draws
        QMimeData mime;
        mime.setUrls({QUrl::fromLocalFile(kSample)});
        QDragEnterEvent enter(QPoint(10, 10), Qt::CopyAction, &mime, Qt::LeftButton,
                              Qt::NoModifier);
        QApplication::sendEvent(window_, &enter);
        QVERIFY(enter.isAccepted());
        QDropEvent drop(QPointF(10, 10), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
        QApplication::sendEvent(window_, &drop);
        QVERIFY(window_->model() != nullptr);
        QCOMPARE(window_->trace_path(), QFileInfo(kSample).absoluteFilePath());
    }

    void followsATraceWhileItIsWritten() {
        const QString live = out_.filePath("live.kvtrace.h5");
        QProcess writer;
        writer.start(
            QStringLiteral(KVSCOPE_SYNTHETIC_TOOL),
            {"--out", live, "--layers", "4", "--heads", "2", "--steps", "16", "--delay-ms", "250"});
        QVERIFY(writer.waitForStarted());
        // Open as soon as the first steps are readable (the writer may still be creating it).
        // The run is recorded into live.kvtrace.h5.part (renamed at the end): opening the trace's
        // name follows the .part.
        QTRY_VERIFY_WITH_TIMEOUT(
            (QFile::exists(live) || QFile::exists(live + ".part")) && window_->open_trace(live),
            10000);
        window_->set_follow_live(true);
        window_->set_step(std::max<int64_t>(window_->model()->summary().n_steps - 1, 0));
        auto diag = [&] {
            const auto& s = window_->model()->summary();
            return QString("steps %1 live %2 state %3 error '%4' notice '%5'")
                .arg(s.n_steps)
                .arg(s.live)
                .arg(static_cast<int>(s.state))
                .arg(window_->last_error(), QString::fromStdString(s.notice));
        };
        QTRY_VERIFY2_WITH_TIMEOUT(window_->model()->summary().n_steps == 16, qPrintable(diag()),
                                  20000);
        QTRY_COMPARE_WITH_TIMEOUT(window_->model()->summary().state, trace::RunState::kComplete,
                                  10000);
        QTRY_COMPARE(window_->scrubber()->step_count(), int64_t{16});
        QTRY_COMPARE(window_->view_state().step, int64_t{15});  // followed to the end
        QVERIFY(writer.state() == QProcess::NotRunning || writer.waitForFinished(20000));
        QCOMPARE(writer.exitCode(), 0);
        // The .part followed live became the trace itself.
        QVERIFY(!QFile::exists(live + ".part"));
        QTRY_COMPARE(window_->trace_path(), QFileInfo(live).absoluteFilePath());
        for (int i = 0; i < window_->view_count(); ++i) show_and_grab(window_->view(i)->id());
        QVERIFY(window_->open_trace(kSample));
    }

    // Every policy's trace, as `kvscope run` writes it, opens and every view draws it without an
    // error (read errors surface in last_error through the model).
    void opensTheTraceOfEveryPolicy() {
        const QString model = QStringLiteral(KVSCOPE_SOURCE_DIR "/tests/golden/models/llama_sp");
        // One argument, split over two lines.
        const QString prompt = QStringLiteral(
            "A day for firm decisions. The secret code is 4721. A few hours "
            "grace before the madness begins again. What is the secret code?");
        for (const char* policy : {"full", "streaming_llm", "h2o", "tova", "snapkv", "pyramidkv",
                                   "dynamickv", "knorm", "d2o", "mikv", "dmc", "kivi"}) {
            const QString trace = out_.filePath(QString(policy) + ".kvtrace.h5");
            QStringList args = {"run",      "--quiet", "--model",   model,
                                "--prompt", prompt,    "--needle",  "secret code is 4721",
                                "--answer", "4721",    "--max-new", "6",
                                "--policy", policy,    "--trace",   trace};
            if (QString(policy) != "full" && QString(policy) != "kivi")
                args << "--budget"
                     << "16";
            if (QString(policy) == "dmc")
                args << "--param"
                     << "mode=proxy";
            QProcess run;
            run.start(QStringLiteral(KVSCOPE_CLI_EXE), args);
            QVERIFY2(run.waitForFinished(120000), policy);
            QVERIFY2(run.exitCode() == 0,
                     qPrintable(QString(policy) + ": " + run.readAllStandardError()));
            QVERIFY2(window_->open_trace(trace), qPrintable(window_->last_error()));
            QVERIFY(window_->summary_text().contains(policy));
            for (int i = 0; i < window_->view_count(); ++i) {
                const QImage img = show_and_grab(window_->view(i)->id());
                QVERIFY2(!img.isNull(), qPrintable(QString(policy) + " " + window_->view(i)->id()));
            }
            QVERIFY2(window_->last_error().isEmpty(),
                     qPrintable(QString(policy) + ": " + window_->last_error()));
        }
        QVERIFY(window_->open_trace(kSample));
    }

    // Compare mode: A = the D2O sample, B = SnapKV on the same prompt with fewer decode steps (so
    // the shared step range is B's). One selection drives both; the diff overlay shows both
    // colours.
    void compareModeSharesTheSelection() {
        const QString b =
            record_sample_run("snapkv8", {"--policy", "snapkv", "--ratio", "0.25"}, 1, 8);
        QVERIFY(!b.isEmpty());
        const trace::TraceReader rb(b.toStdString());
        QVERIFY(window_->open_trace(kSample));
        QVERIFY2(window_->open_compare(b), qPrintable(window_->last_error()));
        QVERIFY(window_->compare_model() != nullptr);
        QCOMPARE(window_->compare_path(), QFileInfo(b).absoluteFilePath());
        QVERIFY2(status_bar_text().contains("snapkv8.kvtrace.h5"), qPrintable(status_bar_text()));
        QVERIFY(window_->windowTitle().contains("vs snapkv8.kvtrace.h5"));
        const int64_t shared = std::min(reader_->info().n_steps, rb.info().n_steps);
        QVERIFY(rb.info().n_steps < reader_->info().n_steps);  // the clamp below is tested
        QCOMPARE(window_->scrubber()->step_count(), shared);
        QCOMPARE(window_->view_state().step, shared - 1);
        window_->scrubber()->last();
        QCOMPARE(window_->view_state().step, shared - 1);

        // A (layer, head, step) where each trace holds tokens the other does not (before the
        // last shared step, so a step forward stays inside the range).
        int64_t step = -1;
        int32_t layer = -1, head = -1;
        for (int64_t st = 0; st + 1 < shared && layer < 0; ++st) {
            for (int32_t l = 0; l < reader_->info().n_layers && layer < 0; ++l) {
                for (int32_t h = 0; h < reader_->info().n_heads && layer < 0; ++h) {
                    const auto sa = reader_->token_states(l, h, st);
                    const auto sb = rb.token_states(l, h, st);
                    bool only_a = false, only_b = false;
                    for (size_t t = 0; t < sa.size() && t < sb.size(); ++t) {
                        only_a |= views::is_held(sa[t].state) && !views::is_held(sb[t].state);
                        only_b |= views::is_held(sb[t].state) && !views::is_held(sa[t].state);
                    }
                    if (only_a && only_b) {
                        step = st;
                        layer = l;
                        head = h;
                    }
                }
            }
        }
        QVERIFY2(layer >= 0, "no (layer, head) where D2O and SnapKV differ both ways");
        // The step from the scrubber, the layer and head from a click in the compare view.
        park_pointer();
        window_->set_step(step);
        QCOMPARE(window_->view_state().step, step);
        show_and_grab("compare");
        auto* cmp = view<views::CompareView>("compare");
        const views::PlotRect cell = cmp->cell_rect(layer, head);
        QTest::mouseClick(host("compare"), Qt::LeftButton, {},
                          QPoint(static_cast<int>((cell.min.x + cell.max.x) * 0.5f),
                                 static_cast<int>((cell.min.y + cell.max.y) * 0.5f)));
        QTRY_COMPARE(window_->view_state().layer, layer);
        QTRY_COMPARE(window_->view_state().head, head);
        QTest::mouseMove(host("compare"), QPoint(1, 1));
        park_pointer();
        window_->view_state().set_hover_token(-1);

        // The token strip shows A and B at that selection: its counts are the readers' and its
        // boxes carry the two diff colours where the held sets differ.
        const QImage img = show_and_grab("token_strip");
        auto* strip = view<views::TokenStripView>("token_strip");
        QVERIFY(strip->shown_diff().has_value());
        const auto sa = reader_->token_states(layer, head, step);
        const auto sb = rb.token_states(layer, head, step);
        int64_t only_a = 0, only_b = 0;
        int seen_a = 0, seen_b = 0;
        for (size_t t = 0; t < sa.size() && t < sb.size(); ++t) {
            const bool in_a = views::is_held(sa[t].state);
            const bool in_b = views::is_held(sb[t].state);
            only_a += in_a && !in_b;
            only_b += in_b && !in_a;
            if (in_a == in_b) continue;
            const auto rect = strip->token_rect(static_cast<int64_t>(t));
            if (!rect || rect->max.y >= img.height()) continue;
            // One head selected: a differing token is the pure diff colour.
            expect_colour(img, host("token_strip"), ImVec2(rect->min.x + 1, rect->min.y + 1),
                          in_a ? theme().only_a : theme().only_b, 4,
                          QString("diff token %1").arg(t));
            (in_a ? seen_a : seen_b) += 1;
        }
        QCOMPARE(strip->shown_diff()->only_a, only_a);
        QCOMPARE(strip->shown_diff()->only_b, only_b);
        QVERIFY2(seen_a > 0 && seen_b > 0,
                 qPrintable(QString("diff colours on screen: A %1, B %2").arg(seen_a).arg(seen_b)));
        // The compare view and the timeline show the same step and selection.
        QCOMPARE(cmp->cell_diff(layer, head).only_a, only_a);
        QCOMPARE(cmp->cell_diff(layer, head).only_b, only_b);
        show_and_grab("eviction_timeline");
        auto* timeline = view<views::EvictionTimelineView>("eviction_timeline");
        QVERIFY(timeline->shown_diff().has_value());
        QCOMPARE(timeline->shown_diff()->only_a, only_a);
        QCOMPARE(timeline->shown_diff()->only_b, only_b);
        // A keyboard step in any view moves both traces.
        window_->set_step(step + 1);
        show_and_grab("token_strip");
        QCOMPARE(window_->view_state().step, step + 1);
        int64_t next_a = 0;
        const auto na = reader_->token_states(layer, head, step + 1);
        const auto nb = rb.token_states(layer, head, step + 1);
        for (size_t t = 0; t < na.size() && t < nb.size(); ++t)
            next_a += views::is_held(na[t].state) && !views::is_held(nb[t].state);
        QCOMPARE(strip->shown_diff()->only_a, next_a);
        if (!qEnvironmentVariableIsEmpty("KVSCOPE_GUI_SHOTS")) {
            window_->grab().save(qEnvironmentVariable("KVSCOPE_GUI_SHOTS") + "/compare_window.png");
        }
        window_->close_compare();
        QVERIFY(window_->compare_model() == nullptr);
        QCOMPARE(window_->scrubber()->step_count(), reader_->info().n_steps);
        QVERIFY(!status_bar_text().contains("snapkv8.kvtrace.h5"));
    }

    void compareRefusesAnotherModelOrPrompt() {
        QVERIFY(window_->open_trace(kSample));
        const QString ok = record_sample_run("cmp_h2o", {"--policy", "h2o", "--ratio", "0.25"});
        QVERIFY(window_->open_compare(ok));
        // Another model shape: the synthetic trace tool's output (4 layers x 3 heads).
        const QString synthetic = synthetic_shape_trace();
        QVERIFY(!synthetic.isEmpty());
        QVERIFY(!window_->open_compare(synthetic));
        QVERIFY2(window_->last_error().contains("sample.kvtrace.h5") &&
                     window_->last_error().contains("synthetic_shape.kvtrace.h5") &&
                     window_->last_error().contains("model shape"),
                 qPrintable(window_->last_error()));
        // Another prompt (another haystack seed) of the same model.
        const QString other = record_sample_run("cmp_seed2", {"--policy", "full"}, 2);
        QVERIFY(!other.isEmpty());
        QVERIFY(!window_->open_compare(other));
        QVERIFY2(window_->last_error().contains("cmp_seed2.kvtrace.h5") &&
                     window_->last_error().contains("prompt differs"),
                 qPrintable(window_->last_error()));
        // A and the compare that was open stay.
        QCOMPARE(window_->trace_path(), QFileInfo(kSample).absoluteFilePath());
        QVERIFY(window_->model() != nullptr);
        QCOMPARE(window_->compare_path(), QFileInfo(ok).absoluteFilePath());
        // Opening an A that B does not match closes compare mode.
        QVERIFY(window_->open_trace(synthetic));
        QVERIFY(window_->compare_model() == nullptr);
        QVERIFY(window_->open_trace(kSample));
        // Nothing to compare with: refused.
        window_->close_trace();
        QVERIFY(!window_->open_compare(ok));
        QVERIFY(window_->open_trace(kSample));
    }

    // The open trace is recorded again (kvscope run --force): the Studio keeps showing the old
    // file, notices the replacement, and Reload opens the new one.
    void noticesAReplacedTraceAndReloads() {
        const QString trace = out_.filePath("replaced.kvtrace.h5");
        auto record = [&](int steps, bool force) {
            QStringList args = {"run",
                                "--quiet",
                                "--model",
                                QStringLiteral(KVSCOPE_SOURCE_DIR "/tests/golden/models/llama_sp"),
                                "--prompt",
                                "A gift of a flower will soon be made to you",
                                "--ignore-eos",
                                "--max-new",
                                QString::number(steps),
                                "--trace",
                                trace};
            if (force) args << "--force";
            QProcess run;
            run.start(QStringLiteral(KVSCOPE_CLI_EXE), args);
            return run.waitForFinished(60000) && run.exitStatus() == QProcess::NormalExit &&
                   run.exitCode() == 0;
        };
        QVERIFY(record(4, false));
        QVERIFY2(window_->open_trace(trace), qPrintable(window_->last_error()));
        QCOMPARE(window_->model()->summary().n_steps, int64_t{4});
        auto* watch = window_->file_watch();
        QVERIFY(!watch->notice_shown());

        QVERIFY(record(7, true));
        QTRY_VERIFY_WITH_TIMEOUT(watch->notice_shown(), 5000);
        QVERIFY2(watch->notice_text().contains("replaced"), qPrintable(watch->notice_text()));
        QCOMPARE(window_->model()->summary().n_steps, int64_t{4});  // still the old file, whole

        auto* reload = watch->notice_bar()->findChild<QAction*>("file_notice_reload");
        QVERIFY(reload != nullptr);
        reload->trigger();
        QCOMPARE(window_->model()->summary().n_steps, int64_t{7});
        QCOMPARE(window_->model()->summary().state, trace::RunState::kComplete);
        QVERIFY(!watch->notice_shown());
        QCOMPARE(window_->trace_path(), QFileInfo(trace).absoluteFilePath());
        QVERIFY(window_->open_trace(kSample));
    }

    // The NIAH grid: a sweep recorded here (1 length x 2 depths x {full, snapkv 0.3}, one trial:
    // 4 rows). A click on a cell opens that cell's run as A with the cell's full-cache run as B.
    void niahGridClickOpensTheCellAgainstTheFullCache() {
        const QString dir = out_.filePath("sweep");
        QProcess run;
        run.start(
            QStringLiteral(KVSCOPE_CLI_EXE),
            {"niah", "--model", QStringLiteral(KVSCOPE_SOURCE_DIR "/resources/models/kvscope-demo"),
             "--lengths", "192", "--depths", "0,1", "--policies", "snapkv", "--ratios", "0.3",
             "--max-new", "6", "--threads", "2", "--out", dir});
        QVERIFY(run.waitForFinished(120000));
        QVERIFY2(run.exitCode() == 0, run.readAllStandardError().constData());
        QVERIFY2(window_->open_sweep(dir), qPrintable(window_->last_error()));
        kvscope::studio::SweepDock* dock = window_->sweep_dock();
        QVERIFY(dock->isVisible());
        const views::NiahGrid* grid = dock->grid();
        QVERIFY(grid);
        QCOMPARE(grid->rows.size(), size_t{4});
        ImGuiHostWidget* h = dock->host();
        QVERIFY(QTest::qWaitFor([&] { return h->isVisible() && h->gl_ready(); }, 5000));
        for (int k = 0; k < 3; ++k) {
            const int before = h->frame_count();
            h->update();
            QVERIFY(QTest::qWaitFor([&] { return h->frame_count() > before; }, 5000));
        }
        // The snapkv heatmap, length 192, depth 1: its row and the same cell's full row.
        QCOMPARE(dock->view().selected_job(*grid), grid->job_index("snapkv", "0.3"));
        const views::NiahCellStats s = grid->stats(grid->job_index("snapkv", "0.3"), 0, 1);
        QCOMPARE(s.row_indices.size(), size_t{1});
        const views::NiahRow& row = grid->rows[static_cast<size_t>(s.row_indices[0])];
        QCOMPARE(row.depth, 1.0);
        const int b = grid->baseline_row(s.row_indices[0]);
        QVERIFY(b >= 0);
        const QString expect_a =
            QFileInfo(QDir(dir).filePath(QString::fromStdString(row.trace))).absoluteFilePath();
        const QString expect_b = QFileInfo(QDir(dir).filePath(QString::fromStdString(
                                               grid->rows[static_cast<size_t>(b)].trace)))
                                     .absoluteFilePath();
        QVERIFY(expect_a.endsWith("snapkv-0.3.kvtrace.h5"));
        QVERIFY(expect_b.endsWith("full.kvtrace.h5"));
        QCOMPARE(QFileInfo(expect_a).absolutePath(), QFileInfo(expect_b).absolutePath());
        const views::PlotRect cell = dock->view().cell_rect(0, 1);
        QVERIFY(cell.width() > 10);
        const QPoint at(static_cast<int>((cell.min.x + cell.max.x) / 2),
                        static_cast<int>((cell.min.y + cell.max.y) / 2));
        QTest::mouseMove(h, at);
        QTest::mouseClick(h, Qt::LeftButton, {}, at);
        QTRY_COMPARE(window_->trace_path(), expect_a);
        QVERIFY(window_->compare_model());
        QTRY_COMPARE(window_->compare_path(), expect_b);
        QCOMPARE(window_->model()->summary().policy, std::string("snapkv"));
        QCOMPARE(window_->compare_model()->summary().policy, std::string("full"));
        QTest::mouseMove(h, QPoint(1, 1));
        if (!qEnvironmentVariableIsEmpty("KVSCOPE_GUI_SHOTS"))
            h->grabFramebuffer().save(qEnvironmentVariable("KVSCOPE_GUI_SHOTS") + "/niah_grid.png");

        // A row whose trace is gone: a message naming the file, nothing else changes.
        const QString gone = QDir(dir).filePath("traces/c0000/snapkv-0.3.kvtrace.h5");
        QVERIFY(QFile::rename(gone, gone + ".moved"));
        const int row0 = grid->stats(grid->job_index("snapkv", "0.3"), 0, 0).row_indices.at(0);
        QVERIFY(!dock->open_row(row0));
        QVERIFY2(window_->last_error().contains("c0000/snapkv-0.3.kvtrace.h5") &&
                     window_->last_error().contains("missing"),
                 qPrintable(window_->last_error()));
        QCOMPARE(window_->trace_path(), expect_a);
        QVERIFY(QFile::rename(gone + ".moved", gone));
        window_->close_compare();
        QVERIFY(window_->open_trace(kSample));
    }

    // Not a sweep, a bad summary: a message naming the file, the sweep shown stays.
    void niahGridRefusesBadFoldersAndFollowsARunningSweep() {
        const QString dir = out_.filePath("sweep");
        QVERIFY(window_->sweep_dock()->grid());
        const QString none = out_.filePath("not_a_sweep");
        QVERIFY(QDir().mkpath(none));
        QVERIFY(!window_->open_sweep(none));
        QVERIFY2(window_->last_error().contains(none + "/sweep.json"),
                 qPrintable(window_->last_error()));
        QVERIFY(!window_->open_sweep(out_.filePath("no_such_folder")));
        QVERIFY(window_->last_error().contains("no_such_folder"));
        const QString bad = out_.filePath("bad_sweep");
        QVERIFY(QDir().mkpath(bad));
        QVERIFY(QFile::copy(dir + "/sweep.json", bad + "/sweep.json"));
        {
            QFile f(bad + "/summary.csv");
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write("this,is,not,a,summary\n1,2,3,4,5\n");
        }
        QVERIFY(!window_->open_sweep(bad));
        QVERIFY2(window_->last_error().contains(bad + "/summary.csv"),
                 qPrintable(window_->last_error()));
        QCOMPARE(window_->sweep_dock()->dir(), QFileInfo(dir).absoluteFilePath());
        QCOMPARE(window_->sweep_dock()->grid()->rows.size(), size_t{4});

        // A running sweep: rows appended to its summary show up without reopening.
        QFile src(dir + "/summary.csv");
        QVERIFY(src.open(QIODevice::ReadOnly));
        // CSV records (a quoted output may hold newlines): split at newlines outside quotes.
        QList<QByteArray> lines{QByteArray()};
        bool quoted = false;
        for (const char c : src.readAll()) {
            if (c == '"') quoted = !quoted;
            if (c == '\n' && !quoted) {
                lines.append(QByteArray());
            } else {
                lines.back().append(c);
            }
        }
        QVERIFY(lines.size() >= 5);
        const QString live = out_.filePath("live_sweep");
        QVERIFY(QDir().mkpath(live));
        QVERIFY(QFile::copy(dir + "/sweep.json", live + "/sweep.json"));
        QFile out(live + "/summary.csv");
        QVERIFY(out.open(QIODevice::WriteOnly));
        out.write(lines[0] + "\n" + lines[1] + "\n");
        out.flush();
        QVERIFY2(window_->open_sweep(live), qPrintable(window_->last_error()));
        QCOMPARE(window_->sweep_dock()->grid()->rows.size(), size_t{1});
        out.write(lines[2] + "\n" + lines[3] + "\n" + lines[4] + "\n");
        out.close();
        QTRY_COMPARE_WITH_TIMEOUT(window_->sweep_dock()->grid()->rows.size(), size_t{4}, 5000);
        window_->sweep_dock()->close_sweep();
        window_->sweep_dock()->hide();
    }

    void commandLineOpensAndExports() {
        QProcess studio;
        const QString dir = out_.filePath("cli");
        studio.start(QStringLiteral(KVSCOPE_STUDIO_EXE), {kSample, "--export-views", dir, "--scale",
                                                          "1", "--layer", "4", "--head", "1"});
        QVERIFY(studio.waitForFinished(60000));
        QVERIFY2(studio.exitCode() == 0, studio.readAllStandardError().constData());
        for (int k = 0; k < window_->view_count(); ++k) {
            QImage img(dir + "/" + window_->view(k)->id() + ".png");
            QVERIFY2(!img.isNull(), window_->view(k)->id());
        }
        // --compare: the compare view draws A and B (not the hint: more than a few colours).
        const QString b = record_sample_run("cmp_h2o", {"--policy", "h2o", "--ratio", "0.25"});
        QProcess cmp;
        const QString cdir = out_.filePath("cli_compare");
        cmp.start(QStringLiteral(KVSCOPE_STUDIO_EXE),
                  {kSample, "--compare", b, "--export-views", cdir, "--scale", "1"});
        QVERIFY(cmp.waitForFinished(60000));
        QVERIFY2(cmp.exitCode() == 0, cmp.readAllStandardError().constData());
        const QImage compare_png(cdir + "/compare.png");
        QVERIFY(!compare_png.isNull());
        expect_content(compare_png, "compare (command line)");
        QProcess refused;
        refused.start(QStringLiteral(KVSCOPE_STUDIO_EXE),
                      {kSample, "--compare", synthetic_shape_trace(), "--export-views", cdir});
        QVERIFY(refused.waitForFinished(60000));
        QCOMPARE(refused.exitCode(), 1);
        QVERIFY(refused.readAllStandardError().contains("model shape"));
        QProcess bad;
        bad.start(QStringLiteral(KVSCOPE_STUDIO_EXE),
                  {out_.filePath("nope.kvtrace.h5"), "--export-views", dir});
        QVERIFY(bad.waitForFinished(60000));
        QCOMPARE(bad.exitCode(), 1);
        QVERIFY(bad.readAllStandardError().contains("nope.kvtrace.h5"));
    }

    // ---- Live run dock ("What-if") --------------------------------------------------------

    // The dock prefills the open trace's prompt on its worker; the GUI keeps painting meanwhile.
    void liveDockPrefillsTheOpenTrace() {
        QVERIFY2(window_->open_trace(kSample), qPrintable(window_->last_error()));
        LiveDock* dock = window_->live_dock();
        QVERIFY(dock);
        dock->set_output_dir(out_.filePath("whatif"));
        dock->set_threads(2);
        QSignalSpy done(dock, &LiveDock::prefill_finished);
        dock->show();
        dock->raise();
        // The model path defaults to the trace's, resolved from the trace's folder.
        QVERIFY2(dock->model_dir().endsWith("resources/models/kvscope-demo"),
                 qPrintable(dock->model_dir()));
        // Not blocked: a view repaints while the worker prefills.
        ImGuiHostWidget* h = host("token_strip");
        const int before = h->frame_count();
        h->update();
        QVERIFY(QTest::qWaitFor([&] { return h->frame_count() > before; }, 5000));
        QVERIFY(done.wait(60000) || done.count() > 0);
        QCOMPARE(done.first().at(0).toBool(), true);
        QVERIFY2(dock->prefilled(), qPrintable(dock->error_text()));
        QVERIFY(dock->error_text().isEmpty());
    }

    // Slider moves preview on the GUI thread; the views' model answers exactly what an
    // independent LiveSession previews for the same choice.
    void liveDockPreviewMatchesAnIndependentSession() {
        LiveDock* dock = window_->live_dock();
        QVERIFY(dock->prefilled());
        const std::string model_dir = KVSCOPE_SOURCE_DIR "/resources/models/kvscope-demo";
        auto model = load_model(model_dir);
        auto tok = load_tokenizer(model_dir);
        record::RunInput in;
        in.prompt = reader_->metadata().prompt;
        in.ids = reader_->token_ids(0, reader_->metadata().n_prompt_tokens);
        in.spans = reader_->spans();
        record::LiveSession session(*model, *tok, model_dir, in, 2);
        session.prefill();

        dock->set_policy("snapkv");
        for (double ratio : {0.1, 0.5}) {
            QSignalSpy ready(dock, &LiveDock::preview_ready);
            dock->set_budget_ratio(ratio);
            QVERIFY(ready.wait(5000) || ready.count() > 0);
            record::PolicyChoice c;
            c.name = "snapkv";
            c.budget.ratio = ratio;
            const whatif::Preview want = session.preview(c);
            QVERIFY(dock->last_preview());
            QCOMPARE(dock->last_preview()->tokens_held, want.tokens_held);
            const views::TraceModel* m = window_->preview_model();
            QVERIFY2(m, "the views show the preview");
            QCOMPARE(m->summary().n_steps, int64_t{1});
            QCOMPARE(m->summary().policy, std::string("snapkv"));
            QCOMPARE(window_->view_state().step, int64_t{0});
            QCOMPARE(window_->scrubber()->step_count(), int64_t{1});
            for (int32_t l = 0; l < m->summary().n_layers; ++l) {
                for (int32_t hd = 0; hd < m->summary().n_heads; ++hd) {
                    const auto hist = m->history(l, hd, views::Load::kNow);
                    QVERIFY(hist);
                    QCOMPARE(hist->held(0),
                             static_cast<int64_t>(want.head(l, hd).positions.size()));
                    // The same float computed twice from the same prefill: exact.
                    QCOMPARE(m->needle_survival(0, 0, l, hd),
                             want.survival[0][static_cast<size_t>(l * m->summary().n_heads + hd)]);
                }
            }
            const QString summary = dock->summary_text();
            QVERIFY2(summary.contains(QString("snapkv ratio %1").arg(ratio)), qPrintable(summary));
            QVERIFY2(summary.contains("needle kept"), qPrintable(summary));
            QVERIFY2(summary.contains("preview"), qPrintable(summary));
        }
        // Every view draws the preview unchanged.
        for (const char* id : {"layer_head", "token_strip", "needle"}) {
            if (window_->view_index(id) < 0) continue;
            const QImage img = show_and_grab(id);
            QVERIFY2(!img.isNull(), id);
            expect_content(img, id);
        }
        if (!qEnvironmentVariableIsEmpty("KVSCOPE_GUI_SHOTS"))
            window_->grab().save(qEnvironmentVariable("KVSCOPE_GUI_SHOTS") + "/whatif.png");
    }

    // Release: a new trace in the dock's folder, opened in the window, verdict = the trace's.
    void liveDockReleaseRerunsAndOpensTheTrace() {
        LiveDock* dock = window_->live_dock();
        dock->set_max_new(12);
        dock->set_budget_ratio(0.25);
        QSignalSpy finished(dock, &LiveDock::rerun_finished);
        QSignalSpy failed(dock, &LiveDock::rerun_failed);
        const auto t0 = std::chrono::steady_clock::now();
        dock->release_slider();
        QVERIFY(QTest::qWaitFor([&] { return finished.count() + failed.count() > 0; }, 60000));
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count();
        QVERIFY2(failed.isEmpty(), qPrintable(dock->error_text()));
        const QString path = finished.first().at(0).toString();
        const int verdict = finished.first().at(1).toInt();
        qInfo("re-run snapkv ratio 0.25, 12 new tokens, %lld-token prompt: %.0f ms",
              static_cast<long long>(reader_->metadata().n_prompt_tokens), ms);
        QVERIFY2(QFile::exists(path), qPrintable(path));
        QVERIFY(path.startsWith(out_.filePath("whatif")));
        QVERIFY2(QFileInfo(path).fileName().startsWith("snapkv-ratio0.25-"), qPrintable(path));
        QCOMPARE(window_->trace_path(), QFileInfo(path).absoluteFilePath());
        QVERIFY(!window_->preview_model());  // the real run replaces the preview
        trace::TraceReader run(path.toStdString());
        QCOMPARE(run.info().state, trace::RunState::kComplete);
        QCOMPARE(static_cast<int>(run.answer_found().at(0)), verdict);
        QVERIFY2(dock->verdict_text().contains(verdict == 1 ? "FOUND" : "wrong"),
                 qPrintable(dock->verdict_text()));
        QCOMPARE(window_->model()->summary().policy, std::string("snapkv"));
        // A second release never overwrites the first run.
        finished.clear();
        dock->release_slider();
        QVERIFY(finished.wait(60000) || finished.count() > 0);
        QVERIFY(finished.first().at(0).toString() != path);
        QVERIFY(QFile::exists(path));
    }

    // Cancel stops a long re-run between steps; the trace ends early and the GUI stays usable.
    void liveDockCancelStopsARerun() {
        LiveDock* dock = window_->live_dock();
        dock->set_max_new(2000);
        QSignalSpy progress(dock, &LiveDock::rerun_progress);
        QSignalSpy finished(dock, &LiveDock::rerun_finished);
        QSignalSpy failed(dock, &LiveDock::rerun_failed);
        dock->release_slider();
        QVERIFY(progress.wait(30000) || progress.count() > 0);
        QVERIFY(dock->progress_bar()->maximum() == 2000);
        dock->cancel();
        QVERIFY(QTest::qWaitFor([&] { return finished.count() + failed.count() > 0; }, 60000));
        QVERIFY2(failed.isEmpty(), qPrintable(dock->error_text()));
        trace::TraceReader run(finished.first().at(0).toString().toStdString());
        QVERIFY2(run.info().n_steps < 2000, "the run stopped before max_new");
        QVERIFY2(
            dock->verdict_text().contains("interrupted") || dock->verdict_text().contains("eos"),
            qPrintable(dock->verdict_text()));
        dock->set_max_new(12);
    }

    // Sweep: 25 budgets from the saved state, drawn progressively; each point is the preview of
    // its budget; a click opens that budget's run against the full cache (compare mode).
    void liveDockSweepsAndOpensAPoint() {
        LiveDock* dock = window_->live_dock();
        dock->set_policy("snapkv");
        QSignalSpy points(dock, &LiveDock::sweep_point_ready);
        QSignalSpy done(dock, &LiveDock::sweep_finished);
        dock->sweep(false);
        QVERIFY(done.wait(60000) || done.count() > 0);
        QCOMPARE(done.first().at(0).toBool(), false);
        QCOMPARE(static_cast<int>(dock->sweep_points().size()), 25);
        QCOMPARE(points.count(), 25);
        const studio::SweepPoint& p = dock->sweep_points()[9];
        record::PolicyChoice c;
        c.name = "snapkv";
        c.budget.ratio = p.ratio;
        const whatif::Preview want = dock->session()->preview(c);
        QCOMPARE(p.tokens_held, want.tokens_held);
        QCOMPARE(p.survival_mean, want.survival_mean(0));
        // Memory grows with the budget.
        QVERIFY(dock->sweep_points().front().memory_fraction <
                dock->sweep_points().back().memory_fraction);
        // Click on point 9 of the curve.
        QSignalSpy finished(dock, &LiveDock::rerun_finished);
        studio::SweepPlot* plot = dock->sweep_plot();
        QVERIFY(QTest::qWaitFor([&] { return plot->isVisible(); }, 5000));
        QTest::mouseClick(plot, Qt::LeftButton, {}, plot->point_pos(9).toPoint());
        QVERIFY(finished.wait(120000) || finished.count() > 0);
        QCOMPARE(window_->trace_path(),
                 QFileInfo(finished.first().at(0).toString()).absoluteFilePath());
        QVERIFY2(!window_->compare_path().isEmpty(), qPrintable(dock->error_text()));
        QCOMPARE(window_->compare_model()->summary().policy, std::string("full"));
        window_->close_compare();
        // With answers each budget is decoded too; Cancel stops the sweep after the point running.
        QSignalSpy points2(dock, &LiveDock::sweep_point_ready);
        QSignalSpy done2(dock, &LiveDock::sweep_finished);
        dock->sweep(true);
        QVERIFY(points2.wait(60000) || points2.count() > 0);
        dock->cancel();
        QVERIFY(done2.wait(60000) || done2.count() > 0);
        QCOMPARE(done2.first().at(0).toBool(), true);
        QVERIFY(dock->sweep_points().size() < 25);
        const studio::SweepPoint& first = dock->sweep_points().front();
        QVERIFY(first.verdict == 0 || first.verdict == 1);
        QVERIFY2(QFile::exists(first.trace), qPrintable(first.trace));
        QCOMPARE(
            static_cast<int>(trace::TraceReader(first.trace.toStdString()).answer_found().at(0)),
            first.verdict);
    }

    // Budget as a memory fraction: the token budget is fitted on the worker
    // (LiveSession::fit_memory, bytes after the first decoded token <= the target), then previewed.
    void liveDockMemoryFractionFitsTheBudget() {
        LiveDock* dock = window_->live_dock();
        QVERIFY(dock->prefilled());
        dock->set_policy("snapkv");
        QSignalSpy ready(dock, &LiveDock::preview_ready);
        dock->set_memory_fraction(0.3);
        QVERIFY(ready.wait(30000) || ready.count() > 0);
        const record::PolicyChoice c = dock->current_choice();
        QVERIFY(c.budget.tokens > 0);
        const whatif::Preview* pv = dock->last_preview();
        QVERIFY(pv);
        // Step 0 holds one token per head less than the fit's measure (after step 1): <= target.
        QVERIFY2(pv->memory_fraction() <= 0.3, qPrintable(QString::number(pv->memory_fraction())));
        // The fit is the largest budget: one more token per head, plus the decoded token that the
        // fit's measure adds (bytes_full / P for all heads; x2 as slack), passes the target.
        record::PolicyChoice more = c;
        more.budget.tokens += 1;
        const int64_t target = dock->session()->bytes_for_fraction(0.3);
        QVERIFY(dock->session()->preview(more).bytes_total +
                    2 * dock->session()->state().bytes_full() /
                        static_cast<int64_t>(dock->session()->input().ids.size()) >
                target);
        dock->set_budget_mode(LiveDock::BudgetMode::kRatio);
    }

    // DMC cannot be previewed from the saved state (LiveSession::blocker): the dock says why and
    // Run decodes it with a prefill of its own.
    void liveDockBlockedPolicyGoesStraightToARun() {
        LiveDock* dock = window_->live_dock();
        QVERIFY(dock->prefilled());
        QSignalSpy ready(dock, &LiveDock::preview_ready);
        dock->set_policy("dmc");
        QVERIFY(dock->set_param("mode", "proxy"));
        QVERIFY(QTest::qWaitFor([&] { return dock->summary_text().contains("no preview"); }, 5000));
        QVERIFY(!dock->last_preview());
        QVERIFY(!window_->preview_model());
        QSignalSpy finished(dock, &LiveDock::rerun_finished);
        QSignalSpy failed(dock, &LiveDock::rerun_failed);
        dock->run();
        QVERIFY(QTest::qWaitFor([&] { return finished.count() + failed.count() > 0; }, 60000));
        QVERIFY2(failed.isEmpty(), qPrintable(dock->error_text()));
        QVERIFY2(dock->verdict_text().contains("own prefill"), qPrintable(dock->verdict_text()));
        QCOMPARE(window_->model()->summary().policy, std::string("dmc"));
        dock->set_policy("snapkv");
    }

    // Timings for bench/RESULTS.md (KVSCOPE_BENCH_LIVE=1): the dock on a 2k NIAH prompt of the
    // demo model; per slider move (each after the previous one's repaints) the time to
    // preview_ready (coalescing timer + preview + the views' model) and until the layer x head
    // view has drawn the preview with every head loaded; then re-runs on release
    // (decode from the saved state + trace written + opened in the window).
    void liveDockTimings() {
        if (qEnvironmentVariableIsEmpty("KVSCOPE_BENCH_LIVE")) QSKIP("set KVSCOPE_BENCH_LIVE=1");
        LiveDock* dock = window_->live_dock();
        dock->set_model_dir(KVSCOPE_SOURCE_DIR "/resources/models/kvscope-demo");
        dock->use_scenario("niah", 2048, 0.5, 1);
        dock->set_policy("snapkv");
        dock->set_max_new(12);
        dock->show();  // after choosing the scenario: no prefill of the open trace's prompt
        dock->raise();
        QSignalSpy pre(dock, &LiveDock::prefill_finished);
        auto t = std::chrono::steady_clock::now();
        auto ms_since = [&t] {
            return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t)
                .count();
        };
        dock->prefill();
        QVERIFY(pre.wait(120000) || pre.count() > 0);
        QVERIFY2(dock->prefilled(), qPrintable(dock->error_text()));
        qInfo("prefill %zu tokens (load + prefill, worker): %.0f ms",
              dock->session()->input().ids.size(), ms_since());
        std::vector<double> runs;
        for (int r = 0; r < 4; ++r) {
            dock->set_budget_ratio(0.25);
            QSignalSpy fin(dock, &LiveDock::rerun_finished);
            t = std::chrono::steady_clock::now();
            dock->release_slider();
            QVERIFY(fin.wait(60000) || fin.count() > 0);
            runs.push_back(ms_since());
        }
        window_->show_view(window_->view_index("layer_head"));
        ImGuiHostWidget* h = host("layer_head");
        std::vector<double> ready, painted, preview;
        for (int i = 0; i < 50; ++i) {
            const double ratio = 0.05 + 0.9 * i / 49.0;  // the slider dragged 0.05 -> 0.95
            // Let the previous move's repaints finish, so each move is timed on its own.
            QTest::qWait(40);
            QSignalSpy spy(dock, &LiveDock::preview_ready);
            int frames = h->frame_count();
            t = std::chrono::steady_clock::now();
            dock->set_budget_ratio(ratio);
            QVERIFY(spy.wait(5000) || spy.count() > 0);
            ready.push_back(ms_since());
            // Painted: the view has drawn a frame with every head history of the preview loaded.
            QVERIFY(QTest::qWaitFor(
                [&] {
                    if (h->frame_count() <= frames) return false;
                    if (window_->preview_model() && window_->preview_model()->has_pending()) {
                        frames = h->frame_count();
                        return false;
                    }
                    return true;
                },
                5000));
            painted.push_back(ms_since());
            preview.push_back(dock->last_preview()->elapsed_ms);
        }
        auto stats = [](std::vector<double> v) {
            std::sort(v.begin(), v.end());
            return QString("%1 / %2 / %3")
                .arg(v.front(), 0, 'f', 1)
                .arg(v[v.size() / 2], 0, 'f', 1)
                .arg(v.back(), 0, 'f', 1);
        };
        qInfo(
            "50 moves, min / median / max ms: preview %s; move -> preview_ready %s; "
            "move -> layer x head repainted %s",
            qPrintable(stats(preview)), qPrintable(stats(ready)), qPrintable(stats(painted)));
        qInfo(
            "re-run on release (12 new tokens, first one builds the views' base): %s ms; "
            "min / median / max of the 4: %s",
            qPrintable(QString("%1, %2, %3, %4")
                           .arg(runs[0], 0, 'f', 0)
                           .arg(runs[1], 0, 'f', 0)
                           .arg(runs[2], 0, 'f', 0)
                           .arg(runs[3], 0, 'f', 0)),
            qPrintable(stats(runs)));
        if (!qEnvironmentVariableIsEmpty("KVSCOPE_GUI_SHOTS")) {
            QSignalSpy swept(dock, &LiveDock::sweep_finished);
            dock->sweep(false);
            QVERIFY(swept.wait(60000) || swept.count() > 0);
            window_->show_view(window_->view_index("needle"));
            window_->resizeDocks({dock}, {470}, Qt::Horizontal);
            dock->set_budget_ratio(0.25);
            QTest::qWait(300);
            window_->grab().save(qEnvironmentVariable("KVSCOPE_GUI_SHOTS") + "/whatif_2k.png");
        }
    }

    // A model path that does not exist: the error is shown in the dock, nothing crashes, and the
    // window still works.
    void liveDockShowsABadModelPath() {
        LiveDock* dock = window_->live_dock();
        dock->set_model_dir("/nonexistent/kvscope-model");
        QSignalSpy done(dock, &LiveDock::prefill_finished);
        dock->prefill();
        QVERIFY(done.wait(30000) || done.count() > 0);
        QCOMPARE(done.first().at(0).toBool(), false);
        QVERIFY(!dock->prefilled());
        QVERIFY2(dock->error_text().contains("/nonexistent/kvscope-model"),
                 qPrintable(dock->error_text()));
        // Previews and runs without a session say so instead of failing.
        dock->set_budget_ratio(0.3);
        QSignalSpy failed(dock, &LiveDock::rerun_failed);
        dock->release_slider();
        QCOMPARE(failed.count(), 1);
        QVERIFY(window_->open_trace(kSample));
        dock->hide();
    }
    // ---- Needle forensics (issue 13) -------------------------------------------------------

    // The explanation the Studio hands to the Needle view, checked against whatif::ExplainPolicy
    // run here on an independent session: same decisions, same scores (1e-12).
    static bool same_score(double a, double b) {
        if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
        if (std::isinf(a) || std::isinf(b)) return a == b;
        return std::abs(a - b) <= 1e-12;
    }
    void needleExplainUsesThePolicysOwnScore() {
        QVERIFY2(window_->open_trace(kSample), qPrintable(window_->last_error()));
        LiveDock* dock = window_->live_dock();
        dock->set_threads(2);
        dock->set_output_dir(out_.filePath("forensics"));
        auto* v = view<views::NeedleView>("needle");
        QVERIFY(v);
        // D2O loses needle tokens in layer 4 head 0 at decode step 1 (kvscope explain).
        const int64_t last = reader_->info().n_steps - 1;
        select(last, 4, 0);
        QVERIFY(!show_and_grab("needle").isNull());
        // Without an explanation the old list is there, labelled as what it is.
        QVERIFY(!v->showing_explanation());
        QVERIFY2(QString::fromStdString(v->list_heading()).contains("not the policy's score"),
                 v->list_heading().c_str());
        QSignalSpy done(dock, &LiveDock::explain_finished);
        dock->explain_needle();
        // Not blocked: the view repaints while the worker prefills and explains.
        ImGuiHostWidget* h = host("needle");
        const int before = h->frame_count();
        h->update();
        QVERIFY(QTest::qWaitFor([&] { return h->frame_count() > before; }, 5000));
        QVERIFY(done.wait(120000) || done.count() > 0);
        QVERIFY2(done.first().at(0).toBool(), qPrintable(dock->error_text()));
        QVERIFY(dock->explanation());

        // The same run here: the trace's policy and sampling under ExplainPolicy.
        const std::string model_dir = KVSCOPE_SOURCE_DIR "/resources/models/kvscope-demo";
        auto model = load_model(model_dir);
        auto tok = load_tokenizer(model_dir);
        record::LiveSession session(*model, *tok, model_dir, record::input_from_trace(*reader_), 2);
        session.prefill();
        const auto [nb, ne] = studio::needle_of(reader_->spans());
        QVERIFY(nb >= 0);
        std::vector<int64_t> followed;
        for (int64_t p = nb; p < ne; ++p) followed.push_back(p);
        auto decided = std::make_shared<std::vector<whatif::TokenDecision>>();
        record::RerunRequest rr;
        rr.policy = record::policy_from_trace(reader_->metadata());
        rr.sampling = record::sampling_from_trace(reader_->metadata());
        rr.trace = out_.filePath("explain_check.kvtrace.h5").toStdString();
        rr.wrap_policy = [&](std::unique_ptr<Policy> p) {
            return std::unique_ptr<Policy>(
                std::make_unique<whatif::ExplainPolicy>(std::move(p), followed, decided));
        };
        session.rerun(rr);
        QCOMPARE(dock->explanation()->decisions.size(), decided->size());
        QCOMPARE(dock->explanation()->span_begin, nb);
        QVERIFY(dock->explanation()->same_as_trace);
        QVERIFY(!dock->explanation()->score_name.empty());

        select(last, 4, 0);
        const QImage img = show_and_grab("needle");
        QVERIFY(!img.isNull());
        QVERIFY(v->showing_explanation());
        const QString heading = QString::fromStdString(v->list_heading());
        QVERIFY2(heading.contains("policy's own score") && !heading.contains("attention"),
                 qPrintable(heading));
        std::vector<const whatif::TokenDecision*> expected;
        for (const auto& d : *decided)
            if (d.layer == 4 && d.kv_head == 0) expected.push_back(&d);
        const auto& shown = v->shown_decisions();
        QVERIFY(!expected.empty());
        QCOMPARE(shown.size(), expected.size());
        bool any_lost = false;
        for (size_t i = 0; i < shown.size(); ++i) {
            const views::NeedleDecision& a = shown[i];
            const whatif::TokenDecision& b = *expected[i];
            QCOMPARE(a.step, b.step);
            QCOMPARE(a.position, b.position);
            QCOMPARE(a.action, b.action);
            QCOMPARE(a.into_position, b.into_position);
            QCOMPARE(a.bits, b.bits);
            QCOMPARE(a.rank, b.rank);
            QCOMPARE(a.candidates, b.candidates);
            QCOMPARE(a.budget, b.budget);
            QCOMPARE(a.score_name, b.score_name);
            QVERIFY2(same_score(a.score, b.score),
                     qPrintable(QString("score %1 vs %2").arg(a.score).arg(b.score)));
            QVERIFY(same_score(a.cutoff, b.cutoff));
            QCOMPARE(a.took_its_place.size(), b.took_its_place.size());
            for (size_t k = 0; k < a.took_its_place.size(); ++k) {
                QCOMPARE(a.took_its_place[k].first, b.took_its_place[k].first);
                QVERIFY(same_score(a.took_its_place[k].second, b.took_its_place[k].second));
            }
            any_lost = any_lost || a.action != "kept";
        }
        QVERIFY(any_lost);  // this head loses needle tokens: the view explains a loss
        expect_content(img, "needle (explained)");
        if (!qEnvironmentVariableIsEmpty("KVSCOPE_GUI_SHOTS")) {
            // docs/screenshots/needle_why.png: the view floated at a readable size.
            QDockWidget* d = window_->dock(window_->view_index("needle"));
            d->setFloating(true);
            d->resize(1240, 760);
            window_->view_state().select_token(252);
            const QImage big = show_and_grab("needle");
            big.save(qEnvironmentVariable("KVSCOPE_GUI_SHOTS") + "/needle_why.png");
            d->setFloating(false);
            QTest::qWait(100);
        }
        // Another trace: the explanation (of the sample) is not shown for it.
        const QString other = record_sample_run("forensics_full", {"--policy", "full"});
        QVERIFY(!other.isEmpty());
        QVERIFY(window_->open_trace(other));
        show_and_grab("needle");
        QVERIFY(!v->showing_explanation());
        QVERIFY(window_->open_trace(kSample));
    }

    // Rescue: the layers the Studio shows are record::rescue_needle's, run here; a click on a run
    // opens it as B against the trace.
    void rescueFindsTheLayersAndOpensARunInCompare() {
        QVERIFY(window_->open_trace(kSample));
        LiveDock* dock = window_->live_dock();
        dock->show();
        QSignalSpy runs(dock, &LiveDock::rescue_run_ready);
        QSignalSpy done(dock, &LiveDock::rescue_finished);
        dock->rescue_search();
        QVERIFY(done.wait(300000) || done.count() > 0);
        QVERIFY2(done.first().at(0).toBool(), qPrintable(dock->error_text()));

        const std::string model_dir = KVSCOPE_SOURCE_DIR "/resources/models/kvscope-demo";
        auto model = load_model(model_dir);
        auto tok = load_tokenizer(model_dir);
        record::LiveSession session(*model, *tok, model_dir, record::input_from_trace(*reader_), 2);
        session.prefill();
        const auto [nb, ne] = studio::needle_of(reader_->spans());
        const record::RescueResult r =
            record::rescue_needle(session, record::policy_from_trace(reader_->metadata()),
                                  record::sampling_from_trace(reader_->metadata()), nb, ne,
                                  out_.filePath("rescue_check").toStdString(),
                                  static_cast<int>(2 + model->spec.n_layers));
        QCOMPARE(r.outcome, record::RescueResult::Outcome::kRescued);
        QVERIFY(!r.layers.empty());
        QCOMPARE(dock->rescue_layers_found(), r.layers);
        QCOMPARE(dock->rescue_summary(), QString::fromStdString(r.summary));
        QVERIFY(dock->rescue_summary().contains("rescued by keeping the needle in layers"));
        QCOMPARE(dock->rescue_runs().size(), r.runs.size());
        QCOMPARE(runs.count(), static_cast<int>(r.runs.size()));
        std::set<QString> names;
        for (size_t i = 0; i < r.runs.size(); ++i) {
            const auto& row = dock->rescue_runs()[i];
            QCOMPARE(row.layers, r.runs[i].layers);
            QCOMPARE(row.found, static_cast<int>(r.runs[i].found));
            QVERIFY2(QFile::exists(row.trace), qPrintable(row.trace));
            QVERIFY(row.trace.startsWith(out_.filePath("forensics") + "/rescue-"));
            names.insert(row.trace);
        }
        QCOMPARE(names.size(), r.runs.size());  // fresh names, none replaced
        QCOMPARE(dock->rescue_list()->count(), static_cast<int>(r.runs.size()));
        // The Needle view shows the verdict line too.
        QCOMPARE(dock->forensics().rescue_summary, r.summary);

        // Click the run that kept the needle in the rescuing set.
        int pick = -1;
        for (size_t i = 0; i < r.runs.size(); ++i)
            if (r.runs[i].layers == r.layers) pick = static_cast<int>(i);
        QVERIFY(pick >= 0);
        QListWidget* list = dock->rescue_list();
        list->scrollToItem(list->item(pick));
        QTest::mouseClick(list->viewport(), Qt::LeftButton, {},
                          list->visualItemRect(list->item(pick)).center());
        const QString expect_b =
            QFileInfo(dock->rescue_runs()[static_cast<size_t>(pick)].trace).absoluteFilePath();
        QTRY_COMPARE(window_->compare_path(), expect_b);
        QCOMPARE(window_->trace_path(), QFileInfo(kSample).absoluteFilePath());
        QCOMPARE(window_->compare_model()->answer_found(0), int8_t{1});
        if (!qEnvironmentVariableIsEmpty("KVSCOPE_GUI_SHOTS")) {
            window_->resizeDocks({dock}, {560}, Qt::Horizontal);
            show_and_grab("needle");
            dock->raise();
            QTest::qWait(200);
            window_->grab().save(qEnvironmentVariable("KVSCOPE_GUI_SHOTS") + "/rescue.png");
        }
        window_->close_compare();
    }

    // Manual mode (chosen layers, one run) and cancel between the runs of a search.
    void rescueManualLayersAndCancel() {
        QVERIFY(window_->open_trace(kSample));
        LiveDock* dock = window_->live_dock();
        const std::set<int64_t> rescuing = dock->rescue_layers_found();
        QVERIFY(!rescuing.empty());
        for (int64_t l = 0; l < reader_->info().n_layers; ++l)
            dock->set_rescue_layer_checked(l, rescuing.count(l) > 0);
        {
            QSignalSpy done(dock, &LiveDock::rescue_finished);
            dock->rescue_with_checked_layers();
            QVERIFY(done.wait(120000) || done.count() > 0);
            QVERIFY2(done.first().at(0).toBool(), qPrintable(dock->error_text()));
            QCOMPARE(dock->rescue_runs().size(), size_t{1});
            QCOMPARE(dock->rescue_runs()[0].layers, rescuing);
            QCOMPARE(dock->rescue_runs()[0].found, 1);  // the search's set restores the answer
            QVERIFY(dock->rescue_summary().startsWith("answer restored"));
        }
        {
            QSignalSpy runs(dock, &LiveDock::rescue_run_ready);
            QSignalSpy done(dock, &LiveDock::rescue_finished);
            dock->rescue_search();
            QVERIFY(runs.wait(120000) || runs.count() > 0);
            dock->cancel();
            QVERIFY(done.wait(120000) || done.count() > 0);
            QCOMPARE(done.first().at(0).toBool(), false);
            // Cancelled after the first run was shown: the run under way finishes, then the
            // search stops (one more may have started before the flag was seen). The whole
            // search takes 2 + about one run per layer (rescueFindsTheLayers...).
            QVERIFY2(runs.count() >= 1 && runs.count() <= 3,
                     qPrintable(QString::number(runs.count())));
            QCOMPARE(dock->rescue_runs().size(), static_cast<size_t>(runs.count()));
            QVERIFY(dock->rescue_summary().startsWith("cancelled after"));
            QVERIFY(!dock->busy());
            QVERIFY(!dock->forensics().busy);
        }
    }

    // A trace whose model cannot be found: an error in the view and the dock, no crash.
    void forensicsWithoutTheModelShowAnError() {
        const QString synthetic = synthetic_shape_trace();  // records no model path
        QVERIFY(!synthetic.isEmpty());
        QVERIFY(window_->open_trace(synthetic));
        LiveDock* dock = window_->live_dock();
        QSignalSpy explained(dock, &LiveDock::explain_finished);
        dock->explain_needle();
        QVERIFY(explained.count() > 0 || explained.wait(30000));
        QCOMPARE(explained.first().at(0).toBool(), false);
        QVERIFY2(dock->forensics().error.find("does not name the model") != std::string::npos,
                 dock->forensics().error.c_str());
        QSignalSpy rescued(dock, &LiveDock::rescue_finished);
        dock->rescue_search();
        QVERIFY(rescued.count() > 0 || rescued.wait(30000));
        QCOMPARE(rescued.first().at(0).toBool(), false);
        QVERIFY(dock->error_text().contains("Rescue failed"));
        const QImage img = show_and_grab("needle");
        QVERIFY(!img.isNull());
        QVERIFY(!view<views::NeedleView>("needle")->showing_explanation());
        QVERIFY(window_->open_trace(kSample));
        dock->hide();
    }
};

int main(int argc, char** argv) {
    return kvscope::studio::testing::run_studio_test<StudioTest>(argc, argv, "KVScope Studio Test");
}

#include "studio_test.moc"
