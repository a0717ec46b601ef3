#include "core/policies/window_vote.h"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "core/error.h"

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

ParamSpec window_param_spec(int64_t default_rows, std::string help) {
    return ParamSpec{.name = "window",
                     .type = ParamType::kInt,
                     .default_value = default_rows,
                     .min = 1.0,
                     .help = std::move(help)};
}

ParamSpec kernel_param_spec(int64_t default_kernel, std::string help) {
    return ParamSpec{.name = "kernel",
                     .type = ParamType::kInt,
                     .default_value = default_kernel,
                     .min = 1.0,
                     .max = 63.0,
                     .help = std::move(help)};
}

ParamSpec pool_param_spec(const std::string& default_pool, std::string help) {
    std::vector<std::string> choices{default_pool};
    for (const char* c : {"max", "avg", "none"})
        if (default_pool != c) choices.emplace_back(c);
    return ParamSpec{.name = "pool",
                     .type = ParamType::kEnum,
                     .default_value = default_pool,
                     .choices = std::move(choices),
                     .help = std::move(help)};
}

WindowVoteParams window_vote_params(const std::string& policy, const ParamValues& params) {
    WindowVoteParams p;
    p.window = params.get_int("window");
    p.kernel = params.get_int("kernel");
    p.pool = parse_pool(params.get_enum("pool"));
    if (p.kernel % 2 == 0)
        throw InputError("policy '" + policy + "', parameter 'kernel': must be odd, got " +
                         std::to_string(p.kernel));
    return p;
}

}  // namespace kvscope
