#pragma once
// STATUS: stable (additions only from here on)
// Shared building blocks of the score-based policies: GQA aggregation, 1-D pooling, top-k with a
// deterministic tie rule. Numerics convention (mirrored by tools/golden/policy_reference.py so
// the kept sets can be compared exactly): scores are double; sums run in increasing index order
// (over window rows, then over the query heads of a group); the mean divides that sum by the
// count; ties in a ranking go to the LOWER slot index.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/policies/param_schema.h"

namespace kvscope {

// How the g query heads sharing a KV head are combined (policy parameter "gqa"):
//   mean / max:      one score per slot, then one ranking;
//   per_query_head:  each query head ranks the slots by its own score and the KV head keeps the
//                    round-robin union of these rankings (head 0's best, head 1's best, ...,
//                    skipping slots already taken) until the budget is reached. Every query head
//                    thus gets at least its own top floor(k / g) and the KV-head budget holds
//                    (the reference codes instead keep a cache per query head, which costs g
//                    times the memory on GQA models).
enum class GqaAgg : uint8_t { kMean, kMax, kPerQueryHead };

GqaAgg parse_gqa(const std::string& s);  // "mean" | "max" | "per_query_head"
const char* gqa_name(GqaAgg a);
ParamSpec gqa_param_spec(const std::string& default_value = "mean");

enum class PoolKind : uint8_t { kNone, kAvg, kMax };
PoolKind parse_pool(const std::string& s);  // "none" | "avg" | "max"

// Scores of one query head: [n] doubles.
using Scores = std::vector<double>;

// Element-wise mean (sequential sum / g) or max over the query heads; per_query_head -> mean
// (callers that honour per_query_head use select_top_k instead).
Scores aggregate(const std::vector<Scores>& per_q, GqaAgg agg);

// Sum over the w rows of a row-major [w, n] window, restricted to columns [0, n_cols).
Scores window_sum(std::span<const float> window, int64_t w, int64_t n, int64_t n_cols);

// 1-D pooling with stride 1 and padding kernel/2 on both sides (kernel odd): avg divides by the
// kernel size (padding counts as zeros, like avg_pool1d's default), max ignores padding.
// kernel <= 1 or kind none returns s unchanged.
Scores pool1d(const Scores& s, int64_t kernel, PoolKind kind);

// The k highest-scoring indices among `candidates` (all of [0, scores.size()) when empty),
// ties to the lower index; returned ascending. k >= candidates: all candidates.
std::vector<int64_t> top_k(const Scores& scores, int64_t k,
                           std::span<const int64_t> candidates = {});
// The k lowest-scoring (ties to the lower index); returned ascending.
std::vector<int64_t> bottom_k(const Scores& scores, int64_t k,
                              std::span<const int64_t> candidates = {});

// top_k under a GQA rule (see GqaAgg); returned ascending.
std::vector<int64_t> select_top_k(const std::vector<Scores>& per_q, GqaAgg agg, int64_t k,
                                  std::span<const int64_t> candidates = {});

// The per_query_head union: ranks[q] lists slots (< n_slots) best first, all of one length; takes
// ranks[0][0], ranks[1][0], ..., ranks[0][1], ... skipping slots already taken, until
// min(k, length) slots. Returned in the order taken.
std::vector<int64_t> round_robin_union(const std::vector<std::vector<int64_t>>& ranks, int64_t k,
                                       size_t n_slots);

// float span -> double scores.
Scores to_scores(std::span<const float> s);

// [b, e) as a list.
std::vector<int64_t> index_range(int64_t b, int64_t e);

// Sorted union of index lists (each ascending or not), without duplicates.
std::vector<int64_t> sorted_union(std::vector<int64_t> a, const std::vector<int64_t>& b);

}  // namespace kvscope
