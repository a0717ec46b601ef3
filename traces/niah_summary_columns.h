// The columns of a NIAH sweep's summary CSV (docs/niah_sweeps.md), in order: one list for the
// writer (app/recorder/niah_sweep.cpp: `kvscope sweep`, shard merging) and the reader
// (views/niah_grid_model.cpp: the Studio's NIAH grid), so the two cannot drift apart.
#pragma once

#include <algorithm>
#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace kvscope::trace {

inline const std::vector<std::string>& niah_summary_columns() {
    static const std::vector<std::string> columns = {"cell",
                                                     "haystack",
                                                     "needle_set",
                                                     "length",
                                                     "depth",
                                                     "trial",
                                                     "seed",
                                                     "prompt_tokens",
                                                     "policy",
                                                     "budget_kind",
                                                     "budget",
                                                     "budget_tokens",
                                                     "bytes_full",
                                                     "bytes_prompt",
                                                     "bytes_final",
                                                     "needle_prompt_mean",
                                                     "needle_prompt_min",
                                                     "needle_final_mean",
                                                     "needle_final_min",
                                                     "found",
                                                     "output",
                                                     "trace",
                                                     "decode_ms"};
    return columns;
}

// Text columns are always quoted in the CSV; the others hold numbers and never are.
inline bool niah_summary_column_is_text(std::string_view column) {
    static constexpr std::array<std::string_view, 7> text = {
        "haystack", "needle_set", "policy", "budget_kind", "budget", "output", "trace"};
    return std::find(text.begin(), text.end(), column) != text.end();
}

}  // namespace kvscope::trace
