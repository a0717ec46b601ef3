// KVScope Studio under Xvfb: the views, compare mode, reload and the NIAH grid (the class and
// the run order: studio_test.h).
#include "tests/gui/studio_test.h"

void StudioTest::initTestCase() {
    QVERIFY(out_.isValid());
    QVERIFY2(QFile::exists(kSample), qPrintable(kSample));
    QCursor::setPos(0, 0);  // keep the pointer (and its tooltips) off the views
    window_ = new MainWindow();
    QVERIFY(studio::testing::show_quiet(*window_, QSize(1260, 780)));
    reader_ = std::make_unique<trace::TraceReader>(kSample.toStdString());
}

void StudioTest::cleanupTestCase() {
    delete window_;
    window_ = nullptr;
}

void StudioTest::opensTheSampleTrace() {
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

void StudioTest::everyViewShowsRealContent() {
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

void StudioTest::layerHeadCellsHaveTheExpectedColours() {
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

void StudioTest::tokenStripColoursTokensByState() {
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

void StudioTest::timelineAndPrecisionShowStatesWhereExpected() {
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
            expect_colour(pm, host("precision"), precision->point_of(l, static_cast<int64_t>(t)),
                          expected_state_colour(theme(), states[t]), 4,
                          QString("precision L%1 token %2").arg(l).arg(t));
        }
    }
    QVERIFY(pchecked >= 10);
    QVERIFY2(bits.size() >= 2, "the MiKV sample should hold tokens at two precisions");
    QVERIFY(window_->open_trace(kSample));
}

void StudioTest::needleMatrixShowsSurvival() {
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

void StudioTest::clickingSelectsEverywhere() {
    select(reader_->info().n_steps - 1, 3, 0);
    show_and_grab("layer_head");
    auto* lh = view<views::LayerHeadView>("layer_head");
    const views::PlotRect cell = lh->cell_rect(5, 1);
    QTest::mouseClick(host("layer_head"), Qt::LeftButton, {},
                      QPoint(static_cast<int>(cell.min.x + 5), static_cast<int>(cell.min.y + 5)));
    QTRY_COMPARE(window_->view_state().layer, 5);
    QTRY_COMPARE(window_->view_state().head, 1);
    // The strip now colours by layer 5 head 1; click a token there.
    show_and_grab("token_strip");
    auto* strip = view<views::TokenStripView>("token_strip");
    const auto rect = strip->token_rect(40);
    QVERIFY(rect.has_value());
    QTest::mouseClick(host("token_strip"), Qt::LeftButton, {},
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
        best = std::min(best,
                        colour_distance(pixel(tl, host("eviction_timeline"), ImVec2(p.x + dx, p.y)),
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

void StudioTest::scrubbingDrivesEveryView() {
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

void StudioTest::exportsPngAndSvg() {
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
    QVERIFY2(doc.count("<rect") >= 2 + compressed, qPrintable(QString::number(doc.count("<rect"))));
    QVERIFY(doc.contains("tokens per cache head"));
    const QString dir = out_.filePath("all");
    QVERIFY(window_->export_all_views(dir, 1.0));
    for (int k = 0; k < window_->view_count(); ++k) {
        QVERIFY(QFile::exists(dir + "/" + window_->view(k)->id() + ".png"));
    }
}

void StudioTest::themeSwitches() {
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

void StudioTest::invalidTracesGiveAMessageNotACrash() {
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

void StudioTest::dropsOpenATrace() {
    window_->close_trace();
    QVERIFY(window_->model() == nullptr);
    show_and_grab("token_strip");  // the empty placeholder draws
    QMimeData mime;
    mime.setUrls({QUrl::fromLocalFile(kSample)});
    QDragEnterEvent enter(QPoint(10, 10), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(window_, &enter);
    QVERIFY(enter.isAccepted());
    QDropEvent drop(QPointF(10, 10), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(window_, &drop);
    QVERIFY(window_->model() != nullptr);
    QCOMPARE(window_->trace_path(), QFileInfo(kSample).absoluteFilePath());
}

void StudioTest::followsATraceWhileItIsWritten() {
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
        (QFile::exists(live) || QFile::exists(live + ".part")) && window_->open_trace(live), 10000);
    window_->set_follow_live(true);
    window_->set_step(std::max<int64_t>(window_->model()->summary().n_steps - 1, 0));
    // Between two polls the window may hold no model: one opened before the writer switched to
    // SWMR is closed and opened again, and that open can fail while the file is being set up
    // (MainWindow::poll_live retries at the next tick). Seen once under the sanitizers on a
    // loaded machine: read through these.
    auto steps = [&] {
        return window_->model() ? window_->model()->summary().n_steps : int64_t{-1};
    };
    auto state = [&] {
        return window_->model() ? window_->model()->summary().state : trace::RunState::kRunning;
    };
    auto diag = [&] {
        if (!window_->model())
            return QString("no model (re-opening); error '%1'").arg(window_->last_error());
        const auto& s = window_->model()->summary();
        return QString("steps %1 live %2 state %3 error '%4' notice '%5'")
            .arg(s.n_steps)
            .arg(s.live)
            .arg(static_cast<int>(s.state))
            .arg(window_->last_error(), QString::fromStdString(s.notice));
    };
    QTRY_VERIFY2_WITH_TIMEOUT(steps() == 16, qPrintable(diag()), 20000);
    QTRY_COMPARE_WITH_TIMEOUT(state(), trace::RunState::kComplete, 10000);
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
void StudioTest::opensTheTraceOfEveryPolicy() {
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
void StudioTest::compareModeSharesTheSelection() {
    const QString b = record_sample_run("snapkv8", {"--policy", "snapkv", "--ratio", "0.25"}, 1, 8);
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
                      in_a ? theme().only_a : theme().only_b, 4, QString("diff token %1").arg(t));
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

void StudioTest::compareRefusesAnotherModelOrPrompt() {
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
void StudioTest::noticesAReplacedTraceAndReloads() {
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
void StudioTest::niahGridClickOpensTheCellAgainstTheFullCache() {
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
    const QString expect_b =
        QFileInfo(
            QDir(dir).filePath(QString::fromStdString(grid->rows[static_cast<size_t>(b)].trace)))
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
void StudioTest::niahGridRefusesBadFoldersAndFollowsARunningSweep() {
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

void StudioTest::commandLineOpensAndExports() {
    QProcess studio;
    const QString dir = out_.filePath("cli");
    studio.start(QStringLiteral(KVSCOPE_STUDIO_EXE),
                 {kSample, "--export-views", dir, "--scale", "1", "--layer", "4", "--head", "1"});
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

int main(int argc, char** argv) {
    return kvscope::studio::testing::run_studio_test<StudioTest>(argc, argv, "KVScope Studio Test");
}
