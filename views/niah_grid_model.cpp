#include "views/niah_grid_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <stdexcept>

#include "traces/niah_summary_columns.h"

namespace kvscope::views {

namespace {

const std::vector<std::string>& kColumns = trace::niah_summary_columns();

int64_t to_int(const std::string& s, const char* column) {
    size_t used = 0;
    long long v = 0;
    try {
        v = std::stoll(s, &used);
    } catch (const std::exception&) {
        used = std::string::npos;
    }
    if (used != s.size())
        throw std::invalid_argument(std::string(column) + " \"" + s + "\" is not an integer");
    return v;
}

double to_double(const std::string& s, const char* column) {
    size_t used = 0;
    double v = 0;
    try {
        v = std::stod(s, &used);
    } catch (const std::exception&) {
        used = std::string::npos;
    }
    if (used != s.size())
        throw std::invalid_argument(std::string(column) + " \"" + s + "\" is not a number");
    return v;
}

NiahRow parse_row(const std::vector<std::string>& r) {
    NiahRow row;
    row.cell = to_int(r[0], "cell");
    row.haystack = r[1];
    row.needle_set = r[2];
    row.length = to_int(r[3], "length");
    row.depth = to_double(r[4], "depth");
    row.trial = static_cast<int>(to_int(r[5], "trial"));
    row.prompt_tokens = to_int(r[7], "prompt_tokens");
    row.policy = r[8];
    row.budget_kind = r[9];
    row.budget = r[10];
    row.budget_tokens = to_int(r[11], "budget_tokens");
    row.bytes_full = to_int(r[12], "bytes_full");
    row.bytes_prompt = to_int(r[13], "bytes_prompt");
    row.bytes_final = to_int(r[14], "bytes_final");
    row.needle_prompt_mean = to_double(r[15], "needle_prompt_mean");
    row.needle_prompt_min = to_double(r[16], "needle_prompt_min");
    row.needle_final_mean = to_double(r[17], "needle_final_mean");
    row.needle_final_min = to_double(r[18], "needle_final_min");
    const int64_t found = to_int(r[19], "found");
    if (found != 0 && found != 1) throw std::invalid_argument("found is not 0 or 1");
    row.found = found == 1;
    row.output = r[20];
    row.trace = r[21];
    row.decode_ms = to_double(r[22], "decode_ms");
    if (row.policy.empty()) throw std::invalid_argument("policy is empty");
    return row;
}

}  // namespace

double NiahCellStats::found_fraction() const {
    return rows > 0 ? static_cast<double>(found) / rows : std::numeric_limits<double>::quiet_NaN();
}

std::string niah_budget_text(const std::string& budget_kind, double value) {
    if (budget_kind == "tokens") return std::to_string(static_cast<int64_t>(value));
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", value);
    return buf;
}

int NiahGrid::job_index(const std::string& policy, const std::string& budget) const {
    for (size_t i = 0; i < jobs.size(); ++i)
        if (jobs[i].policy == policy && jobs[i].budget == budget) return static_cast<int>(i);
    return -1;
}

int NiahGrid::length_index(int64_t length) const {
    for (size_t i = 0; i < axes.lengths.size(); ++i)
        if (axes.lengths[i] == length) return static_cast<int>(i);
    return -1;
}

int NiahGrid::depth_index(double depth) const {
    // The CSV writes depths with %.9g: equal to the spec's value to well within 1e-6.
    for (size_t i = 0; i < axes.depths.size(); ++i)
        if (std::abs(axes.depths[i] - depth) < 1e-6) return static_cast<int>(i);
    return -1;
}

NiahCellStats NiahGrid::stats(int job, int length_i, int depth_i, int haystack,
                              int needle_set) const {
    NiahCellStats s;
    const size_t nl = axes.lengths.size(), nd = axes.depths.size();
    if (job < 0 || length_i < 0 || depth_i < 0 || static_cast<size_t>(job) >= jobs.size() ||
        static_cast<size_t>(length_i) >= nl || static_cast<size_t>(depth_i) >= nd)
        return s;
    // An index out of range (a filter kept across a reload that lost it) means all.
    const bool by_hay = haystack >= 0 && static_cast<size_t>(haystack) < haystack_names.size();
    const bool by_needle = needle_set >= 0 && static_cast<size_t>(needle_set) < needle_names.size();
    const std::string hay = by_hay ? haystack_names[static_cast<size_t>(haystack)] : "";
    const std::string needle = by_needle ? needle_names[static_cast<size_t>(needle_set)] : "";
    double survival = 0.0;
    int with_survival = 0;
    for (int r : index[(static_cast<size_t>(job) * nl + static_cast<size_t>(length_i)) * nd +
                       static_cast<size_t>(depth_i)]) {
        const NiahRow& row = rows[static_cast<size_t>(r)];
        if (by_hay && row.haystack != hay) continue;
        if (by_needle && row.needle_set != needle) continue;
        ++s.rows;
        s.found += row.found ? 1 : 0;
        if (row.needle_final_mean >= 0) {
            survival += row.needle_final_mean;
            ++with_survival;
        }
        s.row_indices.push_back(r);
    }
    s.needle_final =
        with_survival > 0 ? survival / with_survival : std::numeric_limits<double>::quiet_NaN();
    return s;
}

int NiahGrid::baseline_row(int row) const {
    if (row < 0 || static_cast<size_t>(row) >= rows.size()) return -1;
    const NiahRow& a = rows[static_cast<size_t>(row)];
    for (size_t i = 0; i < rows.size(); ++i) {
        const NiahRow& b = rows[i];
        if (b.policy == "full" && b.cell == a.cell && b.trial == a.trial &&
            b.haystack == a.haystack && b.needle_set == a.needle_set)
            return static_cast<int>(i);
    }
    return -1;
}

std::string NiahGrid::budget_label(const NiahJob& job) const {
    if (job.baseline()) return "full cache";
    if (job.budget == "-") return "no budget";
    if (axes.budget_kind == "memory") return "mem " + job.budget;
    if (axes.budget_kind == "tokens") return job.budget + " tok";
    return "ratio " + job.budget;
}

std::string NiahGrid::job_label(int job) const {
    if (job < 0 || static_cast<size_t>(job) >= jobs.size()) return "";
    const NiahJob& j = jobs[static_cast<size_t>(job)];
    if (j.baseline()) return "full (baseline)";
    return j.policy + " · " + budget_label(j);
}

NiahGrid build_niah_grid(const NiahSweepAxes& axes,
                         const std::vector<std::vector<std::string>>& table,
                         const std::string& csv_name) {
    NiahGrid g;
    g.axes = axes;
    if (table.empty() || table.front() != kColumns)
        throw std::runtime_error(csv_name +
                                 ": not a kvscope niah summary (its header differs from "
                                 "the columns in docs/niah_sweeps.md)");
    for (size_t i = 1; i < table.size(); ++i) {
        const auto& r = table[i];
        const std::string where = csv_name + " line " + std::to_string(i + 1);
        if (r.size() != kColumns.size()) {
            // The sweep appends rows as they finish: a short last row is being written.
            if (i + 1 == table.size() && r.size() < kColumns.size()) continue;
            g.row_errors.push_back(where + ": " + std::to_string(r.size()) + " columns, expected " +
                                   std::to_string(kColumns.size()));
            continue;
        }
        try {
            g.rows.push_back(parse_row(r));
        } catch (const std::exception& e) {
            g.row_errors.push_back(where + ": " + e.what());
        }
    }

    // Jobs: full, then each policy with the spec's budgets (or "-" when its rows say it takes
    // none), then whatever else the rows hold (a summary from other flags) in row order.
    g.jobs.push_back({"full", "-"});
    std::map<std::string, bool> budget_free;
    for (const NiahRow& r : g.rows)
        if (r.budget == "-") budget_free[r.policy] = true;
    for (const std::string& p : axes.policies) {
        if (p == "full") continue;
        if (budget_free.count(p) || axes.budgets.empty()) {
            g.jobs.push_back({p, "-"});
            continue;
        }
        for (double b : axes.budgets) g.jobs.push_back({p, niah_budget_text(axes.budget_kind, b)});
    }
    for (const NiahRow& r : g.rows)
        if (g.job_index(r.policy, r.budget) < 0) g.jobs.push_back({r.policy, r.budget});
    for (const NiahRow& r : g.rows) {
        if (std::find(g.haystack_names.begin(), g.haystack_names.end(), r.haystack) ==
            g.haystack_names.end())
            g.haystack_names.push_back(r.haystack);
        if (std::find(g.needle_names.begin(), g.needle_names.end(), r.needle_set) ==
            g.needle_names.end())
            g.needle_names.push_back(r.needle_set);
        if (g.length_index(r.length) < 0) g.axes.lengths.push_back(r.length);
        if (g.depth_index(r.depth) < 0) g.axes.depths.push_back(r.depth);
    }

    const size_t nl = g.axes.lengths.size(), nd = g.axes.depths.size();
    g.index.assign(g.jobs.size() * nl * nd, {});
    for (size_t i = 0; i < g.rows.size(); ++i) {
        const NiahRow& r = g.rows[i];
        const size_t j = static_cast<size_t>(g.job_index(r.policy, r.budget));
        const size_t l = static_cast<size_t>(g.length_index(r.length));
        const size_t d = static_cast<size_t>(g.depth_index(r.depth));
        g.index[(j * nl + l) * nd + d].push_back(static_cast<int>(i));
    }
    const int64_t cells = static_cast<int64_t>(std::max<size_t>(axes.haystacks.size(), 1)) *
                          static_cast<int64_t>(std::max<size_t>(axes.needle_sets.size(), 1)) *
                          static_cast<int64_t>(axes.lengths.size()) *
                          static_cast<int64_t>(axes.depths.size()) * std::max(axes.trials, 1);
    g.expected_rows = cells * static_cast<int64_t>(g.jobs.size());
    return g;
}

}  // namespace kvscope::views
