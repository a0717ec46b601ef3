// KVCache: every operation, the events it emits, exact memory accounting (codes, scales, zero
// points), and the quantiser's error bound.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "core/cache/kv_cache.h"
#include "core/cache/quantizer.h"
#include "tests/cache/cache_harness.h"

namespace kvscope {
namespace {

using test::make_filled_cache;

struct Recorder {
    std::vector<CacheEvent> events;
    int attach(KVCache& c) {
        return c.add_observer([this](const CacheEvent& e) { events.push_back(e); });
    }
};

// Same events in the same order: operation, head, position, slot.
void expect_same_events(const Recorder& got, const Recorder& want) {
    ASSERT_EQ(got.events.size(), want.events.size());
    for (size_t e = 0; e < want.events.size(); ++e) {
        EXPECT_EQ(got.events[e].op, want.events[e].op);
        EXPECT_EQ(got.events[e].head, want.events[e].head);
        EXPECT_EQ(got.events[e].position, want.events[e].position);
        EXPECT_EQ(got.events[e].slot, want.events[e].slot);
    }
}

TEST(KVCache, AppendStoresSlotsAndEmitsEvents) {
    KVCache c(2, 2, 4, 2);
    Recorder r;
    r.attach(c);
    const float k[4] = {1, 2, 3, 4}, v[4] = {5, 6, 7, 8};
    EXPECT_EQ(c.append(1, 0, k, v, 10), 0);
    EXPECT_EQ(c.append(1, 0, k, v, 12), 1);
    EXPECT_EQ(c.n_slots(1, 0), 2);
    EXPECT_EQ(c.n_slots(0, 0), 0);
    EXPECT_EQ(c.positions(1, 0)[1], 12);
    EXPECT_FLOAT_EQ(c.v(1, 0)[4 + 3], 8.0f);
    ASSERT_EQ(r.events.size(), 2u);
    EXPECT_EQ(r.events[1].op, CacheOp::kAppend);
    EXPECT_EQ(r.events[1].layer, 1);
    EXPECT_EQ(r.events[1].position, 12);
    EXPECT_EQ(r.events[1].slot, 1);
    EXPECT_EQ(r.events[1].step, -1);
    // Positions must increase.
    EXPECT_THROW(c.append(1, 0, k, v, 12), std::invalid_argument);
    EXPECT_THROW(c.append(2, 0, k, v, 0), std::out_of_range);
    EXPECT_EQ(c.check_consistency(), "");
}

// append_rows (the engine's prefill path) must be n append() calls: same slots, values, events,
// accounting and errors; reserve() changes nothing visible.
TEST(KVCache, AppendRowsEqualsAppendingOneByOne) {
    const int64_t G = 3, d = 4, n = 5;
    std::vector<float> k(static_cast<size_t>(n * G * d)), v(k.size());  // [n, G, d]
    for (size_t i = 0; i < k.size(); ++i) {
        k[i] = 0.5f * static_cast<float>(i);
        v[i] = -0.25f * static_cast<float>(i);
    }
    const std::vector<int64_t> pos = {3, 4, 7, 8, 20};
    KVCache one(1, G, d, 2), rows(1, G, d, 2);
    rows.reserve(64);
    Recorder r1, r2;
    r1.attach(one);
    r2.attach(rows);
    for (int64_t g = 0; g < G; ++g) {
        for (int64_t i = 0; i < n; ++i)
            one.append(0, g, k.data() + (i * G + g) * d, v.data() + (i * G + g) * d,
                       pos[static_cast<size_t>(i)]);
        rows.append_rows(0, g, k.data() + g * d, v.data() + g * d, G * d, pos.data(), n);
    }
    for (int64_t g = 0; g < G; ++g) {
        ASSERT_EQ(rows.n_slots(0, g), n);
        for (int64_t j = 0; j < n * d; ++j) {
            EXPECT_EQ(rows.k(0, g)[j], one.k(0, g)[j]);  // copies: exact
            EXPECT_EQ(rows.v(0, g)[j], one.v(0, g)[j]);
        }
        for (int64_t j = 0; j < n; ++j) EXPECT_EQ(rows.positions(0, g)[j], one.positions(0, g)[j]);
        EXPECT_EQ(rows.bytes_held(0, g), one.bytes_held(0, g));
    }
    expect_same_events(r2, r1);
    // Positions must keep increasing, within the rows and after the head's last one.
    const std::vector<int64_t> back = {30, 29};
    EXPECT_THROW(rows.append_rows(0, 0, k.data(), v.data(), G * d, back.data(), 2),
                 std::invalid_argument);
    const std::vector<int64_t> old = {20};
    EXPECT_THROW(rows.append_rows(0, 0, k.data(), v.data(), G * d, old.data(), 1),
                 std::invalid_argument);
    EXPECT_EQ(rows.n_slots(0, 0), n);  // a refused call appends nothing
    EXPECT_EQ(rows.check_consistency(), "");
}

// append_layer(): every head of a layer at once, row copies through a parallel runner (here two
// threads taking tasks from opposite ends), equals append_rows() head by head: rows, pre-RoPE
// rows, positions, accounting and events in head order. A refused call changes no head.
TEST(KVCache, AppendLayerEqualsAppendRowsPerHead) {
    const int64_t L = 2, G = 4, d = 8, n = 33;
    std::vector<float> k(static_cast<size_t>(n * G * d)), v(k.size()), kp(k.size());
    for (size_t i = 0; i < k.size(); ++i) {
        k[i] = 0.5f * static_cast<float>(i);
        v[i] = -0.25f * static_cast<float>(i);
        kp[i] = 3.0f + static_cast<float>(i);
    }
    std::vector<int64_t> pos(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) pos[static_cast<size_t>(i)] = 2 * i + 1;
    KVCache heads(L, G, d, 2), layer(L, G, d, 2);
    heads.set_store_prerope(true);
    layer.set_store_prerope(true);
    Recorder r1, r2;
    r1.attach(heads);
    r2.attach(layer);
    std::atomic<int> ran{0};
    const KVCache::ParallelFor two_threads = [&](int64_t tasks,
                                                 const std::function<void(int64_t)>& task) {
        std::thread back([&] {
            for (int64_t t = tasks - 1; t >= tasks / 2; --t, ++ran) task(t);
        });
        for (int64_t t = 0; t < tasks / 2; ++t, ++ran) task(t);
        back.join();
    };
    for (int64_t g = 0; g < G; ++g)
        heads.append_rows(1, g, k.data() + g * d, v.data() + g * d, G * d, pos.data(), n,
                          kp.data() + g * d);
    layer.append_layer(1, k.data(), v.data(), pos.data(), n, kp.data(), two_threads);
    EXPECT_EQ(ran.load(), G * 3);  // K, V and pre-RoPE K of every head
    for (int64_t g = 0; g < G; ++g) {
        ASSERT_EQ(layer.n_slots(1, g), n);
        EXPECT_EQ(layer.n_slots(0, g), 0);
        for (int64_t j = 0; j < n * d; ++j) {
            ASSERT_EQ(layer.k(1, g)[j], heads.k(1, g)[j]);  // copies: exact
            ASSERT_EQ(layer.v(1, g)[j], heads.v(1, g)[j]);
            ASSERT_EQ(layer.k_prerope(1, g)[j], heads.k_prerope(1, g)[j]);
        }
        for (int64_t j = 0; j < n; ++j)
            EXPECT_EQ(layer.positions(1, g)[j], heads.positions(1, g)[j]);
        EXPECT_EQ(layer.bytes_held(1, g), heads.bytes_held(1, g));
    }
    expect_same_events(r2, r1);
    // Serial runner (none given): the same rows again after the first ones.
    std::vector<int64_t> later(pos);
    for (auto& p : later) p += 1000;
    layer.append_layer(1, k.data(), v.data(), later.data(), n, kp.data());
    EXPECT_EQ(layer.n_slots(1, G - 1), 2 * n);
    EXPECT_EQ(layer.k(1, G - 1)[n * d + 5], layer.k(1, G - 1)[5]);
    // Positions that do not follow: refused before any head changes.
    EXPECT_THROW(layer.append_layer(1, k.data(), v.data(), pos.data(), n, kp.data()),
                 std::invalid_argument);
    EXPECT_THROW(layer.append_layer(1, k.data(), v.data(), later.data(), n, nullptr),
                 std::invalid_argument);  // stores pre-RoPE keys, none given
    for (int64_t g = 0; g < G; ++g) EXPECT_EQ(layer.n_slots(1, g), 2 * n);
    EXPECT_EQ(layer.check_consistency(), "");
}

// append_layer_slots() + fill_pending_rows() end where append_layer() ends (rows, positions,
// accounting, events); in between the layer's slots hold zeros and no other change is taken.
TEST(KVCache, PendingRowsEndAsAppendLayer) {
    const int64_t L = 2, G = 3, d = 4, n = 2;
    std::vector<float> k(static_cast<size_t>(n * G * d)), v(k.size());
    for (size_t i = 0; i < k.size(); ++i) {
        k[i] = 1.0f + static_cast<float>(i);
        v[i] = -2.0f - static_cast<float>(i);
    }
    const std::vector<int64_t> pos = {5, 9}, later = {10};
    KVCache ref = make_filled_cache(L, G, d, 3, 2), c = make_filled_cache(L, G, d, 3, 2);
    Recorder r1, r2;
    r1.attach(ref);
    r2.attach(c);
    ref.append_layer(1, k.data(), v.data(), pos.data(), n);
    c.append_layer_slots(1, pos.data(), n);
    EXPECT_EQ(c.pending_rows(1), n);
    EXPECT_EQ(c.pending_rows(0), 0);
    expect_same_events(r2, r1);  // events and accounting at once
    EXPECT_EQ(c.bytes_held(), ref.bytes_held());
    EXPECT_EQ(c.n_slots(1, 2), ref.n_slots(1, 2));  // slots now, their rows unspecified yet
    // Nothing else may change the layer before its rows arrive; other layers are free.
    EXPECT_THROW(c.append_layer(1, k.data(), v.data(), later.data(), 1), std::invalid_argument);
    EXPECT_THROW(c.append(1, 0, k.data(), v.data(), 10), std::invalid_argument);
    const std::vector<int64_t> keep = {0, 1};
    EXPECT_THROW(c.keep(1, 0, keep), std::invalid_argument);
    EXPECT_THROW(c.append_layer_slots(1, later.data(), 1), std::invalid_argument);
    EXPECT_NO_THROW(c.append(0, 0, k.data(), v.data(), 10));
    ref.append(0, 0, k.data(), v.data(), 10);
    // Heads and parts as tasks (the engine's host pool): here run in reverse order.
    int64_t tasks = 0;
    c.fill_pending_rows(1, k.data(), v.data(),
                        [&](int64_t nt, const std::function<void(int64_t)>& task) {
                            tasks = nt;
                            for (int64_t t = nt - 1; t >= 0; --t) task(t);
                        });
    EXPECT_EQ(tasks, 2 * G);  // K and V of every head
    EXPECT_EQ(c.pending_rows(1), 0);
    EXPECT_THROW(c.fill_pending_rows(1, k.data(), v.data()), std::invalid_argument);
    for (int64_t l = 0; l < L; ++l)
        for (int64_t g = 0; g < G; ++g) {
            ASSERT_EQ(c.n_slots(l, g), ref.n_slots(l, g));
            for (int64_t j = 0; j < c.n_slots(l, g) * d; ++j) {
                ASSERT_EQ(c.k(l, g)[j], ref.k(l, g)[j]);  // copies: exact
                ASSERT_EQ(c.v(l, g)[j], ref.v(l, g)[j]);
            }
            for (int64_t j = 0; j < c.n_slots(l, g); ++j)
                EXPECT_EQ(c.positions(l, g)[j], ref.positions(l, g)[j]);
        }
    expect_same_events(r2, r1);
    EXPECT_EQ(c.check_consistency(), "");
    c.keep(1, 0, keep);  // the layer takes changes again
    // A cache that stores pre-RoPE keys cannot take slots without them.
    KVCache pre(L, G, d, 2);
    pre.set_store_prerope(true);
    EXPECT_THROW(pre.append_layer_slots(0, pos.data(), n), std::invalid_argument);
    // clear() drops what was pending.
    const std::vector<int64_t> after = {20};
    c.append_layer_slots(0, after.data(), 1);
    c.clear();
    EXPECT_EQ(c.pending_rows(0), 0);
}

TEST(KVCache, FullPrecisionAccountingUsesElementBytes) {
    // 2 slots x (K + V) x head_dim 4 x 2 bytes (bf16) = 32 bytes.
    KVCache c = make_filled_cache(1, 1, 4, 2, 2);
    EXPECT_EQ(c.bytes_held(0, 0), 2 * 2 * 4 * 2);
    KVCache f = make_filled_cache(2, 3, 8, 5, 4);  // fp32
    EXPECT_EQ(f.bytes_held(), 2 * 3 * 5 * 2 * 8 * 4);
    EXPECT_EQ(f.bytes_full_precision(1, 2), 5 * 2 * 8 * 4);
}

TEST(KVCache, KeepEvictsOthersInOrderAndFreesMemory) {
    KVCache c = make_filled_cache(1, 2, 4, 6, 2);
    Recorder r;
    r.attach(c);
    c.set_step(3);
    const std::vector<int64_t> keep = {4, 0, 2};  // any order; survivors keep relative order
    c.keep(0, 1, keep);
    ASSERT_EQ(c.n_slots(0, 1), 3);
    EXPECT_EQ(c.positions(0, 1)[0], 0);
    EXPECT_EQ(c.positions(0, 1)[1], 2);
    EXPECT_EQ(c.positions(0, 1)[2], 4);
    EXPECT_FLOAT_EQ(c.k(0, 1)[2 * 4 + 1], 4.01f);  // token 4's key moved to slot 2
    EXPECT_EQ(c.n_slots(0, 0), 6);                 // other head untouched
    ASSERT_EQ(r.events.size(), 3u);
    const int64_t evicted[3] = {1, 3, 5};
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(r.events[i].op, CacheOp::kEvict);
        EXPECT_EQ(r.events[i].position, evicted[i]);
        EXPECT_EQ(r.events[i].slot, evicted[i]);
        EXPECT_EQ(r.events[i].step, 3);
        EXPECT_EQ(r.events[i].head, 1);
    }
    EXPECT_EQ(c.bytes_held(0, 1), 3 * 2 * 4 * 2);
    EXPECT_EQ(c.check_consistency(), "");
    const std::vector<int64_t> dup = {0, 0};
    EXPECT_THROW(c.keep(0, 1, dup), std::invalid_argument);
    const std::vector<int64_t> out = {7};
    EXPECT_THROW(c.keep(0, 1, out), std::invalid_argument);
}

TEST(KVCache, MergeWeightsSourcesIntoDestination) {
    KVCache c = make_filled_cache(1, 1, 2, 5, 4);
    Recorder r;
    r.attach(c);
    MergeSpec m;
    m.src = {1, 4};
    m.dst = 3;
    m.dst_weight = 0.5f;
    m.src_weights = {0.25f, 0.25f};
    m.similarity = {0.9f, 0.8f};
    m.threshold = 0.7f;
    c.merge(0, 0, m);
    ASSERT_EQ(c.n_slots(0, 0), 3);  // tokens 0, 2, 3
    EXPECT_EQ(c.positions(0, 0)[2], 3);
    // key channel 0: 0.5 * 3 + 0.25 * 1 + 0.25 * 4 = 2.75; value = -2.75
    EXPECT_NEAR(c.k(0, 0)[2 * 2 + 0], 2.75f, 1e-6);
    EXPECT_NEAR(c.v(0, 0)[2 * 2 + 0], -2.75f, 1e-6);
    EXPECT_EQ(c.merge_count(0, 0)[2], 2);
    EXPECT_FLOAT_EQ(c.merge_weight(0, 0)[2], 0.5f);
    ASSERT_EQ(r.events.size(), 2u);
    EXPECT_EQ(r.events[0].op, CacheOp::kMerge);
    EXPECT_EQ(r.events[0].position, 1);
    EXPECT_EQ(r.events[0].dst_position, 3);
    EXPECT_EQ(r.events[0].dst_slot, 2);  // slot 3 becomes 2 after removing slot 1
    EXPECT_FLOAT_EQ(r.events[1].similarity, 0.8f);
    EXPECT_FLOAT_EQ(r.events[1].threshold, 0.7f);
    EXPECT_FLOAT_EQ(r.events[1].weight, 0.25f);
    EXPECT_EQ(c.bytes_held(0, 0), 3 * 2 * 2 * 4);
    EXPECT_EQ(c.check_consistency(), "");
    MergeSpec self;
    self.src = {0};
    self.dst = 0;
    self.src_weights = {1};
    EXPECT_THROW(c.merge(0, 0, self), std::invalid_argument);
}

TEST(KVCache, PreRopeMergeReRotatesAtTheDestinationPosition) {
    KVCache c(1, 1, 2, 2);
    c.set_store_prerope(true);
    // "RoPE" for the test: add the position to channel 0.
    c.set_rotate([](float* k, int64_t pos) { k[0] += static_cast<float>(pos); });
    const float kp0[2] = {1, 1}, kp1[2] = {3, 5};
    const float k0[2] = {1, 1}, k1[2] = {3 + 7, 5}, v[2] = {0, 0};
    c.append(0, 0, k0, v, 0, kp0);
    c.append(0, 0, k1, v, 7, kp1);
    // DMC-style: a new token at position 9 merged into the last slot, which moves to position 9.
    IncomingMerge m;
    m.dst = 1;
    m.dst_weight = 0.5f;
    m.new_weight = 0.5f;
    m.prerope = true;
    const float kn[2] = {100, 100}, kpn[2] = {5, 7}, vn[2] = {2, 4};
    Recorder r;
    r.attach(c);
    EXPECT_EQ(c.merge_incoming(0, 0, m, kn, vn, 9, kpn), 1);
    EXPECT_EQ(c.n_slots(0, 0), 2);
    EXPECT_EQ(c.positions(0, 0)[1], 9);
    EXPECT_FLOAT_EQ(c.k_prerope(0, 0)[2], 4.0f);  // (3 + 5) / 2
    EXPECT_FLOAT_EQ(c.k(0, 0)[2], 4.0f + 9.0f);   // rotated at position 9
    EXPECT_FLOAT_EQ(c.k(0, 0)[3], 6.0f);
    EXPECT_FLOAT_EQ(c.v(0, 0)[3], 2.0f);
    ASSERT_EQ(r.events.size(), 1u);
    EXPECT_EQ(r.events[0].position, 9);
    EXPECT_EQ(r.events[0].slot, -1);
    EXPECT_EQ(r.events[0].dst_position, 9);
    // take_position on a slot that is not the last one would break the order.
    m.dst = 0;
    EXPECT_THROW(c.merge_incoming(0, 0, m, kn, vn, 10, kpn), std::invalid_argument);
    EXPECT_EQ(c.check_consistency(), "");
}

TEST(Quantizer, ErrorBoundedByHalfScale) {
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    for (int bits : {1, 2, 3, 4, 8}) {
        for (int trial = 0; trial < 50; ++trial) {
            std::vector<float> x(37), orig;
            for (float& e : x) e = nd(rng);
            orig = x;
            const QuantGroupParams p = fake_quantize_group(x.data(), 37, 1, bits);
            // scale and zero are fp16 numbers
            EXPECT_EQ(f16_round_down(p.scale), p.scale);
            EXPECT_EQ(f16_round_down(p.zero), p.zero);
            const float levels = static_cast<float>((1 << bits) - 1);
            for (size_t i = 0; i < x.size(); ++i) {
                // Tolerance: scale/2 plus float rounding of code * scale + zero.
                EXPECT_LE(std::fabs(x[i] - orig[i]), p.scale / 2 + 1e-5f * (1 + std::fabs(orig[i])))
                    << "bits " << bits;
                const float code = (x[i] - p.zero) / p.scale;
                EXPECT_NEAR(code, std::nearbyint(code), 1e-3f);
                EXPECT_GE(code, -1e-3f);
                EXPECT_LE(code, levels + 1e-3f);
            }
        }
    }
    // Constant group: exact (zero rounded down to fp16 is 1.5 itself).
    std::vector<float> c(5, 1.5f);
    fake_quantize_group(c.data(), 5, 1, 2);
    for (float e : c) EXPECT_EQ(e, 1.5f);
}

TEST(KVCache, PerTokenQuantizeAccountsCodesScalesAndZeros) {
    const int64_t d = 8;
    KVCache c = make_filled_cache(1, 1, d, 4, 2);
    Recorder r;
    r.attach(c);
    std::vector<float> before(c.k(0, 0), c.k(0, 0) + 4 * d);
    const std::vector<int64_t> slots = {1, 2};
    QuantSpec q{2, 4, QuantAxis::kPerToken, KVPart::kBoth};
    c.quantize(0, 0, slots, q);
    EXPECT_EQ(c.k_bits(0, 0)[1], 2);
    EXPECT_EQ(c.v_bits(0, 0)[2], 2);
    EXPECT_EQ(c.k_bits(0, 0)[0], 16);
    // Full slots: 2 x (K+V) x 8 x 2 B = 64. Quantised: 2 slots x 2 tensors x (8 x 2 bits = 2 B
    // codes + 2 groups x (2 B scale + 2 B zero) = 8 B) = 40.
    EXPECT_EQ(c.bytes_held(0, 0), 64 + 2 * 2 * (2 + 8));
    EXPECT_EQ(c.check_consistency(), "");
    ASSERT_EQ(r.events.size(), 2u);
    EXPECT_EQ(r.events[0].op, CacheOp::kQuantize);
    EXPECT_EQ(r.events[0].bits, 2);
    // Dequantised values stay within half a scale of the originals.
    for (int64_t s : slots)
        for (int64_t g0 = 0; g0 < d; g0 += 4) {
            float lo = before[s * d + g0], hi = lo;
            for (int64_t i = 0; i < 4; ++i) {
                lo = std::min(lo, before[s * d + g0 + i]);
                hi = std::max(hi, before[s * d + g0 + i]);
            }
            const QuantGroupParams p = quant_group_params(lo, hi, 2);
            for (int64_t i = 0; i < 4; ++i)
                EXPECT_LE(std::fabs(c.k(0, 0)[s * d + g0 + i] - before[s * d + g0 + i]),
                          p.scale / 2 + 1e-5f);
        }
    // Already quantised -> demote, not quantize.
    EXPECT_THROW(c.quantize(0, 0, slots, q), std::invalid_argument);
    // Evicting a quantised slot frees its codes and its groups.
    const std::vector<int64_t> keep = {0, 2, 3};
    c.keep(0, 0, keep);
    EXPECT_EQ(c.bytes_held(0, 0), 64 + 2 * (2 + 8));
    EXPECT_EQ(c.check_consistency(), "");
}

TEST(KVCache, PerChannelBlockSharesGroupsAcrossSlots) {
    const int64_t d = 4;
    KVCache c = make_filled_cache(1, 1, d, 6, 2);
    const std::vector<int64_t> block = {0, 1, 2, 3, 4};  // 5 tokens, groups of 2 tokens -> 3
    c.quantize(0, 0, block, QuantSpec{2, 2, QuantAxis::kPerChannel, KVPart::kKeys});
    // Keys of 5 slots: codes 5 x 4 x 2 bits = 40 bits = 5 B; groups: 4 channels x 3 = 12 x 4 B.
    // Values (full) of 6 slots + key of slot 5: (6 + 1) x 4 x 2 B = 56 B.
    EXPECT_EQ(c.bytes_held(0, 0), 5 + 48 + 56);
    EXPECT_EQ(c.v_bits(0, 0)[0], 16);
    EXPECT_EQ(c.k_bits(0, 0)[4], 2);
    EXPECT_EQ(c.check_consistency(), "");
    // Key channel c of token t is t + 0.01 c: a 2-token group {t, t+1} in one channel spans 1.0
    // plus at most one fp16 ulp (0.004 near 4) from rounding the zero point down, so
    // scale <= 1.004 / 3 rounded up to fp16 (< 0.3359) and the error is below 0.168.
    for (int64_t t = 0; t < 5; ++t)
        for (int64_t ch = 0; ch < d; ++ch)
            EXPECT_NEAR(c.k(0, 0)[t * d + ch], static_cast<float>(t) + 0.01f * ch, 0.168f);
    // The block's groups stay while any of its slots lives.
    c.keep(0, 0, std::vector<int64_t>{4, 5});
    EXPECT_EQ(c.bytes_held(0, 0), 1 + 48 + 3 * 4 * 2);  // 1 slot of codes (8 bits) + groups + full
    EXPECT_EQ(c.check_consistency(), "");
    c.keep(0, 0, std::vector<int64_t>{1});
    EXPECT_EQ(c.bytes_held(0, 0), 2 * 4 * 2);  // block gone
    EXPECT_EQ(c.check_consistency(), "");
}

TEST(KVCache, DemoteLowersBitsAndAccounting) {
    const int64_t d = 8;
    KVCache c = make_filled_cache(1, 1, d, 3, 2);
    Recorder r;
    r.attach(c);
    c.quantize(0, 0, std::vector<int64_t>{0, 1},
               QuantSpec{4, 8, QuantAxis::kPerToken, KVPart::kBoth});
    const int64_t at4 = c.bytes_held(0, 0);
    c.demote(0, 0, std::vector<int64_t>{1}, 2, KVPart::kValues);
    EXPECT_EQ(c.v_bits(0, 0)[1], 2);
    EXPECT_EQ(c.k_bits(0, 0)[1], 4);
    EXPECT_EQ(c.bytes_held(0, 0), at4 - d * 2 / 8);  // 8 values lose 2 bits each
    EXPECT_EQ(r.events.back().op, CacheOp::kDemote);
    EXPECT_EQ(r.events.back().part, KVPart::kValues);
    EXPECT_EQ(c.check_consistency(), "");
    EXPECT_THROW(c.demote(0, 0, std::vector<int64_t>{1}, 3, KVPart::kValues),
                 std::invalid_argument);
    EXPECT_THROW(c.demote(0, 0, std::vector<int64_t>{2}, 2), std::invalid_argument);
}

TEST(KVCache, MergeIntoQuantisedSlotMakesItFullPrecision) {
    KVCache c = make_filled_cache(1, 1, 4, 3, 2);
    c.quantize(0, 0, std::vector<int64_t>{0}, QuantSpec{2, 4, QuantAxis::kPerToken, KVPart::kBoth});
    MergeSpec m;
    m.src = {1};
    m.dst = 0;
    m.src_weights = {0.0f};
    c.merge(0, 0, m);
    EXPECT_EQ(c.k_bits(0, 0)[0], 16);
    EXPECT_EQ(c.bytes_held(0, 0), 2 * 2 * 4 * 2);
    EXPECT_EQ(c.check_consistency(), "");
}

TEST(KVCache, ObserversCanBeRemovedAndClearResets) {
    KVCache c(1, 1, 2, 2);
    Recorder r;
    const int id = r.attach(c);
    const float k[2] = {0, 0};
    c.append(0, 0, k, k, 0);
    c.remove_observer(id);
    c.append(0, 0, k, k, 1);
    EXPECT_EQ(r.events.size(), 1u);
    c.set_step(4);
    c.clear();
    EXPECT_EQ(c.total_slots(), 0);
    EXPECT_EQ(c.step(), -1);
    EXPECT_EQ(c.bytes_held(), 0);
}

}  // namespace
}  // namespace kvscope
