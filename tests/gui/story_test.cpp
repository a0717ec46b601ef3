// KVScope Studio under Xvfb (Qt Test): Help > Lessons opens a bundled lesson (its trace and
// compare trace), the Story dock steps through its beats with the N / Shift+N keys and buttons,
// every beat moves the shared selection (step, layer, head, token) that all views draw, and the
// policy's explainer card shows the registry's metadata. Screenshots of the Story dock and of a
// lesson's whole window go to $KVSCOPE_GUI_SHOTS when set (docs/screenshots/make_screenshots.sh).
#include <QAction>
#include <QApplication>
#include <QDialog>
#include <QDialogButtonBox>
#include <QDir>
#include <QLabel>
#include <QListWidget>
#include <QMenuBar>
#include <QProcess>
#include <QPushButton>
#include <QSettings>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <filesystem>

#include "app/studio/imgui_host_widget.h"
#include "app/studio/lesson.h"
#include "app/studio/main_window.h"
#include "app/studio/policy_card.h"
#include "app/studio/story_dock.h"
#include "tests/gui/studio_test_harness.h"
#include "traces/trace_reader.h"

using namespace kvscope;
using studio::MainWindow;
using studio::StoryDock;

namespace {

const QString kLessons = QStringLiteral(KVSCOPE_SOURCE_DIR "/resources/lessons");

// Keys go where a user's would: to the widget with the focus (a view, after a beat showed it).
QWidget* focused(QWidget* fallback) {
    QWidget* f = QApplication::focusWidget();
    return f ? f : fallback;
}

QAction* find_action(QMainWindow* w, const QString& name) {
    return w->findChild<QAction*>(name);
}

void save_shot(const QImage& image, const QString& name) {
    const QString dir = qEnvironmentVariable("KVSCOPE_GUI_SHOTS");
    if (!dir.isEmpty()) QVERIFY(image.save(QDir(dir).filePath(name)));
}

}  // namespace

class StoryTest : public QObject {
    Q_OBJECT

  private:
    MainWindow* window_ = nullptr;
    StoryDock* dock_ = nullptr;

  private slots:
    void initTestCase() {
        QCoreApplication::setOrganizationName("kvscope-story-test");
        QSettings().clear();
        qputenv("KVSCOPE_LESSONS_DIR", kLessons.toUtf8());
        window_ = new MainWindow;
        QVERIFY(studio::testing::show_quiet(*window_, QSize(1280, 780)));
        dock_ = window_->findChild<StoryDock*>("story_dock");
        QVERIFY(dock_);
    }

    void helpMenuHasLessonsAndExplainersBesideTheOthers() {
        QMenu* help = nullptr;
        for (QAction* a : window_->menuBar()->actions())
            if (a->menu() && a->text() == QObject::tr("&Help")) help = a->menu();
        QVERIFY(help);
        QStringList texts;
        for (QAction* a : help->actions()) texts << a->text();
        QVERIFY2(texts.contains(QObject::tr("&Lessons...")), qPrintable(texts.join("|")));
        QVERIFY(texts.contains(QObject::tr("&Policy explainers...")));
        QVERIFY(texts.contains(QObject::tr("&About KVScope Studio")));
    }

    void lessonsDialogOpensTheChosenLesson() {
        find_action(window_, "lessonsAction")->trigger();
        auto* dialog = window_->findChild<QDialog*>("lessonsDialog");
        QVERIFY(dialog);
        QTRY_VERIFY(dialog->isVisible());
        auto* list = dialog->findChild<QListWidget*>("lessonList");
        QVERIFY(list);
        const auto lessons = studio::list_lessons(QFile::encodeName(kLessons).toStdString());
        QCOMPARE(list->count(), static_cast<int>(lessons.size()));
        QVERIFY(list->count() >= 5);
        int row = -1;
        for (int i = 0; i < list->count(); ++i)
            if (list->item(i)->data(Qt::UserRole).toString().endsWith("observation_window"))
                row = i;
        QVERIFY(row >= 0);
        list->setCurrentRow(row);
        dialog->findChild<QDialogButtonBox*>()->button(QDialogButtonBox::Open)->click();
        QTRY_COMPARE(dock_->lesson_id(), QString("observation_window"));
        QVERIFY(dock_->isVisible());
        QVERIFY(window_->trace_path().endsWith("observation_window/snapkv.kvtrace.h5"));
        QVERIFY(window_->compare_path().endsWith("observation_window/snapkv_w8.kvtrace.h5"));
        QCOMPARE(dock_->current(), 0);
        // Beat 0 is the lesson's first script beat.
        const auto lesson =
            studio::load_lesson(QFile::encodeName(kLessons + "/observation_window").toStdString());
        QCOMPARE(dock_->beat_text(), QString::fromStdString(lesson.script.front().beat.text));
        QCOMPARE(dock_->findChild<QLabel*>("storyText")->text(), dock_->beat_text());
        // The card is SnapKV's, from the registry, with the trace's window.
        const QString card = dock_->card()->text();
        QVERIFY2(card.contains("SnapKV") && card.contains("2404.14469") &&
                     card.contains("NeurIPS 2024") && card.contains("window = 32"),
                 qPrintable(card));
        QCOMPARE(dock_->card()->picture()->picture(), RulePicture::kWindowVotes);
    }

    void keysStepTheStoryAndMoveTheSelection() {
        QVERIFY(dock_->beat_count() >= 6);
        // N until the "why" beat: it selects a layer, a head and a needle token.
        int why = -1;
        for (int i = 0; i < dock_->beat_count(); ++i)
            if (dock_->beat(i).kind == views::BeatKind::kWhy) why = i;
        QVERIFY(why > 0);
        window_->activateWindow();
        QTRY_VERIFY(window_->isActiveWindow());
        for (int i = 0; i < why; ++i) {
            const int before = dock_->current();
            QTest::keyClick(focused(window_), Qt::Key_N);
            QTRY_COMPARE(dock_->current(), before + 1);
        }
        const views::StoryBeat& b = dock_->beat(why);
        QCOMPARE(dock_->beat_text(), QString::fromStdString(b.text));
        QVERIFY(dock_->beat_text().contains("observation-window votes"));
        const views::ViewState& s = window_->view_state();
        QCOMPARE(s.step, b.step);
        QCOMPARE(s.layer, b.layer);
        QCOMPARE(s.head, b.head);
        QCOMPARE(s.token, b.token);
        // The token the beat explains is a digit of the needle, dropped in that head at step 0:
        // checked on the trace reader, not on the story's own data.
        const trace::TraceReader r(QFile::encodeName(window_->trace_path()).toStdString());
        const auto& sp = r.spans().front();
        QVERIFY(b.token >= sp.begin && b.token < sp.end);
        const auto states = r.token_states(b.layer, b.head, 0);
        QCOMPARE(states[static_cast<size_t>(b.token)].state, trace::TokenCacheState::kEvicted);
        QVERIFY(dock_->beat_text().contains(QString::number(b.token)));
        // The status bar names the selection.
        if (!qEnvironmentVariable("KVSCOPE_GUI_SHOTS").isEmpty()) {
            // The docs' picture of the dock alone, floating at a readable size (docked at 1280 px
            // beside the compare views it gets ~320 px), then docked again.
            dock_->setFloating(true);
            dock_->resize(440, 780);
            QTest::qWait(200);
            save_shot(dock_->grab().toImage(), "story_dock.png");
            dock_->setFloating(false);
            QTest::qWait(100);
        }

        // Shift+N goes back one beat, and its selection with it.
        QTest::keyClick(focused(window_), Qt::Key_N, Qt::ShiftModifier);
        QTRY_COMPARE(dock_->current(), why - 1);
        QCOMPARE(dock_->beat_text(), QString::fromStdString(dock_->beat(why - 1).text));
        QCOMPARE(window_->view_state().step, dock_->beat(why - 1).step);
    }

    void buttonsStepToTheOutcomeAtTheLastStep() {
        auto* next = dock_->findChild<QPushButton*>("storyNext");
        QVERIFY(next);
        while (next->isEnabled()) next->click();
        QCOMPARE(dock_->current(), dock_->beat_count() - 1);
        // The last script beat brings the Layer × head view forward; the outcome beat before it
        // sits at the trace's last step.
        int outcome = -1;
        for (int i = 0; i < dock_->beat_count(); ++i)
            if (dock_->beat(i).kind == views::BeatKind::kOutcome) outcome = i;
        QVERIFY(outcome > 0);
        dock_->go_to(outcome);
        QCOMPARE(window_->view_state().step, window_->model()->summary().n_steps - 1);
        QCOMPARE(window_->scrubber() != nullptr, true);
        QVERIFY(dock_->findChild<QLabel*>("storyCounter")
                    ->text()
                    .contains(QString("beat %1 of %2").arg(outcome + 1).arg(dock_->beat_count())));
        QApplication::processEvents();
        save_shot(window_->grab().toImage(), "lesson.png");
    }

    void storyOfAnOpenedTraceIsRebuilt() {
        // A trace opened by hand while the dock is shown gets its own story, not started: the
        // selection stays where opening the trace put it until N.
        const QString h2o = kLessons + "/heavy_hitters/h2o.kvtrace.h5";
        QVERIFY(window_->open_trace(h2o));
        window_->close_compare();
        const int64_t opened_at = window_->view_state().step;
        QTRY_VERIFY(dock_->lesson_id().isEmpty());
        QVERIFY(dock_->beat_count() >= 5);
        QCOMPARE(dock_->current(), -1);
        QCOMPARE(window_->view_state().step, opened_at);
        QVERIFY(dock_->findChild<QLabel*>("storyText")->text().contains("Next (N)"));
        QTest::keyClick(focused(window_), Qt::Key_N);
        QTRY_COMPARE(dock_->current(), 0);
        QCOMPARE(dock_->beat(0).kind, views::BeatKind::kOverview);
        QCOMPARE(window_->view_state().step, dock_->beat(0).step);
        QVERIFY(dock_->beat_text().contains("H2O"));
        QVERIFY(dock_->card()->text().contains("H2O"));
        QCOMPARE(dock_->card()->picture()->picture(), RulePicture::kHittersRecent);
    }

    void explainerDialogListsEveryPolicy() {
        find_action(window_, "policyExplainersAction")->trigger();
        auto* d = window_->findChild<studio::PolicyExplainerDialog*>("policyExplainerDialog");
        QVERIFY(d);
        QTRY_VERIFY(d->isVisible());
        QVERIFY(d->list()->count() >= 12);
        d->select("streaming_llm");
        QVERIFY(d->card()->text().contains("2309.17453"));
        QVERIFY(d->card()->text().contains("sinks = 4"));
        QCOMPARE(d->card()->picture()->picture(), RulePicture::kSinksWindow);
        save_shot(d->grab().toImage(), "policy_explainer.png");
        d->close();
    }

    void lessonFlagOpensALessonFromTheCommandLine() {
        // kvscope-studio --lesson ID (a presenter's start), exporting its views to check it.
        QTemporaryDir out;
        QProcess p;
        p.setProcessEnvironment([] {
            auto env = QProcessEnvironment::systemEnvironment();
            env.insert("XDG_CONFIG_HOME", QDir::tempPath() + "/kvscope-story-flag");
            return env;
        }());
        p.start(KVSCOPE_STUDIO_EXE, {"--lesson", "attention_sinks", "--export-views", out.path(),
                                     "--scale", "1", "--window-shot", out.filePath("window.png")});
        QVERIFY(p.waitForFinished(120000));
        QCOMPARE(p.exitCode(), 0);
        QVERIFY(QFile::exists(out.filePath("token_strip.png")));
        QVERIFY(QFile::exists(out.filePath("compare.png")));  // the lesson's B trace is open
        QVERIFY(!QImage(out.filePath("window.png")).isNull());
        // An unknown lesson is a failure with a message naming it.
        p.start(KVSCOPE_STUDIO_EXE, {"--lesson", "no_such_lesson", "--export-views", out.path()});
        QVERIFY(p.waitForFinished(120000));
        QCOMPARE(p.exitCode(), 1);
        QVERIFY(QString::fromLocal8Bit(p.readAllStandardError()).contains("no_such_lesson"));
    }

    void cleanupTestCase() {
        delete window_;
        QSettings().clear();
    }
};

QTEST_MAIN(StoryTest)
#include "story_test.moc"
