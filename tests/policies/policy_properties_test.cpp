// Properties every policy must have, on random inputs: budgets respected, sinks / windows /
// recent tokens kept, no duplicate positions, exact memory accounting, and a budget >= the prompt
// length giving exactly the tokens of `full`. Decode-continuous policies also run 20 decode steps
// with random attention rows and must stay within budget.
// The second batch (d2o, dmc, dynamickv, mikv, kivi) evicts nothing at prefill, merges,
// quantises or moves budgets by design; its properties (registry entries, budgets, sinks and
// windows kept, exact memory accounting, "budget >= everything" == full) are checked on random
// synthetic runs (SyntheticRun) in the second half of this file.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "core/error.h"
#include "core/policies/plan.h"
#include "core/policies/registry.h"
#include "tests/policies/policy_harness.h"

namespace kvscope::test {
namespace {

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
// merges, quantisation, moved budgets); the second half of this file checks their own properties.
bool is_second_batch(const std::string& name) {
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
    KVCache cache = make_filled_cache(s.L, s.Hkv, st.d, s.N, 2);
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
        if (is_second_batch(name)) continue;
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
        if (is_second_batch(name)) continue;
        Budget b;
        b.tokens = 10;
        auto p = make_policy(name, b, params_for(name));
        if (p->info().regime != Regime::kDecodeContinuous) continue;
        ++ran;
        SCOPED_TRACE(name);
        const Shape s{2, 4, 2, 30};
        OwnedStats st(s.L, s.H, s.Hkv, s.N, 1);
        st.randomize(7);
        p->begin(st.dims(), s.N);
        KVCache cache = make_filled_cache(s.L, s.Hkv, st.d, s.N, 2);
        apply(p->after_prefill(st.view()), cache);
        std::vector<float> kv(st.d, 0.5f);
        for (int64_t step = 0; step < 20; ++step) {
            cache.set_step(step);
            const int64_t pos = s.N + step;
            for (int64_t l = 0; l < s.L; ++l) {
                for (int64_t h = 0; h < s.Hkv; ++h) cache.append(l, h, kv.data(), kv.data(), pos);
                // Random softmax rows over each head's cache, per query head.
                std::vector<std::vector<float>> rows(s.H);
                ScoreView v = empty_view(st.dims(), s.N, step);
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

// ---- The second batch: d2o, dmc, dynamickv, mikv, kivi on random synthetic runs.

const ModelDims kDims{3, 4, 2, 8};  // 3 layers, 4 query heads, 2 KV heads (g = 2), d = 8

TEST(SecondBatchRegistry, EntriesAndBudgetRules) {
    const PolicyRegistry& r = PolicyRegistry::global();
    for (const char* name : {"d2o", "dmc", "dynamickv", "mikv", "kivi"}) {
        const PolicyEntry* e = r.find(name);
        ASSERT_NE(e, nullptr) << name;
        EXPECT_FALSE(e->info.arxiv.empty());
        EXPECT_FALSE(e->info.paper.empty());
        for (const ParamSpec& s : e->schema) EXPECT_FALSE(s.help.empty()) << name << " " << s.name;
    }
    EXPECT_EQ(r.find("dynamickv")->info.regime, Regime::kPrefillOneshot);
    EXPECT_EQ(r.find("d2o")->info.regime, Regime::kDecodeContinuous);
    EXPECT_NO_THROW(make_policy("kivi", Budget{}));
    EXPECT_NO_THROW(make_policy("dmc", Budget{}));
    EXPECT_THROW(make_policy("d2o", Budget{}), InputError);
    EXPECT_THROW(make_policy("mikv", Budget{}), InputError);
    EXPECT_THROW(make_policy("dynamickv", Budget{8, -1}, {"kernel=4"}), InputError);
    // The proxy mode says it is not DMC.
    const ParamSpec* mode = nullptr;
    for (const ParamSpec& s : r.find("dmc")->schema)
        if (s.name == "mode") mode = &s;
    ASSERT_NE(mode, nullptr);
    EXPECT_NE(mode->help.find("NOT DMC"), std::string::npos);
}

// Every position 0..pos-1 in every (layer, head), full precision, never merged.
void expect_full(const KVCache& c, int64_t positions) {
    for (int64_t l = 0; l < c.n_layers(); ++l)
        for (int64_t h = 0; h < c.n_kv_heads(); ++h) {
            EXPECT_EQ(positions_of(c, l, h), iota_positions(positions)) << l << "/" << h;
            for (int b : c.k_bits(l, h)) EXPECT_EQ(b, 16);
            for (int32_t m : c.merge_count(l, h)) EXPECT_EQ(m, 0);
        }
}

TEST(SecondBatchProperties, LargeBudgetKeepsTheSameTokensAsFull) {
    const int64_t N = 20, steps = 5;
    // d2o: C_l >= L * B * w_l >= B / e (w_l >= exp(-1) / L), so B = 3 n never evicts.
    struct Case {
        std::string name;
        Budget budget;
        std::vector<std::string> params;
    };
    const std::vector<Case> cases = {
        {"d2o", Budget{3 * (N + steps + 1), -1}, {"protected_layers="}},
        {"mikv", Budget{N + steps, -1}, {}},
        {"dynamickv", Budget{N, -1}, {}},
        {"full", Budget{}, {}},
    };
    for (const Case& c : cases) {
        auto p = make_policy(c.name, c.budget, c.params);
        SyntheticRun run(kDims, N, 9, *p);
        run.prefill();
        for (int s = 0; s < steps; ++s) run.decode_step();
        SCOPED_TRACE(c.name);
        expect_full(run.cache(), N + steps);
    }
}

// D2O: non-protected layers hold exactly C_l after the first step, sinks and the recent window
// always survive, every merge keeps the kept slot's position, accounting is exact.
TEST(SecondBatchProperties, D2OBudgetsSinksWindow) {
    for (uint32_t seed : {1u, 2u, 3u}) {
        for (const std::string merge : {"code", "paper"}) {
            auto p = make_policy("d2o", Budget{-1, 0.4},
                                 {"protected_layers=0", "sinks=2", "merge=" + merge});
            SyntheticRun run(kDims, 30, seed, *p);
            run.prefill();
            std::vector<double> C(3, -1.0);
            for (int s = 0; s < 8; ++s) {
                run.decode_step();
                for (const Plan& pl : run.plans())
                    for (const LayerNote& n : pl.notes)
                        if (n.key == "d2o_budget") C[static_cast<size_t>(n.layer)] = n.value;
                const int64_t pos = run.next_position();
                for (int64_t l = 1; l < 3; ++l) {
                    const int64_t c = static_cast<int64_t>(C[static_cast<size_t>(l)]);
                    ASSERT_GT(c, 0);
                    const int64_t R = c / 2;  // floor(C * (1 - hh_share))
                    for (int64_t h = 0; h < 2; ++h) {
                        const auto got = positions_of(run.cache(), l, h);
                        EXPECT_EQ(static_cast<int64_t>(got.size()), std::min<int64_t>(c, pos));
                        for (int64_t j : {int64_t{0}, int64_t{1}})
                            EXPECT_TRUE(std::binary_search(got.begin(), got.end(), j));
                        for (int64_t j = pos - R; j < pos; ++j)
                            EXPECT_TRUE(std::binary_search(got.begin(), got.end(), j));
                    }
                }
                EXPECT_EQ(run.cache().n_slots(0, 0), pos);  // protected
                ASSERT_EQ(run.cache().check_consistency(), "");
                EXPECT_EQ(run.cache().bytes_held(), expected_bytes_per_token_quant(run.cache(), 8));
            }
        }
    }
}

TEST(SecondBatchProperties, MiKVAccounting) {
    for (const std::string hi : {"16", "8"}) {
        auto p = make_policy("mikv", Budget{-1, 0.25},
                             {"group=4", "hi_bits=" + hi, "lo_bits=2", "gqa=per_query_head"});
        SyntheticRun run(kDims, 32, 7, *p);
        run.prefill();
        const int64_t C = 8;  // ceil(.25 * 32)
        for (int s = 0; s < 6; ++s) {
            run.decode_step();
            for (int64_t l = 0; l < 3; ++l)
                for (int64_t h = 0; h < 2; ++h) {
                    int64_t high = 0;
                    for (int b : run.cache().v_bits(l, h)) high += b > 2;
                    EXPECT_EQ(high, C);
                    EXPECT_EQ(run.cache().n_slots(l, h), run.next_position());
                    const auto kb = run.cache().k_bits(l, h);
                    EXPECT_GT(kb.back(), 2);  // the newest token is important
                }
            ASSERT_EQ(run.cache().check_consistency(), "");
            EXPECT_EQ(run.cache().bytes_held(), expected_bytes_per_token_quant(run.cache(), 4));
        }
    }
}

// DMC checkpoint on random control values: tokens are conserved (slots + merged = seen), slot
// positions stay ascending, and the accounting counts slots only.
TEST(SecondBatchProperties, DMCConservesTokens) {
    auto p = make_policy("dmc", Budget{});
    SyntheticRun run(kDims, 25, 11, *p);
    run.prefill();
    for (int s = 0; s < 10; ++s) run.decode_step();
    for (int64_t l = 0; l < 3; ++l)
        for (int64_t h = 0; h < 2; ++h) {
            int64_t tokens = 0;
            for (int32_t m : run.cache().merge_count(l, h)) tokens += 1 + m;
            EXPECT_EQ(tokens, 35);
            EXPECT_LT(run.cache().n_slots(l, h), 35);  // ~half of the raw k[d-1] exceed 5
        }
    ASSERT_EQ(run.cache().check_consistency(), "");
    EXPECT_EQ(run.cache().bytes_held(), expected_bytes_per_token_quant(run.cache(), 8));
}

}  // namespace
}  // namespace kvscope::test
