// kvscope upgrade IN OUT: writes a copy of an older trace (schema version 1) in the current
// schema version (traces/trace_upgrade.h); IN is only read. Readers open version 1 files as they
// are, so this is for tools that want version 2 files on disk.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "app/cli/cli_common.h"
#include "app/cli/command.h"
#include "core/error.h"
#include "traces/trace_schema.h"
#include "traces/trace_upgrade.h"

namespace kvscope::cli {
namespace {

struct UpgradeArgs {
    std::string input;
    std::string output;
    bool force = false;
    bool quiet = false;
    bool json = false;
};

std::function<int()> setup(CLI::App& sub) {
    auto a = std::make_shared<UpgradeArgs>();
    sub.add_option("input", a->input, "Trace to upgrade (.kvtrace.h5, an older schema version)")
        ->required();
    sub.add_option("output", a->output,
                   "New trace file to write (schema version " +
                       std::to_string(trace::kSchemaVersion) +
                       "); recorded into <output>.part, renamed at the end")
        ->required();
    sub.add_flag("--force", a->force, kForceHelp);
    sub.add_flag("--quiet", a->quiet, "No progress on stderr");
    sub.add_flag("--json", a->json, "Print the result as one JSON document on stdout");
    return [a]() {
        std::error_code ec;
        if (std::filesystem::exists(a->output, ec) &&
            std::filesystem::equivalent(a->input, a->output, ec))
            throw UsageError(a->output,
                             "is the input itself; upgrade writes a new file and never changes "
                             "the input (give another output path)");
        check_trace_output_path(a->output, a->force);
        Progress progress("upgrade", a->quiet);
        const auto r = trace::upgrade_trace(
            a->input, a->output, a->force,
            [&](int64_t done, int64_t total) { progress.update(done, total); });
        progress.finish();
        if (a->json) {
            std::printf("%s\n", nlohmann::json{{"input", a->input},
                                               {"output", a->output},
                                               {"from_schema_version", r.from_version},
                                               {"to_schema_version", r.to_version},
                                               {"steps", r.steps},
                                               {"events", r.events}}
                                    .dump(2)
                                    .c_str());
        } else {
            std::printf(
                "%s: schema version %d -> %d, %lld steps, %lld events (input unchanged: %s)\n",
                a->output.c_str(), r.from_version, r.to_version, static_cast<long long>(r.steps),
                static_cast<long long>(r.events), a->input.c_str());
        }
        return kExitOk;
    };
}

KVSCOPE_COMMAND("upgrade",
                "Write a copy of an older trace in the current schema version (the input is "
                "only read)",
                setup);

}  // namespace
}  // namespace kvscope::cli
