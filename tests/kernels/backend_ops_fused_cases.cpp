// Op cases of the fused decode ops (Backend::add_rmsnorm, rope_qk, matmul_parts, swiglu) and of
// the decode step's prefetch hint (Backend::prefetch), part of the one op list in
// backend_ops_test.cpp. Each fused op must equal the composition it replaces, so
// the naive side recomputes that composition in double. Shapes cover the CUDA backend's fused GEMV
// (n <= 8 rows, k a multiple of 8) and the fallback to unfused ops (n = 17 or 33 rows), with and
// without biases, in every weight dtype; parts of unequal row counts (a warp's row mapped to its
// part) including counts that are not multiples of the 8 rows of a block.
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/kernels/backend_ops_harness.h"

namespace kvscope::ops_test {
namespace {

std::vector<float> to_float(const std::vector<double>& v) {
    return std::vector<float>(v.begin(), v.end());
}

// rmsnorm(x) with w, in double, rounded to fp32 as the norm kernels store it: [rows, d].
std::vector<float> naive_norm(const std::vector<float>& x, int64_t rows, int64_t d,
                              const std::vector<float>& w, float eps) {
    std::vector<float> o(x.size());
    for (int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (int64_t i = 0; i < d; ++i) {
            const double v = x[static_cast<size_t>(r * d + i)];
            ss += v * v;
        }
        const double inv = 1.0 / std::sqrt(ss / static_cast<double>(d) + eps);
        for (int64_t i = 0; i < d; ++i) {
            const auto k = static_cast<size_t>(r * d + i);
            o[k] = static_cast<float>(w[static_cast<size_t>(i)] * (x[k] * inv));
        }
    }
    return o;
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
                            S{33, 64, {32, 8, 8}, true}}) {  // 33 rows: unfused fallback
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
        for (S sh : {S{1, 512, 136}, S{5, 1024, 75}, S{17, 64, 40}}) {  // 17 rows: unfused
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
                    std::vector<float> sum(static_cast<size_t>(rows * d));
                    for (size_t i = 0; i < sum.size(); ++i) sum[i] = (*x)[i] + (*y)[i];  // fp32 add
                    return Outputs{{"x", sum}, {"out", naive_norm(sum, rows, d, *w, eps)}};
                };
                cases.push_back(c);
            }
}

// A weight as the case uploads it: its fp32 values rounded to dt, and the stored bytes.
struct HostWeight {
    std::vector<float> vals;
    std::vector<uint16_t> stored;
    HostWeight(DType dt, std::vector<float> v) : vals(std::move(v)), stored(store_as(dt, vals)) {}
    const void* bytes(DType dt) const {
        return dt == DType::kF32 ? static_cast<const void*>(vals.data()) : stored.data();
    }
};

// Backend::rmsnorm_matmul_parts and rmsnorm_swiglu: the norm done by the GEMV's blocks (n * k
// floats in shared memory, at most 48 KB) for decode rows; the unfused ops for more rows (n 17)
// or rows too long for the shared memory (n 8, k 2048: 64 KB). 5,100 and 4,500 rows: more than
// one wave of an H100 holds, so each warp walks several rows (cuda_gemv.cu, grid_with_norm).
void add_rmsnorm_projections(std::vector<OpCase>& cases) {
    struct S {
        int64_t n, k;
        std::vector<int64_t> m;  // parts (q/k/v); one entry: swiglu's m
        bool bias;
    };
    for (DType dt : {DType::kF32, DType::kF16, DType::kBf16})
        for (const S& sh : {S{1, 512, {64, 16, 16}, true}, S{3, 1024, {72, 13, 13}, false},
                            S{8, 2048, {40, 8}, true}, S{17, 64, {32, 8, 8}, false},
                            S{1, 4096, {24}, false}, S{1, 256, {4500, 600}, true}}) {
            const auto seed = static_cast<uint32_t>(sh.n * 131 + sh.k + sh.m[0]);
            const auto count = static_cast<int>(sh.m.size());
            auto x = std::make_shared<std::vector<float>>(
                randn(seed, static_cast<size_t>(sh.n * sh.k), 2.0f));
            auto g =
                std::make_shared<HostWeight>(dt, randn(seed + 1, static_cast<size_t>(sh.k), 0.5f));
            auto ws = std::make_shared<std::vector<HostWeight>>();
            auto biases = std::make_shared<std::vector<std::vector<float>>>();
            for (int i = 0; i < count; ++i) {
                const int64_t m = sh.m[static_cast<size_t>(i)];
                ws->emplace_back(
                    dt, randn(seed + 10 + static_cast<uint32_t>(i), static_cast<size_t>(m * sh.k),
                              1.0f / std::sqrt(static_cast<float>(sh.k))));
                biases->push_back(
                    randn(seed + 20 + static_cast<uint32_t>(i), static_cast<size_t>(m)));
            }
            const float eps = 1e-5f;
            const std::string shape = std::string(dtype_name(dt)) + " n" + std::to_string(sh.n) +
                                      " k" + std::to_string(sh.k);
            OpCase c;
            c.op = "rmsnorm_matmul_parts";
            c.wdt = dt;
            c.name = shape + " parts" + std::to_string(count) + (sh.bias ? " +bias" : "");
            c.run = [=](Backend& be) {
                Scope s(be);
                Tensor X = s.act(*x, {sh.n, sh.k}), H = s.act({}, {sh.n, sh.k});
                Tensor G = s.weight(g->bytes(dt), dt, {sh.k});
                std::vector<Tensor> W, B, O;
                for (int i = 0; i < count; ++i) {
                    const auto u = static_cast<size_t>(i);
                    W.push_back(s.weight((*ws)[u].bytes(dt), dt, {sh.m[u], sh.k}));
                    B.push_back(s.weight((*biases)[u].data(), DType::kF32, {sh.m[u]}));
                    O.push_back(s.act({}, {sh.n, sh.m[u]}));
                }
                const Tensor* wp[3] = {};
                const Tensor* bp[3] = {};
                Tensor* op[3] = {};
                for (int i = 0; i < count; ++i) {
                    const auto u = static_cast<size_t>(i);
                    wp[i] = &W[u];
                    bp[i] = sh.bias ? &B[u] : nullptr;
                    op[i] = &O[u];
                }
                be.rmsnorm_matmul_parts(X, G, eps, H, count, wp, bp, op);
                Outputs out{{"x", s.get(X)}};  // x is read only
                for (int i = 0; i < count; ++i)
                    out.emplace_back("out" + std::to_string(i), s.get(O[static_cast<size_t>(i)]));
                return out;
            };
            c.naive = [=] {
                const std::vector<float> h = naive_norm(*x, sh.n, sh.k, g->vals, eps);
                Outputs out{{"x", *x}};
                for (int i = 0; i < count; ++i) {
                    const auto u = static_cast<size_t>(i);
                    out.emplace_back(
                        "out" + std::to_string(i),
                        to_float(naive_matmul(h, (*ws)[u].vals, sh.bias ? &(*biases)[u] : nullptr,
                                              sh.n, sh.k, sh.m[u])));
                }
                return out;
            };
            cases.push_back(c);
            // The same rows through rmsnorm_swiglu (m: the first part's rows; gate and up are
            // the first two weights of the list, or the one weight twice).
            OpCase d;
            d.op = "rmsnorm_swiglu";
            d.wdt = dt;
            const int64_t m = sh.m[0];
            const size_t up_i = count > 1 && sh.m[1] == m ? 1 : 0;
            d.name = shape + " m" + std::to_string(m);
            d.run = [=](Backend& be) {
                Scope s(be);
                Tensor X = s.act(*x, {sh.n, sh.k}), H = s.act({}, {sh.n, sh.k});
                Tensor G = s.weight(g->bytes(dt), dt, {sh.k});
                Tensor Wg = s.weight((*ws)[0].bytes(dt), dt, {m, sh.k});
                Tensor Wu = s.weight((*ws)[up_i].bytes(dt), dt, {m, sh.k});
                Tensor gate = s.act({}, {sh.n, m}), up = s.act({}, {sh.n, m}),
                       out = s.act({}, {sh.n, m});
                be.rmsnorm_swiglu(X, G, eps, H, Wg, Wu, gate, up, out);
                return Outputs{{"x", s.get(X)}, {"out", s.get(out)}};
            };
            d.naive = [=] {
                const std::vector<float> h = naive_norm(*x, sh.n, sh.k, g->vals, eps);
                const auto gg = naive_matmul(h, (*ws)[0].vals, nullptr, sh.n, sh.k, m);
                const auto uu = naive_matmul(h, (*ws)[up_i].vals, nullptr, sh.n, sh.k, m);
                std::vector<double> o(gg.size());
                for (size_t i = 0; i < o.size(); ++i)
                    o[i] = gg[i] / (1.0 + std::exp(-gg[i])) * uu[i];
                return Outputs{{"x", *x}, {"out", to_float(o)}};
            };
            cases.push_back(d);
        }
}

// Backend::matmul_add: out += x @ w^T (+ bias), the product rounded to fp32 first (the GEMV's
// epilogue for decode rows; matmul into tmp and add_inplace for n 17).
void add_matmul_add(std::vector<OpCase>& cases) {
    struct S {
        int64_t n, k, m;
        bool bias;
    };
    for (DType dt : {DType::kF32, DType::kF16, DType::kBf16})
        for (const S& sh : {S{1, 512, 96, true}, S{3, 256, 40, false}, S{17, 64, 24, true}}) {
            const auto seed = static_cast<uint32_t>(sh.n * 71 + sh.k + sh.m);
            auto x =
                std::make_shared<std::vector<float>>(randn(seed, static_cast<size_t>(sh.n * sh.k)));
            auto resid = std::make_shared<std::vector<float>>(
                randn(seed + 1, static_cast<size_t>(sh.n * sh.m), 3.0f));
            auto w =
                std::make_shared<HostWeight>(dt, randn(seed + 2, static_cast<size_t>(sh.m * sh.k),
                                                       1.0f / std::sqrt(static_cast<float>(sh.k))));
            auto bias =
                std::make_shared<std::vector<float>>(randn(seed + 3, static_cast<size_t>(sh.m)));
            OpCase c;
            c.op = "matmul_add";
            c.wdt = dt;
            c.name = std::string(dtype_name(dt)) + " n" + std::to_string(sh.n) + " k" +
                     std::to_string(sh.k) + " m" + std::to_string(sh.m) + (sh.bias ? " +bias" : "");
            c.run = [=](Backend& be) {
                Scope s(be);
                Tensor X = s.act(*x, {sh.n, sh.k}), T = s.act({}, {sh.n, sh.m});
                Tensor R = s.act(*resid, {sh.n, sh.m});
                Tensor W = s.weight(w->bytes(dt), dt, {sh.m, sh.k});
                Tensor B = s.weight(bias->data(), DType::kF32, {sh.m});
                be.matmul_add(X, W, sh.bias ? &B : nullptr, T, R);
                return Outputs{{"out", s.get(R)}};
            };
            c.naive = [=] {
                const auto p =
                    naive_matmul(*x, w->vals, sh.bias ? bias.get() : nullptr, sh.n, sh.k, sh.m);
                std::vector<float> o(p.size());
                for (size_t i = 0; i < o.size(); ++i) o[i] = (*resid)[i] + static_cast<float>(p[i]);
                return Outputs{{"out", o}};
            };
            cases.push_back(c);
        }
}

// Backend::prefetch (a hint: cuda_prefetch.cu) then one-row GEMVs of the weights it named: the
// results are those of the GEMVs alone. Weights in every dtype, of a few rows and of more rows
// than one GEMV wave holds; the f16 one has 120-byte rows (not 16-byte aligned: its range is
// skipped, and its matmul takes cuBLAS). backend_ops_prefetch_test.cpp checks the bits.
void add_prefetch(std::vector<OpCase>& cases) {
    struct W {
        DType dt;
        int64_t m, k;
    };
    const std::vector<W> shapes = {
        {DType::kF32, 24, 128}, {DType::kBf16, 9000, 256}, {DType::kF16, 40, 60}};
    auto xs = std::make_shared<std::vector<std::vector<float>>>();
    auto ws = std::make_shared<std::vector<std::vector<float>>>();
    auto stored = std::make_shared<std::vector<std::vector<uint16_t>>>();
    for (size_t i = 0; i < shapes.size(); ++i) {
        const W& w = shapes[i];
        const auto seed = static_cast<uint32_t>(811 + 7 * i);
        xs->push_back(randn(seed, static_cast<size_t>(w.k)));
        ws->push_back(randn(seed + 1, static_cast<size_t>(w.m * w.k),
                            1.0f / std::sqrt(static_cast<float>(w.k))));
        stored->push_back(store_as(w.dt, ws->back()));
    }
    OpCase c;
    c.op = "prefetch";
    c.wdt = DType::kBf16;  // the loosest of the three weights' bounds
    c.name = "f32 24x128, bf16 9000x256, f16 40x60";
    c.run = [=](Backend& be) {
        Scope s(be);
        std::vector<Tensor> W, X, O;
        for (size_t i = 0; i < shapes.size(); ++i) {
            const auto& sh = shapes[i];
            const void* p = sh.dt == DType::kF32 ? static_cast<const void*>((*ws)[i].data())
                                                 : (*stored)[i].data();
            W.push_back(s.weight(p, sh.dt, {sh.m, sh.k}));
            X.push_back(s.act((*xs)[i], {1, sh.k}));
            O.push_back(s.act({}, {1, sh.m}));
        }
        const Tensor* next[3] = {&W[0], &W[1], &W[2]};
        be.prefetch(next, 3);
        Outputs out;
        for (size_t i = 0; i < shapes.size(); ++i) be.matmul(X[i], W[i], nullptr, O[i]);
        for (size_t i = 0; i < shapes.size(); ++i)
            out.emplace_back("out" + std::to_string(i), s.get(O[i]));
        return out;
    };
    c.naive = [=] {
        Outputs out;
        for (size_t i = 0; i < shapes.size(); ++i)
            out.emplace_back(
                "out" + std::to_string(i),
                to_float(naive_matmul((*xs)[i], (*ws)[i], nullptr, 1, shapes[i].k, shapes[i].m)));
        return out;
    };
    cases.push_back(c);
}

}  // namespace

void add_fused_cases(std::vector<OpCase>& cases) {
    add_add_rmsnorm(cases);
    add_rope_qk(cases);
    add_matmul_parts(cases);
    add_swiglu(cases);
    add_rmsnorm_projections(cases);
    add_matmul_add(cases);
    add_prefetch(cases);
}

}  // namespace kvscope::ops_test
