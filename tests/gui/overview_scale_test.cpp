// Issue 18: the layer x head overview at scale. The per-head counts it draws come from the trace's
// /summary rows (written by the writer's HeadCounter) or, for traces without them, from replayed
// histories kept apart from the history LRU. Checked here: the counter agrees exactly with
// HeadHistory (random event streams with the awkward cases, and a synthetic trace through the
// writer); the overview is complete on its first frame with /summary, and within L*H
// load_pending calls without it even when the history cache holds less than one head (before,
// loads evicted each other and the overview never completed once the histories outgrew the cache).
// Traces stay small (seconds under ASan): the bound is scaled, not the trace.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "tests/gui/views_test_harness.h"
#include "traces/head_counts.h"
#include "traces/synthetic/synthetic_trace.h"
#include "traces/trace_reader.h"
#include "views/head_history.h"
#include "views/headless_imgui.h"
#include "views/layer_head_view.h"
#include "views/reader_trace_model.h"

namespace kvscope::views {
namespace {

namespace fs = std::filesystem;
using trace::CacheOp;
using trace::EventRecord;

fs::path temp_path(const std::string& name) {
    return scratch_path("kvscope_overview_scale_test", name);
}

void expect_counts(const HeadHistory& h, int64_t step, const trace::HeadCountRow& row, size_t i,
                   const std::string& where) {
    EXPECT_EQ(h.appended(step), row.appended[i]) << where;
    EXPECT_EQ(h.held(step), row.held[i]) << where;
    EXPECT_EQ(h.held_bits(step), row.held_bits[i]) << where;
    EXPECT_EQ(h.merged(step), row.merged[i]) << where;
    EXPECT_EQ(h.evicted(step), row.evicted[i]) << where;
}

// Random steps over 2 layers x 2 heads with what real policies rarely do: merges of tokens never
// seen, a source named twice in one merge run, evicting / quantising what is not held, appends
// over held tokens, bits <= 0. Step 0 appends only part of the prompt (the rest is implicit).
TEST(HeadCounter, AgreesWithHeadHistoryOnRandomEvents) {
    constexpr int32_t L = 2, H = 2;
    constexpr int64_t P = 40, S = 25;
    std::mt19937 rng(18);
    trace::HeadCounter counter(L, H, P);
    std::vector<HeadHistory> histories;
    for (int32_t l = 0; l < L; ++l)
        for (int32_t h = 0; h < H; ++h) histories.emplace_back(l, h);
    for (int64_t s = 0; s < S; ++s) {
        std::vector<EventRecord> step;  // grouped by (layer, head), as the writer stores them
        for (int32_t lh = 0; lh < L * H; ++lh) {
            const int n = static_cast<int>(rng() % 30);
            for (int i = 0; i < n; ++i) {
                EventRecord e;
                e.step = static_cast<int32_t>(s);
                e.layer = lh / H;
                e.head = lh % H;
                e.op = static_cast<CacheOp>(rng() % trace::kNumCacheOps);
                // Mostly valid positions, a few outside the context of the step or negative.
                const int64_t context = P + s;
                e.position = static_cast<int32_t>(
                    rng() % 20 == 0 ? -1
                                    : static_cast<int64_t>(rng() % static_cast<uint32_t>(context)));
                e.bits = static_cast<int8_t>(static_cast<int>(rng() % 20) - 2);
                e.weight = 0.5f;
                e.dst_position = static_cast<int32_t>(rng() % P);
                step.push_back(e);
                if (e.op == CacheOp::kMerge && rng() % 3 == 0) step.push_back(e);  // named twice
            }
        }
        counter.apply_step(step);
        for (int32_t lh = 0; lh < L * H; ++lh) {
            std::vector<EventRecord> mine;
            for (const EventRecord& e : step)
                if (e.layer * H + e.head == lh) mine.push_back(e);
            HeadHistory& h = histories[static_cast<size_t>(lh)];
            if (s == 0)
                h.apply_step(trace::with_prompt_appends(mine, lh / H, lh % H, P));
            else
                h.apply_step(mine);
            expect_counts(h, s, counter.row(), static_cast<size_t>(lh),
                          "step " + std::to_string(s) + " head " + std::to_string(lh));
        }
    }
    // The check above must be able to fail: the streams did change every count.
    const trace::HeadCountRow& last = counter.row();
    for (size_t i = 0; i < last.held.size(); ++i) {
        EXPECT_GT(last.merged[i], 0);
        EXPECT_GT(last.evicted[i], 0);
        EXPECT_GT(last.appended[i], last.held[i]);
    }
}

trace::SyntheticSpec small_spec() {
    trace::SyntheticSpec spec;
    spec.n_layers = 5;
    spec.n_heads = 3;
    spec.n_prompt_tokens = 700;
    spec.n_steps = 13;  // demotions every 4th step, merges and evictions every step
    spec.budget_ratio = 0.3;
    return spec;
}

TEST(HeadCounter, WriterSummaryMatchesReplayedHistories) {
    const fs::path path = temp_path("summary.kvtrace.h5");
    fs::remove(path);
    trace::write_synthetic_trace(path, small_spec());
    trace::TraceReader reader(path);
    ASSERT_TRUE(reader.has_head_counts());
    ReaderTraceModel model(path);
    const TraceSummary& s = model.summary();
    for (int64_t step = 0; step < s.n_steps; ++step) {
        const trace::HeadCountRow row = reader.head_counts(step);
        ASSERT_EQ(row.held.size(), static_cast<size_t>(s.n_layers * s.n_heads));
        for (int32_t l = 0; l < s.n_layers; ++l) {
            for (int32_t h = 0; h < s.n_heads; ++h) {
                const auto hist = model.history(l, h, Load::kNow);
                ASSERT_NE(hist, nullptr);
                expect_counts(*hist, step, row,
                              static_cast<size_t>(l) * static_cast<size_t>(s.n_heads) +
                                  static_cast<size_t>(h),
                              "L" + std::to_string(l) + " h" + std::to_string(h) + " step " +
                                  std::to_string(step));
            }
        }
    }
    // Compressed layers really evict and merge, so equal counts are not equal zeros.
    const trace::HeadCountRow last = reader.head_counts(s.n_steps - 1);
    EXPECT_GT(last.evicted[static_cast<size_t>(2 * s.n_heads)], 0);
    EXPECT_GT(last.merged[static_cast<size_t>(2 * s.n_heads)], 0);
    fs::remove(path);
}

// Draws the overview until nothing is pending, loading with a zero budget between frames (each
// call then loads exactly one head). Returns the number of load_pending calls, -1 past `limit`.
int calls_until_complete(ReaderTraceModel& model, int limit) {
    HeadlessImGui im(1280, 800);
    LayerHeadView view;
    ViewState state;
    state.step = model.summary().n_steps - 1;
    const Theme& theme = views::theme(ThemeKind::kDark);
    im.frame(view, model, state, theme);
    int calls = 0;
    while (model.has_pending()) {
        if (calls >= limit) return -1;
        model.load_pending(0.0);
        ++calls;
        im.frame(view, model, state, theme);
    }
    return calls;
}

void expect_cells_match_histories(const ReaderTraceModel& model) {
    const TraceSummary& s = model.summary();
    const int64_t step = s.n_steps - 1;
    ReaderTraceModel fresh(s.path);
    for (int32_t l = 0; l < s.n_layers; ++l) {
        for (int32_t h = 0; h < s.n_heads; ++h) {
            const float v = LayerHeadView::cell_value(model, LayerHeadView::Metric::kFractionKept,
                                                      l, h, step, 0.0);
            const auto hist = fresh.history(l, h, Load::kNow);
            ASSERT_NE(hist, nullptr);
            const float want = hist->appended(step) > 0
                                   ? static_cast<float>(hist->held(step)) /
                                         static_cast<float>(hist->appended(step))
                                   : 0.0f;
            EXPECT_FLOAT_EQ(v, want) << "L" << l << " h" << h;
        }
    }
}

TEST(OverviewAtScale, CompleteOnTheFirstFrameWithSummary) {
    const fs::path path = temp_path("overview.kvtrace.h5");
    fs::remove(path);
    trace::write_synthetic_trace(path, small_spec());
    ReaderTraceModel model(path, /*history_cache_bytes=*/1);
    EXPECT_EQ(calls_until_complete(model, 0), 0);
    EXPECT_EQ(model.cached_history_bytes(), 0u);  // no history was read for it
    expect_cells_match_histories(model);
    fs::remove(path);
}

TEST(OverviewAtScale, CompleteWithinLayersTimesHeadsLoadsWithoutSummary) {
    // The old sample predates /summary (schema version 1 as first written): counts come from
    // replayed histories. A 1-byte history cache stands in for a trace whose histories outgrow
    // the cache (64k tokens x 256 heads against the default 1 GB).
    ReaderTraceModel model(kOldSample, /*history_cache_bytes=*/1);
    ASSERT_FALSE(model.reader().has_head_counts());
    const TraceSummary& s = model.summary();
    const int bound = s.n_layers * s.n_heads;  // one head per call
    const int calls = calls_until_complete(model, bound);
    EXPECT_GE(calls, 1);
    EXPECT_LE(calls, bound) << "the overview did not complete within " << bound << " loads";
    EXPECT_FALSE(model.has_pending());
    EXPECT_LE(model.cached_history_bytes(), size_t{1});  // counts-only loads cache no history
    expect_cells_match_histories(model);
}

TEST(HistoryCacheAtScale, AWorkingSetLargerThanTheCacheCompletesWithinItsBudget) {
    // A view that needs every head's history each frame (the precision view over all heads)
    // with a cache of about three histories: loads stop when every cached history was shown in
    // the last frame, instead of evicting what the next frame asks for again.
    ReaderTraceModel probe(kSample);
    const size_t one = probe.history(2, 0, Load::kNow)->memory_bytes();
    ReaderTraceModel model(kSample, 3 * one);
    const TraceSummary& s = model.summary();
    const int n = s.n_layers * s.n_heads;
    auto frame = [&] {  // what the view asks for in one frame; returns the heads it got
        int got = 0;
        for (int32_t l = 0; l < s.n_layers; ++l)
            for (int32_t h = 0; h < s.n_heads; ++h)
                got += model.history(l, h, Load::kLater) ? 1 : 0;
        return got;
    };
    int calls = 0;
    int got = frame();
    while (model.has_pending() && calls < 2 * n) {
        model.load_pending(0.0);  // one history per call
        ++calls;
        got = frame();
    }
    EXPECT_FALSE(model.has_pending()) << "still loading after " << calls << " calls";
    EXPECT_LE(calls, n);
    EXPECT_GE(got, 2);  // what fits is shown
    EXPECT_LT(got, n);
    EXPECT_EQ(model.deferred_histories(), static_cast<size_t>(n - got));
    EXPECT_LE(model.cached_history_bytes(), 4 * one + one / 2);  // the budget + one history
    // The selection (kNow) is always loaded; once the view stops asking, deferred heads load.
    EXPECT_NE(model.history(s.n_layers - 1, s.n_heads - 1, Load::kNow), nullptr);
    model.load_pending(0.0);  // a frame in which nothing was shown
    model.load_pending(0.0);
    EXPECT_EQ(model.deferred_histories(), 0u);
    EXPECT_EQ(model.history(0, 0, Load::kLater), nullptr);  // evicted or never loaded: queued
    EXPECT_TRUE(model.has_pending());
    model.load_pending(1e6);
    EXPECT_NE(model.history(0, 0, Load::kLater), nullptr);
}

}  // namespace
}  // namespace kvscope::views
