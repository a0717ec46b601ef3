#pragma once
// Exports a trace's tables as CSV files (one per table, header row, "nan" for missing floats)
// plus metadata.json, for pandas users. Reads through TraceReader in blocks, so memory stays
// bounded. Full prefill maps are not exported (read them from HDF5).
//
// Files: metadata.json, tokens.csv, spans.csv, prefill_layers.csv, prefill_heads.csv,
// prefill_tokens.csv, steps.csv, bytes_held.csv, budgets.csv, events.csv,
// needle_survival.csv (with spans), attention_rows.csv (with recorded rows).
#include <filesystem>
#include <string>
#include <vector>

#include "traces/trace_reader.h"

namespace kvscope::trace {

// Writes into dir (created when missing). Returns the files written. Throws InputError when dir
// cannot be written.
std::vector<std::filesystem::path> export_csv(const TraceReader& reader,
                                              const std::filesystem::path& dir);

}  // namespace kvscope::trace
