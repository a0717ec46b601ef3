// Properties every policy must have, on random inputs: budgets respected, sinks / windows /
// recent tokens kept, no duplicate positions, exact memory accounting, and a budget >= the prompt
// length giving exactly the tokens of `full`. Decode-continuous policies also run 20 decode steps
// with random attention rows and must stay within budget.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "core/policies/registry.h"
#include "policy_test_util.h"

namespace kvscope {
namespace {

using test::OwnedStats;

struct Shape {
    int64_t L, H, Hkv, N;
};

const std::vector<Shape> kShapes = {{2, 4, 2, 12}, {3, 8, 2, 40}, {1, 4, 4, 17}, {2, 4, 1, 64}};

std::vector<std::string> params_for(const std::string& name) {
    // Windows small enough for the random budgets below.
    if (name == "snapkv" || name == "pyramidkv") return {"window=4", "kernel=5", "pool=avg"};
    if (name == "knorm") return {"skip_layers=0"};
    return {};
}

// d2o, dmc, dynamickv, mikv, kivi break the assumptions below by design (no prefill eviction,
// merges, quantisation, moved budgets); tests/policies2 checks their own properties.
bool covered_by_policies2(const std::string& name) {
    return name == "d2o" || name == "dmc" || name == "dynamickv" || name == "mikv" ||
           name == "kivi";
}

int64_t window_of(const std::string& name) {
    return (name == "snapkv" || name == "pyramidkv") ? 4 : 0;
}

// Applies the prefill plan to a filled cache and checks the common properties.
void check_prefill(const std::string& name, const Shape& s, int64_t C, uint32_t seed) {
    SCOPED_TRACE(name + " L" + std::to_string(s.L) + " H" + std::to_string(s.H) + " Hkv" +
                 std::to_string(s.Hkv) + " N" + std::to_string(s.N) + " C" + std::to_string(C));
    OwnedStats st(s.L, s.H, s.Hkv, s.N, std::max<int64_t>(window_of(name), 1));
    st.randomize(seed);
    Budget b;
    b.tokens = C;
    auto p = make_policy(name, b, params_for(name));
    p->begin(st.dims(), s.N);
    const Plan plan = p->after_prefill(st.view());
    KVCache cache = test::make_filled_cache(s.L, s.Hkv, st.d, s.N, 2);
    apply(plan, cache);
    ASSERT_EQ(cache.check_consistency(), "");
    const bool is_full = name == "full";
    int64_t total = 0;
    for (int64_t l = 0; l < s.L; ++l) {
        for (int64_t h = 0; h < s.Hkv; ++h) {
            const auto pos = cache.positions(l, h);
            const int64_t n = static_cast<int64_t>(pos.size());
            total += n;
            // Memory: every slot full precision, 2 x d x 2 bytes.
            EXPECT_EQ(cache.bytes_held(l, h), n * 2 * st.d * 2);
            const std::set<int64_t> kept(pos.begin(), pos.end());
            EXPECT_EQ(static_cast<int64_t>(kept.size()), n);  // no duplicate positions
            const HeadPlan* hp = plan.find(l, h);
            if (is_full || C >= s.N || (name == "knorm" && l == 0)) {
                EXPECT_EQ(n, s.N);
                continue;
            }
            ASSERT_NE(hp, nullptr);
            EXPECT_LE(n, hp->budget);
            if (name != "pyramidkv") {
                EXPECT_EQ(n, std::min(C, s.N));
            }
            if (name == "streaming_llm") {
                for (int64_t t = 0; t < std::min<int64_t>(4, C); ++t) EXPECT_TRUE(kept.count(t));
            }
            if (name == "snapkv" || name == "pyramidkv") {
                for (int64_t t = s.N - std::min<int64_t>(4, C); t < s.N; ++t)
                    EXPECT_TRUE(kept.count(t));
            }
            if (name == "h2o") {
                for (int64_t t = s.N - C / 2; t < s.N; ++t) EXPECT_TRUE(kept.count(t));
            }
        }
    }
    EXPECT_EQ(cache.bytes_held(), total * 2 * st.d * 2);
    if (name == "pyramidkv" && C < s.N && C > 4 && s.N >= 2 * (C - 4)) {
        // The pyramid hands out at most L * C in total (integer rounding may keep less).
        EXPECT_LE(total, s.L * s.Hkv * C);
    }
}

TEST(PolicyProperties, PrefillOnRandomInputs) {
    std::mt19937 rng(11);
    for (const std::string& name : PolicyRegistry::global().names()) {
        if (covered_by_policies2(name)) continue;
        for (const Shape& s : kShapes) {
            for (int trial = 0; trial < 6; ++trial) {
                const int64_t C = std::uniform_int_distribution<int64_t>(5, s.N + 3)(rng);
                check_prefill(name, s, C, static_cast<uint32_t>(rng()));
            }
            check_prefill(name, s, s.N, 3);      // budget == prompt: exactly full
            check_prefill(name, s, s.N + 7, 4);  // budget > prompt: exactly full
        }
    }
}

TEST(PolicyProperties, DecodeContinuousStaysWithinBudget) {
    std::mt19937 rng(23);
    int ran = 0;
    for (const std::string& name : PolicyRegistry::global().names()) {
        if (covered_by_policies2(name)) continue;
        Budget b;
        b.tokens = 10;
        auto p = make_policy(name, b, params_for(name));
        if (p->info().regime != Regime::decode_continuous) continue;
        ++ran;
        SCOPED_TRACE(name);
        const Shape s{2, 4, 2, 30};
        OwnedStats st(s.L, s.H, s.Hkv, s.N, 1);
        st.randomize(7);
        p->begin(st.dims(), s.N);
        KVCache cache = test::make_filled_cache(s.L, s.Hkv, st.d, s.N, 2);
        apply(p->after_prefill(st.view()), cache);
        std::vector<float> kv(st.d, 0.5f);
        for (int64_t step = 0; step < 20; ++step) {
            cache.set_step(step);
            const int64_t pos = s.N + step;
            for (int64_t l = 0; l < s.L; ++l) {
                for (int64_t h = 0; h < s.Hkv; ++h) cache.append(l, h, kv.data(), kv.data(), pos);
                // Random softmax rows over each head's cache, per query head.
                std::vector<std::vector<float>> rows(s.H);
                ScoreView v;
                v.n_layers = s.L;
                v.n_heads = s.H;
                v.n_kv_heads = s.Hkv;
                v.head_dim = st.d;
                v.prompt_len = s.N;
                v.step = step;
                LayerScores ls;
                ls.layer = l;
                for (int64_t h = 0; h < s.Hkv; ++h) {
                    HeadScores hs;
                    hs.layer = l;
                    hs.kv_head = h;
                    hs.positions = cache.positions(l, h);
                    for (int64_t q = 0; q < s.H / s.Hkv; ++q) {
                        auto& r = rows[static_cast<size_t>(h * (s.H / s.Hkv) + q)];
                        r.resize(hs.positions.size());
                        float sum = 0;
                        for (float& x : r)
                            sum += x = std::uniform_real_distribution<float>(0, 1)(rng);
                        for (float& x : r) x /= sum;
                        hs.step_row.push_back(r);
                    }
                    ls.heads.push_back(std::move(hs));
                }
                v.layers.push_back(std::move(ls));
                apply(p->after_decode_layer(v), cache);
                for (int64_t h = 0; h < s.Hkv; ++h) {
                    EXPECT_EQ(cache.n_slots(l, h), 10);
                    if (name != "tova") {  // TOVA has no recency window: the new token may go
                        EXPECT_EQ(cache.positions(l, h).back(), pos);
                    }
                }
            }
            ASSERT_EQ(cache.check_consistency(), "");
        }
        // Events and memory: 2 layers x 2 heads x 10 slots.
        EXPECT_EQ(cache.bytes_held(), 2 * 2 * 10 * 2 * st.d * 2);
    }
    EXPECT_EQ(ran, 3);  // streaming_llm, h2o, tova
}

}  // namespace
}  // namespace kvscope
