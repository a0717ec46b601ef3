// TraceWriter behaviour beyond the round trip: argument checks, unwritable paths, ending states
// (complete, aborted, dropped without end), event stamping and ordering, back-pressure with a
// tiny queue, maps refused for long prompts, errors of the writer thread surfacing to the caller.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "tests/traces/trace_test_support.h"
#include "traces/synthetic/sample_trace.h"
#include "traces/trace_output.h"
#include "traces/trace_reader.h"
#include "traces/trace_writer.h"

namespace kvscope::trace {
namespace {

using testing::ScratchDir;

RunMetadata small_meta(int64_t prompt = 4) {
    RunMetadata m;
    m.n_layers = 2;
    m.n_heads = 2;
    m.n_prompt_tokens = prompt;
    m.top_k = 2;
    return m;
}

std::vector<TokenRecord> prompt_tokens(int64_t n) {
    std::vector<TokenRecord> t;
    for (int64_t i = 0; i < n; ++i)
        t.push_back({static_cast<int32_t>(i), "p" + std::to_string(i), TokenRole::kPrompt, 0});
    return t;
}

StepData step(int64_t s) {
    StepData d;
    d.record.step = s;
    d.record.token_id = 100 + static_cast<int32_t>(s);
    d.record.piece = "x";
    d.record.bytes_held = {10, 20};
    return d;
}

TEST(TraceWriter, RejectsBadArguments) {
    ScratchDir dir;
    {
        TraceWriter w(dir / "a.kvtrace.h5");
        RunMetadata m = small_meta();
        m.n_layers = 0;
        EXPECT_THROW(w.begin(m), std::invalid_argument);
    }
    TraceWriter w(dir / "b.kvtrace.h5");
    EXPECT_THROW(w.write_step(step(0)), std::invalid_argument);  // before begin
    w.begin(small_meta());
    w.write_tokens(prompt_tokens(4));
    EXPECT_THROW(w.write_step(step(1)), std::invalid_argument);  // steps start at 0
    StepData bad = step(0);
    bad.record.bytes_held = {1};
    EXPECT_THROW(w.write_step(bad), std::invalid_argument);
    bad = step(0);
    bad.budgets = {1, 2, 3};
    EXPECT_THROW(w.write_step(bad), std::invalid_argument);
    bad = step(0);
    bad.record.topk_ids = {1, 2, 3};
    bad.record.topk_logprobs = {-1, -2, -3};
    EXPECT_THROW(w.write_step(bad), std::invalid_argument);  // top_k is 2
    bad = step(0);
    bad.events.push_back({0, 2, 0, CacheOp::kAppend, 0, 0, 0, 0, 0, 16});
    EXPECT_THROW(w.write_step(bad), std::invalid_argument);  // layer 2 of 2
    PrefillLayerStats p;
    p.layer = 0;
    p.key_norm.assign(7, 1.0f);  // H*P = 8
    EXPECT_THROW(w.write_prefill(p), std::invalid_argument);
    w.write_step(step(0));
    w.end({});
    EXPECT_EQ(TraceReader(dir / "b.kvtrace.h5").info().n_steps, 1);
}

TEST(TraceWriter, UnwritablePathIsAnInputError) {
    ScratchDir dir;
    auto path = dir / "no_such_folder" / "t.kvtrace.h5";
    TraceWriter w(path);
    try {
        w.begin(small_meta());
        FAIL() << "created a file in a missing folder";
    } catch (const InputError& e) {
        EXPECT_EQ(e.file(), path);
        EXPECT_NE(std::string(e.what()).find("cannot create the trace file"), std::string::npos);
    }
}

TEST(TraceWriter, DroppedWithoutEndIsIncompleteButReadable) {
    ScratchDir dir;
    auto path = dir / "dropped.kvtrace.h5";
    const SampleTrace sample = make_sample_trace();
    {
        TraceWriter w(path);
        w.begin(sample.meta);
        w.write_tokens(sample.prompt);
        w.write_prefill(sample.prefill[0]);
        w.write_prefill(sample.prefill[1]);  // layer 2 never written
        for (int s = 0; s < 6; ++s) w.write_step(sample.steps[static_cast<size_t>(s)]);
        EXPECT_EQ(w.recording_path(), recording_path_for(path));
    }
    // Never renamed into place: the target does not exist, the .part holds the run.
    EXPECT_FALSE(std::filesystem::exists(path));
    TraceReader r(recording_path_for(path));
    TraceInfo info = r.info();
    EXPECT_EQ(info.state, RunState::kRunning);
    EXPECT_FALSE(info.swmr);  // closed by the destructor: a normal file
    EXPECT_EQ(info.n_steps, 6);
    EXPECT_EQ(info.n_prefill_layers_done, 2);
    EXPECT_NE(info.notice.find("prefill statistics of 2 of 3 layers"), std::string::npos)
        << info.notice;
    EXPECT_FALSE(r.prefill_layer_done(2));
    EXPECT_TRUE(std::isnan(r.key_norm(2, 0)[0]));
    EXPECT_FALSE(std::isnan(r.key_norm(1, 0)[0]));
    EXPECT_TRUE(r.validate().empty());
}

TEST(TraceWriter, AbortedRunKeepsItsReason) {
    ScratchDir dir;
    auto path = dir / "aborted.kvtrace.h5";
    TraceWriter w(path);
    w.begin(small_meta());
    w.write_tokens(prompt_tokens(4));
    w.write_step(step(0));
    RunEnd end;
    end.complete = false;
    end.reason = "out of memory";
    w.end(end);
    TraceReader r(path);
    EXPECT_EQ(r.info().state, RunState::kAborted);
    EXPECT_NE(r.info().notice.find("out of memory"), std::string::npos);
    ASSERT_TRUE(r.run_end().has_value());
    EXPECT_FALSE(r.run_end()->complete);
}

TEST(TraceWriter, EventsAreStampedAndGroupedByLayerHead) {
    ScratchDir dir;
    auto path = dir / "events.kvtrace.h5";
    TraceWriter w(path, {.queue_capacity = 1});  // every call waits for the writer: back-pressure
    w.begin(small_meta());
    w.write_tokens(prompt_tokens(4));
    // add_events before write_step joins the same step; the step field given is overwritten.
    w.add_events({{77, 1, 1, CacheOp::kAppend, 0, 0, 0, 0, 0, 16},
                  {77, 0, 1, CacheOp::kAppend, 1, 1, 0, 0, 0, 16}});
    StepData d = step(0);
    d.events = {{0, 1, 1, CacheOp::kEvict, 0, -1, 0, 0, 0.5f, 0},
                {0, 0, 0, CacheOp::kAppend, 2, 2, 0, 0, 0, 16},
                {0, 0, 1, CacheOp::kQuantize, 1, -1, 0, 0, 0, 4}};  // v2: -1
    w.write_step(d);
    StepData d1 = step(1);  // no events at all
    w.write_step(d1);
    StepData d2 = step(2);
    d2.events = {{2, 1, 0, CacheOp::kMerge, 3, 1, 0.25f, 0.75f, 0.1f, 0}};
    w.write_step(d2);
    w.end({});

    TraceReader r(path);
    auto ev = r.events(0, 3);
    ASSERT_EQ(ev.size(), 6u);
    // Step 0 in (layer, head) order, order kept within (1, 1): append before evict.
    const std::vector<std::tuple<int, int, int, CacheOp>> want = {
        {0, 0, 0, CacheOp::kAppend}, {0, 0, 1, CacheOp::kAppend}, {0, 0, 1, CacheOp::kQuantize},
        {0, 1, 1, CacheOp::kAppend}, {0, 1, 1, CacheOp::kEvict},  {2, 1, 0, CacheOp::kMerge}};
    for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(ev[i].step, std::get<0>(want[i])) << i;
        EXPECT_EQ(ev[i].layer, std::get<1>(want[i])) << i;
        EXPECT_EQ(ev[i].head, std::get<2>(want[i])) << i;
        EXPECT_EQ(ev[i].op, std::get<3>(want[i])) << i;
    }
    EXPECT_FLOAT_EQ(ev[5].weight, 0.25f);
    EXPECT_FLOAT_EQ(ev[5].similarity, 0.75f);
    EXPECT_EQ(r.steps(1, 2)[0].event_count, 0);
    EXPECT_EQ(r.steps(2, 3)[0].event_begin, 5);
    EXPECT_EQ(r.events(1, 1, 0, 3).size(), 2u);
    EXPECT_EQ(r.events(1, 0, 0, 3).size(), 1u);
    EXPECT_TRUE(r.events(1, 0, 0, 2).empty());
    // Steps with no budgets or survival given read as -1.
    EXPECT_EQ(r.budgets(1), (std::vector<int32_t>{-1, -1, -1, -1}));
    auto problems = r.validate();
    EXPECT_TRUE(problems.empty()) << problems.front();
}

TEST(TraceWriter, StepBeforePromptSurfacesAsAnError) {
    ScratchDir dir;
    auto path = dir / "noprompt.kvtrace.h5";
    TraceWriter w(path);
    w.begin(small_meta());
    w.write_step(step(0));  // the 4 prompt tokens were never written
    try {
        w.end({});
        FAIL() << "no error";
    } catch (const std::runtime_error& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
        EXPECT_NE(msg.find("all prompt tokens first"), std::string::npos) << msg;
    }
}

TEST(TraceWriter, MapsOnlyForShortPrompts) {
    ScratchDir dir;
    auto path = dir / "long.kvtrace.h5";
    TraceWriter w(path, {.record_maps = true});
    w.begin(small_meta(kMaxMapTokens + 1));
    EXPECT_FALSE(w.maps_recorded());
    w.write_prefill_map(0, {});  // ignored
    w.write_tokens(prompt_tokens(kMaxMapTokens + 1));
    w.end({});
    TraceReader r(path);
    EXPECT_FALSE(r.info().has_maps);
    EXPECT_THROW(r.prefill_map(0, 0), std::out_of_range);
    EXPECT_EQ(r.info().n_tokens, kMaxMapTokens + 1);
}

}  // namespace
}  // namespace kvscope::trace
