// The Studio's data layer without a display: HeadHistory (cache state over steps rebuilt from
// events), ReaderTraceModel against the trace reader's own reconstruction, and the synthetic
// sample generator.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include "core/error.h"
#include "core/probes/norm_attention.h"
#include "tests/gui/views_test_harness.h"
#include "traces/synthetic/synthetic_trace.h"
#include "traces/trace_reader.h"
#include "views/head_history.h"
#include "views/reader_trace_model.h"

namespace kvscope::views {
namespace {

namespace fs = std::filesystem;
using trace::CacheOp;
using trace::EventRecord;

fs::path temp_path(const std::string& name) {
    return scratch_path("kvscope_gui_model_test", name);
}

EventRecord ev(int32_t step, CacheOp op, int32_t pos, int32_t dest = -1, float w = 0.0f,
               int8_t bits = 16) {
    EventRecord e;
    e.step = step;
    e.op = op;
    e.position = pos;
    e.destination = dest;
    e.weight = w;
    e.bits = bits;
    return e;
}

// Step 0: six appends; a merge run (2 -> slot 1, 4 -> slot 2, slots counted after both sources
// left: held [0,1,3,5] so slot 1 = position 1, slot 2 = position 3); evict 5; quantise 3 to 4
// bits. Step 1: append 6, demote 0 to 2 bits, evict 1.
HeadHistory hand_made_history() {
    HeadHistory h(2, 1);
    const std::vector<EventRecord> s0 = {
        ev(0, CacheOp::kAppend, 0, 0),         ev(0, CacheOp::kAppend, 1, 1),
        ev(0, CacheOp::kAppend, 2, 2),         ev(0, CacheOp::kAppend, 3, 3),
        ev(0, CacheOp::kAppend, 4, 4),         ev(0, CacheOp::kAppend, 5, 5),
        ev(0, CacheOp::kMerge, 2, 1, 0.5f, 0), ev(0, CacheOp::kMerge, 4, 2, 0.25f, 0),
        ev(0, CacheOp::kEvict, 5, -1, 0, 0),   ev(0, CacheOp::kQuantize, 3, -1, 0, 4)};
    const std::vector<EventRecord> s1 = {ev(1, CacheOp::kAppend, 6, 4),
                                         ev(1, CacheOp::kDemote, 0, -1, 0, 2),
                                         ev(1, CacheOp::kEvict, 1, -1, 0, 0)};
    h.apply_step(s0);
    h.apply_step(s1);
    return h;
}

TEST(HeadHistory, StatesAfterEachStep) {
    const HeadHistory h = hand_made_history();
    EXPECT_EQ(h.steps(), 2);
    EXPECT_EQ(h.tokens(), 7);
    EXPECT_EQ(h.state_at(0, 0).state, TokenCacheState::kHeld);
    EXPECT_EQ(h.state_at(0, 0).bits, 16);
    EXPECT_EQ(h.state_at(0, 1).state, TokenCacheState::kDemoted);
    EXPECT_EQ(h.state_at(0, 1).bits, 2);
    EXPECT_EQ(h.state_at(1, 0).state, TokenCacheState::kHeld);
    EXPECT_EQ(h.state_at(1, 1).state, TokenCacheState::kEvicted);
    EXPECT_EQ(h.state_at(3, 0).state, TokenCacheState::kQuantized);
    EXPECT_EQ(h.state_at(3, 0).bits, 4);
    EXPECT_EQ(h.state_at(5, 0).state, TokenCacheState::kEvicted);
    EXPECT_EQ(h.state_at(6, 0).state, TokenCacheState::kAbsent);
    EXPECT_EQ(h.state_at(6, 1).state, TokenCacheState::kHeld);
    EXPECT_EQ(h.state_at(99, 1).state, TokenCacheState::kAbsent);
    // Beyond the last step answers for the last step.
    EXPECT_EQ(h.state_at(1, 50).state, TokenCacheState::kEvicted);
}

TEST(HeadHistory, MergeDestinationsResolveSlotsToPositions) {
    const HeadHistory h = hand_made_history();
    const CacheChange m2 = h.state_at(2, 0);
    EXPECT_EQ(m2.state, TokenCacheState::kMerged);
    EXPECT_EQ(m2.into, 1);
    EXPECT_FLOAT_EQ(m2.weight, 0.5f);
    const CacheChange m4 = h.state_at(4, 1);
    EXPECT_EQ(m4.state, TokenCacheState::kMerged);
    EXPECT_EQ(m4.into, 3);
    EXPECT_FLOAT_EQ(m4.weight, 0.25f);
}

TEST(HeadHistory, RecordedDestinationPositionWinsOverTheSlot) {
    HeadHistory h(0, 0);
    std::vector<EventRecord> s0 = {ev(0, CacheOp::kAppend, 0, 0), ev(0, CacheOp::kAppend, 1, 1),
                                   ev(0, CacheOp::kAppend, 2, 2),
                                   ev(0, CacheOp::kMerge, 1, 0, 0.5f, 0)};
    s0.back().dst_position = 2;  // the slot (0) would say position 0
    h.apply_step(s0);
    EXPECT_EQ(h.state_at(1, 0).into, 2);
}

TEST(HeadHistory, CountsPerStep) {
    const HeadHistory h = hand_made_history();
    // After step 0: held 0 (16), 1 (16), 3 (4) -> 3 tokens, 36 bits; 6 seen, 2 merged, 1 evicted.
    EXPECT_EQ(h.appended(0), 6);
    EXPECT_EQ(h.held(0), 3);
    EXPECT_EQ(h.held_bits(0), 36);
    EXPECT_EQ(h.merged(0), 2);
    EXPECT_EQ(h.evicted(0), 1);
    // After step 1: held 0 (2), 3 (4), 6 (16) -> 22 bits; 1 evicted more.
    EXPECT_EQ(h.appended(1), 7);
    EXPECT_EQ(h.held(1), 3);
    EXPECT_EQ(h.held_bits(1), 22);
    EXPECT_EQ(h.evicted(1), 2);
    EXPECT_EQ(h.held(-1), 0);
}

TEST(HeadHistory, ChangesListInStepOrder) {
    const HeadHistory h = hand_made_history();
    const std::vector<CacheChange> c = h.changes(0);
    ASSERT_EQ(c.size(), 2u);
    EXPECT_EQ(c[0].step, 0);
    EXPECT_EQ(c[0].state, TokenCacheState::kHeld);
    EXPECT_EQ(c[1].step, 1);
    EXPECT_EQ(c[1].state, TokenCacheState::kDemoted);
    EXPECT_TRUE(h.changes(42).empty());
}

TEST(HeadHistory, IgnoresEventsForTokensNotHeld) {
    HeadHistory h(0, 0);
    const std::vector<EventRecord> s0 = {
        ev(0, CacheOp::kAppend, 0, 0), ev(0, CacheOp::kEvict, 0), ev(0, CacheOp::kEvict, 0),
        ev(0, CacheOp::kQuantize, 3, -1, 0, 4), ev(0, CacheOp::kAppend, -5, 0)};
    h.apply_step(s0);
    EXPECT_EQ(h.held(0), 0);
    EXPECT_EQ(h.evicted(0), 1);  // the second evict of an evicted token does not count
    EXPECT_EQ(h.state_at(3, 0).state, TokenCacheState::kAbsent);
}

// ---- ReaderTraceModel on the bundled sample trace -------------------------------------------

class SampleTraceTest : public ::testing::Test {
  protected:
    void SetUp() override { ASSERT_TRUE(fs::exists(kSample)) << kSample; }
};

TEST_F(SampleTraceTest, SummaryMatchesTheReader) {
    ReaderTraceModel model(kSample);
    trace::TraceReader reader(kSample);
    const TraceSummary& s = model.summary();
    EXPECT_EQ(s.n_layers, reader.info().n_layers);
    EXPECT_EQ(s.n_heads, reader.info().n_heads);
    EXPECT_EQ(s.n_prompt_tokens, reader.info().n_prompt_tokens);
    EXPECT_EQ(s.n_steps, reader.info().n_steps);
    EXPECT_EQ(s.n_tokens, reader.info().n_tokens);
    EXPECT_EQ(s.policy, reader.metadata().policy);
    EXPECT_EQ(s.state, trace::RunState::kComplete);
    EXPECT_FALSE(s.live);
    const auto tokens = reader.tokens(0, s.n_tokens);
    for (int64_t t = 0; t < s.n_tokens; ++t) {
        EXPECT_EQ(model.token_text(t), tokens[static_cast<size_t>(t)].piece) << t;
        EXPECT_EQ(model.token_id(t), tokens[static_cast<size_t>(t)].id) << t;
    }
    EXPECT_TRUE(model.token_text(s.n_tokens).empty());
    EXPECT_EQ(model.take_error(), "");
}

// Every token state the views show equals the reader's own reconstruction (apply_events).
TEST_F(SampleTraceTest, HistoriesAgreeWithReaderTokenStates) {
    ReaderTraceModel model(kSample);
    trace::TraceReader reader(kSample);
    const TraceSummary& s = model.summary();
    int compared = 0;
    for (int32_t l = 0; l < s.n_layers; ++l) {
        for (int32_t h = 0; h < s.n_heads; ++h) {
            const auto history = model.history(l, h, Load::kNow);
            ASSERT_NE(history, nullptr);
            for (int64_t step : {int64_t{0}, s.n_steps / 2, s.n_steps - 1}) {
                const auto states = reader.token_states(l, h, step);
                int64_t held = 0;
                for (size_t t = 0; t < states.size(); ++t) {
                    const CacheChange c = history->state_at(static_cast<int64_t>(t), step);
                    ASSERT_EQ(c.state, states[t].state)
                        << "l" << l << " h" << h << " s" << step << " t" << t;
                    if (is_held(c.state)) {
                        EXPECT_EQ(c.bits, states[t].bits);
                        ++held;
                    }
                    if (c.state == TokenCacheState::kMerged) {
                        EXPECT_FLOAT_EQ(c.weight, states[t].weight);
                        EXPECT_EQ(c.into, states[t].merged_into);
                    }
                    ++compared;
                }
                EXPECT_EQ(history->held(step), held);
            }
        }
    }
    EXPECT_GT(compared, 10000);
}

// A merge target is a token the cache still held when the merge happened.
TEST_F(SampleTraceTest, MergeTargetsAreHeldTokens) {
    ReaderTraceModel model(kSample);
    const TraceSummary& s = model.summary();
    int merges = 0;
    for (int32_t l = 0; l < s.n_layers; ++l) {
        for (int32_t h = 0; h < s.n_heads; ++h) {
            const auto history = model.history(l, h, Load::kNow);
            for (int64_t t = 0; t < history->tokens(); ++t) {
                for (const CacheChange& c : history->changes(t)) {
                    if (c.state != TokenCacheState::kMerged) continue;
                    ++merges;
                    ASSERT_GE(c.into, 0) << "l" << l << " h" << h << " t" << t;
                    ASSERT_NE(c.into, t);
                    EXPECT_TRUE(is_held(history->state_at(c.into, c.step).state))
                        << "l" << l << " h" << h << " t" << t << " into " << c.into;
                }
            }
        }
    }
    EXPECT_GT(merges, 100);
}

TEST_F(SampleTraceTest, TablesMatchTheReader) {
    ReaderTraceModel model(kSample);
    trace::TraceReader reader(kSample);
    const TraceSummary& s = model.summary();
    const auto spearman = reader.spearman();
    const auto bytes = reader.bytes_held(0, s.n_steps);
    for (int32_t l = 0; l < s.n_layers; ++l) {
        for (int32_t h = 0; h < s.n_heads; ++h) {
            EXPECT_FLOAT_EQ(model.spearman(l, h), spearman[static_cast<size_t>(l * s.n_heads + h)]);
            for (int64_t st = 0; st < s.n_steps; st += 5) {
                EXPECT_EQ(model.budget(st, l, h),
                          reader.budgets(st)[static_cast<size_t>(l * s.n_heads + h)]);
                EXPECT_FLOAT_EQ(
                    model.needle_survival(0, st, l, h),
                    reader.needle_survival(0, st, st + 1)[static_cast<size_t>(l * s.n_heads + h)]);
            }
        }
        for (int64_t st = 0; st < s.n_steps; ++st) {
            EXPECT_EQ(model.bytes_held(st, l), bytes[static_cast<size_t>(st * s.n_layers + l)]);
        }
    }
    EXPECT_TRUE(model.has_budgets());
    EXPECT_EQ(model.answer_found(0), 0);  // the D2O sample loses its needle (make_sample.sh)
    // Out of range answers "not recorded", never throws.
    EXPECT_EQ(model.budget(-1, 0, 0), -1);
    EXPECT_EQ(model.bytes_held(s.n_steps, 0), -1);
    EXPECT_TRUE(std::isnan(model.spearman(s.n_layers, 0)));
    EXPECT_TRUE(std::isnan(model.needle_survival(5, 0, 0, 0)));
    EXPECT_EQ(model.history(s.n_layers, 0, Load::kNow), nullptr);
}

TEST_F(SampleTraceTest, LaterLoadsFillInThroughLoadPending) {
    ReaderTraceModel model(kSample);
    EXPECT_EQ(model.history(3, 1, Load::kLater), nullptr);
    EXPECT_TRUE(model.has_pending());
    EXPECT_FALSE(model.load_pending(1e6));
    EXPECT_FALSE(model.has_pending());
    EXPECT_NE(model.history(3, 1, Load::kLater), nullptr);
}

TEST_F(SampleTraceTest, HistoryCacheStaysWithinItsBudget) {
    // A budget smaller than one history keeps only the newest one.
    ReaderTraceModel model(kSample, 1);
    const auto a = model.history(2, 0, Load::kNow);
    const auto b = model.history(3, 0, Load::kNow);
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    EXPECT_LE(model.cached_history_bytes(), b->memory_bytes());
    EXPECT_EQ(a->held(0), model.history(2, 0, Load::kNow)->held(0));  // re-read, same answer
}

// ---- Errors ---------------------------------------------------------------------------------

TEST(ReaderTraceModelErrors, MissingAndGarbageFilesNameTheFile) {
    const fs::path missing = temp_path("does_not_exist.kvtrace.h5");
    fs::remove(missing);
    try {
        ReaderTraceModel m(missing);
        FAIL() << "opened a missing file";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("does_not_exist.kvtrace.h5"), std::string::npos)
            << e.what();
    }
    const fs::path garbage = temp_path("garbage.kvtrace.h5");
    std::ofstream(garbage) << "this is not an HDF5 file at all";
    try {
        ReaderTraceModel m(garbage);
        FAIL() << "opened a garbage file";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("garbage.kvtrace.h5"), std::string::npos) << e.what();
    }
}

TEST(ReaderTraceModelErrors, TruncatedTraceNeverCrashes) {
    const fs::path cut = temp_path("truncated.kvtrace.h5");
    fs::copy_file(kSample, cut, fs::copy_options::overwrite_existing);
    fs::resize_file(cut, fs::file_size(kSample) * 2 / 3);
    try {
        ReaderTraceModel m(cut);
        // If it opens, every accessor answers without throwing.
        for (int32_t l = 0; l < m.summary().n_layers; ++l) {
            (void)m.history(l, 0, Load::kNow);
            (void)m.key_norm(l, 0);
        }
        (void)m.take_error();
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("truncated.kvtrace.h5"), std::string::npos)
            << e.what();
    }
}

// ---- Synthetic generator --------------------------------------------------------------------

TEST(SyntheticTrace, WritesAValidTraceWithConsistentStatistics) {
    const fs::path path = temp_path("synthetic.kvtrace.h5");
    fs::remove(path);  // the writer never overwrites (a previous run's file)
    trace::SyntheticSpec spec;
    spec.n_layers = 6;
    spec.n_heads = 2;
    spec.n_steps = 10;
    trace::write_synthetic_trace(path, spec);
    trace::TraceReader reader(path);
    EXPECT_TRUE(reader.validate().empty());
    EXPECT_EQ(reader.info().n_layers, 6);
    EXPECT_EQ(reader.info().n_steps, 10);
    EXPECT_EQ(reader.info().state, trace::RunState::kComplete);
    ASSERT_EQ(reader.spans().size(), 1u);
    EXPECT_EQ(reader.answer_found()[0], 1);  // the answer pieces spell 48213
    // Recorded Spearman equals the probe recomputed from the recorded arrays (tolerance: float
    // rounding of the stored value).
    const auto rho = reader.spearman();
    for (int32_t l = 0; l < 6; ++l) {
        for (int32_t h = 0; h < 2; ++h) {
            const double expect =
                key_norm_attention_spearman(reader.key_norm(l, h), reader.attn_received(l, h));
            EXPECT_NEAR(rho[static_cast<size_t>(l * 2 + h)], expect, 1e-6);
        }
    }
    // Deep layers: low key norm goes with high attention (rho > 0.3); layers 0-1 hardly at all.
    EXPECT_GT(rho[static_cast<size_t>(5 * 2)], 0.3f);
    EXPECT_LT(std::abs(rho[0]), 0.3f);
    // Same spec, same file contents (deterministic generator).
    const fs::path again = temp_path("synthetic_again.kvtrace.h5");
    fs::remove(again);
    trace::write_synthetic_trace(again, spec);
    trace::TraceReader reader2(again);
    EXPECT_EQ(reader2.events(0, 10).size(), reader.events(0, 10).size());
    EXPECT_EQ(reader2.key_norm(3, 1), reader.key_norm(3, 1));
}

}  // namespace
}  // namespace kvscope::views

namespace kvscope::views {
namespace {

// A trace written by another process while the model follows it (SWMR): refresh() picks up
// every step until the run ends.
TEST(ReaderTraceModelLive, FollowsATraceWhileItIsWritten) {
    const fs::path path = temp_path("live_model.kvtrace.h5");
    fs::remove(path);
    const std::string cmd = std::string("\"") + KVSCOPE_SYNTHETIC_TOOL + "\" --out \"" +
                            path.string() + "\" --layers 3 --heads 2 --steps 12 --delay-ms 150 &";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    std::unique_ptr<ReaderTraceModel> model;
    std::string last_error;
    const auto start = std::chrono::steady_clock::now();
    auto elapsed = [&] { return std::chrono::steady_clock::now() - start; };
    while (!model && elapsed() < std::chrono::seconds(15)) {
        try {
            model = std::make_unique<ReaderTraceModel>(path);
        } catch (const std::exception& e) {
            last_error = e.what();
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
    ASSERT_NE(model, nullptr) << last_error;
    const bool opened_live = model->summary().live;
    const int64_t first_steps = model->summary().n_steps;
    while (model->summary().state == trace::RunState::kRunning &&
           elapsed() < std::chrono::seconds(20)) {
        model->refresh();
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(model->summary().n_steps, 12) << "opened live " << opened_live << " with "
                                            << first_steps << " steps; " << model->take_error();
    EXPECT_EQ(model->summary().state, trace::RunState::kComplete);
    const auto h = model->history(2, 1, Load::kNow);
    ASSERT_NE(h, nullptr);
    EXPECT_EQ(h->steps(), 12);
}

}  // namespace
}  // namespace kvscope::views
