// TOVA: top tokens by the last attention row (head mean or per KV head), at prefill and at decode;
// hand-computed kept sets (the comments show the arithmetic).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/policies/policy_harness.h"

namespace kvscope::test {
namespace {

using V = std::vector<int64_t>;

// TOVA, layer 0, last rows of the 4 query heads (zeros elsewhere):
//   h0: j2 .5, j11 .5   h1: j5 1.0   h2: j2 .2, j7 .8   h3: j9 .6, j0 .4
//   mean x4: j5 1.0, j7 .8, j2 .7, j9 .6, j11 .5, j0 .4 -> top 4 {2, 5, 7, 9} for both KV heads
//   per_kv_head: kv0 (h0, h1): j5 .5, j2 .25, j11 .25, then 0s -> {0, 2, 5, 11}
//                kv1 (h2, h3): j7 .4, j9 .3, j0 .2, j2 .1 -> {0, 2, 7, 9}
void fill_tova(OwnedStats& st) {
    auto& w = st.window[0];
    w[0][2] = 0.5f;
    w[0][11] = 0.5f;
    w[1][5] = 1.0f;
    w[2][2] = 0.2f;
    w[2][7] = 0.8f;
    w[3][9] = 0.6f;
    w[3][0] = 0.4f;
}

TEST(TOVA, PrefillKeepsTopByHeadMeanSharedAcrossHeads) {
    OwnedStats st(2, 4, 2, 12, 1);
    fill_tova(st);
    auto p = make_with_tokens("tova", 4);
    p->begin(st.dims(), st.N);
    const Plan plan = p->after_prefill(st.view());
    EXPECT_EQ(kept_of(plan, 0, 0, 12), (V{2, 5, 7, 9}));
    EXPECT_EQ(kept_of(plan, 0, 1, 12), (V{2, 5, 7, 9}));
    // Layer 1 is all zeros: ties keep the first 4.
    EXPECT_EQ(kept_of(plan, 1, 0, 12), (V{0, 1, 2, 3}));

    auto per = make_with_tokens("tova", 4, {"gqa=per_kv_head"});
    per->begin(st.dims(), st.N);
    const Plan pp = per->after_prefill(st.view());
    EXPECT_EQ(kept_of(pp, 0, 0, 12), (V{0, 2, 5, 11}));
    EXPECT_EQ(kept_of(pp, 0, 1, 12), (V{0, 2, 7, 9}));
}

TEST(TOVA, DecodeUsesTheStepRow) {
    OwnedStats st(1, 2, 1, 12, 1);
    auto p = make_with_tokens("tova", 3);
    p->begin(st.dims(), st.N);
    // Cache [0 5 9 12]; rows h0 [.1 .2 .3 .4], h1 [.3 .0 .3 .4] -> mean [.2 .1 .3 .4] -> drop
    // pos 5.
    const std::vector<int64_t> pos = {0, 5, 9, 12};
    const std::vector<float> r0 = {0.1f, 0.2f, 0.3f, 0.4f}, r1 = {0.3f, 0.0f, 0.3f, 0.4f};
    ScoreView v = empty_view(st.dims(), 0, 0);  // prompt_len unused at decode
    HeadScores hs;
    hs.positions = pos;
    hs.step_row = {r0, r1};
    v.layers.push_back(LayerScores{0, {hs}});
    EXPECT_EQ(kept_of(p->after_decode_layer(v), 0, 0, 4), (V{0, 2, 3}));
}

}  // namespace
}  // namespace kvscope::test
