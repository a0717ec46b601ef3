// NIAH sweeps on the demo model: the summary has one row per cell x (full + policy x budget);
// an interrupted sweep resumes without redoing rows; two shards merged equal the unsharded sweep;
// user needle phrasings are hidden and asked for; bad specs are refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "app/recorder/niah_sweep.h"
#include "core/error.h"
#include "core/model/model.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;
const fs::path kDemo = fs::path(KVSCOPE_SOURCE_DIR) / "resources" / "models" / "kvscope-demo";

fs::path scratch(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("kvscope_niah_" + std::to_string(::getpid()));
    fs::create_directories(d);
    fs::remove_all(d / name);
    return d / name;
}

struct Demo {
    std::unique_ptr<Model> model = load_model(kDemo);
    std::unique_ptr<Tokenizer> tok = load_tokenizer(kDemo);
};
Demo& demo() {
    static Demo d;
    return d;
}

record::SweepSpec small_spec() {
    record::SweepSpec s;
    s.model = kDemo.string();
    s.haystacks = {""};
    s.needles = {{"builtin", true, {}}};
    s.lengths = {160, 240};
    s.depths = {0.25, 0.75};
    s.trials = 1;
    s.policies = {"snapkv", "h2o"};
    s.budget_kind = "ratio";
    s.budgets = {0.3, 0.7};
    s.max_new = 6;
    s.traces = true;
    return s;
}

// Rows of a summary without the timing column (the only one that may differ between runs).
std::vector<std::vector<std::string>> rows_of(const fs::path& csv) {
    auto t = record::read_csv(csv);
    for (auto& r : t)
        if (!r.empty()) r.pop_back();
    return t;
}

TEST(NiahSweep, OneRowPerCellPolicyAndBudgetThenResumes) {
    const fs::path out = scratch("resume");
    const record::SweepSpec spec = small_spec();
    std::atomic<bool> stop{false};
    int64_t seen = 0;
    // Stop after 3 rows, as an interrupted run would.
    const int64_t first = record::run_niah_sweep(*demo().model, *demo().tok, spec, out, {}, 2,
                                                 &stop, [&](const record::SweepProgress& p) {
                                                     seen = p.rows_done;
                                                     if (p.rows_done == 3) stop = true;
                                                 });
    EXPECT_EQ(first, 3);
    auto t = record::read_csv(out / "summary.csv");
    ASSERT_EQ(t.size(), 1u + 3u);
    // Resumed: the remaining rows only. 4 cells x (full + 2 policies x 2 budgets) = 20 rows.
    int64_t skipped = -1;
    const int64_t second =
        record::run_niah_sweep(*demo().model, *demo().tok, spec, out, {}, 2, nullptr,
                               [&](const record::SweepProgress& p) { skipped = p.rows_skipped; });
    EXPECT_EQ(skipped, 3);
    EXPECT_EQ(second, 17);
    t = record::read_csv(out / "summary.csv");
    ASSERT_EQ(t.size(), 1u + 20u);
    const auto& h = t[0];
    const auto col = [&](const std::string& name) {
        return static_cast<size_t>(std::find(h.begin(), h.end(), name) - h.begin());
    };
    for (size_t i = 1; i < t.size(); ++i) {
        const auto& r = t[i];
        ASSERT_EQ(r.size(), h.size());
        EXPECT_TRUE(r[col("found")] == "0" || r[col("found")] == "1") << r[col("found")];
        const double fm = std::stod(r[col("needle_final_mean")]);
        EXPECT_GE(fm, 0.0);
        EXPECT_LE(fm, 1.0);
        EXPECT_TRUE(fs::exists(out / r[col("trace")])) << r[col("trace")];
        if (r[col("policy")] == "full") {
            EXPECT_EQ(r[col("bytes_final")] >= r[col("bytes_full")], true);
            EXPECT_EQ(fm, 1.0);  // the full cache keeps every needle token
        } else {
            EXPECT_LT(std::stoll(r[col("bytes_prompt")]), std::stoll(r[col("bytes_full")]));
        }
    }
    // Another spec in the same folder is refused.
    record::SweepSpec other = spec;
    other.budgets = {0.5};
    EXPECT_THROW(record::run_niah_sweep(*demo().model, *demo().tok, other, out, {}, 2, nullptr, {}),
                 InputError);
}

TEST(NiahSweep, TwoShardsMergedEqualTheUnshardedSweep) {
    record::SweepSpec spec = small_spec();
    spec.policies = {"snapkv"};
    spec.budgets = {0.4};
    spec.traces = false;
    const fs::path whole = scratch("whole"), split = scratch("split");
    record::run_niah_sweep(*demo().model, *demo().tok, spec, whole, {}, 2, nullptr, {});
    record::run_niah_sweep(*demo().model, *demo().tok, spec, split, record::parse_shard("0/2"), 2,
                           nullptr, {});
    // Before the second shard, the merge reports what is missing.
    auto partial = record::merge_niah_summaries(split);
    EXPECT_EQ(partial.first, 4);  // cells 0 and 2, 2 rows each
    EXPECT_EQ(partial.second, 4);
    record::run_niah_sweep(*demo().model, *demo().tok, spec, split, record::parse_shard("1/2"), 2,
                           nullptr, {});
    const auto merged = record::merge_niah_summaries(split);
    EXPECT_EQ(merged.first, 8);
    EXPECT_EQ(merged.second, 0);
    EXPECT_EQ(record::merge_niah_summaries(whole).second, 0);  // canonical order for both
    EXPECT_EQ(rows_of(whole / "summary.csv"), rows_of(split / "summary.csv"));
    EXPECT_THROW(record::parse_shard("2/2"), InputError);
    EXPECT_THROW(record::parse_shard("1-2"), InputError);
}

TEST(NiahSweep, UserNeedlePhrasingsAreHiddenAndAskedFor) {
    const fs::path file = scratch("needles.json");
    std::ofstream(file) << R"([{"name": "pin", "needle": "Remember: the courier's PIN is 30592.",
                              "question": "Question: what is the courier's PIN? Answer:",
                              "answer": "30592"}])";
    record::SweepSpec spec = small_spec();
    spec.needles = record::load_needle_sets(file);
    spec.lengths = {200};
    spec.depths = {0.5};
    spec.policies = {"snapkv"};
    spec.budgets = {0.5};
    const fs::path out = scratch("pin");
    record::run_niah_sweep(*demo().model, *demo().tok, spec, out, {}, 2, nullptr, {});
    const auto t = record::read_csv(out / "summary.csv");
    ASSERT_EQ(t.size(), 3u);
    EXPECT_EQ(t[1][2], "pin");
    // The full-cache baseline holds the whole needle; the verdict is recorded either way (the
    // demo model is known to fail unseen phrasings: issue 12).
    EXPECT_EQ(std::stod(t[1][17]), 1.0);
    const fs::path bad = scratch("bad.json");
    std::ofstream(bad) << R"([{"needle": "no answer here", "question": "q?", "answer": "123"}])";
    EXPECT_THROW(record::load_needle_sets(bad), InputError);
}

}  // namespace
}  // namespace kvscope
