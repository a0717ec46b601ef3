#include "core/policies/window_vote.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

namespace kvscope {

std::vector<Scores> window_vote_scores(const HeadScores& hs, int64_t w, int64_t kernel,
                                       PoolKind pool) {
    const int64_t n = hs.n();
    if (hs.window.empty() || hs.window_rows < w)
        throw std::invalid_argument("window vote: layer " + std::to_string(hs.layer) +
                                    " needs the last " + std::to_string(w) +
                                    " prompt attention rows, the view has " +
                                    std::to_string(hs.window.empty() ? 0 : hs.window_rows));
    std::vector<Scores> out;
    for (const auto& rows : hs.window) {
        const auto last_w = rows.subspan(static_cast<size_t>((hs.window_rows - w) * n));
        out.push_back(pool1d(window_sum(last_w, w, n, n - w), kernel, pool));
    }
    return out;
}

std::vector<int64_t> window_vote_keep(const HeadScores& hs, int64_t w, int64_t kernel,
                                      PoolKind pool, GqaAgg agg, int64_t k) {
    const int64_t n = hs.n();
    if (w >= n || n <= k + w) return index_range(0, n);
    std::vector<int64_t> keep;
    if (k > 0) keep = select_top_k(window_vote_scores(hs, w, kernel, pool), agg, k);
    return sorted_union(std::move(keep), index_range(n - w, n));
}

Scores window_vote_explain(const HeadScores& hs, int64_t w, int64_t kernel, PoolKind pool,
                           GqaAgg agg) {
    const int64_t n = hs.n();
    Scores out(static_cast<size_t>(n), std::numeric_limits<double>::infinity());
    if (w >= n) return out;
    const Scores s = aggregate(window_vote_scores(hs, w, kernel, pool), agg);
    std::copy(s.begin(), s.end(), out.begin());
    return out;
}

}  // namespace kvscope
