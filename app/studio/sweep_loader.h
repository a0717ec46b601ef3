#pragma once
// Reads a `kvscope niah` sweep folder (docs/niah_sweeps.md) into a views::NiahGrid: sweep.json
// through record::SweepSpec::from_json, summary.csv through record::read_csv (or, while a sharded
// sweep has not been merged yet, every summary-shard-I-of-N.csv). No Qt: the GUI model tests use
// it too. Errors throw std::runtime_error with a message naming the file and the problem.
#include <cstdint>
#include <filesystem>
#include <string>

#include "views/niah_grid_model.h"

namespace kvscope::studio {

views::NiahGrid load_niah_sweep(const std::filesystem::path& dir);

// The summary file(s) the grid reads, for change polling: a stamp that changes when one of them
// is written (sizes and modification times), "" when there is none.
std::string niah_summary_stamp(const std::filesystem::path& dir);

}  // namespace kvscope::studio
