// The CPU backend's fast kernels (the default: BLAS matmul, blocked attention) against its
// reference loops (KVSCOPE_CPU_KERNELS=reference) on the cases where they differ in structure:
// decode vs prefill row counts, bf16 weights converted at upload or per call (over the cap),
// attention with unsorted key positions, rows that see no key, tiles that are partly masked,
// and every statistic. Both sides are fp32; the difference is summation order only, so the
// bound is a few fp32 roundings relative to the output's scale.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_ops.h"

namespace kvscope {
namespace {

std::unique_ptr<Backend> cpu_with(const char* kernels, const char* cap_mb = nullptr) {
    setenv("KVSCOPE_CPU_KERNELS", kernels, 1);
    if (cap_mb) setenv("KVSCOPE_CPU_WEIGHT_CACHE_MB", cap_mb, 1);
    auto be = make_cpu_backend(2);
    unsetenv("KVSCOPE_CPU_KERNELS");
    unsetenv("KVSCOPE_CPU_WEIGHT_CACHE_MB");
    return be;
}

void expect_near_rel(const std::vector<float>& got, const std::vector<float>& ref, double rel) {
    ASSERT_EQ(got.size(), ref.size());
    double scale = 0;
    for (float r : ref)
        if (std::isfinite(r)) scale = std::max(scale, static_cast<double>(std::fabs(r)));
    for (size_t i = 0; i < ref.size(); ++i) {
        if (!std::isfinite(ref[i])) {
            EXPECT_EQ(got[i], ref[i]) << "at " << i;
            continue;
        }
        ASSERT_NEAR(got[i], ref[i], rel * std::max(scale, 1e-6)) << "at " << i;
    }
}

uint16_t to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return static_cast<uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

std::vector<float> run_matmul(Backend& be, const std::vector<float>& x, int64_t n, int64_t k,
                              const std::vector<uint16_t>& w, int64_t m) {
    Tensor W = be.upload_weight(w.data(), DType::kBf16, {m, k});
    Tensor X = be.alloc(DType::kF32, {n, k});
    Tensor O = be.alloc(DType::kF32, {n, m});
    be.from_host(X, x.data());
    be.matmul(X, W, nullptr, O);
    std::vector<float> out(static_cast<size_t>(n * m));
    be.to_host(O, out.data());
    be.release(X);
    be.release(O);
    be.release_weight(W);
    return out;
}

TEST(CpuFast, MatmulMatchesReferenceConvertedOrNot) {
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.f, 1.f);
    auto ref = cpu_with("reference");
    auto fast = cpu_with("fast");
    auto fast_blocks = cpu_with("fast", "0");  // cap 0: bf16 weights converted per call
    for (auto [n, k, m] : {std::tuple<int64_t, int64_t, int64_t>{1, 384, 1024},
                           {2, 100, 37},
                           {17, 384, 96},
                           {64, 1024, 384}}) {
        std::vector<float> x(static_cast<size_t>(n * k));
        for (auto& v : x) v = nd(rng);
        std::vector<uint16_t> w(static_cast<size_t>(m * k));
        for (auto& v : w) v = to_bf16(0.05f * nd(rng));
        const auto r = run_matmul(*ref, x, n, k, w, m);
        expect_near_rel(run_matmul(*fast, x, n, k, w, m), r, 1e-5);
        expect_near_rel(run_matmul(*fast_blocks, x, n, k, w, m), r, 1e-5);
        EXPECT_EQ(fast->memory().in_use, 0) << "converted weights are given back";
    }
}

struct AttnOut {
    std::vector<float> out, colsum, rows, lse;
};

AttnOut run_attention(Backend& be, const std::vector<float>& q, int64_t n, int64_t H, int64_t d,
                      const std::vector<int64_t>& qpos, const std::vector<float>& k,
                      const std::vector<float>& v, const std::vector<int64_t>& kpos, int64_t Hkv,
                      int64_t tail) {
    const int64_t len = static_cast<int64_t>(kpos.size());
    Tensor Q = be.alloc(DType::kF32, {n, H, d});
    Tensor O = be.alloc(DType::kF32, {n, H, d});
    be.from_host(Q, q.data());
    std::vector<KVHeadView> views(static_cast<size_t>(Hkv));
    for (int64_t g = 0; g < Hkv; ++g)
        views[static_cast<size_t>(g)] = {k.data() + g * len * d, v.data() + g * len * d,
                                         kpos.data(), len};
    AttnOut r;
    r.colsum.assign(static_cast<size_t>(H * len), 0.f);
    r.rows.assign(static_cast<size_t>(H * tail * len), -1.f);
    r.lse.assign(static_cast<size_t>(H * n), 0.f);
    AttentionStats st;
    st.n_rows_tail = tail;
    for (int64_t h = 0; h < H; ++h) {
        st.colsum.push_back(r.colsum.data() + h * len);
        st.rows.push_back(r.rows.data() + h * tail * len);
        st.lse.push_back(r.lse.data() + h * n);
    }
    AttentionArgs a;
    a.q = &Q;
    a.q_pos = qpos.data();
    a.kv = views.data();
    a.n_kv_heads = Hkv;
    a.scale = 1.0f / std::sqrt(static_cast<float>(d));
    a.out = &O;
    a.stats = &st;
    be.attention(a);
    r.out.resize(static_cast<size_t>(n * H * d));
    be.to_host(O, r.out.data());
    be.release(Q);
    be.release(O);
    return r;
}

TEST(CpuFast, AttentionMatchesReferenceWithStatistics) {
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.f, 1.f);
    auto ref = cpu_with("reference");
    auto fast = cpu_with("fast");
    struct Case {
        int64_t n, H, Hkv, d, len;
        bool shuffled;   // key positions in random order (a compressed / merged cache)
        int64_t qstart;  // first query position (keys hold positions 0..len-1 when not shuffled)
    };
    for (const Case& c : {Case{1, 8, 2, 48, 300, false, 299}, Case{3, 4, 4, 64, 130, true, 127},
                          Case{200, 8, 2, 48, 200, false, 0}, Case{70, 2, 1, 32, 333, true, 263},
                          Case{40, 4, 2, 16, 100, true, -5}}) {
        SCOPED_TRACE("n=" + std::to_string(c.n) + " len=" + std::to_string(c.len));
        std::vector<float> q(static_cast<size_t>(c.n * c.H * c.d)),
            k(static_cast<size_t>(c.Hkv * c.len * c.d)), v(k.size());
        for (auto& x : q) x = 2.f * nd(rng);
        for (auto& x : k) x = nd(rng);
        for (auto& x : v) x = nd(rng);
        std::vector<int64_t> kpos(static_cast<size_t>(c.len));
        std::iota(kpos.begin(), kpos.end(), 0);
        if (c.shuffled) std::shuffle(kpos.begin(), kpos.end(), rng);
        std::vector<int64_t> qpos(static_cast<size_t>(c.n));
        for (int64_t i = 0; i < c.n; ++i) qpos[static_cast<size_t>(i)] = c.qstart + i;
        if (c.shuffled) std::shuffle(qpos.begin(), qpos.end(), rng);
        const int64_t tail = std::min<int64_t>(c.n, 5);
        const auto a = run_attention(*ref, q, c.n, c.H, c.d, qpos, k, v, kpos, c.Hkv, tail);
        const auto b = run_attention(*fast, q, c.n, c.H, c.d, qpos, k, v, kpos, c.Hkv, tail);
        expect_near_rel(b.out, a.out, 2e-5);
        expect_near_rel(b.colsum, a.colsum, 2e-5);
        expect_near_rel(b.rows, a.rows, 2e-5);
        expect_near_rel(b.lse, a.lse, 2e-5);
    }
}

// Decode scores (key_scores_f32: 16 keys reduced together on AVX-512, gemv_f32 for the rest)
// against float64 dots, at the head sizes of real models and key counts that are not multiples
// of 16 (the tail goes through gemv_f32), plus a head_dim that is not a multiple of 16.
TEST(CpuFast, KeyScoresMatchFloat64) {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (int64_t hd : {48, 64, 80, 128, 40}) {
        for (int64_t len : {1, 15, 16, 17, 33, 100, 2048}) {
            SCOPED_TRACE("hd=" + std::to_string(hd) + " len=" + std::to_string(len));
            std::vector<float> q(static_cast<size_t>(hd)), k(static_cast<size_t>(len * hd));
            for (auto& x : q) x = nd(rng);
            for (auto& x : k) x = nd(rng);
            std::vector<float> out(static_cast<size_t>(len + 1), NAN);
            out[static_cast<size_t>(len)] = 123.f;  // the slot past the end stays untouched
            cpu::key_scores_f32(q.data(), hd, k.data(), len, out.data());
            for (int64_t j = 0; j < len; ++j) {
                double ref = 0, mag = 0;
                for (int64_t d = 0; d < hd; ++d) {
                    const double t = static_cast<double>(q[static_cast<size_t>(d)]) *
                                     k[static_cast<size_t>(j * hd + d)];
                    ref += t;
                    mag += std::fabs(t);
                }
                // fp32 sum of hd products in any order: |error| <= hd * eps * sum |q_d k_d|;
                // 4 * eps * sum |t| is far above what either order reaches and far below a
                // dropped or doubled term (~1 here).
                ASSERT_NEAR(out[static_cast<size_t>(j)], ref, 4 * 1.2e-7 * mag + 1e-6)
                    << "key " << j;
            }
            EXPECT_EQ(out[static_cast<size_t>(len)], 123.f);
        }
    }
}

// Decode P V (value_sum_f32: the output row in AVX-512 registers for hd a multiple of 16 up to
// 128, the portable four-key loop otherwise) against float64, accumulating onto a non-zero o,
// over key ranges that start and end off the 2- and 4-key steps.
TEST(CpuFast, ValueSumMatchesFloat64) {
    std::mt19937 rng(9);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::uniform_real_distribution<float> ud(0.f, 1.f);
    for (int64_t hd : {48, 64, 80, 128, 40, 144}) {
        for (auto [k0, k1] :
             {std::pair<int64_t, int64_t>{0, 1}, {0, 2}, {3, 10}, {5, 5}, {1, 300}, {0, 2048}}) {
            SCOPED_TRACE("hd=" + std::to_string(hd) + " keys " + std::to_string(k0) + ".." +
                         std::to_string(k1));
            std::vector<float> p(static_cast<size_t>(k1)), v(static_cast<size_t>(k1 * hd));
            for (auto& x : p) x = ud(rng) / static_cast<float>(k1);
            for (auto& x : v) x = nd(rng);
            std::vector<float> o(static_cast<size_t>(hd + 1));
            for (auto& x : o) x = nd(rng);
            const std::vector<float> o0 = o;
            cpu::value_sum_f32(p.data(), v.data(), k0, k1, hd, o.data());
            for (int64_t d = 0; d < hd; ++d) {
                double ref = o0[static_cast<size_t>(d)], mag = std::fabs(ref);
                for (int64_t j = k0; j < k1; ++j) {
                    const double t = static_cast<double>(p[static_cast<size_t>(j)]) *
                                     v[static_cast<size_t>(j * hd + d)];
                    ref += t;
                    mag += std::fabs(t);
                }
                // fp32 running sums of n = k1 - k0 terms onto o: rounding errors of ~eps * mag
                // each, a random walk of ~sqrt(n) steps (fixed seed; measured worst 2.0e-6 at
                // n = 2048 against this bound's 2.7e-5). A dropped key moves lanes by ~|v| / (2
                // k1).
                const double n_terms = static_cast<double>(k1 - k0) + 1;
                ASSERT_NEAR(o[static_cast<size_t>(d)], ref, 4 * 1.2e-7 * std::sqrt(n_terms) * mag)
                    << "d " << d;
            }
            EXPECT_EQ(o[static_cast<size_t>(hd)], o0[static_cast<size_t>(hd)]);  // past the row
        }
    }
}

// Decode (1 and 3 query rows: the non-BLAS score path) at head_dim 48 / 64 / 80 / 128 and cache
// lengths off the 16-key and 64-key grids, fast against the reference loops.
TEST(CpuFast, DecodeAttentionMatchesReferenceAtRealHeadSizes) {
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.f, 1.f);
    auto ref = cpu_with("reference");
    auto fast = cpu_with("fast");
    for (int64_t d : {48, 64, 80, 128}) {
        for (int64_t len : {7, 16, 95, 300, 1031}) {
            for (int64_t n : {1, 3}) {
                SCOPED_TRACE("d=" + std::to_string(d) + " len=" + std::to_string(len) +
                             " n=" + std::to_string(n));
                const int64_t H = 8, Hkv = 2;
                std::vector<float> q(static_cast<size_t>(n * H * d)),
                    k(static_cast<size_t>(Hkv * len * d)), v(k.size());
                for (auto& x : q) x = 2.f * nd(rng);
                for (auto& x : k) x = nd(rng);
                for (auto& x : v) x = nd(rng);
                std::vector<int64_t> kpos(static_cast<size_t>(len));
                std::iota(kpos.begin(), kpos.end(), 0);
                std::vector<int64_t> qpos(static_cast<size_t>(n));
                for (int64_t i = 0; i < n; ++i) qpos[static_cast<size_t>(i)] = len - n + i;
                const auto a = run_attention(*ref, q, n, H, d, qpos, k, v, kpos, Hkv, n);
                const auto b = run_attention(*fast, q, n, H, d, qpos, k, v, kpos, Hkv, n);
                expect_near_rel(b.out, a.out, 2e-5);
                expect_near_rel(b.colsum, a.colsum, 2e-5);
                expect_near_rel(b.rows, a.rows, 2e-5);
                expect_near_rel(b.lse, a.lse, 2e-5);
            }
        }
    }
}

TEST(CpuFast, DescribeNamesTheMatmulPath) {
    auto fast = cpu_with("fast");
    auto ref = cpu_with("reference");
    EXPECT_NE(fast->describe().find("threads, "), std::string::npos) << fast->describe();
    EXPECT_NE(ref->describe().find("reference kernels"), std::string::npos) << ref->describe();
}

}  // namespace
}  // namespace kvscope
