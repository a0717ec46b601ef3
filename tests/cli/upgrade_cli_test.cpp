// `kvscope upgrade` and schema version 2 on the real binary (issue 14, item 1): a version 2
// recording of the run that made the version 1 fixture (tests/traces/v1_rerun/README.md)
// has the same token states at every step, layer and head as the fixture read as it is and as
// its upgraded copy; the upgrade never touches its input and follows the CLI's exit codes.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/cli/cli_runner.h"
#include "traces/trace_reader.h"

namespace kvscope::test {
namespace {

namespace fs = std::filesystem;
using kvscope::trace::CacheOp;
using kvscope::trace::TraceReader;

fs::path scratch(const std::string& name) {
    return scratch_file("upgrade-" + name);
}

// The fixture's run recorded by the version 2 writer from the model that made the fixture
// (tests/traces/v1_rerun/README.md: the bundled model has changed since, so a live recording
// would be another run).
fs::path recording_v2(const std::string& policy) {
    return kSourceDir / "tests/traces/v1_rerun" / (policy + ".kvtrace.h5");
}

// Token states of every (step, layer, head) equal; returns the positions compared.
int64_t expect_same_states(const TraceReader& a, const TraceReader& b, const std::string& what) {
    const auto ia = a.info(), ib = b.info();
    EXPECT_EQ(ia.n_steps, ib.n_steps) << what;
    int64_t compared = 0;
    for (int64_t s = 0; s < std::min(ia.n_steps, ib.n_steps); ++s) {
        for (int32_t l = 0; l < ia.n_layers; ++l) {
            for (int32_t h = 0; h < ia.n_heads; ++h) {
                const auto sa = a.token_states(l, h, s), sb = b.token_states(l, h, s);
                EXPECT_EQ(sa.size(), sb.size());
                for (size_t p = 0; p < std::min(sa.size(), sb.size()); ++p, ++compared) {
                    if (sa[p].state != sb[p].state || sa[p].bits != sb[p].bits ||
                        sa[p].merged_into != sb[p].merged_into) {
                        ADD_FAILURE() << what << ": step " << s << " layer " << l << " head " << h
                                      << " position " << p;
                        return compared;
                    }
                }
            }
        }
    }
    return compared;
}

class UpgradeCli : public ::testing::TestWithParam<const char*> {};

TEST_P(UpgradeCli, Version1ReadOrUpgradedEqualsAVersion2Recording) {
    const std::string policy = GetParam();
    const fs::path v1 = kSourceDir / "tests/traces/v1" / (policy + ".kvtrace.h5");
    const std::string before = file_bytes(v1);
    const fs::path up = scratch(policy + ".upgraded.kvtrace.h5");
    const CliResult r = run_kvscope_split("upgrade " + v1.string() + " " + up.string() + " --json");
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j.at("from_schema_version"), 1);
    EXPECT_EQ(j.at("to_schema_version"), 2);
    EXPECT_EQ(j.at("steps"), 6);
    EXPECT_EQ(file_bytes(v1), before);  // the input is only read

    const fs::path rec = recording_v2(policy);
    TraceReader old(v1), upgraded(up), recorded(rec);
    EXPECT_EQ(old.info().schema_version, 1);
    EXPECT_EQ(upgraded.info().schema_version, 2);
    EXPECT_EQ(recorded.info().schema_version, 2);
    // The same run: same tokens, same cache decisions.
    EXPECT_EQ(recorded.token_ids(0, recorded.info().n_tokens),
              old.token_ids(0, old.info().n_tokens));
    EXPECT_EQ(recorded.info().n_events, old.info().n_events);
    EXPECT_GT(expect_same_states(old, recorded, "v1 as read vs v2 recording"), 5000);
    expect_same_states(upgraded, recorded, "upgraded v1 vs v2 recording");
    // The rows version 2 changed, in the recording: destination -1 but for append and merge.
    int64_t changed = 0;
    for (const auto& e : recorded.events(0, recorded.info().n_steps)) {
        if (e.op == CacheOp::kAppend || e.op == CacheOp::kMerge) continue;
        EXPECT_EQ(e.destination, -1);
        ++changed;
    }
    EXPECT_GT(changed, 200);
    EXPECT_EQ(recorded.info().prefill_appends, false);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, UpgradeCli, ::testing::Values("d2o", "mikv"));

TEST(UpgradeCliErrors, FollowTheExitCodes) {
    const fs::path v1 = kSourceDir / "tests/traces/v1/d2o.kvtrace.h5";
    const std::string before = file_bytes(v1);
    // 2: the input as the output (even with --force), an existing output without --force.
    CliResult r = run_kvscope("upgrade " + v1.string() + " " + v1.string() + " --force");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find("is the input itself"), std::string::npos) << r.out;
    const fs::path taken = scratch("taken.kvtrace.h5");
    std::ofstream(taken) << "mine";
    r = run_kvscope("upgrade " + v1.string() + " " + taken.string());
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_EQ(file_bytes(taken), "mine");
    EXPECT_EQ(file_bytes(v1), before);
    // 1: a version 2 input (nothing to upgrade), a file that is not a trace; no output left.
    const fs::path v2 = scratch("once.kvtrace.h5");
    ASSERT_EQ(run_kvscope("upgrade --quiet " + v1.string() + " " + v2.string()).code, 0);
    r = run_kvscope("upgrade " + v2.string() + " " + scratch("twice.kvtrace.h5").string());
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("already schema version 2"), std::string::npos) << r.out;
    r = run_kvscope("upgrade " + taken.string() + " " + scratch("x.kvtrace.h5").string());
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_FALSE(fs::exists(scratch("twice.kvtrace.h5")));
    EXPECT_FALSE(fs::exists(scratch("x.kvtrace.h5")));
    EXPECT_FALSE(fs::exists(scratch("x.kvtrace.h5.part")));
    // inspect names the version it reads and the way to a version 2 file; both are valid.
    r = run_kvscope("inspect " + v1.string());
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("read as version 2"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("kvscope upgrade"), std::string::npos) << r.out;
    r = run_kvscope("inspect " + v2.string());
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("valid:     yes"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("read as version"), std::string::npos) << r.out;
    // Progress off a terminal: plain lines with the count, no '\r'.
    const CliResult p =
        run_kvscope_split("upgrade " + v1.string() + " " + scratch("progress.kvtrace.h5").string());
    ASSERT_EQ(p.code, 0) << p.err;
    EXPECT_EQ(p.err.find('\r'), std::string::npos) << p.err;
    EXPECT_NE(p.err.find("6/6"), std::string::npos) << p.err;
}

}  // namespace
}  // namespace kvscope::test
