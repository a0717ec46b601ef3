// Op cases of the fused decode ops (Backend::add_rmsnorm, rope_qk, matmul_parts, swiglu), part of
// the one op list in backend_ops_test.cpp. Each fused op must equal the composition it replaces, so
// the naive side recomputes that composition in double. Shapes cover the CUDA backend's fused GEMV
// (n <= 8 rows, k a multiple of 8) and the fallback to unfused ops (n = 17 or 33 rows), with and
// without biases, in every weight dtype; parts of unequal row counts (a warp's row mapped to its
// part) including counts that are not multiples of the 8 rows of a block.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "tests/kernels/backend_ops_harness.h"

namespace kvscope::ops_test {
namespace {

std::vector<float> to_float(const std::vector<double>& v) {
    return std::vector<float>(v.begin(), v.end());
}

void add_rope_qk(std::vector<OpCase>& cases) {
    for (int64_t hd : {64, 128})
        for (RopePairs pairs : {RopePairs::kHalf, RopePairs::kInterleaved})
            for (int64_t n : {1, 7}) {
                const int64_t hq = 8, hk = 2;  // GQA 4:1
                const auto seed = static_cast<uint32_t>(hd * 10 + n);
                auto q = std::make_shared<std::vector<float>>(
                    randn(seed, static_cast<size_t>(n * hq * hd)));
                auto k = std::make_shared<std::vector<float>>(
                    randn(seed + 1, static_cast<size_t>(n * hk * hd)));
                auto pos = std::make_shared<std::vector<int64_t>>();
                for (int64_t t = 0; t < n; ++t) pos->push_back(t * t * 2711 + 3);  // up to 97k
                auto inv = std::make_shared<std::vector<float>>(static_cast<size_t>(hd / 2));
                for (int64_t i = 0; i < hd / 2; ++i)
                    (*inv)[static_cast<size_t>(i)] = static_cast<float>(std::pow(
                        500000.0, -2.0 * static_cast<double>(i) / static_cast<double>(hd)));
                OpCase c;
                c.op = "rope_qk";
                c.name = "hd" + std::to_string(hd) +
                         (pairs == RopePairs::kHalf ? " half" : " interleaved") + " n" +
                         std::to_string(n) + " gqa4";
                c.run = [=](Backend& be) {
                    Scope s(be);
                    Tensor Q = s.act(*q, {n, hq, hd}), K = s.act(*k, {n, hk, hd});
                    be.rope_qk(Q, K, pos->data(), inv->data(), pairs);
                    return Outputs{{"q", s.get(Q)}, {"k", s.get(K)}};
                };
                c.naive = [=] {
                    return Outputs{{"q", naive_rope(*q, n, hq, hd, *pos, *inv, pairs)},
                                   {"k", naive_rope(*k, n, hk, hd, *pos, *inv, pairs)}};
                };
                cases.push_back(c);
            }
}

void add_matmul_parts(std::vector<OpCase>& cases) {
    struct S {
        int64_t n, k;
        std::vector<int64_t> m;
        bool bias;
    };
    for (DType dt : {DType::kF32, DType::kF16, DType::kBf16})
        for (const S& sh : {S{1, 512, {64, 16, 16}, true}, S{3, 1024, {72, 13, 13}, false},
                            S{8, 256, {40, 40}, true}, S{1, 128, {24}, false},
                            S{33, 64, {32, 8, 8}, true},  // 33 rows: unfused fallback
                            // rows of several passes of the GEMV's loads in flight
                            // (1,024 bf16 a warp a pass) and a partial last one
                            S{1, 3080, {40, 9, 9}, true}}) {
            const auto seed = static_cast<uint32_t>(sh.n * 97 + sh.k + sh.m[0]);
            const auto count = static_cast<int>(sh.m.size());
            auto x =
                std::make_shared<std::vector<float>>(randn(seed, static_cast<size_t>(sh.n * sh.k)));
            auto ws = std::make_shared<std::vector<std::vector<float>>>();
            auto stored = std::make_shared<std::vector<std::vector<uint16_t>>>();
            auto biases = std::make_shared<std::vector<std::vector<float>>>();
            for (int i = 0; i < count; ++i) {
                const int64_t m = sh.m[static_cast<size_t>(i)];
                ws->push_back(randn(seed + 10 + static_cast<uint32_t>(i),
                                    static_cast<size_t>(m * sh.k),
                                    1.0f / std::sqrt(static_cast<float>(sh.k))));
                stored->push_back(store_as(dt, ws->back()));
                biases->push_back(
                    randn(seed + 20 + static_cast<uint32_t>(i), static_cast<size_t>(m)));
            }
            OpCase c;
            c.op = "matmul_parts";
            c.wdt = dt;
            c.name = std::string(dtype_name(dt)) + " n" + std::to_string(sh.n) + " k" +
                     std::to_string(sh.k) + " parts" + std::to_string(count) + " m" +
                     std::to_string(sh.m[0]) + (sh.bias ? " +bias" : "");
            c.run = [=](Backend& be) {
                Scope s(be);
                Tensor X = s.act(*x, {sh.n, sh.k});
                std::vector<Tensor> W, B, O;
                for (int i = 0; i < count; ++i) {
                    const auto u = static_cast<size_t>(i);
                    const int64_t m = sh.m[u];
                    const void* wp = dt == DType::kF32 ? static_cast<const void*>((*ws)[u].data())
                                                       : (*stored)[u].data();
                    W.push_back(s.weight(wp, dt, {m, sh.k}));
                    B.push_back(s.weight((*biases)[u].data(), DType::kF32, {m}));
                    O.push_back(s.act({}, {sh.n, m}));
                }
                const Tensor* wp[3] = {};
                const Tensor* bp[3] = {};
                Tensor* op[3] = {};
                for (int i = 0; i < count; ++i) {
                    wp[i] = &W[static_cast<size_t>(i)];
                    bp[i] = sh.bias ? &B[static_cast<size_t>(i)] : nullptr;
                    op[i] = &O[static_cast<size_t>(i)];
                }
                be.matmul_parts(X, count, wp, bp, op);
                Outputs out;
                for (int i = 0; i < count; ++i)
                    out.emplace_back("out" + std::to_string(i), s.get(O[static_cast<size_t>(i)]));
                return out;
            };
            c.naive = [=] {
                Outputs out;
                for (int i = 0; i < count; ++i) {
                    const auto u = static_cast<size_t>(i);
                    out.emplace_back(
                        "out" + std::to_string(i),
                        to_float(naive_matmul(*x, (*ws)[u], sh.bias ? &(*biases)[u] : nullptr, sh.n,
                                              sh.k, sh.m[u])));
                }
                return out;
            };
            cases.push_back(c);
        }
}

void add_swiglu(std::vector<OpCase>& cases) {
    struct S {
        int64_t n, k, m;
    };
    for (DType dt : {DType::kF32, DType::kF16, DType::kBf16})
        for (S sh : {S{1, 512, 136}, S{5, 1024, 75}, S{17, 64, 40},  // 17 rows: unfused
                     S{2, 3080, 33}}) {  // several load passes a row, the last partial
            const auto seed = static_cast<uint32_t>(sh.n * 53 + sh.k + sh.m);
            auto x =
                std::make_shared<std::vector<float>>(randn(seed, static_cast<size_t>(sh.n * sh.k)));
            const float scale = 2.0f / std::sqrt(static_cast<float>(sh.k));  // gates over +-4
            auto wg = std::make_shared<std::vector<float>>(
                randn(seed + 1, static_cast<size_t>(sh.m * sh.k), scale));
            auto wu = std::make_shared<std::vector<float>>(
                randn(seed + 2, static_cast<size_t>(sh.m * sh.k), scale));
            auto sg = std::make_shared<std::vector<uint16_t>>(store_as(dt, *wg));
            auto su = std::make_shared<std::vector<uint16_t>>(store_as(dt, *wu));
            OpCase c;
            c.op = "swiglu";
            c.wdt = dt;
            c.name = std::string(dtype_name(dt)) + " n" + std::to_string(sh.n) + " k" +
                     std::to_string(sh.k) + " m" + std::to_string(sh.m);
            c.run = [=](Backend& be) {
                Scope s(be);
                const bool f32 = dt == DType::kF32;
                Tensor G = s.weight(f32 ? static_cast<const void*>(wg->data()) : sg->data(), dt,
                                    {sh.m, sh.k});
                Tensor U = s.weight(f32 ? static_cast<const void*>(wu->data()) : su->data(), dt,
                                    {sh.m, sh.k});
                Tensor X = s.act(*x, {sh.n, sh.k});
                Tensor gate = s.act({}, {sh.n, sh.m}), up = s.act({}, {sh.n, sh.m}),
                       out = s.act({}, {sh.n, sh.m});
                be.swiglu(X, G, U, gate, up, out);
                return Outputs{{"gate", s.get(gate)}, {"up", s.get(up)}, {"out", s.get(out)}};
            };
            c.naive = [=] {
                const auto g = naive_matmul(*x, *wg, nullptr, sh.n, sh.k, sh.m);
                const auto u = naive_matmul(*x, *wu, nullptr, sh.n, sh.k, sh.m);
                std::vector<double> o(g.size());
                for (size_t i = 0; i < o.size(); ++i) o[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
                return Outputs{{"gate", to_float(g)}, {"up", to_float(u)}, {"out", to_float(o)}};
            };
            cases.push_back(c);
        }
}

void add_add_rmsnorm(std::vector<OpCase>& cases) {
    for (DType dt : {DType::kF32, DType::kBf16})
        for (int64_t rows : {1, 5})
            for (int64_t d : {64, 4096}) {
                const auto seed = static_cast<uint32_t>(rows * 31 + d);
                auto x = std::make_shared<std::vector<float>>(
                    randn(seed, static_cast<size_t>(rows * d), 3.0f));
                auto y = std::make_shared<std::vector<float>>(
                    randn(seed + 1, static_cast<size_t>(rows * d)));
                auto w =
                    std::make_shared<std::vector<float>>(randn(seed + 2, static_cast<size_t>(d)));
                auto stored = std::make_shared<std::vector<uint16_t>>(store_as(dt, *w));
                const float eps = 1e-5f;
                OpCase c;
                c.op = "add_rmsnorm";
                c.wdt = dt;
                c.name = std::string(dtype_name(dt)) + " rows" + std::to_string(rows) + " d" +
                         std::to_string(d);
                c.run = [=](Backend& be) {
                    Scope s(be);
                    Tensor W = s.weight(
                        dt == DType::kF32 ? static_cast<const void*>(w->data()) : stored->data(),
                        dt, {d});
                    Tensor X = s.act(*x, {rows, d}), Y = s.act(*y, {rows, d});
                    Tensor O = s.act({}, {rows, d});
                    be.add_rmsnorm(X, Y, W, eps, O);
                    return Outputs{{"x", s.get(X)}, {"out", s.get(O)}};
                };
                c.naive = [=] {
                    std::vector<float> sum(static_cast<size_t>(rows * d)), o(sum.size());
                    for (size_t i = 0; i < sum.size(); ++i) sum[i] = (*x)[i] + (*y)[i];  // fp32 add
                    for (int64_t r = 0; r < rows; ++r) {
                        double ss = 0;
                        for (int64_t i = 0; i < d; ++i) {
                            const double v = sum[static_cast<size_t>(r * d + i)];
                            ss += v * v;
                        }
                        const double inv = 1.0 / std::sqrt(ss / static_cast<double>(d) + eps);
                        for (int64_t i = 0; i < d; ++i) {
                            const auto k = static_cast<size_t>(r * d + i);
                            o[k] =
                                static_cast<float>((*w)[static_cast<size_t>(i)] * (sum[k] * inv));
                        }
                    }
                    return Outputs{{"x", sum}, {"out", o}};
                };
                cases.push_back(c);
            }
}

}  // namespace

void add_fused_cases(std::vector<OpCase>& cases) {
    add_add_rmsnorm(cases);
    add_rope_qk(cases);
    add_matmul_parts(cases);
    add_swiglu(cases);
}

}  // namespace kvscope::ops_test
