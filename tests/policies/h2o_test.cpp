// H2O: heavy hitters plus recent tokens at prefill (three GQA aggregations) and one eviction per
// decode step from accumulated rows; hand-computed kept sets (the comments show the arithmetic).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/policies/policy_harness.h"

namespace kvscope::test {
namespace {

using V = std::vector<int64_t>;

// Layer 0, KV head 0 (query heads 0 and 1), candidates 0..8, recent {9, 10, 11}:
//   q0 = [8 0 0 6 0 0 0 3.9 0 | 1 1 1]
//   q1 = [0 0 0 5 0 7 0 3.9 0 | 1 1 1]
//   mean = [4 0 0 5.5 0 3.5 0 3.9 0] -> top 3: 3, 0, 7
//   max  = [8 0 0 6   0 7   0 3.9 0] -> top 3: 0, 5, 3
//   per_query_head: q0 ranks 0, 3, 7...; q1 ranks 5, 3, 7... -> round robin 0, 5, 3
void fill_h2o(OwnedStats& st) {
    st.colsum[0][0] = {8, 0, 0, 6, 0, 0, 0, 3.9f, 0, 1, 1, 1};
    st.colsum[0][1] = {0, 0, 0, 5, 0, 7, 0, 3.9f, 0, 1, 1, 1};
    // Layer 1 head 1 (query heads 2, 3): a single heavy hitter at 4, then ties -> lowest index.
    st.colsum[1][2] = {0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0};
    st.colsum[1][3] = {0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0};
}

TEST(H2O, PrefillKeepsHeavyHittersAndRecent) {
    OwnedStats st(2, 4, 2, 12, 0);
    fill_h2o(st);
    struct Case {
        std::string gqa;
        V kept;
    };
    for (const Case& c : {Case{"mean", {0, 3, 7, 9, 10, 11}}, Case{"max", {0, 3, 5, 9, 10, 11}},
                          Case{"per_query_head", {0, 3, 5, 9, 10, 11}}}) {
        auto p = make_with_tokens("h2o", 6, {"gqa=" + c.gqa});
        p->begin(st.dims(), st.N);
        const Plan plan = p->after_prefill(st.view());
        EXPECT_EQ(kept_of(plan, 0, 0, 12), c.kept) << c.gqa;
        EXPECT_EQ(kept_of(plan, 1, 1, 12), (V{0, 1, 4, 9, 10, 11})) << c.gqa;
    }
    // recent_ratio 0.25: R = floor(6 * 0.25) = 1, HH = 5 among 0..10 (mean):
    // 3 (5.5), 0 (4), 7 (3.9), 5 (3.5), then ties at 1 -> 9.
    auto p = make_with_tokens("h2o", 6, {"recent_ratio=0.25"});
    p->begin(st.dims(), st.N);
    EXPECT_EQ(kept_of(p->after_prefill(st.view()), 0, 0, 12), (V{0, 3, 5, 7, 9, 11}));
}

TEST(H2O, DecodeAccumulatesRowsAndEvictsOnePerStep) {
    OwnedStats st(2, 4, 2, 12, 0);
    fill_h2o(st);
    auto p = make_with_tokens("h2o", 6);
    p->begin(st.dims(), st.N);
    KVCache cache = make_filled_cache(2, 2, 4, 12, 2);
    apply(p->after_prefill(st.view()), cache);
    ASSERT_EQ(V(cache.positions(0, 0).begin(), cache.positions(0, 0).end()),
              (V{0, 3, 7, 9, 10, 11}));
    // Decode step 0: token 12 enters layer 0. Rows over [0 3 7 9 10 11 12] for both query heads:
    //   [0.1 0.5 0 0 0 0 0.4] -> S = [4.1 6.0 3.9 1 1 1 0.4]; n = 7 > 6, recent = slots 4..6,
    //   top 3 of slots 0..3: 6.0 (pos 3), 4.1 (pos 0), 3.9 (pos 7) -> pos 9 is evicted.
    std::vector<float> k(4, 0.0f);
    for (int64_t l = 0; l < 2; ++l)
        for (int64_t h = 0; h < 2; ++h) cache.append(l, h, k.data(), k.data(), 12);
    const std::vector<float> row = {0.1f, 0.5f, 0, 0, 0, 0, 0.4f};
    ScoreView v = empty_view(st.dims(), 12, 0);
    LayerScores ls;
    ls.layer = 0;
    for (int64_t h = 0; h < 2; ++h) {
        HeadScores hs;
        hs.layer = 0;
        hs.kv_head = h;
        hs.positions = cache.positions(0, h);
        hs.step_row = {row, row};
        ls.heads.push_back(hs);
    }
    v.layers.push_back(ls);
    const Plan plan = p->after_decode_layer(v);
    EXPECT_EQ(kept_of(plan, 0, 0, 7), (V{0, 1, 2, 4, 5, 6}));
    apply(plan, cache);
    EXPECT_EQ(V(cache.positions(0, 0).begin(), cache.positions(0, 0).end()),
              (V{0, 3, 7, 10, 11, 12}));
    EXPECT_EQ(cache.n_slots(0, 0), 6);
    EXPECT_EQ(cache.check_consistency(), "");
}

}  // namespace
}  // namespace kvscope::test
