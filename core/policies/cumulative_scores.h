#pragma once
// CumulativeScores: the attention each cached slot of one (layer, KV head) has received so far,
// per query head of the group (H2O's S_j; D2O and MiKV build on it).
//   pos  [n]     positions the scores belong to (the slots of the last view, ascending)
//   acc  [g][n]  cumulative attention per query head
// Seeded from the prompt's column sums, then every decode step's attention row is added. The
// scores follow positions, not slot indices: realign() re-attaches them to whatever slots the
// next view shows, so any change of the cache in between (another policy's merge in what-if
// replay, a quantisation) keeps every score on its token.
#include <cstdint>
#include <vector>

#include "core/policies/score_view.h"
#include "core/policies/selection.h"

namespace kvscope {

struct CumulativeScores {
    std::vector<int64_t> pos;
    std::vector<Scores> acc;

    // pos = hs.positions, acc = hs.colsum (one row per query head). The caller checks that the
    // view has column sums.
    void seed(const HeadScores& hs);

    // Follows the view's positions: known positions keep their scores, unseen ones (new decode
    // tokens) start at 0 for each of max(g of the view's step rows, g held) query heads. Returns,
    // for each of the view's slots, the slot it had before, or -1 when it is new.
    std::vector<int64_t> realign(const HeadScores& hs);

    // acc[q][j] += step_row[q][j] for every query head the view has a row for.
    void add_step_rows(const HeadScores& hs);

    // Keeps only the given slots (ascending), dropping the others' scores.
    void keep_only(const std::vector<int64_t>& slots);
};

}  // namespace kvscope
