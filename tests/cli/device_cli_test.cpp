// --device on every command that runs a model, and `kvscope bench` on the CPU.
// Where the kvscope binary cannot use CUDA (no CUDA build, no GPU, GPU below sm_90: here and in
// CI), `--device cuda` must fail before any work with exit 1 and a message naming what was needed
// and what was found; where it can, the same commands must run.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/cli/cli_runner.h"

namespace kvscope::test {
namespace {

namespace fs = std::filesystem;

fs::path scratch_dir() {
    static const fs::path d = [] {
        fs::path p = fs::temp_directory_path() / ("kvscope_device_" + std::to_string(::getpid()));
        fs::remove_all(p);
        fs::create_directories(p);
        return p;
    }();
    return d;
}

TEST(DeviceFlag, CudaIsRefusedClearlyOrRuns) {
    const std::string trace = (scratch_dir() / "cuda.kvtrace.h5").string();
    const std::string cmds[] = {
        "generate --model " + kModel + " --prompt hi --max-new 2",
        "logits --model " + kModel + " --prompt hi",
        "run --model " + kModel + " --prompt hi --max-new 2 --trace " + trace,
        "eval niah --model " + kModel + " --lengths 64 --depths 0.5 --trials 1",
        "whatif --model " + kModel + " --prompt hi --policy snapkv --ratio 0.5",
        "bench --model " + kModel + " --lengths 16 --decode-steps 1 --recording off",
    };
    for (const std::string& c : cmds) {
        SCOPED_TRACE(c);
        const CliResult r = run_kvscope(c + " --device cuda");
        if (r.code == 0) continue;  // this build has CUDA and a supported GPU
        EXPECT_EQ(r.code, 1) << r.out;
        EXPECT_NE(r.out.find("--device cuda needs the CUDA backend and an NVIDIA GPU of compute "
                             "capability 9.0"),
                  std::string::npos)
            << r.out;
        EXPECT_NE(r.out.find("found: "), std::string::npos) << r.out;
        EXPECT_EQ(r.out.find("Segmentation"), std::string::npos) << r.out;
    }
    const CliResult bad = run_kvscope("generate --model " + kModel + " --prompt hi --device tpu");
    EXPECT_EQ(bad.code, 2) << bad.out;
}

TEST(DeviceFlag, TraceRecordsTheDevice) {
    const std::string trace = (scratch_dir() / "cpu.kvtrace.h5").string();
    const CliResult r =
        run_kvscope("run --model " + kModel +
                    " --prompt 'A gift of a flower' --max-new 2 --device cpu --trace " + trace);
    ASSERT_EQ(r.code, 0) << r.out;
    const CliResult i = run_kvscope("inspect " + trace);
    ASSERT_EQ(i.code, 0) << i.out;
    EXPECT_NE(i.out.find("device cpu: "), std::string::npos) << i.out;
    EXPECT_NE(i.out.find("backend cpu"), std::string::npos) << i.out;
}

TEST(Bench, RunsOnTheCpuAndWritesRows) {
    const fs::path json = scratch_dir() / "bench.json";
    const CliResult r = run_kvscope("bench --model " + kModel +
                                    " --device cpu --threads 2 --lengths 16,40 --decode-steps 2 "
                                    "--recording off,on --floor-mib 8 --json " +
                                    json.string());
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("floor:"), std::string::npos) << r.out;
    std::ifstream f(json);
    const nlohmann::json j = nlohmann::json::parse(f);
    EXPECT_EQ(j["backend"], "cpu");
    EXPECT_GT(j["floor_gbs"].get<double>(), 0.0);
    ASSERT_EQ(j["rows"].size(), 8u);  // {full, snapkv} x {16, 40} x {off, on}
    EXPECT_EQ(j["prefill_reps"], 3);  // the default
    for (const auto& row : j["rows"]) {
        EXPECT_GT(row["prefill_ms"].get<double>(), 0.0);
        // The median of the three timed prefills.
        std::vector<double> reps = row["prefill_reps_ms"].get<std::vector<double>>();
        ASSERT_EQ(reps.size(), 3u);
        std::sort(reps.begin(), reps.end());
        EXPECT_EQ(row["prefill_ms"].get<double>(), reps[1]);
        EXPECT_GT(row["decode_ms_per_token"].get<double>(), 0.0);
        EXPECT_GT(row["bytes_per_step"].get<int64_t>(), row["kv_bytes"].get<int64_t>());
        EXPECT_GT(row["gbs"].get<double>(), 0.0);
    }
    // The compressing policy holds fewer KV bytes than the full cache at the same length.
    EXPECT_LT(j["rows"][6]["kv_bytes"].get<int64_t>(), j["rows"][2]["kv_bytes"].get<int64_t>());
    const CliResult bad = run_kvscope("bench --model " + kModel + " --device cpu --lengths 1");
    EXPECT_EQ(bad.code, 2) << bad.out;
    const CliResult no_reps =
        run_kvscope("bench --model " + kModel + " --device cpu --lengths 16 --prefill-reps 0");
    EXPECT_EQ(no_reps.code, 2) << no_reps.out;
}

}  // namespace
}  // namespace kvscope::test
