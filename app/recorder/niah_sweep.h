#pragma once
// NIAH sweeps: the classic needle grid — haystacks × needle phrasings × lengths × depths × trials
// (the cells; one prompt each) × policies × budgets — run with one full-cache prefill per cell
// (record::LiveSession): each policy and budget is previewed (needle survival, bytes held) and
// decoded from the saved prompt state (answer, trace). Rows go to a CSV summary as they finish,
// so an interrupted sweep resumes where it stopped, and `--shard I/N` splits the cells between
// independent processes (a Slurm job array, any scheduler) whose summaries merge into one.
//
// Folder layout (OUT):
//   sweep.json                    the spec (a resumed or sharded run must match it)
//   summary.csv                   unsharded rows, or the merge of the shards' rows
//   summary-shard-I-of-N.csv      rows of shard I (0-based)
//   traces/cCCCC/POLICY-BUDGET.kvtrace.h5   one trace per row (cell index CCCC); "full" = baseline
// CSV columns (strings quoted, RFC 4180): see kSummaryColumns in niah_sweep.cpp and
// docs/niah_sweeps.md.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/model/model.h"
#include "core/scenarios/scenario.h"
#include "core/tokenizer/tokenizer.h"

namespace kvscope::record {

struct NeedleSet {
    std::string name;     // column value ("builtin" for the training template)
    bool builtin = true;  // the scenario's own "special magic number" needle
    CustomNeedle custom;
};

// Reads a JSON array of {"name"?, "needle", "question", "answer", "intro"?}. Throws InputError.
std::vector<NeedleSet> load_needle_sets(const std::filesystem::path& path);

struct SweepSpec {
    std::string model;                   // model path (recorded; the caller loads the model)
    std::vector<std::string> haystacks;  // folders; "" = the model's default haystack
    std::vector<NeedleSet> needles;      // at least one
    std::vector<int64_t> lengths;
    std::vector<double> depths;
    int trials = 1;
    uint64_t seed = 1;
    std::vector<std::string> policies;  // "full" is always run as the baseline of each cell
    std::string budget_kind = "ratio";  // "ratio" | "tokens" | "memory"
    std::vector<double> budgets;
    std::vector<std::string> params;  // "key=value" (all policies having key) or "policy.key=v"
    int max_new = 16;
    bool traces = true;  // keep a trace per row

    nlohmann::json to_json() const;
    static SweepSpec from_json(const nlohmann::json& j);  // throws InputError
    int64_t cell_count() const;
};

struct SweepCell {
    int64_t index = 0;
    int haystack = 0, needle = 0;
    int64_t length = 0;
    double depth = 0.0;
    int trial = 0;
    uint64_t seed = 0;
};
std::vector<SweepCell> sweep_cells(const SweepSpec& spec);  // canonical order

struct Shard {
    int index = 0;  // 0-based
    int count = 1;
    bool owns(int64_t cell) const { return cell % count == index; }
};
// "I/N" -> Shard; throws InputError.
Shard parse_shard(const std::string& text);

struct SweepProgress {
    int64_t rows_done = 0, rows_total = 0, rows_skipped = 0;
    double elapsed_s = 0.0, eta_s = 0.0;
    std::string last;  // the row just finished, one line
};

// Runs (the shard's part of) the sweep into `out`. Rows already in the shard's summary are
// skipped (resume). `stop` ends it between rows. Returns the number of rows run now.
int64_t run_niah_sweep(const Model& model, const Tokenizer& tok, const SweepSpec& spec,
                       const std::filesystem::path& out, Shard shard, int threads,
                       const std::atomic<bool>* stop,
                       const std::function<void(const SweepProgress&)>& progress);

// Merges every summary-shard-*.csv (and summary.csv) of `dir` into `dir`/summary.csv in canonical
// order; returns {rows, missing rows of the spec}. Duplicate rows (same cell, policy, budget) must
// agree; a conflict throws InputError.
std::pair<int64_t, int64_t> merge_niah_summaries(const std::filesystem::path& dir);

// The CSV layer (also used by tests): RFC 4180 rows.
std::vector<std::vector<std::string>> read_csv(const std::filesystem::path& path);

}  // namespace kvscope::record
