// The CLI's conventions (issue 14, item 3) and its handling of bad input at the edges (issue 11,
// item 5), on the real binary: exit codes 0/1/2, "did you mean", `help CMD`, `-V`, plain progress
// off a terminal, --json on stdout, quoted CSV string columns with their dtypes, one rule for
// prompt text (UTF-8, non-empty; checked before any output file exists), range-checked numbers.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/cli/cli_runner.h"

namespace kvscope::test {
namespace {

namespace fs = std::filesystem;

fs::path scratch(const std::string& name) {
    return scratch_file("conventions-" + name);
}

// Records a short needle run (snapkv, budget 8, 4 new tokens) that `rescue` can work on.
int record_needle_run(const fs::path& trace) {
    return run_kvscope("run --quiet --model " + kModel +
                       " --prompt 'The code is 4721. A gift of a flower will soon be made to "
                       "you.' --needle 'code is 4721' --answer 4721 --policy snapkv --budget 8 "
                       "--max-new 4 --trace " +
                       trace.string())
        .code;
}

bool has(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

TEST(CliConventions, ExitCodeClasses) {
    EXPECT_EQ(run_kvscope("policies").code, 0);
    // 1: runtime failures — a missing file, a file that is not a trace, a model that does not load.
    auto r = run_kvscope("inspect /nonexistent/kvscope.kvtrace.h5");
    EXPECT_EQ(r.code, 1) << r.out;
    const fs::path notes = scratch("notes.kvtrace.h5");
    std::ofstream(notes) << "not hdf5\n";
    r = run_kvscope("inspect " + notes.string());
    EXPECT_EQ(r.code, 1) << r.out;
    r = run_kvscope("generate --model /nonexistent/model --prompt hi");
    EXPECT_EQ(r.code, 1) << r.out;
    // 2: usage errors — unknown command or flag, a bad value, a missing required flag.
    EXPECT_EQ(run_kvscope("frobnicate").code, 2);
    EXPECT_EQ(run_kvscope("run --frobnicate").code, 2);
    EXPECT_EQ(run_kvscope("generate --model " + kModel + " --prompt hi --max-new lots").code, 2);
    EXPECT_EQ(run_kvscope("generate --model " + kModel).code, 2);
    EXPECT_EQ(run_kvscope("generate --model " + kModel + " --prompt hi --policy nosuch").code, 2);
    // Documented in the help.
    r = run_kvscope("--help");
    EXPECT_EQ(r.code, 0);
    EXPECT_TRUE(has(r.out, "Exit status: 0 success; 1 runtime failure")) << r.out;
    EXPECT_TRUE(has(run_kvscope("run --help").out, "2 usage error"));
}

TEST(CliConventions, SuggestsTheClosestCommandAndFlag) {
    auto r = run_kvscope("runn --model x");
    EXPECT_EQ(r.code, 2);
    EXPECT_TRUE(has(r.out, "unknown command 'runn'. Did you mean run?")) << r.out;
    r = run_kvscope("inspekt x.h5");
    EXPECT_TRUE(has(r.out, "Did you mean inspect?")) << r.out;
    r = run_kvscope("run --modle " + kModel + " --prompt hi --trace x.h5");
    EXPECT_EQ(r.code, 2);
    EXPECT_TRUE(has(r.out, "unknown flag --modle. Did you mean --model?")) << r.out;
    r = run_kvscope("eval niah --trails 3");
    EXPECT_TRUE(has(r.out, "Did you mean --trials?")) << r.out;
    r = run_kvscope("help runn");
    EXPECT_EQ(r.code, 2);
    EXPECT_TRUE(has(r.out, "Did you mean run?")) << r.out;
}

TEST(CliConventions, HelpCommandEqualsDashDashHelp) {
    const CliResult a = run_kvscope("help run");
    const CliResult b = run_kvscope("run --help");
    EXPECT_EQ(a.code, 0);
    EXPECT_EQ(a.out, b.out);
    EXPECT_TRUE(has(a.out, "--trace")) << a.out;
    EXPECT_EQ(run_kvscope("help").out, run_kvscope("--help").out);
    // Defaults are shown.
    EXPECT_TRUE(has(b.out, "--max-new INT:INT in [0 - 1048576]=32")) << b.out;
    EXPECT_TRUE(has(b.out, "--policy TEXT=full")) << b.out;
}

TEST(CliConventions, VersionNamesCommitBuildAndBackends) {
    const CliResult v = run_kvscope("-V");
    EXPECT_EQ(v.code, 0);
    EXPECT_EQ(v.out.rfind("kvscope ", 0), 0u) << v.out;
    EXPECT_TRUE(has(v.out, "\ncommit:   ")) << v.out;
    EXPECT_TRUE(has(v.out, "\nbuild:    ")) << v.out;
    EXPECT_TRUE(has(v.out, "\nbackends: cpu")) << v.out;
    EXPECT_EQ(run_kvscope("--version").out, v.out);
    // After a subcommand too, without its required flags.
    const CliResult s = run_kvscope("run --version");
    EXPECT_EQ(s.code, 0) << s.out;
    EXPECT_EQ(s.out, v.out);
}

TEST(CliConventions, ProgressOffATerminalIsPlainLines) {
    const fs::path trace = scratch("plain.kvtrace.h5");
    const CliResult r = run_kvscope_split("run --model " + kModel +
                                          " --prompt 'A gift of a flower' --max-new 12 "
                                          "--ignore-eos --trace " +
                                          trace.string());
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_FALSE(has(r.err, "\r")) << r.err;
    EXPECT_FALSE(has(r.out, "\r")) << r.out;
    EXPECT_TRUE(has(r.err, "[decode] 12/12")) << r.err;  // the last line always comes
    EXPECT_TRUE(has(r.err, "ETA")) << r.err;
    const CliResult q = run_kvscope_split("run --quiet --model " + kModel +
                                          " --prompt 'A gift' --max-new 3 --trace " +
                                          scratch("quiet.kvtrace.h5").string());
    ASSERT_EQ(q.code, 0) << q.err;
    EXPECT_EQ(q.err, "");
}

// whatif, bench and rescue: the same progress as run and eval (count and ETA on stderr, plain
// lines off a terminal, the last line always, nothing with --quiet).
TEST(CliConventions, LongCommandsShowProgressWithCountAndEta) {
    const CliResult w = run_kvscope_split("whatif --model " + kModel +
                                          " --prompt 'A gift of a flower' --policy snapkv "
                                          "--ratio 0.25,0.5,0.75");
    ASSERT_EQ(w.code, 0) << w.err;
    EXPECT_TRUE(has(w.err, "[whatif] 3/3")) << w.err;
    EXPECT_TRUE(has(w.err, "ETA")) << w.err;
    EXPECT_FALSE(has(w.err + w.out, "\r"));
    const std::string bench = "bench --model " + kModel +
                              " --device cpu --lengths 16,24 --decode-steps 1 --recording off";
    const CliResult b = run_kvscope_split(bench);
    ASSERT_EQ(b.code, 0) << b.err;
    EXPECT_TRUE(has(b.err, "[bench] 4/4")) << b.err;  // (full, snapkv) x (16, 24)
    EXPECT_TRUE(has(b.err, "ETA")) << b.err;
    EXPECT_FALSE(has(b.err + b.out, "\r"));
    const CliResult bq = run_kvscope_split(bench + " --quiet");
    ASSERT_EQ(bq.code, 0) << bq.err;
    EXPECT_EQ(bq.err, "");
    const fs::path lost = scratch("progress_lost.kvtrace.h5");
    ASSERT_EQ(record_needle_run(lost), 0);
    const CliResult r = run_kvscope_split("rescue " + lost.string() + " --max-runs 3 --out " +
                                          scratch("progress_rescue").string());
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(has(r.err, "[rescue] 0/3")) << r.err;  // the first line: at most 3 runs
    EXPECT_TRUE(has(r.err, "ETA")) << r.err;
    EXPECT_FALSE(has(r.err + r.out, "\r"));
}

nlohmann::json json_of(const std::string& args) {
    const CliResult r = run_kvscope_split(args);
    EXPECT_EQ(r.code, 0) << args << "\n" << r.out << r.err;
    try {
        return nlohmann::json::parse(r.out);  // the whole of stdout is one document
    } catch (const std::exception& e) {
        ADD_FAILURE() << args << ": stdout is not one JSON document (" << e.what() << "):\n"
                      << r.out;
        return nullptr;
    }
}

TEST(CliConventions, JsonOnStdoutParses) {
    const fs::path trace = scratch("json.kvtrace.h5");
    auto j = json_of("run --json --model " + kModel +
                     " --prompt 'The code is 4721. A gift' --needle 'code is 4721' --answer 4721 "
                     "--max-new 4 --trace " +
                     trace.string());
    EXPECT_EQ(j["trace"], trace.string());
    EXPECT_EQ(j["decode_steps"].get<int>(), 4);
    EXPECT_EQ(j["answer"], "4721");
    j = json_of("inspect --json " + trace.string());
    EXPECT_EQ(j["valid"], true);
    EXPECT_EQ(j["n_steps"].get<int>(), 4);
    j = json_of("generate --json --model " + kModel + " --prompt 'A gift' --max-new 4");
    EXPECT_EQ(j["prompt"], "A gift");
    EXPECT_EQ(j["generated_tokens"].get<int>(), 4);
    j = json_of("tokenize --json --model " + kModel + " --text 'Hello world'");
    EXPECT_FALSE(j["ids"].empty());
    j = json_of("tokenize --json --model " + kModel + " --decode 1,2");
    EXPECT_TRUE(j.contains("text"));
    j = json_of("policies --json");
    EXPECT_GE(j.size(), 12u);
    j = json_of("export --json " + trace.string() + " --csv " + scratch("export_json").string());
    EXPECT_FALSE(j["files"].empty());
    j = json_of("eval niah --json --quiet --model " + kModel +
                " --lengths 160 --depths 0.5 --trials 1 --csv " + scratch("eval.csv").string());
    EXPECT_EQ(j["total"].get<int>(), 1);
    j = json_of("whatif --json - --quiet --model " + kModel +
                " --prompt 'A gift of a flower' --policy snapkv --ratio 0.5");
    EXPECT_EQ(j.size(), 1u);
    const std::string sweep = scratch("sweep").string();
    j = json_of("niah --json --quiet --no-traces --model " + kModel +
                " --lengths 160 --depths 0.5 --policies snapkv --ratios 0.5 --max-new 2 --out " +
                sweep);
    EXPECT_GE(j["rows_run"].get<int>(), 1);
    j = json_of("niah-merge --json " + sweep);
    EXPECT_GE(j["rows"].get<int>(), 1);
    // Commands that also write JSON files take '-' for stdout.
    const fs::path lost = scratch("lost.kvtrace.h5");
    ASSERT_EQ(record_needle_run(lost), 0);
    j = json_of("explain " + lost.string() + " --json -");
    EXPECT_TRUE(j.contains("decisions"));
    j = json_of("rescue " + lost.string() + " --json --quiet --max-runs 3 --out " +
                scratch("rescue").string());
    EXPECT_TRUE(j.contains("runs"));
    j = json_of("logits --json --model " + kModel + " --prompt hi");
    EXPECT_TRUE(j.contains("top"));
    j = json_of("bench --model " + kModel +
                " --device cpu --lengths 16 --decode-steps 1 --recording off --json -");
    EXPECT_TRUE(j.contains("device"));
    // generate's text ends with a newline.
    const CliResult g =
        run_kvscope_split("generate --model " + kModel + " --prompt hi --max-new 2");
    ASSERT_FALSE(g.out.empty());
    EXPECT_EQ(g.out.back(), '\n');
}

TEST(CliConventions, CsvStringColumnsAreQuotedAndTyped) {
    const fs::path trace = scratch("csv.kvtrace.h5");
    ASSERT_EQ(run_kvscope("run --quiet --model " + kModel +
                          " --prompt 'Agent NA says the code is 007. A gift' --needle "
                          "'code is 007' --answer 007 --max-new 2 --trace " +
                          trace.string())
                  .code,
              0);
    const fs::path dir = scratch("csv_out");
    const CliResult r = run_kvscope("export " + trace.string() + " --csv " + dir.string());
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_TRUE(has(file_bytes(dir / "spans.csv"), ",\"007\",")) << file_bytes(dir / "spans.csv");
    EXPECT_TRUE(has(file_bytes(dir / "tokens.csv"), ",\"prompt\","))
        << file_bytes(dir / "tokens.csv");
    std::ifstream f(dir / "dtypes.json");
    const auto dt = nlohmann::json::parse(f);
    EXPECT_EQ(dt["spans.csv"]["expected_answer"], "string");
    EXPECT_EQ(dt["tokens.csv"]["text"], "string");
    EXPECT_EQ(dt["tokens.csv"]["id"], "int64");
    EXPECT_EQ(dt["steps.csv"]["entropy"], "float64");
    // eval's CSVs quote their string columns too.
    const fs::path grid = scratch("grid.csv"), details = scratch("details.csv");
    ASSERT_EQ(run_kvscope("eval passkey --quiet --model " + kModel +
                          " --lengths 160 --depths 0.5 --trials 1 --csv " + grid.string() +
                          " --details " + details.string())
                  .code,
              0);
    EXPECT_TRUE(has(file_bytes(grid), "\n\"passkey\",\"full\",")) << file_bytes(grid);
    EXPECT_TRUE(has(file_bytes(details), "\n\"passkey\",\"full\",")) << file_bytes(details);
}

TEST(CliConventions, InvalidUtf8PromptIsRefusedBeforeAnyOutput) {
    const fs::path bad = scratch("bad.txt");
    std::ofstream(bad, std::ios::binary) << "ab\xff"
                                         << "cd";
    const fs::path trace = scratch("utf8.kvtrace.h5");
    auto r = run_kvscope("run --model " + kModel + " --prompt-file " + bad.string() + " --trace " +
                         trace.string());
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_TRUE(has(r.out, "not valid UTF-8")) << r.out;
    EXPECT_TRUE(has(r.out, "byte offset 2")) << r.out;
    EXPECT_FALSE(fs::exists(trace));
    EXPECT_FALSE(fs::exists(trace.string() + ".part"));
    // The same bytes in a flag, on every command that reads prompt text.
    const std::string bytes = "\"$(printf 'xy\\303(')\"";  // a lead byte, then no continuation
    for (const std::string& cmd :
         {"run --model " + kModel + " --trace " + trace.string() + " --prompt " + bytes,
          "generate --model " + kModel + " --prompt " + bytes,
          "tokenize --model " + kModel + " --text " + bytes,
          "whatif --model " + kModel + " --policy snapkv --ratio 0.5 --prompt " + bytes}) {
        r = run_kvscope(cmd);
        EXPECT_EQ(r.code, 2) << cmd << ": " << r.out;
        EXPECT_TRUE(has(r.out, "byte offset 2")) << cmd << ": " << r.out;
    }
    r = run_kvscope("whatif --model " + kModel + " --policy snapkv --ratio 0.5 --prompt-file " +
                    bad.string());
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_FALSE(fs::exists(trace));
}

TEST(CliConventions, EmptyPromptIsRefusedTheSameFromFlagAndFile) {
    const fs::path empty = scratch("empty.txt");
    std::ofstream(empty).flush();
    const std::string base =
        "run --model " + kModel + " --trace " + scratch("e.kvtrace.h5").string();
    const CliResult a = run_kvscope(base + " --prompt ''");
    const CliResult b = run_kvscope(base + " --prompt-file " + empty.string());
    EXPECT_EQ(a.code, 2) << a.out;
    EXPECT_EQ(b.code, 2) << b.out;
    EXPECT_TRUE(has(a.out, "the prompt is empty")) << a.out;
    EXPECT_TRUE(has(b.out, "the prompt is empty")) << b.out;
    EXPECT_EQ(run_kvscope("generate --model " + kModel + " --prompt ''").code, 2);
}

TEST(CliConventions, NumbersAndParamsAreRangeChecked) {
    const std::string base =
        "run --model " + kModel + " --prompt hi --trace " + scratch("n.kvtrace.h5").string();
    auto r = run_kvscope(base + " --policy snapkv --budget 99999999999999999999");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_TRUE(has(r.out, "1073741824")) << r.out;  // the allowed range
    r = run_kvscope(base + " --policy snapkv --budget 8 --param window=99999999999");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_TRUE(has(r.out, "[1, 16777216]")) << r.out;
    r = run_kvscope(base + " --seed 99999999999999999999999");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_TRUE(has(r.out, "out of range")) << r.out;
    r = run_kvscope(base + " --threads 99999999999999999999");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_FALSE(fs::exists(scratch("n.kvtrace.h5")));
}

TEST(CliConventions, MisleadingMessagesAreAccurate) {
    auto r = run_kvscope("run --model " + kModel + " --prompt-file " + scratch_file("").string() +
                         " --trace " + scratch("d.kvtrace.h5").string());
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_TRUE(has(r.out, "is a directory, not a file")) << r.out;
    r = run_kvscope("generate --model " + kModel + "/config.json --prompt hi");
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_TRUE(has(r.out, "takes a model directory")) << r.out;
    EXPECT_TRUE(has(r.out, "--model " + kModel)) << r.out;
}

}  // namespace
}  // namespace kvscope::test
