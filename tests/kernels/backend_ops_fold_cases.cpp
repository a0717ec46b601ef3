// Op cases of the folded decode ops (Backend::rmsnorm_matmul_parts, rmsnorm_swiglu, matmul_add),
// part of the one op list in backend_ops_test.cpp. Each must equal the composition it replaces
// (the norm, then the projection; the projection, then the residual add), so the naive side
// recomputes that composition in double. The CUDA backend folds one row (a decode step) into its
// GEMVs when KVSCOPE_CUDA_FOLD_NORMS=1; more rows, and every case without the switch, take the
// Backend defaults. Shapes: one row with and without biases, q/k/v-like parts of unequal rows,
// rows of several passes of the GEMV's loads in flight with a partial last one (k 3080), and
// fallback rows (3, 17); every weight dtype, the norm's weights in the projection's dtype.
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

// rmsnorm(x) with g, in double, rounded to fp32 as the norm kernels store it: [rows, d].
std::vector<float> naive_norm(const std::vector<float>& x, int64_t rows, int64_t d,
                              const std::vector<float>& g, float eps) {
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
            o[k] = static_cast<float>(g[static_cast<size_t>(i)] * (x[k] * inv));
        }
    }
    return o;
}

// A weight as a case uploads it: its values rounded to dt (vals) and the stored bytes.
struct HostWeight {
    std::vector<float> vals;
    std::vector<uint16_t> stored;
    HostWeight(DType dt, std::vector<float> v) : vals(std::move(v)), stored(store_as(dt, vals)) {}
    const void* bytes(DType dt) const {
        return dt == DType::kF32 ? static_cast<const void*>(vals.data()) : stored.data();
    }
};

struct NormShape {
    int64_t n, k;
    std::vector<int64_t> m;  // parts (q/k/v); swiglu takes m[0]
    bool bias;
};

void add_rmsnorm_matmul_parts(std::vector<OpCase>& cases, DType dt, const NormShape& sh) {
    const auto seed = static_cast<uint32_t>(sh.n * 131 + sh.k + sh.m[0]);
    const auto count = static_cast<int>(sh.m.size());
    // x of rms ~2 with a few large entries (a residual stream's outliers).
    auto x = std::make_shared<std::vector<float>>(randn(seed, static_cast<size_t>(sh.n * sh.k), 2));
    for (size_t i = 7; i < x->size(); i += 997) (*x)[i] *= 40.0f;
    auto g = std::make_shared<HostWeight>(dt, randn(seed + 1, static_cast<size_t>(sh.k), 0.5f));
    auto ws = std::make_shared<std::vector<HostWeight>>();
    auto biases = std::make_shared<std::vector<std::vector<float>>>();
    for (int i = 0; i < count; ++i) {
        const int64_t m = sh.m[static_cast<size_t>(i)];
        ws->emplace_back(dt,
                         randn(seed + 10 + static_cast<uint32_t>(i), static_cast<size_t>(m * sh.k),
                               1.0f / std::sqrt(static_cast<float>(sh.k))));
        biases->push_back(randn(seed + 20 + static_cast<uint32_t>(i), static_cast<size_t>(m)));
    }
    const float eps = 1e-5f;
    OpCase c;
    c.op = "rmsnorm_matmul_parts";
    c.wdt = dt;
    c.name = std::string(dtype_name(dt)) + " n" + std::to_string(sh.n) + " k" +
             std::to_string(sh.k) + " parts" + std::to_string(count) + " m" +
             std::to_string(sh.m[0]) + (sh.bias ? " +bias" : "");
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
                to_float(naive_matmul(h, (*ws)[u].vals, sh.bias ? &(*biases)[u] : nullptr, sh.n,
                                      sh.k, sh.m[u])));
        }
        return out;
    };
    cases.push_back(c);
}

void add_rmsnorm_swiglu(std::vector<OpCase>& cases, DType dt, const NormShape& sh) {
    const int64_t m = sh.m[0];
    const auto seed = static_cast<uint32_t>(sh.n * 59 + sh.k + m);
    auto x = std::make_shared<std::vector<float>>(randn(seed, static_cast<size_t>(sh.n * sh.k), 3));
    auto g = std::make_shared<HostWeight>(dt, randn(seed + 1, static_cast<size_t>(sh.k), 0.7f));
    const float scale = 2.0f / std::sqrt(static_cast<float>(sh.k));  // gates over +-4
    auto wg =
        std::make_shared<HostWeight>(dt, randn(seed + 2, static_cast<size_t>(m * sh.k), scale));
    auto wu =
        std::make_shared<HostWeight>(dt, randn(seed + 3, static_cast<size_t>(m * sh.k), scale));
    const float eps = 1e-6f;
    OpCase c;
    c.op = "rmsnorm_swiglu";
    c.wdt = dt;
    c.name = std::string(dtype_name(dt)) + " n" + std::to_string(sh.n) + " k" +
             std::to_string(sh.k) + " m" + std::to_string(m);
    c.run = [=](Backend& be) {
        Scope s(be);
        Tensor X = s.act(*x, {sh.n, sh.k}), H = s.act({}, {sh.n, sh.k});
        Tensor G = s.weight(g->bytes(dt), dt, {sh.k});
        Tensor WG = s.weight(wg->bytes(dt), dt, {m, sh.k});
        Tensor WU = s.weight(wu->bytes(dt), dt, {m, sh.k});
        Tensor gate = s.act({}, {sh.n, m}), up = s.act({}, {sh.n, m}), out = s.act({}, {sh.n, m});
        be.rmsnorm_swiglu(X, G, eps, H, WG, WU, gate, up, out);
        return Outputs{{"gate", s.get(gate)}, {"up", s.get(up)}, {"out", s.get(out)}};
    };
    c.naive = [=] {
        const std::vector<float> h = naive_norm(*x, sh.n, sh.k, g->vals, eps);
        const auto gd = naive_matmul(h, wg->vals, nullptr, sh.n, sh.k, m);
        const auto ud = naive_matmul(h, wu->vals, nullptr, sh.n, sh.k, m);
        std::vector<double> o(gd.size());
        for (size_t i = 0; i < o.size(); ++i) o[i] = gd[i] / (1.0 + std::exp(-gd[i])) * ud[i];
        return Outputs{{"gate", to_float(gd)}, {"up", to_float(ud)}, {"out", to_float(o)}};
    };
    cases.push_back(c);
}

void add_matmul_add(std::vector<OpCase>& cases, DType dt, int64_t n, int64_t k, int64_t m,
                    bool bias) {
    const auto seed = static_cast<uint32_t>(n * 71 + k + m);
    auto x = std::make_shared<std::vector<float>>(randn(seed, static_cast<size_t>(n * k)));
    auto resid =
        std::make_shared<std::vector<float>>(randn(seed + 1, static_cast<size_t>(n * m), 3.0f));
    auto w = std::make_shared<HostWeight>(
        dt, randn(seed + 2, static_cast<size_t>(m * k), 1.0f / std::sqrt(static_cast<float>(k))));
    auto b = std::make_shared<std::vector<float>>(randn(seed + 3, static_cast<size_t>(m)));
    OpCase c;
    c.op = "matmul_add";
    c.wdt = dt;
    c.name = std::string(dtype_name(dt)) + " n" + std::to_string(n) + " k" + std::to_string(k) +
             " m" + std::to_string(m) + (bias ? " +bias" : "");
    c.run = [=](Backend& be) {
        Scope s(be);
        Tensor X = s.act(*x, {n, k}), T = s.act({}, {n, m}), R = s.act(*resid, {n, m});
        Tensor W = s.weight(w->bytes(dt), dt, {m, k});
        Tensor B = s.weight(b->data(), DType::kF32, {m});
        be.matmul_add(X, W, bias ? &B : nullptr, T, R);
        return Outputs{{"out", s.get(R)}};
    };
    c.naive = [=] {
        const auto p = naive_matmul(*x, w->vals, bias ? b.get() : nullptr, n, k, m);
        std::vector<float> o(p.size());
        for (size_t i = 0; i < o.size(); ++i) o[i] = (*resid)[i] + static_cast<float>(p[i]);
        return Outputs{{"out", o}};
    };
    cases.push_back(c);
}

}  // namespace

void add_fold_cases(std::vector<OpCase>& cases) {
    for (DType dt : {DType::kF32, DType::kF16, DType::kBf16}) {
        for (const NormShape& sh :
             {NormShape{1, 512, {64, 16, 16}, true}, NormShape{1, 1024, {72, 13, 13}, false},
              NormShape{1, 3080, {40, 9, 9}, true}, NormShape{1, 256, {1000}, false},
              NormShape{3, 1024, {72, 13, 13}, true}, NormShape{17, 64, {32, 8, 8}, false}})
            add_rmsnorm_matmul_parts(cases, dt, sh);
        for (const NormShape& sh :
             {NormShape{1, 512, {136}, false}, NormShape{1, 3080, {33}, false},
              NormShape{5, 1024, {75}, false}})
            add_rmsnorm_swiglu(cases, dt, sh);
        add_matmul_add(cases, dt, 1, 512, 96, true);
        add_matmul_add(cases, dt, 1, 3080, 40, false);
        add_matmul_add(cases, dt, 3, 256, 40, false);
        add_matmul_add(cases, dt, 17, 64, 24, true);
    }
}

}  // namespace kvscope::ops_test
