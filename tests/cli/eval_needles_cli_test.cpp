// kvscope eval needles (issue 12): one grid per template split, reported apart (--json splits,
// the CSV's split column); template-set and option errors are clear and name the file.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "app/recorder/niah_sweep.h"
#include "tests/cli/cli_runner.h"

namespace kvscope::test {
namespace {

namespace fs = std::filesystem;

const std::string kTemplates = (kSourceDir / "resources" / "needles" / "templates.json").string();

TEST(EvalNeedles, ReportsEachSplitApart) {
    const fs::path csv = scratch_file("needles_eval.csv");
    const CliResult r = run_kvscope_split(
        "eval needles --json --quiet --force --model " + kModel + " --templates " + kTemplates +
        " --lengths 240 --depths 0,1 --trials 2 --needles 2 --distractors 1 --csv " + csv.string());
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    const nlohmann::json j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["task"], "needles");
    EXPECT_EQ(j["distractors"].get<int>(), 1);
    for (const char* split : {"train", "heldout"}) {
        ASSERT_TRUE(j["splits"].contains(split)) << j.dump();
        EXPECT_EQ(j["splits"][split]["total"].get<int>(), 4) << split;  // 2 depths x 2 trials
    }
    ASSERT_EQ(j["cells"].size(), 4u);
    EXPECT_EQ(j["cells"][0]["split"], "train");
    EXPECT_EQ(j["cells"][3]["split"], "heldout");
    const std::string text = file_bytes(csv);
    EXPECT_NE(text.find(",split\n"), std::string::npos) << text;
    EXPECT_NE(text.find(",\"heldout\"\n"), std::string::npos) << text;
    // One split only: the other is not run.
    const CliResult one = run_kvscope_split("eval needles --json --quiet --force --model " +
                                            kModel + " --lengths 240 --depths 0.5 --trials 1 " +
                                            "--split heldout --csv " + csv.string());
    ASSERT_EQ(one.code, 0) << one.out << one.err;
    const nlohmann::json j1 = nlohmann::json::parse(one.out);
    EXPECT_FALSE(j1["splits"].contains("train"));
    EXPECT_EQ(j1["splits"]["heldout"]["total"].get<int>(), 1);
}

TEST(EvalNeedles, BadTemplatesAndOptionsAreClearErrors) {
    const fs::path bad = scratch_file("bad_templates.json");
    std::ofstream(bad) << R"({"pools": {}, "templates": []})";
    const std::string base =
        "eval needles --quiet --force --model " + kModel + " --lengths 240 --depths 0.5 --trials 1";
    CliResult r = run_kvscope(base + " --templates " + bad.string());
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find(bad.string()), std::string::npos) << r.out;
    r = run_kvscope(base + " --split dev");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("split 'dev'"), std::string::npos) << r.out;
    r = run_kvscope("eval niah --quiet --model " + kModel + " --distractors 2");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("needles only"), std::string::npos) << r.out;
}

// Every --details row replays as a recorded run: `kvscope run --scenario needles` with the row's
// seed and depth, the context length minus eval's --max-new, and the same needles, distractors
// and split builds the same prompt (token count, needle span, answer) and gives the same output.
TEST(EvalNeedles, DetailsRowsReplayAsRecordedRuns) {
    const fs::path details = scratch_file("needles_details.csv");
    const CliResult r = run_kvscope(
        "eval needles --quiet --force --model " + kModel + " --templates " + kTemplates +
        " --split heldout --lengths 240 --depths 0,1 --trials 2 --needles 2 --distractors 1 "
        "--max-new 8 --csv " +
        scratch_file("needles_grid.csv").string() + " --details " + details.string());
    ASSERT_EQ(r.code, 0) << r.out;
    const auto rows = record::read_csv(details);        // RFC 4180: quoted fields keep commas
    ASSERT_EQ(rows.size(), 5u) << file_bytes(details);  // header + 2 depths x 2 trials
    const std::vector<std::string>& head = rows[0];
    auto col = [&](const std::vector<std::string>& row, const std::string& name) {
        const auto it = std::find(head.begin(), head.end(), name);
        EXPECT_NE(it, head.end()) << name;
        return it == head.end() ? std::string() : row[it - head.begin()];
    };
    const fs::path trace = scratch_file("needles_replay.kvtrace.h5");
    for (size_t i = 1; i < rows.size(); ++i) {
        const auto& row = rows[i];
        ASSERT_EQ(row.size(), head.size());
        const CliResult run = run_kvscope_split(
            "run --quiet --force --json --model " + kModel + " --templates " + kTemplates +
            " --scenario needles --split heldout --needles 2 --distractors 1 --max-new 8" +
            " --length 232 --depth " + col(row, "depth") + " --scenario-seed " + col(row, "seed") +
            " --trace " + trace.string());
        ASSERT_EQ(run.code, 0) << run.out << run.err;
        const nlohmann::json j = nlohmann::json::parse(run.out);
        EXPECT_EQ(j["prompt_tokens"].get<int64_t>(), std::stoll(col(row, "prompt_tokens")));
        EXPECT_EQ(j["answer"].get<std::string>(), col(row, "answer"));
        std::string output = j["output"].get<std::string>();  // --details writes breaks as spaces
        std::replace(output.begin(), output.end(), '\n', ' ');
        std::replace(output.begin(), output.end(), '\r', ' ');
        EXPECT_EQ(output, col(row, "output"));
        EXPECT_EQ(j["answer_found"].get<bool>(), col(row, "correct") == "1");
        const CliResult info = run_kvscope_split("inspect --json " + trace.string());
        ASSERT_EQ(info.code, 0) << info.out << info.err;
        const nlohmann::json ij = nlohmann::json::parse(info.out);
        int needles = 0;
        for (const auto& s : ij["spans"]) {
            ++needles;
            if (s["label"] != "needle") continue;
            EXPECT_EQ(s["begin"].get<int64_t>(), std::stoll(col(row, "needle_begin")));
            EXPECT_EQ(s["end"].get<int64_t>(), std::stoll(col(row, "needle_end")));
        }
        EXPECT_EQ(needles, 3);  // the asked one, one more asked-template needle, one distractor
        EXPECT_EQ(ij["run"]["extra"]["scenario"]["template"].get<std::string>(),
                  col(row, "template"));
    }
    // The needles options belong to --scenario needles.
    const CliResult bad = run_kvscope("run --quiet --model " + kModel +
                                      " --scenario niah --split heldout --trace " + trace.string());
    EXPECT_EQ(bad.code, 2) << bad.out;
    EXPECT_NE(bad.out.find("apply to --scenario needles only"), std::string::npos) << bad.out;
}

}  // namespace
}  // namespace kvscope::test
