// The CPU backend's fast kernels (the default: BLAS matmul, blocked attention) against its
// reference loops (KVSCOPE_CPU_KERNELS=reference) on the cases where they differ in structure:
// decode vs prefill row counts, bf16 weights converted at upload or per call (over the cap),
// attention with unsorted key positions, rows that see no key, tiles that are partly masked,
// and every statistic. Both sides are fp32; the difference is summation order only, so the
// bound is a few fp32 roundings relative to the output's scale.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/backend.h"

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
    for (auto [n, k, m] : {std::tuple<int64_t, int64_t, int64_t>{1, 384, 1024}, {2, 100, 37},
                           {17, 384, 96}, {64, 1024, 384}}) {
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
        bool shuffled;  // key positions in random order (a compressed / merged cache)
        int64_t qstart; // first query position (keys hold positions 0..len-1 when not shuffled)
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

TEST(CpuFast, DescribeNamesTheMatmulPath) {
    auto fast = cpu_with("fast");
    auto ref = cpu_with("reference");
    EXPECT_NE(fast->describe().find("threads, "), std::string::npos) << fast->describe();
    EXPECT_NE(ref->describe().find("reference kernels"), std::string::npos) << ref->describe();
}

}  // namespace
}  // namespace kvscope
