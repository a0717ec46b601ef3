#include "core/policies/selection.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

namespace kvscope {

GqaAgg parse_gqa(const std::string& s) {
    if (s == "mean") return GqaAgg::kMean;
    if (s == "max") return GqaAgg::kMax;
    if (s == "per_query_head") return GqaAgg::kPerQueryHead;
    throw std::invalid_argument("unknown GQA aggregation '" + s + "'");
}

const char* gqa_name(GqaAgg a) {
    switch (a) {
        case GqaAgg::kMean:
            return "mean";
        case GqaAgg::kMax:
            return "max";
        case GqaAgg::kPerQueryHead:
            return "per_query_head";
    }
    return "?";
}

ParamSpec gqa_param_spec(const std::string& default_value) {
    return ParamSpec{
        .name = "gqa",
        .type = ParamType::kEnum,
        .default_value = default_value,
        .choices = {"mean", "max", "per_query_head"},
        .help =
            "how the query heads sharing a KV head combine their scores: mean, max, or "
            "per_query_head (round-robin union of each query head's own ranking)"};
}

PoolKind parse_pool(const std::string& s) {
    if (s == "none") return PoolKind::kNone;
    if (s == "avg") return PoolKind::kAvg;
    if (s == "max") return PoolKind::kMax;
    throw std::invalid_argument("unknown pooling '" + s + "'");
}

Scores aggregate(const std::vector<Scores>& per_q, GqaAgg agg) {
    if (per_q.empty()) return {};
    const size_t n = per_q[0].size();
    Scores out(per_q[0]);
    for (size_t q = 1; q < per_q.size(); ++q) {
        if (per_q[q].size() != n) throw std::invalid_argument("aggregate: ragged score arrays");
        for (size_t j = 0; j < n; ++j)
            out[j] = agg == GqaAgg::kMax ? std::max(out[j], per_q[q][j]) : out[j] + per_q[q][j];
    }
    if (agg != GqaAgg::kMax)
        for (double& x : out) x /= static_cast<double>(per_q.size());
    return out;
}

Scores window_sum(std::span<const float> window, int64_t w, int64_t n, int64_t n_cols) {
    if (static_cast<int64_t>(window.size()) < w * n || n_cols > n)
        throw std::invalid_argument("window_sum: window smaller than w * n");
    Scores s(static_cast<size_t>(std::max<int64_t>(n_cols, 0)), 0.0);
    for (int64_t i = 0; i < w; ++i)
        for (int64_t j = 0; j < n_cols; ++j)
            s[static_cast<size_t>(j)] +=
                static_cast<double>(window[static_cast<size_t>(i * n + j)]);
    return s;
}

Scores pool1d(const Scores& s, int64_t kernel, PoolKind kind) {
    if (kind == PoolKind::kNone || kernel <= 1) return s;
    const int64_t n = static_cast<int64_t>(s.size());
    const int64_t pad = kernel / 2;
    Scores out(s.size());
    for (int64_t j = 0; j < n; ++j) {
        double acc = kind == PoolKind::kMax ? -std::numeric_limits<double>::infinity() : 0.0;
        for (int64_t t = j - pad; t <= j + pad; ++t) {
            if (t < 0 || t >= n) continue;  // zero padding: adds nothing to the sum
            const double x = s[static_cast<size_t>(t)];
            acc = kind == PoolKind::kMax ? std::max(acc, x) : acc + x;
        }
        out[static_cast<size_t>(j)] =
            kind == PoolKind::kMax ? acc : acc / static_cast<double>(kernel);
    }
    return out;
}

namespace {

// Candidates ranked best first (higher score; ties to the lower index). NaN ranks last.
std::vector<int64_t> ranked(const Scores& scores, std::span<const int64_t> candidates,
                            bool highest) {
    std::vector<int64_t> idx;
    if (candidates.empty()) {
        idx.resize(scores.size());
        std::iota(idx.begin(), idx.end(), 0);
    } else {
        idx.assign(candidates.begin(), candidates.end());
    }
    const double worst = highest ? -std::numeric_limits<double>::infinity()
                                 : std::numeric_limits<double>::infinity();
    auto key = [&](int64_t i) {
        if (i < 0 || i >= static_cast<int64_t>(scores.size()))
            throw std::out_of_range("top_k: candidate index out of range");
        const double x = scores[static_cast<size_t>(i)];
        return std::isnan(x) ? worst : x;
    };
    std::vector<std::pair<double, int64_t>> keyed;
    keyed.reserve(idx.size());
    for (int64_t i : idx) keyed.emplace_back(key(i), i);
    std::sort(keyed.begin(), keyed.end(), [highest](const auto& a, const auto& b) {
        if (a.first != b.first) return highest ? a.first > b.first : a.first < b.first;
        return a.second < b.second;
    });
    for (size_t i = 0; i < keyed.size(); ++i) idx[i] = keyed[i].second;
    return idx;
}

std::vector<int64_t> first_k_sorted(std::vector<int64_t> r, int64_t k) {
    if (k < static_cast<int64_t>(r.size())) r.resize(static_cast<size_t>(std::max<int64_t>(k, 0)));
    std::sort(r.begin(), r.end());
    return r;
}

}  // namespace

std::vector<int64_t> top_k(const Scores& scores, int64_t k, std::span<const int64_t> candidates) {
    return first_k_sorted(ranked(scores, candidates, true), k);
}

std::vector<int64_t> bottom_k(const Scores& scores, int64_t k,
                              std::span<const int64_t> candidates) {
    return first_k_sorted(ranked(scores, candidates, false), k);
}

std::vector<int64_t> select_top_k(const std::vector<Scores>& per_q, GqaAgg agg, int64_t k,
                                  std::span<const int64_t> candidates) {
    if (per_q.empty()) throw std::invalid_argument("select_top_k: no scores");
    if (agg != GqaAgg::kPerQueryHead) return top_k(aggregate(per_q, agg), k, candidates);
    std::vector<std::vector<int64_t>> ranks;
    ranks.reserve(per_q.size());
    for (const Scores& s : per_q) ranks.push_back(ranked(s, candidates, true));
    std::vector<int64_t> out = round_robin_union(ranks, k, per_q[0].size());
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<int64_t> round_robin_union(const std::vector<std::vector<int64_t>>& ranks, int64_t k,
                                       size_t n_slots) {
    const size_t total = ranks.front().size();
    const size_t want = static_cast<size_t>(std::clamp<int64_t>(k, 0, static_cast<int64_t>(total)));
    std::vector<int64_t> out;
    std::vector<char> taken(n_slots, 0);
    for (size_t r = 0; r < total && out.size() < want; ++r) {
        for (size_t q = 0; q < ranks.size() && out.size() < want; ++q) {
            const int64_t i = ranks[q][r];
            if (taken[static_cast<size_t>(i)]) continue;
            taken[static_cast<size_t>(i)] = 1;
            out.push_back(i);
        }
    }
    return out;
}

Scores to_scores(std::span<const float> s) {
    return Scores(s.begin(), s.end());
}

std::vector<int64_t> index_range(int64_t b, int64_t e) {
    std::vector<int64_t> r;
    for (int64_t i = b; i < e; ++i) r.push_back(i);
    return r;
}

std::vector<int64_t> sorted_union(std::vector<int64_t> a, const std::vector<int64_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    std::sort(a.begin(), a.end());
    a.erase(std::unique(a.begin(), a.end()), a.end());
    return a;
}

}  // namespace kvscope
