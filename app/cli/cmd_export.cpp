// kvscope export FILE --csv DIR: writes the trace's tables as CSV files (+ metadata.json) for
// pandas and spreadsheet users. Works on incomplete traces too (exports what was committed).
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "app/cli/cli_common.h"
#include "app/cli/command.h"
#include "core/error.h"
#include "traces/trace_csv_export.h"
#include "traces/trace_reader.h"

namespace kvscope::cli {
namespace {

struct ExportArgs {
    std::string file;
    std::string csv_dir;
    bool force = false;
    bool json = false;
};

std::function<int()> setup(CLI::App& sub) {
    auto a = std::make_shared<ExportArgs>();
    sub.add_option("file", a->file, "Trace file (.kvtrace.h5)")->required();
    sub.add_option("--csv", a->csv_dir,
                   "Folder to write the CSV files into (created if missing); dtypes.json beside "
                   "them gives every column's type (string columns are quoted: read them with "
                   "dtype=str, keep_default_na=False; traces/SCHEMA.md)")
        ->required();
    sub.add_flag("--force", a->force, "Overwrite CSV files already in the folder");
    sub.add_flag("--json", a->json, "Print the written files as one JSON document on stdout");
    return [a]() {
        // Never clobber: a folder that already holds an export (metadata.json or any .csv) is
        // refused unless --force.
        std::error_code ec;
        for (const auto& e : std::filesystem::directory_iterator(a->csv_dir, ec)) {
            const auto name = e.path().filename().string();
            if (name == "metadata.json" || name == "dtypes.json" || e.path().extension() == ".csv")
                check_output_path(e.path().string(), a->force);
        }
        trace::TraceReader reader(a->file);
        auto info = reader.info();
        if (!info.notice.empty()) std::fprintf(stderr, "kvscope: note: %s\n", info.notice.c_str());
        auto files = trace::export_csv(reader, a->csv_dir);
        if (a->json) {
            nlohmann::json j = nlohmann::json::array();
            for (const auto& f : files) j.push_back(f.string());
            std::printf("%s\n", nlohmann::json{{"files", j}}.dump(2).c_str());
            return 0;
        }
        for (const auto& f : files) std::printf("%s\n", f.string().c_str());
        return 0;
    };
}

KVSCOPE_COMMAND("export", "Export a trace's tables as CSV files (for pandas)", setup);

}  // namespace
}  // namespace kvscope::cli
