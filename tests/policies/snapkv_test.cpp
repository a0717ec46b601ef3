// SnapKV: observation-window votes with max / avg / no pooling and the GQA aggregations;
// hand-computed kept sets (the comments show the arithmetic).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/policies/window_vote.h"
#include "tests/policies/policy_harness.h"

namespace kvscope::test {
namespace {

using V = std::vector<int64_t>;

// SnapKV, w = 3, candidates 0..8, budget 6 -> 3 selected + window {9, 10, 11}.
// Window sums (row 0 carries them, rows 1-2 are zero in the candidate columns):
//   q0: s4 = 5      q1: s8 = 3
//   max pool k=3:  q0 [0 0 0 5 5 5 0 0 0]  q1 [0 0 0 0 0 0 0 3 3]
//     mean [0 0 0 2.5 2.5 2.5 0 1.5 1.5] -> {3 4 5}; per_query_head: 3 (q0), 7 (q1), 4 (q0)
//   no pooling, mean [0 0 0 0 2.5 0 0 0 1.5] -> 4, 8, then ties at 0 -> 0
//   avg pool k=3 (divide by 3): q0 [.. 5/3 5/3 5/3 ..], q1 [.. 1 1] -> {3 4 5}
void fill_snap(OwnedStats& st) {
    for (int64_t l = 0; l < st.L; ++l)
        for (int64_t kv = 0; kv < st.Hkv; ++kv) {
            st.window[l][kv * 2 + 0][4] = 5.0f;
            st.window[l][kv * 2 + 1][8] = 3.0f;
            for (int64_t r = 0; r < 3; ++r)
                for (int64_t j = 9; j < 12; ++j) st.window[l][kv * 2][r * 12 + j] = 0.1f;
        }
}

TEST(SnapKV, WindowVotesWithPooling) {
    OwnedStats st(2, 4, 2, 12, 3);
    fill_snap(st);
    struct Case {
        std::vector<std::string> params;
        V kept;
    };
    const std::vector<Case> cases = {
        {{"window=3", "kernel=3", "pool=max"}, {3, 4, 5, 9, 10, 11}},
        {{"window=3", "kernel=3", "pool=max", "gqa=per_query_head"}, {3, 4, 7, 9, 10, 11}},
        {{"window=3", "kernel=1", "pool=none"}, {0, 4, 8, 9, 10, 11}},
        {{"window=3", "kernel=3", "pool=avg"}, {3, 4, 5, 9, 10, 11}},
    };
    for (const Case& c : cases) {
        auto p = make_with_tokens("snapkv", 6, c.params);
        p->begin(st.dims(), st.N);
        EXPECT_EQ(p->needs().window, 3);
        const Plan plan = p->after_prefill(st.view());
        for (int64_t l = 0; l < 2; ++l)
            for (int64_t h = 0; h < 2; ++h)
                EXPECT_EQ(kept_of(plan, l, h, 12), c.kept) << c.params[2];
    }
    // N <= C: nothing happens.
    auto p = make_with_tokens("snapkv", 12, {"window=3"});
    p->begin(st.dims(), st.N);
    EXPECT_FALSE(p->after_prefill(st.view()).find(0, 0)->keep.has_value());
    // Window rows missing -> a clear error, not a crash.
    auto q = make_with_tokens("snapkv", 6, {"window=4"});
    q->begin(st.dims(), st.N);
    EXPECT_THROW(q->after_prefill(st.view()), std::invalid_argument);
}

// Enough heads and keys that the votes run on the host pool (core/policies/head_tasks.h: 16
// heads x 2048 keys x (window + kernel) is over its 2^20 threshold): every head keeps exactly what
// its own vote, computed here one head at a time, keeps, in the plan's (layer, head) slots; a
// failing head's error comes back through the pool.
TEST(SnapKV, HeadsVotedOnThePoolKeepTheirOwnVotes) {
    OwnedStats st(2, 16, 8, 2048, 32);
    st.randomize(11);
    const ScoreView view = st.view();
    for (const std::string gqa : {"mean", "per_query_head"}) {
        auto p =
            make_with_tokens("snapkv", 1024, {"window=32", "kernel=7", "pool=max", "gqa=" + gqa});
        p->begin(st.dims(), st.N);
        const Plan plan = p->after_prefill(view);
        const GqaAgg agg = gqa == "mean" ? GqaAgg::kMean : GqaAgg::kPerQueryHead;
        for (const LayerScores& ls : view.layers)
            for (const HeadScores& hs : ls.heads)
                ASSERT_EQ(kept_of(plan, ls.layer, hs.kv_head, st.N),
                          window_vote_keep(hs, 32, 7, PoolKind::kMax, agg, 1024 - 32))
                    << gqa << " layer " << ls.layer << " head " << hs.kv_head;
    }
    auto q = make_with_tokens("snapkv", 1024, {"window=33"});  // 33 rows asked, 32 recorded
    q->begin(st.dims(), st.N);
    EXPECT_THROW(q->after_prefill(view), std::invalid_argument);
}

}  // namespace
}  // namespace kvscope::test
