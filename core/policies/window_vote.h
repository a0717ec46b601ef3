#pragma once
// STATUS: stable (additions only from here on)
// SnapKV-style observation-window voting, shared by SnapKV, PyramidKV (and DynamicKV):
//   s_j = sum over the last w prompt queries of their attention to slot j, for j < n - w;
//   s^ = pool1d(s, kernel, avg|max) per query head; then GQA aggregation and top-k.
#include <cstdint>
#include <vector>

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

}  // namespace kvscope
