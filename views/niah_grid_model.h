#pragma once
// NiahGrid: the data behind the NIAH grid view, built from a `kvscope niah` sweep folder's
// summary.csv rows (already parsed into strings) and its sweep.json axes. No Qt, no file I/O: the
// Studio reads the files (app/studio/sweep_loader.h) and hands the tables here.
//
// Shape: jobs (the full-cache baseline first, then policy × budget in the spec's order) ×
// lengths × depths; each grid cell aggregates the rows of that job at that length and depth over
// trials, haystacks and needle sets (or over one haystack / needle set when filtered).
#include <cstdint>
#include <string>
#include <vector>

namespace kvscope::views {

// The sweep's axes, as sweep.json gives them (record::SweepSpec).
struct NiahSweepAxes {
    std::string model;
    std::vector<std::string> haystacks;    // folder paths; "" = the model's default haystack
    std::vector<std::string> needle_sets;  // names ("builtin" = the training template)
    std::vector<int64_t> lengths;
    std::vector<double> depths;
    int trials = 1;
    std::vector<std::string> policies;  // without "full" (always the baseline)
    std::string budget_kind = "ratio";  // "ratio" | "tokens" | "memory"
    std::vector<double> budgets;
    int max_new = 0;
    bool traces = true;
};

// One summary.csv row (docs/niah_sweeps.md lists the columns).
struct NiahRow {
    int64_t cell = 0;
    std::string haystack, needle_set;
    int64_t length = 0;
    double depth = 0.0;
    int trial = 0;
    int64_t prompt_tokens = 0;
    std::string policy, budget_kind, budget;
    int64_t budget_tokens = -1;
    int64_t bytes_full = 0, bytes_prompt = -1, bytes_final = 0;
    double needle_prompt_mean = -1, needle_prompt_min = -1;
    double needle_final_mean = -1, needle_final_min = -1;
    bool found = false;
    std::string output;
    std::string trace;  // relative to the sweep folder; "" with --no-traces
    double decode_ms = 0.0;
};

// One heatmap: a policy at a budget, or the full-cache baseline.
struct NiahJob {
    std::string policy;  // "full" for the baseline
    std::string budget;  // the CSV's budget column ("-" for full and budget-free policies)
    bool baseline() const { return policy == "full"; }
};

struct NiahCellStats {
    int rows = 0;   // trials (× haystacks × needle sets unless filtered)
    int found = 0;  // rows whose output contained the answer
    // found / rows; NaN when the cell has no rows yet.
    double found_fraction() const;
    // Mean of needle_final_mean over rows that report it (>= 0); NaN when none does.
    double needle_final = 0.0;
    std::vector<int> row_indices;  // into NiahGrid::rows, in CSV order
};

struct NiahGrid {
    std::string folder;  // for labels only
    NiahSweepAxes axes;
    std::vector<NiahRow> rows;
    std::vector<NiahJob> jobs;  // [0] is the baseline
    // Problems with single rows ("summary.csv line 7: 12 columns, expected 23"); the grid is
    // still drawn from the good rows.
    std::vector<std::string> row_errors;
    int64_t expected_rows = 0;  // cells × jobs, for a progress line on a running sweep

    int job_index(const std::string& policy, const std::string& budget) const;  // -1 unknown
    int length_index(int64_t length) const;                                     // -1 unknown
    int depth_index(double depth) const;                                        // -1 unknown
    // The haystack / needle_set column values the rows hold, in order of first appearance (the
    // haystack column names the folder, the axes give its path).
    std::vector<std::string> haystack_names, needle_names;

    // Aggregate of one grid cell; haystack / needle_set: an index into haystack_names /
    // needle_names, -1 (or out of range) = all.
    NiahCellStats stats(int job, int length_i, int depth_i, int haystack = -1,
                        int needle_set = -1) const;
    // The `full` row of the same sweep cell (cell index, haystack, needle set, trial) as
    // rows[row]; -1 when the baseline of that cell has not run (yet).
    int baseline_row(int row) const;
    // "mem 0.25", "ratio 0.1", "256 tok", "full cache", or the policy's "-" for budget-free.
    std::string budget_label(const NiahJob& job) const;
    std::string job_label(int job) const;  // "snapkv · ratio 0.1"

    // Per (job, length, depth): row indices. Built by build_niah_grid.
    std::vector<std::vector<int>> index;
};

// Builds the grid. `table` is summary.csv as read_csv returns it (header first; a table of the
// header alone is a sweep with no rows yet). Throws
// std::runtime_error naming the problem when the header is not a sweep summary's; rows that do
// not parse are listed in row_errors, except a short last row (a running sweep writing it).
// `csv_name` names the file in messages.
NiahGrid build_niah_grid(const NiahSweepAxes& axes,
                         const std::vector<std::vector<std::string>>& table,
                         const std::string& csv_name = "summary.csv");

// The CSV budget column's text for a budget value (as `kvscope niah` writes it).
std::string niah_budget_text(const std::string& budget_kind, double value);

}  // namespace kvscope::views
