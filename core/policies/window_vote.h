#pragma once
// STATUS: stable (additions only from here on)
// SnapKV-style observation-window voting, shared by SnapKV, PyramidKV (and DynamicKV):
//   s_j = sum over the last w prompt queries of their attention to slot j, for j < n - w;
//   s^ = pool1d(s, kernel, avg|max) per query head; then GQA aggregation and top-k.
#include <cstdint>
#include <string>
#include <vector>

#include "core/policies/param_schema.h"
#include "core/policies/score_view.h"
#include "core/policies/selection.h"

namespace kvscope {

// Pooled window scores per query head of the group: [g][n - w]. Needs hs.window with at least w
// rows (the last w are used). Throws std::invalid_argument otherwise.
std::vector<Scores> window_vote_scores(const HeadScores& hs, int64_t w, int64_t kernel,
                                       PoolKind pool);

// The kept slots (ascending): top-k of the pooled window scores among [0, n - w) plus the window
// [n - w, n). With n <= k + w everything is kept; w >= n keeps everything.
std::vector<int64_t> window_vote_keep(const HeadScores& hs, int64_t w, int64_t kernel,
                                      PoolKind pool, GqaAgg agg, int64_t k);

// For explanations: the score window_vote_keep ranks by, over all n slots: the pooled window
// scores aggregated over the group (mean for per_query_head, which ranks each head on its own),
// +inf for the window [n - w, n).
Scores window_vote_explain(const HeadScores& hs, int64_t w, int64_t kernel, PoolKind pool,
                           GqaAgg agg);

// The parameters every window-vote policy declares, so that they read and check the same:
//   window  int  [1, 2^24]  the last w prompt queries vote (and are kept)
//   kernel  int  [1, 63]    pooling kernel size, must be odd
//   pool    enum            max | avg | none (the default listed first)
// Only the default and the help text differ between policies.
ParamSpec window_param_spec(int64_t default_rows, std::string help);
ParamSpec kernel_param_spec(int64_t default_kernel, std::string help);
ParamSpec pool_param_spec(const std::string& default_pool, std::string help);

struct WindowVoteParams {
    int64_t window = 0;
    int64_t kernel = 0;
    PoolKind pool = PoolKind::kNone;
};
// Reads the three from a complete parameter set; an even kernel throws InputError naming the
// policy and the parameter.
WindowVoteParams window_vote_params(const std::string& policy, const ParamValues& params);

}  // namespace kvscope
