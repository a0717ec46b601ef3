// kvscope export FILE --csv DIR: writes the trace's tables as CSV files (+ metadata.json) for
// pandas and spreadsheet users. Works on incomplete traces too (exports what was committed).
#include <cstdio>

#include "app/cli/command.h"
#include "core/model/error.h"
#include "traces/trace_csv_export.h"
#include "traces/trace_reader.h"

namespace kvscope::cli {
namespace {

struct ExportArgs {
    std::string file;
    std::string csv_dir;
};

std::function<int()> setup(CLI::App& sub) {
    auto a = std::make_shared<ExportArgs>();
    sub.add_option("file", a->file, "Trace file (.kvtrace.h5)")->required();
    sub.add_option("--csv", a->csv_dir, "Folder to write the CSV files into (created if missing)")
        ->required();
    return [a]() {
        trace::TraceReader reader(a->file);
        auto info = reader.info();
        if (!info.notice.empty()) std::fprintf(stderr, "kvscope: note: %s\n", info.notice.c_str());
        auto files = trace::export_csv(reader, a->csv_dir);
        for (const auto& f : files) std::printf("%s\n", f.string().c_str());
        return 0;
    };
}

KVSCOPE_COMMAND("export", "Export a trace's tables as CSV files (for pandas)", setup);

}  // namespace
}  // namespace kvscope::cli
