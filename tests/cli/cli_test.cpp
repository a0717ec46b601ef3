// End-to-end tests of the kvscope binary: the commands a user types, their exit codes, output
// and files. Runs the real executable (built alongside) on the golden fixture models.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "tests/cli/cli_runner.h"
#include "traces/trace_reader.h"

namespace kvscope::test {
namespace {

namespace fs = std::filesystem;

CliResult run(const std::string& args) {
    return run_kvscope(args);
}

fs::path tmp(const std::string& name) {
    return scratch_file("cli-" + name);
}

TEST(Cli, GenerateStreamsGreedyTextDeterministically) {
    const auto a =
        run("generate --model " + kModel + " --prompt 'A gift of a flower' --max-new 24");
    ASSERT_EQ(a.code, 0) << a.out;
    EXPECT_EQ(a.out.rfind("A gift of a flower", 0), 0u) << a.out;
    EXPECT_GT(a.out.size(), std::string("A gift of a flower").size() + 10) << a.out;
    const auto b =
        run("generate --model " + kModel + " --prompt 'A gift of a flower' --max-new 24");
    EXPECT_EQ(a.out, b.out);  // greedy is deterministic
    const auto c = run("generate --model " + kModel +
                       " --prompt 'A gift' --max-new 16 --temperature 0.9 --top-p 0.9 --seed 3");
    const auto d = run("generate --model " + kModel +
                       " --prompt 'A gift' --max-new 16 --temperature 0.9 --top-p 0.9 --seed 3");
    ASSERT_EQ(c.code, 0) << c.out;
    EXPECT_EQ(c.out, d.out);  // same seed, same sample
}

TEST(Cli, WarnsWhenARunGoesPastTheTrainedContext) {
    // The golden model's config.json says max_position_embeddings 512; its prompt here is 11
    // tokens. 11 + 8 positions: no warning; 11 + 510: a warning naming both numbers, and the run
    // still completes (RoPE computes there; the warning says the checkpoint never trained there).
    const std::string base = "generate --model " + kModel + " --prompt 'A gift of a flower'";
    const auto inside = run_kvscope_split(base + " --max-new 8");
    ASSERT_EQ(inside.code, 0) << inside.err;
    EXPECT_EQ(inside.err.find("warning:"), std::string::npos) << inside.err;
    const auto past = run_kvscope_split(base + " --max-new 510 --ignore-eos");
    ASSERT_EQ(past.code, 0) << past.err;
    EXPECT_NE(past.err.find("reaches 521 token positions, beyond the model's "
                            "max_position_embeddings (512"),
              std::string::npos)
        << past.err;
}

TEST(Cli, LogitsJsonMatchesHfReference) {
    std::ifstream f(kSourceDir / "tests" / "golden" / "ref" / "llama2.json");
    const auto ref = nlohmann::json::parse(f);
    const auto& p = ref["prompts"][0];
    std::string ids;
    for (const auto& id : p["ids"]) ids += (ids.empty() ? "" : ",") + std::to_string(id.get<int>());
    const fs::path out = tmp("logits.json");
    const auto r = run("logits --model " + (kSourceDir / "tests/golden/models/llama2").string() +
                       " --token-ids " + ids + " --top 3 --out " + out.string());
    ASSERT_EQ(r.code, 0) << r.out;
    std::ifstream jf(out);
    const auto j = nlohmann::json::parse(jf);
    const auto last = j["logits_last"].get<std::vector<double>>();
    const auto want = p["logits"].back().get<std::vector<double>>();
    ASSERT_EQ(last.size(), want.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        num = std::max(num, std::abs(last[i] - want[i]));
        den = std::max(den, std::abs(want[i]));
    }
    EXPECT_LE(num / den, 1e-4);  // fp32 vs fp32: 1e-4 relative to the row's largest logit
    EXPECT_EQ(j["top"].size(), p["ids"].size());
    EXPECT_EQ(j["top"][0].size(), 3u);
}

TEST(Cli, TokenizeAndDecodeRoundTrip) {
    const auto e = run("tokenize --model " + kModel + " --text 'Hello world' --no-special");
    ASSERT_EQ(e.code, 0) << e.out;
    std::string ids = e.out.substr(0, e.out.find('\n'));
    const auto d = run("tokenize --model " + kModel + " --decode " + ids);
    ASSERT_EQ(d.code, 0) << d.out;
    EXPECT_EQ(d.out, "Hello world\n");
}

TEST(Cli, BadInputGivesClearErrorsNotCrashes) {
    // A file that is missing or does not load: a runtime failure (1). A bad flag value: 2.
    auto r = run("generate --model /nonexistent/model --prompt x");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("/nonexistent/model"), std::string::npos) << r.out;
    const fs::path pk = tmp("pickle");
    fs::create_directories(pk);
    std::ofstream(pk / "pytorch_model.bin") << "\x80\x02}q";
    r = run("generate --model " + pk.string() + " --prompt x");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("pickle"), std::string::npos) << r.out;
    r = run("generate --model " + kModel + " --prompt x --policy nosuchpolicy --budget 8");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find("nosuchpolicy"), std::string::npos) << r.out;
    r = run("generate --model " + kModel +
            " --prompt x --policy snapkv --budget 8 --param nosuch=1");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find("nosuch"), std::string::npos) << r.out;
    r = run("logits --model " + kModel + " --token-ids 1,99999");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find("99999"), std::string::npos) << r.out;
    r = run("generate --model " + kModel);  // missing --prompt: CLI11 usage error
    EXPECT_EQ(r.code, 2) << r.out;
}

TEST(Cli, EveryPolicyRunsAndRecordsAValidTrace) {
    const std::string prompt =
        "A day for firm decisions. The secret code is 4721. A few hours grace before the madness "
        "begins again. A gift of a flower will soon be made to you. What is the secret code?";
    for (const std::string policy : {"full", "streaming_llm", "h2o", "tova", "snapkv", "pyramidkv",
                                     "dynamickv", "knorm", "d2o", "mikv", "dmc", "kivi"}) {
        const fs::path trace = tmp(policy + ".kvtrace.h5");
        std::string budget = (policy == "full" || policy == "kivi") ? "" : " --budget 24";
        std::string extra = policy == "dmc" ? " --param mode=proxy" : "";
        const auto r = run("run --quiet --model " + kModel + " --prompt '" + prompt +
                           "' --policy " + policy + budget + extra +
                           " --max-new 6 --needle 'secret code is 4721' --answer 4721 --trace " +
                           trace.string());
        ASSERT_EQ(r.code, 0) << policy << ": " << r.out;
        const auto i = run("inspect " + trace.string());
        EXPECT_EQ(i.code, 0) << policy << ": " << i.out;
    }
}

// --scenario builds the prompt the demo model was trained on (core/scenarios) and marks the needle.
TEST(Cli, RunScenarioMarksTheNeedleAndChecksTheAnswer) {
    const std::string demo = (kSourceDir / "resources" / "models" / "kvscope-demo").string();
    ASSERT_TRUE(fs::exists(fs::path(demo) / "config.json")) << demo;
    const fs::path trace = tmp("scenario.kvtrace.h5");
    const auto r = run("run --quiet --model " + demo +
                       " --scenario niah --length 384 --depth 0.5 --scenario-seed 3 --max-new 10 "
                       "--trace " +
                       trace.string());
    ASSERT_EQ(r.code, 0) << r.out;
    // The demo model answers NIAH at every depth with the full cache (resources/models README).
    EXPECT_NE(r.out.find("FOUND"), std::string::npos) << r.out;
    const auto i = run("inspect " + trace.string());
    ASSERT_EQ(i.code, 0) << i.out;
    // The builder fills the prompt up to --length tokens without going over (whole words).
    // (No std::regex here: GCC 12 warns inside <regex> under -O1 + sanitizers, and -Werror.)
    const size_t at = i.out.find(" prompt tokens");
    ASSERT_NE(at, std::string::npos) << i.out;
    const size_t from = i.out.rfind(' ', at - 1) + 1;
    const int n_prompt = std::stoi(i.out.substr(from, at - from));
    EXPECT_LE(n_prompt, 384);
    EXPECT_GE(n_prompt, 374);
    EXPECT_NE(i.out.find("\"needle\" tokens ["), std::string::npos) << i.out;
    EXPECT_NE(i.out.find("answer found: yes"), std::string::npos) << i.out;

    // Wrong combinations are refused with exit code 2 and a message naming the problem; a
    // folder that does not exist is a runtime failure (1).
    const std::string base =
        "run --quiet --model " + demo + " --trace " + tmp("x.kvtrace.h5").string();
    for (const auto& [args, says, code] : std::vector<std::tuple<std::string, std::string, int>>{
             {" --scenario niah --prompt hi", "excludes", 2},
             {" --scenario niah --needle hi", "--scenario marks its own needle", 2},
             {" --scenario haystack", "scenario", 2},
             {" --scenario passkey --needles 3", "niah or needles only", 2},
             {" --scenario niah --depth 1.5", "depth", 2},
             {" --scenario niah --haystack /nonexistent/kvscope_hay", "/nonexistent/kvscope_hay",
              1},
             {" --prompt hi --needles 2", "--scenario only", 2}}) {
        const auto b = run(base + args);
        EXPECT_EQ(b.code, code) << args << ": " << b.out;
        EXPECT_NE(b.out.find(says), std::string::npos) << args << ": " << b.out;
    }
}

// Never clobber, never lose a trace: an existing --trace is refused (exit 2, file untouched)
// unless --force, and even then it is replaced only by the rename at the end of the run, so a
// reader that has the old trace open keeps reading it whole.
TEST(Cli, RunNeverClobbersAndReplacesATraceOnlyWhenComplete) {
    const std::string base = "run --quiet --model " + kModel +
                             " --prompt 'A gift of a flower will soon be made to you' --trace ";
    const fs::path notes = tmp("notes.txt");
    const std::string text = "my notes, not a trace\n";
    std::ofstream(notes, std::ios::binary) << text;
    auto r = run(base + notes.string() + " --max-new 4");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find(notes.string() + ": already exists"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("--force"), std::string::npos) << r.out;
    EXPECT_EQ(file_bytes(notes), text);
    EXPECT_FALSE(fs::exists(tmp("notes.txt.part")));
    r = run(base + notes.string() + " --max-new 4 --force");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(run("inspect " + notes.string()).code, 0);
    EXPECT_FALSE(fs::exists(tmp("notes.txt.part")));

    // The "lost trace" scenario: the old trace is open in a reader (the Studio) while the same
    // path is recorded again. It used to fail on HDF5's lock and leave an empty file.
    const fs::path trace = tmp("again.kvtrace.h5");
    ASSERT_EQ(run(base + trace.string() + " --max-new 6 --ignore-eos").code, 0);
    kvscope::trace::TraceReader old_reader(trace);
    ASSERT_EQ(old_reader.info().n_steps, 6);
    r = run(base + trace.string() + " --max-new 3 --ignore-eos --force");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(old_reader.info().n_steps, 6);
    EXPECT_EQ(old_reader.steps(0, 6).size(), 6u);
    EXPECT_TRUE(old_reader.validate().empty());
    kvscope::trace::TraceReader new_reader(trace);
    EXPECT_EQ(new_reader.info().n_steps, 3);
    EXPECT_EQ(new_reader.info().state, kvscope::trace::RunState::kComplete);

    // A .part left by a killed run is refused without --force (named, untouched), discarded
    // with it.
    const fs::path stale = tmp("stale.kvtrace.h5.part");
    std::ofstream(stale, std::ios::binary) << "half a recording";
    r = run(base + tmp("stale.kvtrace.h5").string() + " --max-new 2");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find(stale.string()), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("did not finish"), std::string::npos) << r.out;
    EXPECT_EQ(file_bytes(stale), "half a recording");
    r = run(base + tmp("stale.kvtrace.h5").string() + " --max-new 2 --force");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_FALSE(fs::exists(stale));

    // Other commands writing files follow the same rule.
    const fs::path out = tmp("logits_exists.json");
    std::ofstream(out) << "{}";
    r = run("logits --model " + kModel + " --token-ids 1,2,3 --out " + out.string());
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_EQ(file_bytes(out), "{}");
    r = run("logits --model " + kModel + " --token-ids 1,2,3 --out " + out.string() + " --force");
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(file_bytes(out), "{}");
}

}  // namespace
}  // namespace kvscope::test
