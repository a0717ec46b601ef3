// Schema version 1 traces (tests/traces/v1/, recorded by the last version 1 writer): the reader
// opens them adapted to version 2, and upgrade_trace writes a version 2 copy that reads the same
// (token states, events but for the destination of evict / quantize / demote rows) without
// touching the input.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <fstream>
#include <iterator>
#include <string>

#include "core/error.h"
#include "tests/traces/trace_test_support.h"
#include "traces/synthetic/sample_trace.h"
#include "traces/trace_reader.h"
#include "traces/trace_upgrade.h"
#include "traces/trace_writer.h"

namespace kvscope::trace {
namespace {

namespace fs = std::filesystem;
using testing::ScratchDir;

const fs::path kV1 = fs::path(KVSCOPE_SOURCE_DIR) / "tests/traces/v1";

std::string file_bytes(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

bool holds(TokenCacheState s) {
    return s == TokenCacheState::kHeld || s == TokenCacheState::kQuantized ||
           s == TokenCacheState::kDemoted;
}

class V1Trace : public ::testing::TestWithParam<const char*> {
  protected:
    fs::path v1() const { return kV1 / (std::string(GetParam()) + ".kvtrace.h5"); }
};

TEST_P(V1Trace, OpensAdaptedToVersion2) {
    TraceReader r(v1());
    const TraceInfo info = r.info();
    EXPECT_EQ(info.schema_version, 1);
    EXPECT_EQ(info.state, RunState::kComplete);
    EXPECT_FALSE(info.prefill_appends);  // from run_json extra.prefill_appends_recorded = false
    EXPECT_EQ(info.n_prompt_tokens, 96);
    EXPECT_EQ(info.n_steps, 6);
    int64_t adapted = 0;
    for (const EventRecord& e : r.events(0, info.n_steps)) {
        if (e.op == CacheOp::kAppend) {
            EXPECT_EQ(e.destination, e.slot);
        } else if (e.op != CacheOp::kMerge) {
            // The file holds the slot here (tests/traces/v1/README.md); version 2 reads -1.
            ASSERT_EQ(e.destination, -1) << cache_op_name(e.op) << " at " << e.position;
            ++adapted;
        }
    }
    EXPECT_GT(adapted, 200);
}

TEST_P(V1Trace, UpgradeWritesAVersion2CopyThatReadsTheSame) {
    ScratchDir dir;
    const fs::path out = dir / "upgraded.kvtrace.h5";
    const std::string before = file_bytes(v1());
    int64_t last_done = 0, calls = 0;
    const UpgradeResult res = upgrade_trace(v1(), out, false, [&](int64_t done, int64_t total) {
        EXPECT_EQ(total, 6);
        EXPECT_EQ(done, last_done + 1);
        last_done = done;
        ++calls;
    });
    EXPECT_EQ(calls, 6);
    EXPECT_EQ(file_bytes(v1()), before);  // the input is only read
    EXPECT_EQ(res.from_version, 1);
    EXPECT_EQ(res.to_version, kSchemaVersion);
    EXPECT_FALSE(fs::exists(dir / "upgraded.kvtrace.h5.part"));

    TraceReader a(v1()), b(out);
    const TraceInfo ia = a.info(), ib = b.info();
    EXPECT_EQ(ib.schema_version, kSchemaVersion);
    EXPECT_EQ(ib.state, RunState::kComplete);
    EXPECT_FALSE(ib.prefill_appends);
    EXPECT_EQ(ib.n_steps, ia.n_steps);
    EXPECT_EQ(ib.n_events, ia.n_events);
    EXPECT_EQ(ib.n_tokens, ia.n_tokens);
    EXPECT_EQ(b.metadata().policy, a.metadata().policy);
    EXPECT_EQ(b.metadata().created_utc, a.metadata().created_utc);
    EXPECT_EQ(b.metadata().extra.at("upgraded_from").at("schema_version"), 1);
    EXPECT_EQ(b.run_end()->reason, a.run_end()->reason);
    EXPECT_EQ(b.token_ids(0, ib.n_tokens), a.token_ids(0, ia.n_tokens));
    testing::expect_same_floats(b.key_norm(3, 1), a.key_norm(3, 1), "key_norm");
    testing::expect_same_floats(b.density(), a.density(), "density");
    EXPECT_EQ(b.window_rows(), a.window_rows());
    // Events read the same (the v1 reader adapts what the upgrade rewrote).
    testing::expect_same_events(b.events(0, ib.n_steps), a.events(0, ia.n_steps), "events");
    for (int64_t s = 0; s < ia.n_steps; ++s) {
        EXPECT_EQ(b.budgets(s), a.budgets(s));
        testing::expect_same_floats(b.needle_survival(0, s, s + 1), a.needle_survival(0, s, s + 1),
                                    "needle_survival");
        ASSERT_TRUE(b.has_head_counts());
        const HeadCountRow row = b.head_counts(s);
        for (int32_t l = 0; l < ia.n_layers; ++l) {
            for (int32_t h = 0; h < ia.n_heads; ++h) {
                const auto sa = a.token_states(l, h, s), sb = b.token_states(l, h, s);
                ASSERT_EQ(sa.size(), sb.size());
                int32_t held = 0;
                for (size_t p = 0; p < sa.size(); ++p) {
                    ASSERT_EQ(sb[p].state, sa[p].state) << s << " " << l << " " << h << " " << p;
                    ASSERT_EQ(sb[p].bits, sa[p].bits);
                    ASSERT_EQ(sb[p].merged_into, sa[p].merged_into);
                    held += holds(sb[p].state) ? 1 : 0;
                }
                // The recomputed summary agrees with the replay.
                EXPECT_EQ(row.held[static_cast<size_t>(l * ia.n_heads + h)], held);
            }
        }
    }
    // In the upgraded file itself, destination is -1 on those rows (not an adaptation).
    for (const EventRecord& e : b.event_rows(0, ib.n_events)) {
        if (e.op != CacheOp::kAppend && e.op != CacheOp::kMerge) {
            ASSERT_EQ(e.destination, -1);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, V1Trace, ::testing::Values("d2o", "mikv"));

TEST(TraceUpgrade, RefusesWhatItMustNotWrite) {
    ScratchDir dir;
    const fs::path v1 = kV1 / "d2o.kvtrace.h5";
    const std::string before = file_bytes(v1);
    auto problem = [](auto&& f) -> std::string {
        try {
            f();
        } catch (const InputError& e) {
            return e.what();
        }
        return "";
    };
    // The input itself as the output, even with overwrite.
    EXPECT_NE(problem([&] { upgrade_trace(v1, v1, true); }).find("is the input itself"),
              std::string::npos);
    EXPECT_EQ(file_bytes(v1), before);
    // An existing output without overwrite: untouched.
    const fs::path taken = dir / "taken.kvtrace.h5";
    std::ofstream(taken) << "mine";
    EXPECT_NE(problem([&] { upgrade_trace(v1, taken, false); }), "");
    EXPECT_EQ(file_bytes(taken), "mine");
    // A version 2 trace: nothing to upgrade.
    const fs::path v2 = dir / "v2.kvtrace.h5";
    upgrade_trace(v1, v2, false);
    const std::string msg = problem([&] { upgrade_trace(v2, dir / "again.kvtrace.h5", false); });
    EXPECT_NE(msg.find("already schema version 2"), std::string::npos) << msg;
    EXPECT_FALSE(fs::exists(dir / "again.kvtrace.h5"));
    // Not a trace.
    EXPECT_NE(problem([&] { upgrade_trace(taken, dir / "x.kvtrace.h5", false); }).find("taken"),
              std::string::npos);
}

// A version 1 file written before /summary existed (issue 18): readers replay the events, and
// the upgraded copy has a /summary that agrees with that replay.
TEST(TraceUpgrade, AddsTheSummaryToAFileWithout) {
    ScratchDir dir;
    const fs::path old = dir / "nosummary.kvtrace.h5";
    fs::copy_file(kV1 / "d2o.kvtrace.h5", old);
    {
        hid_t f = H5Fopen(old.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
        ASSERT_GE(f, 0);
        EXPECT_GE(H5Ldelete(f, "/summary", H5P_DEFAULT), 0);
        H5Fclose(f);
    }
    ASSERT_FALSE(TraceReader(old).has_head_counts());
    const fs::path out = dir / "upgraded.kvtrace.h5";
    upgrade_trace(old, out, false);
    TraceReader a(old), b(out);
    ASSERT_TRUE(b.has_head_counts());
    const TraceInfo info = a.info();
    int64_t held_total = 0;
    for (int64_t s = 0; s < info.n_steps; ++s) {
        const HeadCountRow row = b.head_counts(s);
        for (int32_t l = 0; l < info.n_layers; ++l) {
            for (int32_t h = 0; h < info.n_heads; ++h) {
                int32_t held = 0;
                for (const TokenState& t : a.token_states(l, h, s)) held += holds(t.state) ? 1 : 0;
                ASSERT_EQ(row.held[static_cast<size_t>(l * info.n_heads + h)], held)
                    << s << " " << l << " " << h;
                held_total += held;
            }
        }
    }
    EXPECT_GT(held_total, 0);
}

// Version 2 writers put -1 in destination on evict, quantize and demote rows: the validator
// (`kvscope inspect`) reports one that names a slot there.
TEST(SchemaVersion2, ValidatorReportsASlotInTheDestinationOfAnEvictRow) {
    ScratchDir dir;
    SampleTrace sample = make_sample_trace();
    int changed = 0;
    for (EventRecord& e : sample.steps[3].events) {
        if (e.op == CacheOp::kEvict && changed == 0) {
            e.destination = 7;
            ++changed;
        }
    }
    ASSERT_EQ(changed, 1);
    const fs::path path = dir / "slot.kvtrace.h5";
    {
        TraceWriter w(path);
        write_sample_trace(w, sample);
    }
    const auto problems = TraceReader(path).validate();
    ASSERT_EQ(problems.size(), 1u);
    EXPECT_NE(problems[0].find("evict with destination 7 (schema version 2: -1)"),
              std::string::npos)
        << problems[0];
}

}  // namespace
}  // namespace kvscope::trace
