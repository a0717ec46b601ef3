// DynamicKV: window votes, score-ordered lists, progressive re-budgeting with the code's integer
// arithmetic. The rule is the comment block at the top of core/policies/dynamickv.cpp (the second
// batch has no PyTorch reference: docs/policy_reference.md, "Limits").
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "core/policies/plan.h"
#include "core/policies/registry.h"
#include "tests/policies/policy_harness.h"

namespace kvscope::test {
namespace {

// 2 layers, 1 KV head, g = 1, N = 12, window ws = 2 (votes over columns [0, 10)), no pooling,
// budget wt = 4 -> b = 2, r_max = 2 -> bs = 4, update interval 2 (once, after layer 1).
ViewData two_layer_view(const std::vector<float>& s0, const std::vector<float>& s1) {
    ViewData v;
    v.n_layers = 2;
    v.n_heads = 1;
    v.n_kv_heads = 1;
    v.head_dim = 4;
    v.prompt_len = 12;
    for (int64_t l = 0; l < 2; ++l) {
        v.layer_ids.push_back(l);
        HeadData h;
        h.pos = iota_positions(12);
        h.window_rows = 2;
        std::vector<float> rows(24, 0.0f);  // row 0 carries the votes, row 1 is zero
        const auto& s = l == 0 ? s0 : s1;
        std::copy(s.begin(), s.end(), rows.begin());
        h.window = {rows};
        v.heads.push_back({h});
    }
    return v;
}

std::unique_ptr<Policy> make_dkv() {
    return make_policy("dynamickv", Budget{4, -1},
                       {"window=2", "kernel=1", "pool=none", "r_max=2", "interval=2"});
}

double note(const Plan& p, int64_t layer, const std::string& key) {
    const LayerNote* n = find_note(p, layer, key);
    return n ? n->value : -1.0;
}

// Lists (bs = 4, descending): layer 0 -> 0 (9), 2 (8), 4 (7), 5 (3); layer 1 -> 7 (6), 8 (5),
// 9 (.7), 6 (.6). Global top-k, k = b * 1 * 2 = 4: 9, 8, 7 (layer 0), 6 (layer 1) -> cnt (3, 1),
// // (l+1) = (1, 0); last-layer fix-up: sum 1 != 10 -> cnt_1 += 4 / 2 - 1 -> (1, 1).
// BL = int(4 * .5) = (2, 2); sum 4 = b * L -> (2, 2).
TEST(DynamicKV, HandComputedBalanced) {
    const ViewData v = two_layer_view({9, 1, 8, 2, 7, 3, 0.5f, 0.4f, 0.3f, 0.2f},
                                      {0.1f, 0.2f, 0.3f, 0.35f, 0.45f, 0.5f, 0.6f, 6, 5, 0.7f});
    auto p = make_dkv();
    p->begin(dims_of(v), 12);
    const Plan plan = p->after_prefill(v.view());
    EXPECT_EQ(*plan.find(0, 0)->keep, (std::vector<int64_t>{0, 2, 10, 11}));
    EXPECT_EQ(*plan.find(1, 0)->keep, (std::vector<int64_t>{7, 8, 10, 11}));
    EXPECT_EQ(plan.find(0, 0)->budget, 4);
    EXPECT_EQ(note(plan, 0, "dynamickv_budget"), 4.0);
    EXPECT_EQ(note(plan, 1, "dynamickv_budget"), 4.0);
}

// Layer 1 wins every global entry: cnt (0, 4) // 2 = (0, 2); fix-up adds 4/2 - 2 = 0.
// BL = (0, int(4 * 1) = 4); sum 4 = b * L -> layer 0 keeps only the window, layer 1 its 4 best.
TEST(DynamicKV, HandComputedSkewed) {
    const ViewData v = two_layer_view({9, 1, 8, 2, 7, 3, 0.5f, 0.4f, 0.3f, 0.2f},
                                      {0.1f, 20, 19, 18, 17, 0.5f, 0.6f, 6, 5, 0.7f});
    auto p = make_dkv();
    p->begin(dims_of(v), 12);
    const Plan plan = p->after_prefill(v.view());
    EXPECT_EQ(*plan.find(0, 0)->keep, (std::vector<int64_t>{10, 11}));
    EXPECT_EQ(*plan.find(1, 0)->keep, (std::vector<int64_t>{1, 2, 3, 4, 10, 11}));
    EXPECT_EQ(note(plan, 0, "dynamickv_budget"), 2.0);
    EXPECT_EQ(note(plan, 1, "dynamickv_budget"), 6.0);
}

TEST(DynamicKV, ShortPromptKeepsEverything) {
    const ViewData v = two_layer_view({9, 1, 8, 2, 7, 3, 0.5f, 0.4f, 0.3f, 0.2f},
                                      {0.1f, 20, 19, 18, 17, 0.5f, 0.6f, 6, 5, 0.7f});
    auto p = make_policy("dynamickv", Budget{12, -1}, {"window=2"});
    p->begin(dims_of(v), 12);
    const Plan plan = p->after_prefill(v.view());
    for (const HeadPlan& hp : plan.heads) EXPECT_FALSE(hp.keep.has_value());
}

// Random views: every head of a layer keeps the same count, the window is kept, kept sets are
// ascending without duplicates, the total never exceeds L * wt, and with one update over all
// layers (interval >= L) and enough room (r_max >= L, N - ws >= b L) it is exactly L * wt.
TEST(DynamicKV, RandomBudgetProperties) {
    for (const std::string gqa : {"mean", "max", "per_query_head"}) {
        for (uint32_t seed : {4u, 5u}) {
            for (const std::string interval : {"2", "8"}) {
                const int64_t L = 5, G = 2, g = 2, N = 60, wt = 9, ws = 3;
                auto p = make_policy("dynamickv", Budget{wt, -1},
                                     {"window=3", "kernel=3", "pool=max", "r_max=6",
                                      "interval=" + interval, "gqa=" + gqa});
                ModelDims dims{L, G * g, G, 8};
                SyntheticRun run(dims, N, seed, *p);
                run.prefill();
                const Plan& plan = run.plans().front();
                int64_t total = 0;
                for (int64_t l = 0; l < L; ++l) {
                    const int64_t n0 = run.cache().n_slots(l, 0);
                    for (int64_t h = 0; h < G; ++h) {
                        const auto pos = positions_of(run.cache(), l, h);
                        EXPECT_EQ(static_cast<int64_t>(pos.size()), n0);
                        EXPECT_TRUE(std::is_sorted(pos.begin(), pos.end()));
                        EXPECT_EQ(std::adjacent_find(pos.begin(), pos.end()), pos.end());
                        for (int64_t j = N - ws; j < N; ++j)
                            EXPECT_TRUE(std::binary_search(pos.begin(), pos.end(), j));
                        EXPECT_EQ(plan.find(l, h)->budget, n0);
                    }
                    EXPECT_LE(n0, 6 * (wt - ws) + ws);  // bs + window
                    total += n0;
                }
                EXPECT_LE(total, L * wt);
                if (interval == "8") {
                    EXPECT_EQ(total, L * wt) << gqa << " " << seed;
                }
                EXPECT_EQ(run.cache().check_consistency(), "");
            }
        }
    }
}

}  // namespace
}  // namespace kvscope::test
