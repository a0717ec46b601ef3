// MiKV: H2O importance, the rest quantised instead of evicted, key channel balancing, one-way
// demotion. The rule is the comment block at the top of core/policies/mikv.cpp (the second batch
// has no PyTorch reference: docs/policy_reference.md, "Limits").
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "core/error.h"
#include "core/policies/plan.h"
#include "core/policies/registry.h"
#include "tests/policies/policy_harness.h"

namespace kvscope::test {
namespace {

// 1 layer, 1 KV head, g = 1, d = 4, prompt 12, budget 4 (recent 2 + heavy 2), 3 bits, group 4.
// Column sums: heavy hitters among [0, 10) are slot 0 (5.0) and slot 3 (4.0).
// Keys: slot 5 = (0, .5, 4, 7), others (1, .25, 1, 1); max |q| = (1, 2, 1, 7)
//   -> beta = sqrt(max|q| / max|k|) = (1, 2, .5, 1); k5 * beta = (0, 1, 2, 7): with 3 bits the
//   scale is exactly 1, so the balanced key survives quantisation exactly, while the unbalanced
//   one loses .5 (code round(.5) = 0).
struct MikvCase {
    ViewData view;
    KVCache cache{1, 1, 4, 2};
};

void fill(MikvCase& c) {
    c.view.n_layers = 1;
    c.view.n_heads = 1;
    c.view.n_kv_heads = 1;
    c.view.head_dim = 4;
    c.view.prompt_len = 12;
    c.view.layer_ids = {0};
    HeadData h;
    h.pos = iota_positions(12);
    h.colsum = {{5, 1, 0.5f, 4, 0.2f, 0.3f, 3, 0.1f, 0.2f, 0.1f, 0.4f, 0.3f}};
    h.query_absmax = {1, 2, 1, 7};
    for (int t = 0; t < 12; ++t) {
        const std::vector<float> k =
            t == 5 ? std::vector<float>{0, 0.5f, 4, 7} : std::vector<float>{1, 0.25f, 1, 1};
        const std::vector<float> v =
            t == 5 ? std::vector<float>{0, 1, 2, 7} : std::vector<float>{1, 1, 1, 1};
        c.cache.append(0, 0, k.data(), v.data(), t);
        h.keys.insert(h.keys.end(), k.begin(), k.end());
    }
    c.view.heads = {{h}};
}

TEST(MiKV, PrefillQuantisesWhatH2OWouldEvictWithBalancedKeys) {
    MikvCase c;
    fill(c);
    auto p = make_policy("mikv", Budget{4, -1}, {"group=4"});
    p->begin(dims_of(c.view), 12);
    apply(p->after_prefill(c.view.view()), c.cache);
    const std::vector<int> want = {16, 3, 3, 16, 3, 3, 3, 3, 3, 3, 16, 16};
    EXPECT_EQ(bits_of(c.cache.k_bits(0, 0)), want);
    EXPECT_EQ(bits_of(c.cache.v_bits(0, 0)), want);
    EXPECT_EQ(c.cache.n_slots(0, 0), 12);  // nothing evicted
    const float* k5 = c.cache.k(0, 0) + 5 * 4;
    EXPECT_NEAR(k5[0], 0.0, 1e-6);
    EXPECT_NEAR(k5[1], 0.5, 1e-6);
    EXPECT_NEAR(k5[2], 4.0, 1e-6);
    EXPECT_NEAR(k5[3], 7.0, 1e-6);
    // 8 quantised slots x 2 parts x (4 x 3 + 32) bits + 4 fp16 slots x 128 bits = 1216 bits.
    EXPECT_EQ(c.cache.bytes_held(), 152);
    EXPECT_EQ(c.cache.bytes_held(), expected_bytes_per_token_quant(c.cache, 4));
    EXPECT_EQ(c.cache.check_consistency(), "");
}

TEST(MiKV, WithoutBalancingTheOutlierChannelLosesPrecision) {
    MikvCase c;
    fill(c);
    auto p = make_policy("mikv", Budget{4, -1}, {"group=4", "balance=false"});
    EXPECT_FALSE(p->needs().query_absmax);
    p->begin(dims_of(c.view), 12);
    apply(p->after_prefill(c.view.view()), c.cache);
    // (0, .5, 4, 7): scale (7 - 0) / 7 = 1, .5 -> code 0 (round half to even).
    EXPECT_NEAR(c.cache.k(0, 0)[5 * 4 + 1], 0.0, 1e-6);
}

TEST(MiKV, BalancingWithoutQueryStatisticsFailsClearly) {
    MikvCase c;
    fill(c);
    c.view.heads[0][0].query_absmax.clear();
    auto p = make_policy("mikv", Budget{4, -1});
    p->begin(dims_of(c.view), 12);
    EXPECT_THROW(p->after_prefill(c.view.view()), std::invalid_argument);
}

// Decode: position 12 arrives, slot 10 receives 5.0 -> scores 0: 5, 3: 4, 10: 5.4 among the
// non-recent high-precision slots -> 3 is demoted, 10 stays; the new token stays fp16.
TEST(MiKV, DecodeDemotesOneWay) {
    MikvCase c;
    fill(c);
    auto p = make_policy("mikv", Budget{4, -1}, {"group=4"});
    p->begin(dims_of(c.view), 12);
    apply(p->after_prefill(c.view.view()), c.cache);
    const std::vector<float> kv = {1, 1, 1, 1};
    c.cache.set_step(0);
    c.cache.append(0, 0, kv.data(), kv.data(), 12);
    ViewData v = c.view;
    v.step = 0;
    v.heads[0][0] = HeadData{};
    v.heads[0][0].pos = iota_positions(13);
    std::vector<float> row(13, 0.0f);
    row[10] = 5.0f;
    v.heads[0][0].step_row = {row};
    apply(p->after_decode_layer(v.view()), c.cache);
    EXPECT_EQ(bits_of(c.cache.k_bits(0, 0)),
              (std::vector<int>{16, 3, 3, 3, 3, 3, 3, 3, 3, 3, 16, 16, 16}));
    // A demoted token never comes back, whatever attention it gets later.
    c.cache.set_step(1);
    c.cache.append(0, 0, kv.data(), kv.data(), 13);
    v.heads[0][0].pos = iota_positions(14);
    row.assign(14, 0.0f);
    row[3] = 100.0f;
    v.heads[0][0].step_row = {row};
    v.step = 1;
    apply(p->after_decode_layer(v.view()), c.cache);
    EXPECT_EQ(c.cache.k_bits(0, 0)[3], 3);
    int hi = 0;
    for (int b : c.cache.k_bits(0, 0)) hi += b == 16;
    EXPECT_EQ(hi, 4);
}

// hi_bits = 8: important tokens are INT8 and are demoted to lo_bits later.
TEST(MiKV, Int8HighPrecision) {
    MikvCase c;
    fill(c);
    auto p = make_policy("mikv", Budget{4, -1}, {"group=4", "hi_bits=8", "lo_bits=2"});
    p->begin(dims_of(c.view), 12);
    apply(p->after_prefill(c.view.view()), c.cache);
    EXPECT_EQ(bits_of(c.cache.v_bits(0, 0)),
              (std::vector<int>{8, 2, 2, 8, 2, 2, 2, 2, 2, 2, 8, 8}));
    EXPECT_EQ(c.cache.check_consistency(), "");
    EXPECT_THROW(make_policy("mikv", Budget{4, -1}, {"hi_bits=12"}), InputError);
    EXPECT_THROW(make_policy("mikv", Budget{4, -1}, {"hi_bits=4", "lo_bits=4"}), InputError);
}

// Property: the high-precision set is exactly what H2O keeps, for every GQA rule, after the
// prompt and along decode steps (attention rows are a function of the position).
TEST(MiKV, HighPrecisionSetEqualsH2OKeptSet) {
    for (const std::string gqa : {"mean", "max", "per_query_head"}) {
        for (uint32_t seed : {1u, 2u, 3u}) {
            std::mt19937 rng(seed);
            std::exponential_distribution<float> ex(1.0f);
            const int64_t N = 30, C = 7, g = 2;
            ViewData pre;
            pre.n_layers = 1;
            pre.n_heads = g;
            pre.n_kv_heads = 1;
            pre.head_dim = 4;
            pre.prompt_len = N;
            pre.layer_ids = {0};
            HeadData h;
            h.pos = iota_positions(N);
            for (int64_t q = 0; q < g; ++q) {
                std::vector<float> cs(static_cast<size_t>(N));
                for (float& x : cs) x = ex(rng);
                h.colsum.push_back(cs);
            }
            pre.heads = {{h}};
            auto mikv = make_policy("mikv", Budget{C, -1}, {"balance=false", "gqa=" + gqa});
            auto h2o = make_policy("h2o", Budget{C, -1}, {"gqa=" + gqa});
            mikv->begin(dims_of(pre), N);
            h2o->begin(dims_of(pre), N);
            const Plan pm = mikv->after_prefill(pre.view());
            const Plan ph = h2o->after_prefill(pre.view());
            std::set<int64_t> hi;
            for (int64_t i = 0; i < N; ++i) hi.insert(i);
            auto drop_quantised = [&](const Plan& p) {
                for (const QuantizeOp& op : p.find(0, 0)->quantize)
                    for (int64_t s : op.slots) hi.erase(s);  // slot index == position here
            };
            drop_quantised(pm);
            std::vector<int64_t> h2o_pos = *ph.find(0, 0)->keep;
            ASSERT_EQ(std::vector<int64_t>(hi.begin(), hi.end()), h2o_pos) << gqa << " " << seed;
            for (int64_t step = 0; step < 6; ++step) {
                const int64_t p = N + step;
                auto row_value = [&](int64_t q, int64_t pos) {
                    return static_cast<float>(
                        std::fabs(std::sin(0.7 * pos + 1.3 * step + 2.1 * q)));
                };
                auto decode_view = [&](const std::vector<int64_t>& pos) {
                    ViewData v = pre;
                    v.step = step;
                    HeadData d;
                    d.pos = pos;
                    for (int64_t q = 0; q < g; ++q) {
                        std::vector<float> r;
                        r.reserve(pos.size());
                        for (int64_t x : pos) r.push_back(row_value(q, x));
                        d.step_row.push_back(r);
                    }
                    v.heads = {{d}};
                    return v;
                };
                h2o_pos.push_back(p);
                const ViewData vh = decode_view(h2o_pos);
                const Plan ph2 = h2o->after_decode_layer(vh.view());
                if (ph2.find(0, 0) && ph2.find(0, 0)->keep) {
                    std::vector<int64_t> next;
                    for (int64_t s : *ph2.find(0, 0)->keep)
                        next.push_back(h2o_pos[static_cast<size_t>(s)]);
                    h2o_pos = next;
                }
                hi.insert(p);
                const ViewData vm = decode_view(iota_positions(p + 1));
                drop_quantised(mikv->after_decode_layer(vm.view()));
                ASSERT_EQ(std::vector<int64_t>(hi.begin(), hi.end()), h2o_pos)
                    << gqa << " seed " << seed << " step " << step;
            }
        }
    }
}

}  // namespace
}  // namespace kvscope::test
