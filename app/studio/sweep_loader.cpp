#include "app/studio/sweep_loader.h"

#include <algorithm>
#include <fstream>
#include <stdexcept>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/recorder/niah_sweep.h"
#include "traces/niah_summary_columns.h"

namespace kvscope::studio {

namespace fs = std::filesystem;

namespace {

// summary.csv, or (an unmerged sharded sweep) the shards' summaries in name order.
std::vector<fs::path> summary_files(const fs::path& dir) {
    std::error_code ec;
    if (fs::is_regular_file(dir / "summary.csv", ec)) return {dir / "summary.csv"};
    std::vector<fs::path> shards;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string name = e.path().filename().string();
        if (name.rfind("summary-shard-", 0) == 0 && e.path().extension() == ".csv")
            shards.push_back(e.path());
    }
    std::sort(shards.begin(), shards.end());
    return shards;
}

}  // namespace

views::NiahGrid load_niah_sweep(const fs::path& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
        throw std::runtime_error(dir.string() +
                                 ": not a folder (open the folder kvscope niah "
                                 "--out wrote)");
    const fs::path spec_path = dir / "sweep.json";
    std::ifstream f(spec_path, std::ios::binary);
    if (!f)
        throw std::runtime_error(spec_path.string() +
                                 ": missing — not a kvscope niah sweep folder (it needs sweep.json "
                                 "and summary.csv)");
    record::SweepSpec spec;
    try {
        spec = record::SweepSpec::from_json(nlohmann::json::parse(f));
    } catch (const std::exception& e) {
        throw std::runtime_error(spec_path.string() + ": " + e.what());
    }
    views::NiahSweepAxes axes;
    axes.model = spec.model;
    axes.haystacks = spec.haystacks;
    for (const record::NeedleSet& n : spec.needles) axes.needle_sets.push_back(n.name);
    axes.lengths = spec.lengths;
    axes.depths = spec.depths;
    axes.trials = spec.trials;
    axes.policies = spec.policies;
    axes.budget_kind = spec.budget_kind;
    axes.budgets = spec.budgets;
    axes.max_new = spec.max_new;
    axes.traces = spec.traces;

    // A sweep that has just started may have no summary yet: an empty grid that fills in.
    std::vector<std::vector<std::string>> table;
    std::string csv_name = (dir / "summary.csv").string();
    const std::vector<fs::path> files = summary_files(dir);
    for (size_t i = 0; i < files.size(); ++i) {
        auto part = record::read_csv(files[i]);  // throws InputError naming the file
        // Each shard appends its rows as they finish: a short last row is being written.
        if (part.size() > 1 && part.back().size() < part.front().size()) part.pop_back();
        if (table.empty()) {
            table = part;
            csv_name = files[i].string();
        } else if (!part.empty()) {
            if (part.front() != table.front())
                throw std::runtime_error(files[i].string() + ": its header differs from " +
                                         files[0].string() + "'s");
            table.insert(table.end(), part.begin() + 1, part.end());
        }
    }
    if (table.empty()) table.push_back(trace::niah_summary_columns());
    views::NiahGrid grid = views::build_niah_grid(axes, table, csv_name);
    grid.folder = fs::absolute(dir).lexically_normal().string();
    return grid;
}

std::string niah_summary_stamp(const fs::path& dir) {
    std::string stamp;
    std::error_code ec;
    for (const fs::path& p : summary_files(dir)) {
        const auto size = fs::file_size(p, ec);
        const auto time = fs::last_write_time(p, ec);
        stamp += p.filename().string() + ":" + std::to_string(ec ? 0 : size) + ":" +
                 std::to_string(time.time_since_epoch().count()) + ";";
    }
    return stamp;
}

}  // namespace kvscope::studio
