// The CPU backend against straightforward float64 formulas on random shapes. This is the harness
// the CUDA backend's differential tests extend: each op here is the oracle for its device twin.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/backend.h"

namespace kvscope {
namespace {

std::vector<float> randn(std::mt19937& rng, size_t n, float scale = 1.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

TEST(CpuOps, MatmulAllWeightDtypesMatchFloat64) {
    std::mt19937 rng(1);
    auto be = make_cpu_backend(2);
    for (auto dt : {DType::kF32, DType::kBf16, DType::kF16}) {
        for (auto [n, k, m] :
             {std::tuple<int64_t, int64_t, int64_t>{1, 64, 33}, {7, 19, 70}, {33, 128, 17}}) {
            auto x = randn(rng, static_cast<size_t>(n * k));
            auto wf = randn(rng, static_cast<size_t>(m * k), 0.2f);
            auto bias = randn(rng, static_cast<size_t>(m));
            std::vector<uint16_t> w16(wf.size());
            for (size_t i = 0; i < wf.size(); ++i) {
                w16[i] = dt == DType::kBf16 ? f32_to_bf16(wf[i]) : f32_to_f16(wf[i]);
                if (dt != DType::kF32)
                    wf[i] = dt == DType::kBf16 ? bf16_to_f32(w16[i]) : f16_to_f32(w16[i]);
            }
            const void* wp = dt == DType::kF32 ? static_cast<const void*>(wf.data()) : w16.data();
            Tensor W = be->upload_weight(wp, dt, {m, k});
            Tensor B = be->upload_weight(bias.data(), DType::kF32, {m});
            Tensor X = make_tensor_view(x.data(), DType::kF32, {n, k});
            std::vector<float> out(static_cast<size_t>(n * m), NAN);  // poisoned
            Tensor O = make_tensor_view(out.data(), DType::kF32, {n, m});
            be->matmul(X, W, &B, O);
            for (int64_t i = 0; i < n; ++i)
                for (int64_t j = 0; j < m; ++j) {
                    double ref = bias[static_cast<size_t>(j)];
                    for (int64_t c = 0; c < k; ++c)
                        ref += static_cast<double>(x[static_cast<size_t>(i * k + c)]) *
                               wf[static_cast<size_t>(j * k + c)];
                    // fp32 accumulation of k products: 1e-5 * sqrt(k) relative is generous.
                    EXPECT_NEAR(out[static_cast<size_t>(i * m + j)], ref,
                                1e-5 * (1 + std::abs(ref)) * std::sqrt(k));
                }
        }
    }
}

TEST(CpuOps, RmsnormAndRopeMatchFloat64) {
    std::mt19937 rng(2);
    auto be = make_cpu_backend(2);
    const int64_t n = 5, heads = 3, d = 8;
    auto x = randn(rng, static_cast<size_t>(n * heads * d));
    auto w = randn(rng, static_cast<size_t>(d));
    std::vector<float> y(x.size(), NAN);
    Tensor X = make_tensor_view(x.data(), DType::kF32, {n * heads, d});
    Tensor Y = make_tensor_view(y.data(), DType::kF32, {n * heads, d});
    Tensor Wt = be->upload_weight(w.data(), DType::kF32, {d});
    be->rmsnorm(X, Wt, 1e-5f, Y);
    for (int64_t r = 0; r < n * heads; ++r) {
        double ss = 0;
        for (int64_t i = 0; i < d; ++i)
            ss += static_cast<double>(x[static_cast<size_t>(r * d + i)]) *
                  x[static_cast<size_t>(r * d + i)];
        const double inv = 1.0 / std::sqrt(ss / d + 1e-5);
        for (int64_t i = 0; i < d; ++i)
            EXPECT_NEAR(y[static_cast<size_t>(r * d + i)],
                        w[static_cast<size_t>(i)] * x[static_cast<size_t>(r * d + i)] * inv, 1e-5);
    }
    // RoPE: rotation preserves each pair's norm and matches the closed form.
    std::vector<float> inv_freq = {1.0f, 0.1f, 0.01f, 0.001f};
    std::vector<int64_t> pos = {0, 1, 5, 17, 300};
    for (auto pairs : {RopePairs::kHalf, RopePairs::kInterleaved}) {
        std::vector<float> r = x;
        Tensor R = make_tensor_view(r.data(), DType::kF32, {n, heads, d});
        be->rope(R, pos.data(), inv_freq.data(), pairs);
        for (int64_t t = 0; t < n; ++t)
            for (int64_t h = 0; h < heads; ++h)
                for (int64_t i = 0; i < d / 2; ++i) {
                    const int64_t a = pairs == RopePairs::kHalf ? i : 2 * i;
                    const int64_t b = pairs == RopePairs::kHalf ? i + d / 2 : 2 * i + 1;
                    const size_t base = static_cast<size_t>((t * heads + h) * d);
                    const double ang = static_cast<double>(pos[static_cast<size_t>(t)]) *
                                       inv_freq[static_cast<size_t>(i)];
                    const double x0 = x[base + static_cast<size_t>(a)],
                                 x1 = x[base + static_cast<size_t>(b)];
                    // fp32 angle rounding at position 300: ~3e-5 absolute.
                    EXPECT_NEAR(r[base + static_cast<size_t>(a)],
                                x0 * std::cos(ang) - x1 * std::sin(ang), 1e-4);
                    EXPECT_NEAR(r[base + static_cast<size_t>(b)],
                                x1 * std::cos(ang) + x0 * std::sin(ang), 1e-4);
                }
    }
}

TEST(CpuOps, AttentionWithGqaAndStatsMatchesMaterialisedSoftmax) {
    std::mt19937 rng(3);
    for (int threads : {1, 2, 3}) {
        auto be = make_cpu_backend(threads);
        const int64_t n = 9, H = 4, G = 2, d = 8, len = 9;
        auto q = randn(rng, static_cast<size_t>(n * H * d));
        std::vector<std::vector<float>> K, Vv;
        std::vector<int64_t> pos(static_cast<size_t>(len));
        for (int64_t j = 0; j < len; ++j) pos[static_cast<size_t>(j)] = j;
        std::vector<KVHeadView> views;
        for (int64_t g = 0; g < G; ++g) {
            K.push_back(randn(rng, static_cast<size_t>(len * d)));
            Vv.push_back(randn(rng, static_cast<size_t>(len * d)));
        }
        for (int64_t g = 0; g < G; ++g)
            views.push_back({K[static_cast<size_t>(g)].data(), Vv[static_cast<size_t>(g)].data(),
                             pos.data(), len});
        std::vector<float> out(q.size(), NAN);
        std::vector<std::vector<float>> colsum(H, std::vector<float>(len, 0.0f));
        std::vector<std::vector<float>> tail(H, std::vector<float>(2 * len, NAN));
        AttentionStats st;
        for (int64_t h = 0; h < H; ++h) {
            st.colsum.push_back(colsum[static_cast<size_t>(h)].data());
            st.rows.push_back(tail[static_cast<size_t>(h)].data());
        }
        st.n_rows_tail = 2;
        Tensor Q = make_tensor_view(q.data(), DType::kF32, {n, H, d});
        Tensor O = make_tensor_view(out.data(), DType::kF32, {n, H, d});
        AttentionArgs args{&Q, pos.data(), views.data(), G, 0.35f, &O, &st};
        be->attention(args);
        for (int64_t h = 0; h < H; ++h) {
            const int64_t g = h / (H / G);
            std::vector<double> cs(static_cast<size_t>(len), 0.0);
            for (int64_t i = 0; i < n; ++i) {
                std::vector<double> p(static_cast<size_t>(len), 0.0);
                double mx = -1e300, sum = 0;
                for (int64_t j = 0; j <= i; ++j) {
                    double s = 0;
                    for (int64_t c = 0; c < d; ++c)
                        s += static_cast<double>(q[static_cast<size_t>((i * H + h) * d + c)]) *
                             K[static_cast<size_t>(g)][static_cast<size_t>(j * d + c)];
                    p[static_cast<size_t>(j)] = s * 0.35;
                    mx = std::max(mx, p[static_cast<size_t>(j)]);
                }
                for (int64_t j = 0; j <= i; ++j)
                    sum += (p[static_cast<size_t>(j)] = std::exp(p[static_cast<size_t>(j)] - mx));
                for (int64_t j = 0; j <= i; ++j) p[static_cast<size_t>(j)] /= sum;
                for (int64_t c = 0; c < d; ++c) {
                    double o = 0;
                    for (int64_t j = 0; j <= i; ++j)
                        o += p[static_cast<size_t>(j)] *
                             Vv[static_cast<size_t>(g)][static_cast<size_t>(j * d + c)];
                    EXPECT_NEAR(out[static_cast<size_t>((i * H + h) * d + c)], o, 1e-5);
                }
                for (int64_t j = 0; j < len; ++j) {
                    cs[static_cast<size_t>(j)] += p[static_cast<size_t>(j)];
                    if (i >= n - 2) {
                        EXPECT_NEAR(tail[static_cast<size_t>(h)]
                                        [static_cast<size_t>((i - (n - 2)) * len + j)],
                                    p[static_cast<size_t>(j)], 1e-6);
                    }
                }
            }
            for (int64_t j = 0; j < len; ++j)
                EXPECT_NEAR(colsum[static_cast<size_t>(h)][static_cast<size_t>(j)],
                            cs[static_cast<size_t>(j)], 1e-5);
        }
    }
}

}  // namespace
}  // namespace kvscope
