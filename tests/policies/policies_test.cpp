// Hand-computed cases per policy: chosen scores on 2 layers x 2 KV heads x 12 tokens, asserting
// the exact kept sets (the comments show the arithmetic).
#include <gtest/gtest.h>

#include <vector>

#include "core/policies/pyramid_budget.h"
#include "core/policies/registry.h"
#include "core/policies/selection.h"
#include "policy_test_util.h"

namespace kvscope {
namespace {

using test::kept_of;
using test::OwnedStats;
using V = std::vector<int64_t>;

std::unique_ptr<Policy> make(const std::string& name, int64_t budget,
                             std::vector<std::string> params = {}) {
    Budget b;
    b.tokens = budget;
    return make_policy(name, b, params);
}

TEST(FullPolicy, KeepsEverything) {
    OwnedStats st(2, 4, 2, 12, 0);
    auto p = make_policy("full", Budget{});
    p->begin(st.dims(), st.N);
    const Plan plan = p->after_prefill(st.view());
    for (int64_t l = 0; l < 2; ++l)
        for (int64_t h = 0; h < 2; ++h) {
            ASSERT_NE(plan.find(l, h), nullptr);
            EXPECT_FALSE(plan.find(l, h)->keep.has_value());
        }
    EXPECT_TRUE(p->after_decode_layer(st.view()).empty());
}

TEST(StreamingLLM, SinksPlusRecentWindow) {
    OwnedStats st(2, 4, 2, 12, 0);
    auto p = make("streaming_llm", 6, {"sinks=2"});
    p->begin(st.dims(), st.N);
    Plan plan = p->after_prefill(st.view());
    for (int64_t l = 0; l < 2; ++l)
        for (int64_t h = 0; h < 2; ++h) EXPECT_EQ(kept_of(plan, l, h, 12), (V{0, 1, 8, 9, 10, 11}));
    EXPECT_EQ(plan.find(1, 1)->budget, 6);

    auto p0 = make("streaming_llm", 6, {"sinks=0"});
    p0->begin(st.dims(), st.N);
    EXPECT_EQ(kept_of(p0->after_prefill(st.view()), 0, 0, 12), (V{6, 7, 8, 9, 10, 11}));

    auto tiny = make("streaming_llm", 3);  // budget below the 4 default sinks: first 3 tokens
    tiny->begin(st.dims(), st.N);
    EXPECT_EQ(kept_of(tiny->after_prefill(st.view()), 0, 0, 12), (V{0, 1, 2}));

    auto big = make("streaming_llm", 12);
    big->begin(st.dims(), st.N);
    EXPECT_FALSE(big->after_prefill(st.view()).find(0, 0)->keep.has_value());
}

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
        auto p = make("h2o", 6, {"gqa=" + c.gqa});
        p->begin(st.dims(), st.N);
        const Plan plan = p->after_prefill(st.view());
        EXPECT_EQ(kept_of(plan, 0, 0, 12), c.kept) << c.gqa;
        EXPECT_EQ(kept_of(plan, 1, 1, 12), (V{0, 1, 4, 9, 10, 11})) << c.gqa;
    }
    // recent_ratio 0.25: R = floor(6 * 0.25) = 1, HH = 5 among 0..10 (mean):
    // 3 (5.5), 0 (4), 7 (3.9), 5 (3.5), then ties at 1 -> 9.
    auto p = make("h2o", 6, {"recent_ratio=0.25"});
    p->begin(st.dims(), st.N);
    EXPECT_EQ(kept_of(p->after_prefill(st.view()), 0, 0, 12), (V{0, 3, 5, 7, 9, 11}));
}

TEST(H2O, DecodeAccumulatesRowsAndEvictsOnePerStep) {
    OwnedStats st(2, 4, 2, 12, 0);
    fill_h2o(st);
    auto p = make("h2o", 6);
    p->begin(st.dims(), st.N);
    KVCache cache = test::make_filled_cache(2, 2, 4, 12, 2);
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
    ScoreView v;
    v.n_layers = 2;
    v.n_heads = 4;
    v.n_kv_heads = 2;
    v.head_dim = 4;
    v.prompt_len = 12;
    v.step = 0;
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
    auto p = make("tova", 4);
    p->begin(st.dims(), st.N);
    const Plan plan = p->after_prefill(st.view());
    EXPECT_EQ(kept_of(plan, 0, 0, 12), (V{2, 5, 7, 9}));
    EXPECT_EQ(kept_of(plan, 0, 1, 12), (V{2, 5, 7, 9}));
    // Layer 1 is all zeros: ties keep the first 4.
    EXPECT_EQ(kept_of(plan, 1, 0, 12), (V{0, 1, 2, 3}));

    auto per = make("tova", 4, {"gqa=per_kv_head"});
    per->begin(st.dims(), st.N);
    const Plan pp = per->after_prefill(st.view());
    EXPECT_EQ(kept_of(pp, 0, 0, 12), (V{0, 2, 5, 11}));
    EXPECT_EQ(kept_of(pp, 0, 1, 12), (V{0, 2, 7, 9}));
}

TEST(TOVA, DecodeUsesTheStepRow) {
    OwnedStats st(1, 2, 1, 12, 1);
    auto p = make("tova", 3);
    p->begin(st.dims(), st.N);
    // Cache [0 5 9 12]; rows h0 [.1 .2 .3 .4], h1 [.3 .0 .3 .4] -> mean [.2 .1 .3 .4] -> drop
    // pos 5.
    const std::vector<int64_t> pos = {0, 5, 9, 12};
    const std::vector<float> r0 = {0.1f, 0.2f, 0.3f, 0.4f}, r1 = {0.3f, 0.0f, 0.3f, 0.4f};
    ScoreView v;
    v.n_layers = 1;
    v.n_heads = 2;
    v.n_kv_heads = 1;
    v.head_dim = 4;
    v.step = 0;
    HeadScores hs;
    hs.positions = pos;
    hs.step_row = {r0, r1};
    v.layers.push_back(LayerScores{0, {hs}});
    EXPECT_EQ(kept_of(p->after_decode_layer(v), 0, 0, 4), (V{0, 2, 3}));
}

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
        auto p = make("snapkv", 6, c.params);
        p->begin(st.dims(), st.N);
        EXPECT_EQ(p->needs().window, 3);
        const Plan plan = p->after_prefill(st.view());
        for (int64_t l = 0; l < 2; ++l)
            for (int64_t h = 0; h < 2; ++h)
                EXPECT_EQ(kept_of(plan, l, h, 12), c.kept) << c.params[2];
    }
    // N <= C: nothing happens.
    auto p = make("snapkv", 12, {"window=3"});
    p->begin(st.dims(), st.N);
    EXPECT_FALSE(p->after_prefill(st.view()).find(0, 0)->keep.has_value());
    // Window rows missing -> a clear error, not a crash.
    auto q = make("snapkv", 6, {"window=4"});
    q->begin(st.dims(), st.N);
    EXPECT_THROW(q->after_prefill(st.view()), std::invalid_argument);
}

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
    auto p = make("pyramidkv", 5, {"window=2", "kernel=1", "pool=none"});
    p->begin(st.dims(), st.N);
    const Plan plan = p->after_prefill(st.view());
    EXPECT_EQ(kept_of(plan, 0, 1, 12), (V{2, 3, 4, 7, 8, 9, 10, 11}));
    EXPECT_EQ(kept_of(plan, 1, 0, 12), (V{10, 11}));
    EXPECT_EQ(plan.find(0, 0)->budget, 8);
    EXPECT_EQ(plan.find(1, 0)->budget, 2);
    ASSERT_EQ(plan.notes.size(), 2u);
    EXPECT_EQ(plan.notes[0].key, "pyramid_budget");
}

TEST(Knorm, KeepsLowestNormsOutsideSkippedLayers) {
    OwnedStats st(3, 4, 2, 12, 0);
    for (int64_t l = 0; l < 3; ++l)
        for (int64_t h = 0; h < 2; ++h) st.key_norm[l][h] = {5, 1, 7, 0.5f, 9, 2, 2, 8, 3, 6, 4, 1};
    // Lowest 4: 0.5 (3), 1 (1), 1 (11), then 2 at 5 and 6 -> 5 (tie to the lower index).
    auto p = make("knorm", 4);
    p->begin(st.dims(), st.N);
    const Plan plan = p->after_prefill(st.view());
    EXPECT_FALSE(plan.find(0, 0)->keep.has_value());
    EXPECT_FALSE(plan.find(1, 1)->keep.has_value());
    EXPECT_EQ(kept_of(plan, 2, 1, 12), (V{1, 3, 5, 11}));
    auto none = make("knorm", 4, {"skip_layers="});
    none->begin(st.dims(), st.N);
    EXPECT_EQ(kept_of(none->after_prefill(st.view()), 0, 0, 12), (V{1, 3, 5, 11}));
    // --ratio 0.3 of 12 -> ceil(3.6) = 4 tokens.
    Budget r;
    r.ratio = 0.3;
    auto byratio = make_policy("knorm", r, {"skip_layers="});
    byratio->begin(st.dims(), st.N);
    EXPECT_EQ(kept_of(byratio->after_prefill(st.view()), 1, 0, 12), (V{1, 3, 5, 11}));
}

TEST(Selection, TopKTiesAndRoundRobin) {
    const Scores s = {1, 3, 3, 2, 3};
    EXPECT_EQ(top_k(s, 2), (V{1, 2}));
    EXPECT_EQ(bottom_k(s, 2), (V{0, 3}));
    const std::vector<int64_t> cand = {0, 3, 4};
    EXPECT_EQ(top_k(s, 2, cand), (V{3, 4}));
    EXPECT_EQ(top_k(s, 10), (V{0, 1, 2, 3, 4}));
    const std::vector<Scores> per_q = {{5, 4, 3, 2, 1}, {1, 2, 3, 4, 5}};
    EXPECT_EQ(select_top_k(per_q, GqaAgg::per_query_head, 3), (V{0, 1, 4}));
    EXPECT_EQ(select_top_k(per_q, GqaAgg::max, 2), (V{0, 4}));
    EXPECT_EQ(pool1d({1, 5, 2, 0, 3}, 3, PoolKind::max), (Scores{5, 5, 5, 3, 3}));
    const Scores avg = pool1d({3, 6, 0}, 3, PoolKind::avg);
    EXPECT_DOUBLE_EQ(avg[0], 3.0);  // (0 + 3 + 6) / 3: padding counts as zero
    EXPECT_DOUBLE_EQ(avg[1], 3.0);
    EXPECT_DOUBLE_EQ(avg[2], 2.0);
}

}  // namespace
}  // namespace kvscope
