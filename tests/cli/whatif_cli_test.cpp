// End-to-end tests of `kvscope whatif` and `kvscope run --memory`: the real binary on the bundled
// demo model (one prefill, many budgets; equal-memory budgets).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/cli/cli_runner.h"

namespace kvscope::test {
namespace {

namespace fs = std::filesystem;
const std::string kDemo = (kSourceDir / "resources" / "models" / "kvscope-demo").string();

struct Output {
    int code = -1;
    std::string text;  // stdout + stderr
};

Output kvscope(const std::string& args) {
    const CliResult r = run_kvscope(args);
    return {r.code, r.out};
}

fs::path scratch(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("kvscope_whatif_" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d / name;
}

TEST(WhatifCli, PreviewsManyBudgetsFromOnePrefill) {
    const fs::path json = scratch("snap.json");
    const auto r = kvscope("whatif --model " + kDemo +
                           " --scenario niah --length 256 --policy snapkv --ratio 0.2,0.6 --json " +
                           json.string());
    ASSERT_EQ(r.code, 0) << r.text;
    std::ifstream f(json);
    const auto j = nlohmann::json::parse(f);
    ASSERT_EQ(j.size(), 2u);
    // SnapKV holds at most its budget per (layer, KV head), ceil(r * 256) tokens, x 8 layers x 2
    // KV heads (tests/whatif checks the exact sets against real runs).
    EXPECT_LE(j[0]["tokens_held"].get<int64_t>(), 16 * 52);
    EXPECT_GE(j[0]["tokens_held"].get<int64_t>(), 16 * 50);
    EXPECT_LE(j[1]["tokens_held"].get<int64_t>(), 16 * 154);
    EXPECT_GE(j[1]["tokens_held"].get<int64_t>(), 16 * 150);
    EXPECT_LT(j[0]["bytes_held"].get<int64_t>(), j[1]["bytes_held"].get<int64_t>());
    EXPECT_EQ(j[0]["bytes_full"].get<int64_t>(), j[1]["bytes_full"].get<int64_t>());
    const double s0 = j[0]["needle_survival_mean"].get<double>();
    const double s1 = j[1]["needle_survival_mean"].get<double>();
    EXPECT_GE(s0, 0.0);
    EXPECT_LE(s1, 1.0);
    EXPECT_LE(s0, s1 + 1e-9);  // SnapKV's kept sets are nested at one prompt (top-k grows)
}

TEST(WhatifCli, DecodeRecordsOneTraceABudgetFromTheSavedState) {
    const fs::path dir = scratch("decoded");
    const fs::path json = scratch("h2o.json");
    const auto r =
        kvscope("whatif " + (kSourceDir / "resources" / "sample" / "sample.kvtrace.h5").string() +
                " --model " + kDemo + " --policy h2o --budget 64,200 --decode --max-new 4" +
                " --trace-dir " + dir.string() + " --json " + json.string());
    ASSERT_EQ(r.code, 0) << r.text;
    EXPECT_NE(r.text.find("prompt 512 tokens"), std::string::npos) << r.text;
    EXPECT_NE(r.text.find("note: h2o keeps deciding while decoding"), std::string::npos) << r.text;
    std::ifstream f(json);
    const auto j = nlohmann::json::parse(f);
    ASSERT_EQ(j.size(), 2u);
    for (const auto& row : j) {
        const fs::path t = row["trace"].get<std::string>();
        ASSERT_TRUE(fs::exists(t)) << t;
        const int8_t found = row["answer_found"].get<int8_t>();
        EXPECT_TRUE(found == 0 || found == 1);
        const auto ins = kvscope("inspect " + t.string());
        EXPECT_EQ(ins.code, 0) << ins.text;
        EXPECT_NE(ins.text.find("h2o"), std::string::npos) << ins.text;
    }
}

// whatif takes run's --scenario flags (app/cli/scenario_flags.h): a template-needles trial of the
// held-out split builds the same prompt as `kvscope run` with the same flags.
TEST(WhatifCli, BuildsTheTemplateNeedlesPromptRunBuilds) {
    const fs::path dir = scratch("needles");
    const fs::path json = scratch("needles.json");
    const std::string flags = " --model " + kDemo +
                              " --scenario needles --split heldout --distractors 1 --length 300"
                              " --depth 0.25 --scenario-seed 7 --max-new 4";
    const auto r = kvscope("whatif" + flags + " --policy snapkv --ratio 0.5 --decode --trace-dir " +
                           dir.string() + " --json " + json.string() + " --force");
    ASSERT_EQ(r.code, 0) << r.text;
    std::ifstream f(json);
    const auto j = nlohmann::json::parse(f);
    ASSERT_EQ(j.size(), 1u);
    const auto ins = run_kvscope_split("inspect --json " + j[0]["trace"].get<std::string>());
    ASSERT_EQ(ins.code, 0) << ins.out << ins.err;
    const auto ij = nlohmann::json::parse(ins.out);
    const auto& sc = ij["run"]["extra"]["scenario"];
    EXPECT_EQ(sc["kind"], "needles");
    EXPECT_EQ(sc["split"], "heldout");
    const fs::path trace = scratch("needles_run.kvtrace.h5");
    const auto run =
        run_kvscope_split("run --quiet --force --json" + flags + " --trace " + trace.string());
    ASSERT_EQ(run.code, 0) << run.out << run.err;
    const auto rj = nlohmann::json::parse(run.out);
    EXPECT_EQ(ij["n_prompt_tokens"].get<int64_t>(), rj["prompt_tokens"].get<int64_t>());
    EXPECT_EQ(sc["template"],
              nlohmann::json::parse(run_kvscope_split("inspect --json " + trace.string())
                                        .out)["run"]["extra"]["scenario"]["template"]);
    const auto bad = kvscope("whatif --model " + kDemo +
                             " --scenario niah --distractors 1 --policy snapkv --ratio 0.5");
    EXPECT_EQ(bad.code, 2) << bad.text;
    EXPECT_NE(bad.text.find("apply to --scenario needles only"), std::string::npos) << bad.text;
}

TEST(WhatifCli, WrongFlagsAreUsageErrors) {
    const std::string base = "whatif --model " + kDemo + " --scenario passkey --length 64 ";
    auto r = kvscope(base + "--policy snapkv");
    EXPECT_EQ(r.code, 2) << r.text;
    EXPECT_NE(r.text.find("--ratio LIST"), std::string::npos) << r.text;
    r = kvscope(base + "--policy snapkv --ratio 0.5 --budget 8");
    EXPECT_EQ(r.code, 2) << r.text;
    r = kvscope(base + "--policy snapkv --ratio 0.5,abc");
    EXPECT_EQ(r.code, 2) << r.text;
    EXPECT_NE(r.text.find("'abc'"), std::string::npos) << r.text;
    r = kvscope(base + "--policy kivi --memory 0.5");
    EXPECT_NE(r.code, 0) << r.text;
    EXPECT_NE(r.text.find("takes no token budget"), std::string::npos) << r.text;
    r = kvscope("whatif --policy snapkv --ratio 0.5 --prompt hi");
    EXPECT_EQ(r.code, 2) << r.text;
    EXPECT_NE(r.text.find("--model"), std::string::npos) << r.text;
}

TEST(RunCli, MemoryFitsTheBudgetToTheTarget) {
    const fs::path t = scratch("mem.kvtrace.h5");
    const auto r = kvscope("run --model " + kDemo +
                           " --scenario niah --length 256 --policy snapkv --memory 0.3 --max-new 3 "
                           "--quiet --trace " +
                           t.string());
    ASSERT_EQ(r.code, 0) << r.text;
    long long target = 0, full = 0, budget = 0, held = 0;
    const size_t at = r.text.find("memory   target");
    ASSERT_NE(at, std::string::npos) << r.text;
    ASSERT_EQ(std::sscanf(r.text.c_str() + at,
                          "memory   target %lld bytes (full prompt cache %lld): budget %lld tokens "
                          "per head holds %lld bytes",
                          &target, &full, &budget, &held),
              4)
        << r.text;
    EXPECT_EQ(target, static_cast<long long>(std::floor(0.3 * static_cast<double>(full))));
    EXPECT_LE(held, target);
    EXPECT_GT(held, target * 9 / 10);  // one token per head is ~1% of the prompt here
    // The run was recorded with that budget.
    const auto ins = kvscope("inspect " + t.string());
    EXPECT_EQ(ins.code, 0) << ins.text;
    const auto bad = kvscope("run --model " + kDemo +
                             " --scenario passkey --length 64 --policy "
                             "snapkv --memory 0.3 --ratio 0.5 --trace " +
                             scratch("x.h5").string());
    EXPECT_EQ(bad.code, 2) << bad.text;
}

}  // namespace

namespace {

TEST(ExplainCli, SaysWhyTheSampleNeedleWasLost) {
    const fs::path json = scratch("why.json");
    fs::remove(json);
    const std::string sample = (kSourceDir / "resources" / "sample" / "sample.kvtrace.h5").string();
    const auto r = kvscope("explain " + sample + " --json " + json.string());
    ASSERT_EQ(r.code, 0) << r.text;
    EXPECT_NE(r.text.find("same as the trace"), std::string::npos) << r.text;
    EXPECT_NE(r.text.find("D2O: attention received"), std::string::npos) << r.text;
    std::ifstream f(json);
    const auto j = nlohmann::json::parse(f);
    ASSERT_GT(j["decisions"].size(), 0u);
    int64_t lost = 0;
    for (const auto& d : j["decisions"]) {
        if (d["action"] == "kept") continue;
        ++lost;
        EXPECT_GE(d["trace_step"].get<int64_t>(), 1) << "D2O decides from step 1 on";
    }
    EXPECT_GT(lost, 0);
    // Existing output without --force: refused, file unchanged.
    const auto again = kvscope("explain " + sample + " --json " + json.string());
    EXPECT_EQ(again.code, 2) << again.text;
}

TEST(RescueCli, FindsTheLayersThatRestoreTheSampleAnswer) {
    const fs::path dir = scratch("rescue");
    const std::string sample = (kSourceDir / "resources" / "sample" / "sample.kvtrace.h5").string();
    const auto r = kvscope("rescue " + sample + " --out " + dir.string());
    ASSERT_EQ(r.code, 0) << r.text;
    // On the demo model, keeping the needle in layer 2 alone restores the answer (README).
    EXPECT_NE(r.text.find("rescued by keeping the needle in layers 2 (1 of 8"), std::string::npos)
        << r.text;
    const auto bad = kvscope("rescue " + sample + " --layers 9 --out " + dir.string());
    EXPECT_EQ(bad.code, 2) << bad.text;
    EXPECT_NE(bad.text.find("not a layer in [0, 8)"), std::string::npos) << bad.text;
}

}  // namespace
}  // namespace kvscope::test
