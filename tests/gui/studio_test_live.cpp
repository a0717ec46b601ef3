// KVScope Studio under Xvfb: the live run ("What-if") dock and needle forensics (the class and
// the run order: studio_test.h).
#include "tests/gui/studio_test.h"

namespace {

// The open trace's run repeated here (its model, prompt and the needle's span), prefilled: what
// the dock's explanation and rescue are checked against.
struct TraceRunHere {
    const std::string model_dir = KVSCOPE_SOURCE_DIR "/resources/models/kvscope-demo";
    const std::unique_ptr<Model> model = load_model(model_dir);
    const std::unique_ptr<Tokenizer> tok = load_tokenizer(model_dir);
    record::LiveSession session;
    int64_t nb = -1, ne = -1;
    explicit TraceRunHere(const trace::TraceReader& reader)
        : session(*model, *tok, model_dir, record::input_from_trace(reader), 2) {
        session.prefill();
        std::tie(nb, ne) = studio::needle_of(reader.spans());
    }
};

}  // namespace

// ---- Live run dock ("What-if") --------------------------------------------------------
// The dock prefills the open trace's prompt on its worker; the GUI keeps painting meanwhile.
void StudioTest::liveDockPrefillsTheOpenTrace() {
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
void StudioTest::liveDockPreviewMatchesAnIndependentSession() {
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
                QCOMPARE(hist->held(0), static_cast<int64_t>(want.head(l, hd).positions.size()));
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
void StudioTest::liveDockReleaseRerunsAndOpensTheTrace() {
    LiveDock* dock = window_->live_dock();
    dock->set_max_new(12);
    dock->set_budget_ratio(0.25);
    QSignalSpy finished(dock, &LiveDock::rerun_finished);
    QSignalSpy failed(dock, &LiveDock::rerun_failed);
    const auto t0 = std::chrono::steady_clock::now();
    dock->release_slider();
    QVERIFY(QTest::qWaitFor([&] { return finished.count() + failed.count() > 0; }, 60000));
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
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
void StudioTest::liveDockCancelStopsARerun() {
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
    QVERIFY2(dock->verdict_text().contains("interrupted") || dock->verdict_text().contains("eos"),
             qPrintable(dock->verdict_text()));
    dock->set_max_new(12);
}

// Sweep: 25 budgets from the saved state, drawn progressively; each point is the preview of
// its budget; a click opens that budget's run against the full cache (compare mode).
void StudioTest::liveDockSweepsAndOpensAPoint() {
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
    QCOMPARE(static_cast<int>(trace::TraceReader(first.trace.toStdString()).answer_found().at(0)),
             first.verdict);
}

// Budget as a memory fraction: the token budget is fitted on the worker
// (LiveSession::fit_memory, bytes after the first decoded token <= the target), then previewed.
void StudioTest::liveDockMemoryFractionFitsTheBudget() {
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
void StudioTest::liveDockBlockedPolicyGoesStraightToARun() {
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
void StudioTest::liveDockTimings() {
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
void StudioTest::liveDockShowsABadModelPath() {
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

// ---- Needle forensics (issue 13) -----------------------------------------------------------

// The explanation the Studio hands to the Needle view, checked against whatif::ExplainPolicy run
// here on an independent session: same decisions, same scores (1e-12).
void StudioTest::needleExplainUsesThePolicysOwnScore() {
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
    TraceRunHere here(*reader_);
    auto& session = here.session;
    const int64_t nb = here.nb, ne = here.ne;
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
void StudioTest::rescueFindsTheLayersAndOpensARunInCompare() {
    QVERIFY(window_->open_trace(kSample));
    LiveDock* dock = window_->live_dock();
    dock->show();
    QSignalSpy runs(dock, &LiveDock::rescue_run_ready);
    QSignalSpy done(dock, &LiveDock::rescue_finished);
    dock->rescue_search();
    QVERIFY(done.wait(300000) || done.count() > 0);
    QVERIFY2(done.first().at(0).toBool(), qPrintable(dock->error_text()));

    TraceRunHere here(*reader_);
    auto& session = here.session;
    const int64_t nb = here.nb, ne = here.ne;
    const record::RescueResult r =
        record::rescue_needle(session, record::policy_from_trace(reader_->metadata()),
                              record::sampling_from_trace(reader_->metadata()), nb, ne,
                              out_.filePath("rescue_check").toStdString(),
                              static_cast<int>(2 + here.model->spec.n_layers));
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
void StudioTest::rescueManualLayersAndCancel() {
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
        QVERIFY2(runs.count() >= 1 && runs.count() <= 3, qPrintable(QString::number(runs.count())));
        QCOMPARE(dock->rescue_runs().size(), static_cast<size_t>(runs.count()));
        QVERIFY(dock->rescue_summary().startsWith("cancelled after"));
        QVERIFY(!dock->busy());
        QVERIFY(!dock->forensics().busy);
    }
}

// A trace whose model cannot be found: an error in the view and the dock, no crash.
void StudioTest::forensicsWithoutTheModelShowAnError() {
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
