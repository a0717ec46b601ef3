// kvscope eval needles (issue 12): one grid per template split, reported apart (--json splits,
// the CSV's split column); template-set and option errors are clear and name the file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

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

}  // namespace
}  // namespace kvscope::test
