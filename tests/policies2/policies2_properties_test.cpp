// Properties of d2o, dmc, dynamickv, mikv, kivi on random synthetic runs: registry entries,
// budgets, sinks and windows kept, exact memory accounting, and "budget >= everything" == full.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "core/policies/plan.h"
#include "core/policies/registry.h"
#include "tests/policies2/policy2_harness.h"

namespace kvscope::test {
namespace {

const ModelDims kDims{3, 4, 2, 8};  // 3 layers, 4 query heads, 2 KV heads (g = 2), d = 8

TEST(Policies2Registry, EntriesAndBudgetRules) {
    const PolicyRegistry& r = PolicyRegistry::global();
    for (const char* name : {"d2o", "dmc", "dynamickv", "mikv", "kivi"}) {
        const PolicyEntry* e = r.find(name);
        ASSERT_NE(e, nullptr) << name;
        EXPECT_FALSE(e->info.arxiv.empty());
        EXPECT_FALSE(e->info.paper.empty());
        for (const ParamSpec& s : e->schema) EXPECT_FALSE(s.help.empty()) << name << " " << s.name;
    }
    EXPECT_EQ(r.find("dynamickv")->info.regime, Regime::prefill_oneshot);
    EXPECT_EQ(r.find("d2o")->info.regime, Regime::decode_continuous);
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

TEST(Policies2Properties, LargeBudgetKeepsTheSameTokensAsFull) {
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
TEST(Policies2Properties, D2OBudgetsSinksWindow) {
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

TEST(Policies2Properties, MiKVAccounting) {
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
TEST(Policies2Properties, DMCConservesTokens) {
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
