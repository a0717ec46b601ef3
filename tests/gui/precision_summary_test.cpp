// Issue 18: the precision view from the record-time token states (/summary/prompt_state + the
// events of steps >= 1, views/head_states.h) instead of replayed histories. Checked here:
//   - the writer's prompt_state_codes and HeadStates agree with HeadHistory on every token and
//     step of random event streams with the awkward cases (unit level, no file);
//   - on runs recorded by `kvscope run` (demo model; MiKV quantises, D2O merges from step 1) the
//     view draws the same picture from the summary as from the replay, at every step, scrubbing
//     and rebuilt, one head and all heads, and each one-token column has the colour of
//     TraceReader::token_states (a third implementation of the rules);
//   - traces without the summary (the bundled sample, a schema version 1 fixture) still draw a
//     complete picture from the replay, with the reader's colours.
#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <set>
#include <string>

#include "traces/token_state_code.h"
#include "traces/trace_reader.h"
#include "views/head_history.h"
#include "views/head_states.h"
#include "views/headless_imgui.h"
#include "views/precision_view.h"
#include "views/reader_trace_model.h"

namespace kvscope::views {
namespace {

namespace fs = std::filesystem;
using trace::CacheOp;
using trace::EventRecord;

const fs::path kSource = KVSCOPE_SOURCE_DIR;

// The recorded runs' folder, removed when the test program exits.
const fs::path& temp_dir() {
    static const std::unique_ptr<const fs::path, void (*)(const fs::path*)> dir(
        new fs::path(fs::temp_directory_path() /
                     ("kvscope_precision_summary_" + std::to_string(::getpid()))),
        [](const fs::path* p) {
            std::error_code ec;
            fs::remove_all(*p, ec);
            delete p;
        });
    fs::create_directories(*dir);
    return *dir;
}

// A run of the demo model recorded by the CLI (the real writer, real policy events).
fs::path record(const std::string& name, const std::string& policy_args) {
    fs::path out = temp_dir() / (name + ".kvtrace.h5");
    if (fs::exists(out)) return out;
    const std::string cmd = std::string(KVSCOPE_CLI_EXE) + " run --model " +
                            (kSource / "resources/models/kvscope-demo").string() +
                            " --scenario niah --length 384 --depth 0.5 --max-new 8 --threads 2 "
                            "--quiet " +
                            policy_args + " --trace " + out.string() + " > /dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return out;
}

void expect_same_state(const CacheChange& got, const CacheChange& want, const std::string& where) {
    ASSERT_EQ(got.state, want.state) << where;
    // Codes keep 5 bits of precision (token_state_code.h); every event here stays below 32.
    ASSERT_EQ(got.bits, std::min<int8_t>(want.bits, 31)) << where;
}

// Random steps over 2 layers x 2 heads: merges of tokens never seen, a source named twice,
// evicting / quantising what is not held, appends over held tokens (some of the prompt appended
// at step 0 itself), bits <= 0, negative positions.
TEST(HeadStates, AgreeWithHeadHistoryOnRandomEvents) {
    constexpr int32_t L = 2, H = 2;
    constexpr int64_t P = 48, S = 20;
    std::mt19937 rng(1818);
    std::vector<std::vector<EventRecord>> steps(S);
    for (int64_t s = 0; s < S; ++s) {
        for (int32_t lh = 0; lh < L * H; ++lh) {
            const int n = static_cast<int>(rng() % (s == 0 ? 60 : 12));
            for (int i = 0; i < n; ++i) {
                EventRecord e;
                e.step = static_cast<int32_t>(s);
                e.layer = lh / H;
                e.head = lh % H;
                e.op = static_cast<CacheOp>(rng() % trace::kNumCacheOps);
                e.position = static_cast<int32_t>(
                    rng() % 25 == 0 ? -1
                                    : static_cast<int64_t>(rng() % static_cast<uint32_t>(P + s)));
                e.bits = static_cast<int8_t>(static_cast<int>(rng() % 20) - 2);
                e.dst_position = static_cast<int32_t>(rng() % P);
                steps[static_cast<size_t>(s)].push_back(e);
                if (e.op == CacheOp::kMerge && rng() % 3 == 0)
                    steps[static_cast<size_t>(s)].push_back(e);
            }
        }
    }
    const std::vector<trace::TokenStateCode> codes = trace::prompt_state_codes(steps[0], L, H, P);
    ASSERT_EQ(std::ssize(codes), L * H * P);
    for (int32_t l = 0; l < L; ++l) {
        for (int32_t h = 0; h < H; ++h) {
            auto own = [&](int64_t s) {
                std::vector<EventRecord> v;
                for (const EventRecord& e : steps[static_cast<size_t>(s)])
                    if (e.layer == l && e.head == h) v.push_back(e);
                return v;
            };
            HeadHistory history(l, h);
            history.apply_step(own(0), P);
            const auto row = codes.begin() + (static_cast<int64_t>(l) * H + h) * P;
            HeadStates states(l, h, std::vector<trace::TokenStateCode>(row, row + P));
            for (int64_t s = 1; s < S; ++s) {
                history.apply_step(own(s));
                states.apply_step(own(s));
            }
            ASSERT_EQ(states.steps(), S);
            for (int64_t s = 0; s < S; ++s) {
                std::set<int64_t> changed;
                for (auto [b, e] = states.step_changes(s); b < e; ++b)
                    changed.insert(states.change_token(b));
                for (int64_t t = 0; t < P + S; ++t) {
                    const std::string where = "L" + std::to_string(l) + " H" + std::to_string(h) +
                                              " step " + std::to_string(s) + " token " +
                                              std::to_string(t);
                    expect_same_state(states.state_at(t, s), history.state_at(t, s), where);
                    // Every token whose colour differs from the step before is in step_changes.
                    if (s > 0 && !changed.count(t)) {
                        const CacheChange a = states.state_at(t, s - 1), b = states.state_at(t, s);
                        EXPECT_TRUE(a.state == b.state && a.bits == b.bits) << where;
                    }
                }
            }
        }
    }
}

// Draws `view` until the model has nothing left to load, then once more; returns the pixels.
std::vector<uint32_t> settle(HeadlessImGui& im, PrecisionView& view, ReaderTraceModel& model,
                             ViewState& state) {
    for (int i = 0; i < 50; ++i) {
        im.frame(view, model, state, theme(ThemeKind::kDark));
        if (!model.has_pending()) break;
        model.load_pending(1e6);
    }
    im.frame(view, model, state, theme(ThemeKind::kDark));
    EXPECT_FALSE(model.has_pending());
    const Raster& r = view.raster();
    std::vector<uint32_t> px;
    for (int y = 0; y < r.height(); ++y) px.insert(px.end(), r.row(y), r.row(y) + r.width());
    return px;
}

// Each raster column that holds exactly one token (one head shown) has that token's colour by
// TraceReader::token_states; returns the number of columns checked.
int expect_reader_colours(PrecisionView& view, const trace::TraceReader& reader,
                          const ViewState& state) {
    const Raster& r = view.raster();
    const trace::TraceInfo info = reader.info();
    const Theme& th = theme(ThemeKind::kDark);
    int checked = 0;
    for (int32_t l = 0; l < r.height(); ++l) {
        const std::vector<trace::TokenState> states =
            reader.token_states(l, state.head, state.step);
        for (int x = 0; x < r.width(); ++x) {
            const auto [t0, t1] = view.axis().column_tokens(x, r.width(), info.n_tokens);
            if (t1 - t0 != 1) continue;
            const ImU32 want = t0 < std::ssize(states)
                                   ? th.state_color(states[static_cast<size_t>(t0)].state,
                                                    states[static_cast<size_t>(t0)].bits)
                                   : th.state_color(TokenCacheState::kAbsent, 0);
            EXPECT_EQ(r.row(l)[x], want)
                << "layer " << l << " token " << t0 << " step " << state.step;
            if (r.row(l)[x] != want) return -1;
            ++checked;
        }
    }
    return checked;
}

void expect_summary_equals_replay(const fs::path& path, bool expect_quantised) {
    ReaderTraceModel fast(path);
    ReaderTraceModel replay(path);
    replay.use_prompt_states(false);
    ASSERT_TRUE(fast.reader().has_prompt_states()) << path << " was recorded without the summary";
    ASSERT_TRUE(fast.has_head_states());
    ASSERT_FALSE(replay.has_head_states());
    const TraceSummary& s = fast.summary();
    ASSERT_GE(s.n_steps, 2);
    std::set<uint32_t> colours;
    for (int32_t head : {1, -1}) {
        // One view per model kept across steps (scrubbing: update_step), and a fresh pair per
        // step (rebuild).
        HeadlessImGui im_a(1400, 600), im_b(1400, 600);
        PrecisionView scrub_a, scrub_b;
        for (int64_t step = 0; step < s.n_steps; ++step) {
            ViewState state;
            state.layer = 1;
            state.head = head;
            state.step = step;
            const std::vector<uint32_t> a = settle(im_a, scrub_a, fast, state);
            const std::vector<uint32_t> b = settle(im_b, scrub_b, replay, state);
            ASSERT_FALSE(a.empty());
            ASSERT_EQ(a, b) << path << " head " << head << " step " << step << " (scrubbing)";
            PrecisionView fresh_a, fresh_b;
            HeadlessImGui im_c(1400, 600), im_d(1400, 600);
            ASSERT_EQ(settle(im_c, fresh_a, fast, state), settle(im_d, fresh_b, replay, state))
                << path << " head " << head << " step " << step << " (rebuilt)";
            if (head >= 0) {
                EXPECT_GT(expect_reader_colours(fresh_a, fast.reader(), state), 100);
            }
            colours.insert(a.begin(), a.end());
        }
    }
    // The summary path never replayed a history.
    EXPECT_EQ(fast.cached_history_bytes(), 0u);
    EXPECT_GT(fast.cached_state_bytes(), 0u);
    EXPECT_GE(colours.size(), 3u);  // held, evicted or merged, and more: a picture, not a fill
    if (expect_quantised) {
        const Theme& th = theme(ThemeKind::kDark);
        bool low_bits = false;
        for (int b = 1; b < 16; ++b) low_bits = low_bits || colours.count(th.bits_color(b)) > 0;
        EXPECT_TRUE(low_bits) << "the MiKV run should show quantised tokens";
    }
    EXPECT_EQ(fast.take_error(), "");
}

TEST(PrecisionSummary, SameFromTheSummaryAsFromReplayOnRecordedMikvRun) {
    expect_summary_equals_replay(record("mikv", "--policy mikv --ratio 0.25"), true);
}

TEST(PrecisionSummary, SameFromTheSummaryAsFromReplayOnRecordedD2oRun) {
    // D2O compresses first at step 1: every change comes from the decode events.
    expect_summary_equals_replay(record("d2o", "--policy d2o --ratio 0.3"), false);
}

void expect_old_trace_draws(const fs::path& path) {
    ReaderTraceModel model(path);
    ASSERT_FALSE(model.reader().has_prompt_states()) << path;
    ASSERT_FALSE(model.has_head_states());
    const TraceSummary& s = model.summary();
    for (int32_t head : {0, -1}) {
        HeadlessImGui im(1400, 600);
        PrecisionView view;
        ViewState state;
        state.head = head;
        state.step = s.n_steps - 1;
        const std::vector<uint32_t> px = settle(im, view, model, state);
        const std::set<uint32_t> colours(px.begin(), px.end());
        EXPECT_FALSE(colours.count(theme(ThemeKind::kDark).missing)) << "a head never loaded";
        EXPECT_GE(colours.size(), 2u);
        if (head >= 0) {
            EXPECT_GT(expect_reader_colours(view, model.reader(), state), 100);
        }
    }
    EXPECT_GT(model.cached_history_bytes(), 0u);  // drawn from replayed histories
    EXPECT_EQ(model.take_error(), "");
}

TEST(PrecisionSummary, TracesWithoutTheSummaryStillDrawFromReplay) {
    expect_old_trace_draws(kSource / "tests/traces/old_samples/sample_mikv.kvtrace.h5");
    for (const auto& entry : fs::directory_iterator(kSource / "tests/traces/v1")) {
        if (entry.path().string().ends_with(".kvtrace.h5")) expect_old_trace_draws(entry.path());
    }
}

}  // namespace
}  // namespace kvscope::views
