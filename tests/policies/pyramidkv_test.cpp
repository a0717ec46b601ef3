// PyramidKV: the pyramidal per-layer budgets and the kept sets under them (hand-computed).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/policies/pyramid_budget.h"
#include "core/policies/window_vote.h"
#include "tests/policies/policy_harness.h"

namespace kvscope::test {
namespace {

using V = std::vector<int64_t>;

TEST(PyramidKV, LayerBudgetsFollowThePyramid) {
    // C = 24, w = 8, N = 96, L = 2, beta 20: k_top = 16 / 20 = 0, k_bottom = 32 -> [32, 0].
    EXPECT_EQ(pyramid_layer_budgets(24, 8, 96, 2, 20), (V{32, 0}));
    // C = 48: k_top = 2, k_bottom = 78 (< 88) -> [78, 2].
    EXPECT_EQ(pyramid_layer_budgets(48, 8, 96, 2, 20), (V{78, 2}));
    // L = 4, N = 100, C = 24: steps = (32 - 0) / 3 = 10 -> [32, 22, 12, 2].
    EXPECT_EQ(pyramid_layer_budgets(24, 8, 100, 4, 20), (V{32, 22, 12, 2}));
    // C = 32, N = 48, beta 20: k_top = 1, k_bottom = 47 >= N - w = 40 -> clipped to 40,
    // k_top = 2 * 24 - 40 = 8, steps (40 - 8) / 2 = 16 -> [40, 24, 8].
    EXPECT_EQ(pyramid_layer_budgets(32, 8, 48, 3, 20), (V{40, 24, 8}));
    // N < 2 (C - w): uniform C - w.
    EXPECT_EQ(pyramid_layer_budgets(24, 8, 30, 3, 20), (V{16, 16, 16}));
}

TEST(PyramidKV, KeptSetsUseLayerBudgets) {
    // N = 12, C = 5, w = 2: C - w = 3, N >= 6; k_top = 0, k_bottom = 6 (< 10), steps 6 -> [6, 0].
    OwnedStats st(2, 4, 2, 12, 2);
    // Window sums over candidates 0..9 (no pooling): q0 descending from 9 down, q1 zero.
    for (int64_t l = 0; l < 2; ++l)
        for (int64_t h = 0; h < 4; ++h)
            for (int64_t j = 0; j < 10; ++j) st.window[l][h][j] = static_cast<float>(j % 5);
    // Scores j % 5: [0 1 2 3 4 0 1 2 3 4] -> top 6: 4, 9, 3, 8, 2, 7.
    auto p = make_with_tokens("pyramidkv", 5, {"window=2", "kernel=1", "pool=none"});
    p->begin(st.dims(), st.N);
    const Plan plan = p->after_prefill(st.view());
    EXPECT_EQ(kept_of(plan, 0, 1, 12), (V{2, 3, 4, 7, 8, 9, 10, 11}));
    EXPECT_EQ(kept_of(plan, 1, 0, 12), (V{10, 11}));
    EXPECT_EQ(plan.find(0, 0)->budget, 8);
    EXPECT_EQ(plan.find(1, 0)->budget, 2);
    ASSERT_EQ(plan.notes.size(), 2u);
    EXPECT_EQ(plan.notes[0].key, "pyramid_budget");
}

// Enough heads and keys that the votes run on the host pool (core/policies/head_tasks.h): every
// head keeps exactly what its own vote under its layer's budget, computed here one head at a
// time, keeps.
TEST(PyramidKV, HeadsVotedOnThePoolKeepTheirOwnVotes) {
    OwnedStats st(2, 16, 8, 2048, 32);
    st.randomize(12);
    const ScoreView view = st.view();
    auto p = make_with_tokens("pyramidkv", 1024, {"window=32", "kernel=7", "pool=max", "beta=20"});
    p->begin(st.dims(), st.N);
    const Plan plan = p->after_prefill(view);
    const V k = pyramid_layer_budgets(1024, 32, st.N, st.L, 20);
    for (const LayerScores& ls : view.layers) {
        const int64_t kl = k[static_cast<size_t>(ls.layer)];
        for (const HeadScores& hs : ls.heads) {
            const V want = hs.n() > kl + 32
                               ? window_vote_keep(hs, 32, 7, PoolKind::kMax, GqaAgg::kMean, kl)
                               : index_range(0, hs.n());
            ASSERT_EQ(kept_of(plan, ls.layer, hs.kv_head, st.N), want)
                << "layer " << ls.layer << " head " << hs.kv_head;
        }
    }
}

}  // namespace
}  // namespace kvscope::test
