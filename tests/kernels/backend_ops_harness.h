#pragma once
// Shared by the op-case list (backend_ops_test.cpp) and the KV-mirror sequence
// (backend_ops_mirror_test.cpp): outputs and their comparison with a written tolerance, seeded
// inputs, and tensors made on a backend and released at scope exit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/backend.h"

namespace kvscope::ops_test {

using Outputs = std::vector<std::pair<std::string, std::vector<float>>>;

struct Tol {
    double nmse;
    double max_rel;
};

// Weights as stored: `vals` are rounded to `dt` (in place) and the stored bytes returned.
inline std::vector<uint16_t> store_as(DType dt, std::vector<float>& vals) {
    std::vector<uint16_t> out;
    if (dt == DType::kF32) return out;
    out.resize(vals.size());
    for (size_t i = 0; i < vals.size(); ++i) {
        out[i] = dt == DType::kBf16 ? f32_to_bf16(vals[i]) : f32_to_f16(vals[i]);
        vals[i] = dt == DType::kBf16 ? bf16_to_f32(out[i]) : f16_to_f32(out[i]);
    }
    return out;
}

// x [n, k] @ w [m, k]^T (+ bias) in double.
inline std::vector<double> naive_matmul(const std::vector<float>& x, const std::vector<float>& w,
                                        const std::vector<float>* bias, int64_t n, int64_t k,
                                        int64_t m) {
    std::vector<double> o(static_cast<size_t>(n * m));
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < m; ++j) {
            double acc = bias ? (*bias)[static_cast<size_t>(j)] : 0.0;
            for (int64_t c = 0; c < k; ++c)
                acc += static_cast<double>(x[static_cast<size_t>(i * k + c)]) *
                       w[static_cast<size_t>(j * k + c)];
            o[static_cast<size_t>(i * m + j)] = acc;
        }
    return o;
}

// RoPE of x [n, heads, hd] at `pos` in double, the angle formed in fp32 as HF and both backends
// form it.
inline std::vector<float> naive_rope(const std::vector<float>& x, int64_t n, int64_t heads,
                                     int64_t hd, const std::vector<int64_t>& pos,
                                     const std::vector<float>& inv, RopePairs pairs) {
    std::vector<float> y = x;
    for (int64_t t = 0; t < n; ++t)
        for (int64_t h = 0; h < heads; ++h)
            for (int64_t i = 0; i < hd / 2; ++i) {
                const int64_t a = pairs == RopePairs::kHalf ? i : 2 * i;
                const int64_t b = pairs == RopePairs::kHalf ? i + hd / 2 : 2 * i + 1;
                const auto base = static_cast<size_t>((t * heads + h) * hd);
                const auto ang = static_cast<double>(
                    static_cast<float>(pos[static_cast<size_t>(t)]) * inv[static_cast<size_t>(i)]);
                const double x0 = x[base + static_cast<size_t>(a)];
                const double x1 = x[base + static_cast<size_t>(b)];
                y[base + static_cast<size_t>(a)] =
                    static_cast<float>(x0 * std::cos(ang) - x1 * std::sin(ang));
                y[base + static_cast<size_t>(b)] =
                    static_cast<float>(x1 * std::cos(ang) + x0 * std::sin(ang));
            }
    return y;
}

// One case of the op list (backend_ops_test.cpp): `run` calls the Backend op through
// alloc/from_host/upload_weight/to_host only, so it works on any backend; `naive` recomputes the
// outputs in double.
struct OpCase {
    std::string op;
    std::string name;
    DType wdt = DType::kF32;      // weight dtype where the op has weights
    bool bf16_attention = false;  // attention on the device's bf16 tensor-core path (native math)
    std::function<Outputs(Backend&)> run;
    std::function<Outputs()> naive;
};

// The fused decode ops' cases (backend_ops_fused_cases.cpp): add_rmsnorm, rope_qk, matmul_parts,
// swiglu.
void add_fused_cases(std::vector<OpCase>& cases);

// Prefill attention runs on the bf16 tensor-core kernels (the default) unless
// KVSCOPE_CUDA_ATTENTION=fp32 or KVSCOPE_CUDA_MATH=fp32 selects the fp32 kernels.
inline bool cuda_attention_fp32() {
    const char* math = std::getenv("KVSCOPE_CUDA_MATH");
    const char* att = std::getenv("KVSCOPE_CUDA_ATTENTION");
    return (math && std::string(math) == "fp32") || (att && std::string(att) == "fp32");
}

// Device backend vs the CPU oracle.
inline Tol tolerance_for(const std::string& op, DType wdt, bool bf16_attention = false) {
    if (op == "rope_qk") return tolerance_for("rope", wdt);
    if (op == "matmul" || op == "matmul_parts" || op == "swiglu") {
        // f16/bf16 weights: the device rounds x to the weight dtype before the GEMM (cuBLAS has
        // no fp32 x bf16 kernel): ~2^-9 (bf16) / 2^-11 (f16) relative error per product, random
        // in sign, so the NMSE is ~1e-6 / ~1e-7; fp32: accumulation order only.
        // (Decode rows, n <= 8, take cuda_gemv.cu: fp32 x, so accumulation order only; the
        // bounds stay those of the cuBLAS path, which the prefill rows take.)
        if (wdt == DType::kBf16) return {1e-4, 2e-2};
        if (wdt == DType::kF16) return {1e-5, 5e-3};
        return {1e-10, 1e-5};
    }
    // Prefill attention with head_dim 64/128 in native math runs on bf16 tensor cores
    // (cuda_attention_mma.cu): q, k, v and the probabilities are rounded to bf16 (8-bit mantissa,
    // 2^-9 relative per rounding), accumulation is fp32. Logits then err by ~1e-3 absolute, so
    // outputs, probabilities and column sums (checked against the largest column sum, i.e. their
    // scale) by a few 1e-3 relative. A bf16 emulation on these very cases gave NMSE <= 1.1e-5
    // and max_rel <= 6.5e-3 (worst: window rows of "mma hd128 gqa4 n1000 ragged"); the bounds
    // keep ~4x headroom. An indexing or masking bug gives O(1) errors and still fails.
    if (op == "attention" && bf16_attention) return {5e-5, 2e-2};
    // fp32 everywhere else: reduction order, expf/logf/sincosf vs libm (a few ulp).
    if (op == "attention") return {1e-9, 1e-4};
    if (op == "rope") return {1e-11, 1e-5};  // angles up to 1.3e5 rad: the fp32 angle is shared
    return {1e-11, 1e-5};                    // embedding, rmsnorm, silu_mul, add
}

inline std::vector<float> randn(uint32_t seed, size_t n, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

// Tensors made on a backend, released at scope exit.
struct Scope {
    Backend& be;
    std::vector<Tensor> owned, weights;
    explicit Scope(Backend& b) : be(b) {}
    ~Scope() {
        for (auto& t : owned) be.release(t);
        for (auto& t : weights) be.release_weight(t);
    }
    Tensor weight(const void* host, DType dt, std::initializer_list<int64_t> shape) {
        Tensor t = be.upload_weight(host, dt, shape);
        weights.push_back(t);
        return t;
    }
    Tensor act(const std::vector<float>& host, std::initializer_list<int64_t> shape) {
        Tensor t = be.alloc(DType::kF32, shape);
        owned.push_back(t);
        if (!host.empty()) be.from_host(t, host.data());
        return t;
    }
    std::vector<float> get(const Tensor& t) {
        std::vector<float> v(static_cast<size_t>(t.numel()));
        be.to_host(t, v.data());
        return v;
    }
};

// Compares `got` with the reference `ref`, output by output.
inline void expect_close(const Outputs& got, const Outputs& ref, Tol tol) {
    ASSERT_EQ(got.size(), ref.size());
    for (size_t o = 0; o < ref.size(); ++o) {
        const auto& [name, b] = ref[o];
        const auto& a = got[o].second;
        SCOPED_TRACE("output " + name);
        ASSERT_EQ(a.size(), b.size());
        double num = 0, den = 0, max_err = 0, max_ref = 0;
        size_t worst = 0;
        for (size_t i = 0; i < b.size(); ++i) {
            if (!std::isfinite(b[i])) {
                ASSERT_EQ(a[i], b[i]) << "at " << i << " (non-finite reference must match)";
                continue;
            }
            ASSERT_TRUE(std::isfinite(a[i])) << "at " << i << ": " << a[i] << " vs " << b[i];
            const double e = static_cast<double>(a[i]) - b[i];
            num += e * e;
            den += static_cast<double>(b[i]) * b[i];
            if (std::fabs(e) > max_err) {
                max_err = std::fabs(e);
                worst = i;
            }
            max_ref = std::max(max_ref, std::fabs(static_cast<double>(b[i])));
        }
        const double nmse = den > 0 ? num / den : num;
        EXPECT_LE(nmse, tol.nmse) << "NMSE over " << b.size() << " values";
        EXPECT_LE(max_err, tol.max_rel * std::max(max_ref, 1e-6))
            << "largest error at " << worst << ": " << a[worst] << " vs " << b[worst];
    }
}

}  // namespace kvscope::ops_test
