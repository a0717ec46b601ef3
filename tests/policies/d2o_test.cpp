// D2O: hand-computed eviction, recall and merge weights, layer budgets. The rule is the comment
// block at the top of core/policies/d2o.cpp (the second batch has no PyTorch reference:
// docs/policy_reference.md, "Limits").
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/policies/plan.h"
#include "core/policies/registry.h"
#include "tests/policies/policy_harness.h"

namespace kvscope::test {
namespace {

constexpr float kC30 = 0.8660254037844386f;  // cos 30 deg

// 2 layers (same data, so F_0 = F_1 and both get r = rho), 2 KV heads, g = 1, d = 2, prompt 11,
// first decode step n = 12. --ratio 0.5 -> C = 6, R = 3, HH = 3 (sinks = 1).
struct D2OCase {
    ViewData prefill, step0;
};

D2OCase make_case() {
    // Cumulative scores after step 0 (prompt column sums + step row; the row is 0 except the new
    // token's own 0.5). Head 0 keeps sink 0 + best of [1,9): 2 (3.0), 5 (2.0) + recent 9,10,11.
    // Head 1 keeps 0 + 1 (4.0), 4 (3.0) + 9,10,11.
    const std::vector<float> s0 = {5, 0.1f, 3, 0.2f, 0.3f, 2, 0.1f, 0.2f, 0.3f, 0.05f, 0.05f};
    const std::vector<float> s1 = {5, 4, 0.1f, 0.2f, 3, 0.1f, 0.3f, 0.2f, 0.1f, 0.05f, 0.05f};
    // Keys (2-D directions). Head 0 kept: 0 (0 deg), 2 (90), 5 (180), 9 (270), 10 (330), 11 (315);
    // evicted 1 (0), 3 (60), 4 (180), 6 (120), 7 (270), 8 (210).
    const std::vector<float> k0 = {1,    0, 1,  0,     0,     1, 0.5f, kC30, -1,    0, -1, 0, -0.5f,
                                   kC30, 0, -1, -kC30, -0.5f, 0, -1,   kC30, -0.5f, 2, -2};
    // Head 1 kept: 0, 1, 10 at 0 deg; 4, 9, 11 at 180 deg. Evicted 2 (90), 3 (0), 5 (60),
    // 6 (180), 7 (90), 8 (120).
    const std::vector<float> k1 = {1,  0, 1, 0, 0,     1,    1,  0, -1, 0, 0.5f, kC30,
                                   -1, 0, 0, 1, -0.5f, kC30, -1, 0, 1,  0, -1,   0};
    D2OCase c;
    for (ViewData* v : {&c.prefill, &c.step0}) {
        v->n_layers = 2;
        v->n_heads = 2;
        v->n_kv_heads = 2;
        v->head_dim = 2;
        v->prompt_len = 11;
    }
    c.step0.step = 0;
    for (int64_t l = 0; l < 2; ++l) {
        c.prefill.layer_ids.push_back(l);
        c.prefill.heads.push_back({});
        c.step0.layer_ids.push_back(l);
        c.step0.heads.push_back({});
        for (int h = 0; h < 2; ++h) {
            HeadData p;
            p.pos = iota_positions(11);
            p.colsum = {h == 0 ? s0 : s1};
            c.prefill.heads.back().push_back(p);
            HeadData d;
            d.pos = iota_positions(12);
            std::vector<float> row(12, 0.0f);
            row[11] = 0.5f;
            d.step_row = {row};
            d.keys = h == 0 ? k0 : k1;
            c.step0.heads.back().push_back(d);
        }
    }
    return c;
}

std::unique_ptr<Policy> make_d2o(const std::string& merge) {
    auto p =
        make_policy("d2o", Budget{-1, 0.5}, {"sinks=1", "protected_layers=", "merge=" + merge});
    return p;
}

const MergeOp* merge_into(const HeadPlan& hp, int64_t dst) {
    for (const MergeOp& m : hp.merges)
        if (m.dst == dst) return &m;
    return nullptr;
}

TEST(D2O, PrefillEvictsNothingAndReportsDensity) {
    D2OCase c = make_case();
    auto p = make_d2o("code");
    p->begin(dims_of(c.prefill), 11);
    const Plan plan = p->after_prefill(c.prefill.view());
    for (const HeadPlan& hp : plan.heads) EXPECT_FALSE(hp.keep.has_value());
    ASSERT_NE(find_note(plan, 0, "d2o_density"), nullptr);
    // Head variances of s0 / s1 differ, so min-max gives {0, 1 - eps}: F = (0 + ~1) / 2.
    EXPECT_NEAR(find_note(plan, 0, "d2o_density")->value, 0.5, 1e-6);
}

TEST(D2O, FirstDecodeStepHandComputedCodeMerge) {
    D2OCase c = make_case();
    auto p = make_d2o("code");
    p->begin(dims_of(c.prefill), 11);
    p->after_prefill(c.prefill.view());
    const Plan plan = p->after_decode_layer(c.step0.view());

    ASSERT_NE(find_note(plan, 0, "d2o_budget"), nullptr);
    EXPECT_EQ(find_note(plan, 0, "d2o_budget")->value, 6.0);
    EXPECT_NEAR(find_note(plan, 0, "d2o_ratio")->value, 0.5, 1e-12);
    // tau = mean of the 12 nearest-neighbour cosines:
    //   head 0: 1, c, 1, c, 1, c  (c = cos 30);  head 1: 0, 1, .5, 1, 0, .5
    //   tau = (3 + 3c + 3) / 12 = 0.7165063509
    ASSERT_NE(find_note(plan, 0, "d2o_tau"), nullptr);
    EXPECT_NEAR(find_note(plan, 0, "d2o_tau")->value, 0.7165063509461097, 1e-6);

    const HeadPlan* h0 = plan.find(0, 0);
    const HeadPlan* h1 = plan.find(0, 1);
    ASSERT_NE(h0, nullptr);
    ASSERT_NE(h1, nullptr);
    EXPECT_EQ(*h0->keep, (std::vector<int64_t>{0, 2, 5, 9, 10, 11}));
    EXPECT_EQ(*h1->keep, (std::vector<int64_t>{0, 1, 4, 9, 10, 11}));
    // Head means per evicted index: .5, .933, .75, .933, .5, .683 -> indices 1, 2, 3 recalled.
    ASSERT_EQ(h0->merges.size(), 2u);
    const MergeOp* m = merge_into(*h0, 2);
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->src, (std::vector<int64_t>{3, 6}));
    EXPECT_NEAR(m->dst_weight, 1.0 / 3.0, 1e-6);
    EXPECT_NEAR(m->src_weights[0], 0.2886751345948129, 1e-6);  // c / 3
    EXPECT_NEAR(m->src_weights[1], 0.2886751345948129, 1e-6);
    EXPECT_NEAR(m->similarity[0], kC30, 1e-6);
    EXPECT_NEAR(m->threshold, 0.7165063509461097, 1e-6);
    m = merge_into(*h0, 5);
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->src, (std::vector<int64_t>{4}));
    EXPECT_NEAR(m->dst_weight, 0.5, 1e-6);
    EXPECT_NEAR(m->src_weights[0], 0.5, 1e-6);

    ASSERT_EQ(h1->merges.size(), 2u);
    m = merge_into(*h1, 0);
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->src, (std::vector<int64_t>{3, 5}));
    EXPECT_NEAR(m->dst_weight, 1.0 / 3.0, 1e-6);
    EXPECT_NEAR(m->src_weights[0], 1.0 / 3.0, 1e-6);
    EXPECT_NEAR(m->src_weights[1], 0.5 / 3.0, 1e-6);
    m = merge_into(*h1, 4);
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->src, (std::vector<int64_t>{6}));

    // Applied to a real cache: K[2] of head 0 = (k2 + c k3 + c k6) / 3 = (0, 2.5 / 3).
    KVCache cache(2, 2, 2, 4);
    for (int64_t l = 0; l < 2; ++l)
        for (int64_t h = 0; h < 2; ++h)
            for (int64_t t = 0; t < 12; ++t) {
                const float* k = c.step0.heads[0][static_cast<size_t>(h)].keys.data() + t * 2;
                cache.append(l, h, k, k, t);
            }
    apply(plan, cache);
    EXPECT_EQ(positions_of(cache, 0, 0), (std::vector<int64_t>{0, 2, 5, 9, 10, 11}));
    const int64_t s = cache.find_position(0, 0, 2);
    EXPECT_NEAR(cache.k(0, 0)[s * 2 + 0], 0.0, 1e-6);
    EXPECT_NEAR(cache.k(0, 0)[s * 2 + 1], 2.5 / 3.0, 1e-6);
    EXPECT_EQ(cache.merge_count(0, 0)[static_cast<size_t>(s)], 2);
    EXPECT_NEAR(cache.merge_weight(0, 0)[static_cast<size_t>(s)], 2 * 0.2886751345948129, 1e-6);
    EXPECT_EQ(cache.check_consistency(), "");
}

// Paper weights: w_e = exp(u_e) / Z, w_c = e / Z, Z = sum exp(u) + e.
//   head 0 dst 2 (u = c, c): Z = 2 exp(c) + e -> w_c = .3637389293, w_e = .3181305353
//   head 1 dst 0 (u = 1, .5): w_c = .3836517312, w_e = .3836517312, .2326965376
TEST(D2O, PaperMergeWeights) {
    D2OCase c = make_case();
    auto p = make_d2o("paper");
    p->begin(dims_of(c.prefill), 11);
    p->after_prefill(c.prefill.view());
    const Plan plan = p->after_decode_layer(c.step0.view());
    const MergeOp* m = merge_into(*plan.find(0, 0), 2);
    ASSERT_NE(m, nullptr);
    EXPECT_NEAR(m->dst_weight, 0.36373892934210333, 1e-6);
    EXPECT_NEAR(m->src_weights[0], 0.31813053532894836, 1e-6);
    EXPECT_NEAR(m->src_weights[1], 0.31813053532894836, 1e-6);
    m = merge_into(*plan.find(0, 1), 0);
    ASSERT_NE(m, nullptr);
    EXPECT_NEAR(m->dst_weight, 0.3836517311905507, 1e-6);
    EXPECT_NEAR(m->src_weights[0], 0.3836517311905507, 1e-6);
    EXPECT_NEAR(m->src_weights[1], 0.23269653761889864, 1e-6);
    float sum = m->dst_weight;
    for (float w : m->src_weights) sum += w;
    EXPECT_NEAR(sum, 1.0, 1e-6);
}

// Next step: one token per head is evicted and tau moves by the EMA (alpha = beta = 0.5).
TEST(D2O, SteadyStateEvictsOnePerHeadAndUpdatesTau) {
    D2OCase c = make_case();
    auto p = make_d2o("code");
    p->begin(dims_of(c.prefill), 11);
    p->after_prefill(c.prefill.view());
    const Plan first = p->after_decode_layer(c.step0.view());
    const double tau0 = find_note(first, 0, "d2o_tau")->value;

    // Step 1 view: the 6 survivors of head 0/1 plus position 12; keys: all (1, 0) except the
    // new token (0, 1), so every nearest cosine is known: evicted token's u is 1 if it points
    // along (1, 0), else 0 / 1.
    ViewData v;
    v.n_layers = 2;
    v.n_heads = 2;
    v.n_kv_heads = 2;
    v.head_dim = 2;
    v.prompt_len = 11;
    v.step = 1;
    v.layer_ids = {0};
    v.heads.push_back({});
    const std::vector<std::vector<int64_t>> kept = {{0, 2, 5, 9, 10, 11}, {0, 1, 4, 9, 10, 11}};
    for (int h = 0; h < 2; ++h) {
        HeadData d;
        d.pos = kept[static_cast<size_t>(h)];
        d.pos.push_back(12);
        d.step_row = {std::vector<float>(7, 0.0f)};
        for (int j = 0; j < 7; ++j) {
            d.keys.push_back(j == 6 ? 0.0f : 1.0f);
            d.keys.push_back(j == 6 ? 1.0f : 0.0f);
        }
        v.heads.back().push_back(d);
    }
    const Plan plan = p->after_decode_layer(v.view());
    for (int h = 0; h < 2; ++h) {
        const HeadPlan* hp = plan.find(0, h);
        ASSERT_NE(hp, nullptr);
        ASSERT_TRUE(hp->keep.has_value());
        EXPECT_EQ(hp->keep->size(), 6u);
    }
    // Candidates [0, 4) by score: head 0 keeps sink 0 and slots 1 (pos 2: 3.0), 2 (pos 5: 2.0),
    // evicts slot 3 (pos 9, key (1,0)): u = 1 to the kept (1,0) keys. Same for head 1 (pos 9).
    // tau = 0.5 * tau0 + 0.5 * 1.
    EXPECT_EQ(*plan.find(0, 0)->keep, (std::vector<int64_t>{0, 1, 2, 4, 5, 6}));
    EXPECT_NEAR(find_note(plan, 0, "d2o_tau")->value, 0.5 * tau0 + 0.5, 1e-6);
    // u = 1 >= tau: recalled into the lowest-index nearest neighbour (slot 0).
    ASSERT_EQ(plan.find(0, 0)->merges.size(), 1u);
    EXPECT_EQ(plan.find(0, 0)->merges[0].dst, 0);
    EXPECT_EQ(plan.find(0, 0)->merges[0].src, (std::vector<int64_t>{3}));
}

// F_0 = 0 (equal heads), F_1 = .5 * 1.6 / (1.6 + 1e-6) = .4999996875 (head variances 0 and 1.6).
// w = softmax(-F) = (.6224592578, .3775407422); r = clamp(2 * .5 * w) = w; n = 11:
// C = floor(11 r) = 6, 4.
TEST(D2O, LayerBudgetsFollowTheVarianceSoftmax) {
    ViewData pre;
    pre.n_layers = 2;
    pre.n_heads = 2;
    pre.n_kv_heads = 2;
    pre.head_dim = 2;
    pre.prompt_len = 10;
    const std::vector<float> spread = {0, 0, 0, 0, 0, 0, 0, 0, 0, 4};  // var 1.6
    const std::vector<float> flat(10, 0.4f);                           // var 0
    for (int64_t l = 0; l < 2; ++l) {
        pre.layer_ids.push_back(l);
        pre.heads.push_back({});
        for (int h = 0; h < 2; ++h) {
            HeadData d;
            d.pos = iota_positions(10);
            d.colsum = {l == 0 ? spread : (h == 0 ? flat : spread)};
            pre.heads.back().push_back(d);
        }
    }
    auto p = make_policy("d2o", Budget{-1, 0.5}, {"protected_layers="});
    p->begin(dims_of(pre), 10);
    const Plan pp = p->after_prefill(pre.view());
    EXPECT_NEAR(find_note(pp, 0, "d2o_density")->value, 0.0, 1e-12);
    EXPECT_NEAR(find_note(pp, 1, "d2o_density")->value, 0.49999968750019536, 1e-9);
    // A decode view of layer 0 (11 slots <= C? no: C_0 = 6) is enough to trigger the budgets.
    ViewData v;
    v.n_layers = 2;
    v.n_heads = 2;
    v.n_kv_heads = 2;
    v.head_dim = 2;
    v.prompt_len = 10;
    v.step = 0;
    v.layer_ids = {1};
    v.heads.push_back({});
    for (int h = 0; h < 2; ++h) {
        HeadData d;
        d.pos = iota_positions(11);
        d.step_row = {std::vector<float>(11, 0.1f)};
        d.keys = std::vector<float>(22, 1.0f);
        v.heads.back().push_back(d);
    }
    const Plan plan = p->after_decode_layer(v.view());
    EXPECT_NEAR(find_note(plan, 0, "d2o_ratio")->value, 0.6224592577632375, 1e-9);
    EXPECT_NEAR(find_note(plan, 1, "d2o_ratio")->value, 0.3775407422367625, 1e-9);
    EXPECT_EQ(find_note(plan, 0, "d2o_budget")->value, 6.0);
    EXPECT_EQ(find_note(plan, 1, "d2o_budget")->value, 4.0);
    EXPECT_EQ(plan.find(1, 0)->keep->size(), 4u);
}

TEST(D2O, DefaultProtectsFirstTwoAndLastLayers) {
    auto p = make_policy("d2o", Budget{-1, 0.2});
    ModelDims dims{4, 2, 2, 8};
    SyntheticRun run(dims, 30, 5, *p);
    run.prefill();
    for (int s = 0; s < 3; ++s) run.decode_step();
    for (int64_t l : {0, 1, 3}) EXPECT_EQ(run.cache().n_slots(l, 0), 33) << "layer " << l;
    EXPECT_LT(run.cache().n_slots(2, 0), 33);
}

}  // namespace
}  // namespace kvscope::test
