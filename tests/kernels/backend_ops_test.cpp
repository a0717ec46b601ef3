// One list of op cases, run on every backend (the way llama.cpp's test-backend-ops works):
//   CpuVsNaive/<op>:  the CPU backend (the oracle) against float64 loops written here;
//   CudaVsCpu/<op>:   the CUDA backend against the CPU backend on the same inputs, with the
//                     per-op tolerance written in tolerance_for(). Skipped, with the reason,
//                     where the CUDA backend cannot run (no CUDA build, no GPU, GPU below sm_90).
// Error metric: NMSE = sum (a - b)^2 / sum b^2 over an output, plus the largest |a - b| relative
// to max |b|; non-finite reference entries (an attention row that sees no key has LSE -inf) must
// match exactly.
//
// How to add an op: write a builder below that pushes OpCase entries (inputs from a seeded RNG,
// `run` calls the Backend op through alloc/from_host/upload_weight/to_host only, so it works on
// any backend; `naive` recomputes the outputs in double), add the op's name to kOps and its
// tolerance to tolerance_for(). Set KVSCOPE_OPS_PERF=1 to print each case's time per backend.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "tests/kernels/backend_ops_harness.h"

namespace kvscope {
namespace {

using namespace ops_test;  // NOLINT(google-build-using-namespace): the shared test harness

// The CPU backend vs float64 loops: fp32 rounding only.
constexpr Tol kCpuVsNaive{1e-10, 1e-4};

const char* dt_name(DType t) {
    return dtype_name(t);
}

// ---- embedding ----------------------------------------------------------------------------------
void add_embedding(std::vector<OpCase>& cases) {
    for (DType dt : {DType::kF32, DType::kF16, DType::kBf16})
        for (int64_t d : {48, 128}) {
            const int64_t vocab = 50;
            auto table = std::make_shared<std::vector<float>>(
                randn(static_cast<uint32_t>(d), static_cast<size_t>(vocab * d)));
            auto stored = std::make_shared<std::vector<uint16_t>>(store_as(dt, *table));
            auto ids = std::make_shared<std::vector<int32_t>>(
                std::vector<int32_t>{0, 49, 7, 7, 50, -1, 13});  // 50 and -1: zero rows
            const int64_t n = static_cast<int64_t>(ids->size());
            OpCase c;
            c.op = "embedding";
            c.name = std::string(dt_name(dt)) + " d" + std::to_string(d);
            c.wdt = dt;
            c.run = [=](Backend& be) {
                Scope s(be);
                const void* w =
                    dt == DType::kF32 ? static_cast<const void*>(table->data()) : stored->data();
                Tensor T = s.weight(w, dt, {vocab, d});
                Tensor O = s.act({}, {n, d});
                be.embedding(T, ids->data(), n, O);
                return Outputs{{"out", s.get(O)}};
            };
            c.naive = [=] {
                std::vector<float> o(static_cast<size_t>(n * d), 0.0f);
                for (int64_t i = 0; i < n; ++i) {
                    const int32_t id = (*ids)[static_cast<size_t>(i)];
                    if (id < 0 || id >= vocab) continue;
                    for (int64_t c2 = 0; c2 < d; ++c2)
                        o[static_cast<size_t>(i * d + c2)] =
                            (*table)[static_cast<size_t>(id * d + c2)];
                }
                return Outputs{{"out", o}};
            };
            cases.push_back(c);
        }
}

// ---- rmsnorm ------------------------------------------------------------------------------------
void add_rmsnorm(std::vector<OpCase>& cases) {
    struct S {
        int64_t rows, d;
        bool alias;
    };
    for (DType dt : {DType::kF32, DType::kF16, DType::kBf16})
        for (S sh : {S{5, 48, false}, S{33, 64, true}, S{3, 4096, false}}) {
            auto x = std::make_shared<std::vector<float>>(
                randn(static_cast<uint32_t>(sh.rows * 7 + sh.d),
                      static_cast<size_t>(sh.rows * sh.d), 3.0f));
            auto w = std::make_shared<std::vector<float>>(randn(11, static_cast<size_t>(sh.d)));
            auto stored = std::make_shared<std::vector<uint16_t>>(store_as(dt, *w));
            OpCase c;
            c.op = "rmsnorm";
            c.name = std::string(dt_name(dt)) + " " + std::to_string(sh.rows) + "x" +
                     std::to_string(sh.d) + (sh.alias ? " in place" : "");
            c.wdt = dt;
            c.run = [=](Backend& be) {
                Scope s(be);
                const void* wp =
                    dt == DType::kF32 ? static_cast<const void*>(w->data()) : stored->data();
                Tensor W = s.weight(wp, dt, {sh.d});
                Tensor X = s.act(*x, {sh.rows, sh.d});
                Tensor Y = sh.alias ? X : s.act({}, {sh.rows, sh.d});
                be.rmsnorm(X, W, 1e-5f, Y);
                return Outputs{{"out", s.get(Y)}};
            };
            c.naive = [=] {
                std::vector<float> y(x->size());
                for (int64_t r = 0; r < sh.rows; ++r) {
                    double ss = 0;
                    for (int64_t i = 0; i < sh.d; ++i) {
                        const double v = (*x)[static_cast<size_t>(r * sh.d + i)];
                        ss += v * v;
                    }
                    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(sh.d) + 1e-5);
                    for (int64_t i = 0; i < sh.d; ++i)
                        y[static_cast<size_t>(r * sh.d + i)] =
                            static_cast<float>((*w)[static_cast<size_t>(i)] *
                                               (*x)[static_cast<size_t>(r * sh.d + i)] * inv);
                }
                return Outputs{{"out", y}};
            };
            cases.push_back(c);
        }
}

// ---- rope ---------------------------------------------------------------------------------------
void add_rope(std::vector<OpCase>& cases) {
    for (int64_t hd : {48, 64, 80, 128})
        for (RopePairs pairs : {RopePairs::kHalf, RopePairs::kInterleaved}) {
            const int64_t n = 7, heads = 3;
            auto x = std::make_shared<std::vector<float>>(
                randn(static_cast<uint32_t>(hd), static_cast<size_t>(n * heads * hd)));
            auto pos = std::make_shared<std::vector<int64_t>>(
                std::vector<int64_t>{0, 1, 5, 17, 300, 4095, 131000});
            auto inv = std::make_shared<std::vector<float>>(static_cast<size_t>(hd / 2));
            for (int64_t i = 0; i < hd / 2; ++i)
                (*inv)[static_cast<size_t>(i)] = static_cast<float>(
                    std::pow(500000.0, -2.0 * static_cast<double>(i) / static_cast<double>(hd)));
            OpCase c;
            c.op = "rope";
            c.name =
                "hd" + std::to_string(hd) + (pairs == RopePairs::kHalf ? " half" : " interleaved");
            c.run = [=](Backend& be) {
                Scope s(be);
                Tensor X = s.act(*x, {n, heads, hd});
                be.rope(X, pos->data(), inv->data(), pairs);
                return Outputs{{"out", s.get(X)}};
            };
            c.naive = [=] {
                return Outputs{{"out", naive_rope(*x, n, heads, hd, *pos, *inv, pairs)}};
            };
            cases.push_back(c);
        }
}

// ---- silu_mul, add ------------------------------------------------------------------------------
void add_elementwise(std::vector<OpCase>& cases) {
    for (int64_t n : {1, 1000, 65537}) {
        auto g = std::make_shared<std::vector<float>>(
            randn(static_cast<uint32_t>(n), static_cast<size_t>(n), 4.0f));
        auto u = std::make_shared<std::vector<float>>(
            randn(static_cast<uint32_t>(n + 1), static_cast<size_t>(n)));
        OpCase c;
        c.op = "silu_mul";
        c.name = "n" + std::to_string(n);
        c.run = [=](Backend& be) {
            Scope s(be);
            Tensor G = s.act(*g, {n}), U = s.act(*u, {n}), O = s.act({}, {n});
            be.silu_mul(G, U, O);
            return Outputs{{"out", s.get(O)}};
        };
        c.naive = [=] {
            std::vector<float> o(static_cast<size_t>(n));
            for (size_t i = 0; i < o.size(); ++i) {
                const double x = (*g)[i];
                o[i] = static_cast<float>(x / (1.0 + std::exp(-x)) * (*u)[i]);
            }
            return Outputs{{"out", o}};
        };
        cases.push_back(c);
        OpCase a;
        a.op = "add";
        a.name = "n" + std::to_string(n);
        a.run = [=](Backend& be) {
            Scope s(be);
            Tensor X = s.act(*g, {n}), Y = s.act(*u, {n});
            be.add_inplace(X, Y);
            return Outputs{{"out", s.get(X)}};
        };
        a.naive = [=] {
            std::vector<float> o(static_cast<size_t>(n));
            for (size_t i = 0; i < o.size(); ++i) o[i] = (*g)[i] + (*u)[i];
            return Outputs{{"out", o}};
        };
        cases.push_back(a);
    }
}

// ---- matmul -------------------------------------------------------------------------------------
void add_matmul(std::vector<OpCase>& cases) {
    struct S {
        int64_t n, k, m;
        bool bias;
    };
    for (DType dt : {DType::kF32, DType::kF16, DType::kBf16})
        for (S sh :
             {S{1, 64, 33, true}, S{7, 19, 70, false}, S{33, 128, 17, true}, S{1, 2048, 384, false},
              S{64, 512, 256, false},
              // decode rows through cuda_gemv.cu (n <= 8, k a multiple of 8)
              S{8, 4096, 72, true}, S{3, 1024, 130, false},
              // several passes of the GEMV's loads a row and a partial last one (bf16: 385 vectors)
              S{1, 3080, 300, true}}) {
            const uint32_t seed = static_cast<uint32_t>(sh.n * 131 + sh.k * 7 + sh.m);
            auto x =
                std::make_shared<std::vector<float>>(randn(seed, static_cast<size_t>(sh.n * sh.k)));
            auto w = std::make_shared<std::vector<float>>(
                randn(seed + 1, static_cast<size_t>(sh.m * sh.k),
                      1.0f / std::sqrt(static_cast<float>(sh.k))));
            auto stored = std::make_shared<std::vector<uint16_t>>(store_as(dt, *w));
            auto bias =
                std::make_shared<std::vector<float>>(randn(seed + 2, static_cast<size_t>(sh.m)));
            OpCase c;
            c.op = "matmul";
            c.wdt = dt;
            c.name = std::string(dt_name(dt)) + " n" + std::to_string(sh.n) + " k" +
                     std::to_string(sh.k) + " m" + std::to_string(sh.m) + (sh.bias ? " +bias" : "");
            c.run = [=](Backend& be) {
                Scope s(be);
                const void* wp =
                    dt == DType::kF32 ? static_cast<const void*>(w->data()) : stored->data();
                Tensor W = s.weight(wp, dt, {sh.m, sh.k});
                Tensor B = s.weight(bias->data(), DType::kF32, {sh.m});
                Tensor X = s.act(*x, {sh.n, sh.k});
                Tensor O = s.act({}, {sh.n, sh.m});
                be.matmul(X, W, sh.bias ? &B : nullptr, O);
                return Outputs{{"out", s.get(O)}};
            };
            c.naive = [=] {
                const auto o =
                    naive_matmul(*x, *w, sh.bias ? bias.get() : nullptr, sh.n, sh.k, sh.m);
                return Outputs{{"out", std::vector<float>(o.begin(), o.end())}};
            };
            cases.push_back(c);
        }
}

// ---- attention ----------------------------------------------------------------------------------
// KV heads may hold different numbers of slots at arbitrary (sorted or not) positions.
struct AttnShape {
    std::string label;
    int64_t n, H, G, d;
    std::vector<int64_t> lens;  // per KV head
    int64_t q_pos0;             // queries at q_pos0 .. q_pos0 + n - 1
    int64_t pos_stride;         // key j of a head sits at kpos0 + j * pos_stride
    int64_t kpos0;
    int64_t tail;           // rows of the last `tail` queries
    bool shuffled = false;  // key positions permuted within each head (slots need not be sorted)
};

void add_attention(std::vector<OpCase>& cases) {
    std::vector<AttnShape> shapes = {
        // prefill (n = keys, causal), head_dim x GQA
        {"prefill hd48 gqa1", 9, 2, 2, 48, {9, 9}, 0, 1, 0, 2},
        {"prefill hd64 gqa2", 40, 4, 2, 64, {40, 40}, 0, 1, 0, 8},
        {"prefill hd80 gqa4", 33, 4, 1, 80, {33}, 0, 1, 0, 32},
        {"prefill hd128 gqa8", 70, 8, 1, 128, {70}, 0, 1, 0, 32},
        {"prefill hd128 gqa4 n300", 300, 8, 2, 128, {300, 300}, 0, 1, 0, 32},
        {"prefill hd64 n700", 700, 2, 1, 64, {700}, 0, 1, 0, 16},
        // ragged per-head caches (after eviction), positions with gaps, a chunk of new queries
        {"ragged chunk hd128 gqa2", 20, 8, 4, 128, {100, 37, 1, 64}, 90, 2, 0, 4},
        {"ragged decode hd64 gqa4", 1, 8, 2, 64, {150, 5}, 400, 3, 0, 1},
        {"ragged decode rows5 hd80", 5, 4, 2, 80, {77, 200}, 180, 1, 0, 5},
        // some queries see no key (keys start after them): out 0, LSE -inf
        {"no visible key hd48", 12, 2, 1, 48, {12}, 0, 1, 6, 3},
        // decode over thousands of keys
        {"decode hd128 gqa4 L3000",
         1,
         32,
         8,
         128,
         {3000, 3000, 2999, 3000, 1, 3000, 2048, 3000},
         3000,
         1,
         0,
         1},
        {"decode hd80 gqa8 L4096", 1, 8, 1, 80, {4096}, 4096, 1, 0, 1},
        // The decode shapes of cuda_attention_decode.cu's paths (the one-launch decode_gqa with
        // KVSCOPE_CUDA_DECODE_FUSED=1): the 8B shape at 1k keys (short splits; decode_gqa's
        // combining block writes the probabilities), several rows with statistics from
        // decode_probs, and 16 query heads per KV head (always the two-kernel path).
        {"decode 8B shape L1024",
         1,
         32,
         8,
         128,
         {1024, 1024, 1000, 1024, 777, 1024, 1024, 64},
         1024,
         1,
         0,
         1},
        {"decode rows3 hd64 gqa8", 3, 16, 2, 64, {500, 260}, 520, 1, 0, 2},
        {"decode hd64 gqa16 L300", 1, 16, 1, 64, {300}, 300, 1, 0, 1},
        {"decode hd256 L600", 2, 2, 1, 256, {600}, 599, 1, 0, 2},
        // The tensor-core prefill path (n > 8, head_dim 64/128): block shapes HB = 4 (gqa 4:1,
        // 8:1), 2 and 1 heads per block, partial query/key tiles, causal boundaries inside tiles,
        // ragged heads with a chunk of new queries, unsorted positions, rows that see no key, and
        // 4096 queries (many tiles, long online-softmax chains) -- all with colsum, window rows
        // and LSE.
        {"mma hd64 gqa4 n17", 17, 8, 2, 64, {17, 17}, 0, 1, 0, 17},
        {"mma hd128 gqa8 n300", 300, 16, 2, 128, {300, 300}, 0, 1, 0, 64},
        {"mma hd64 gqa1 ragged n300", 300, 2, 2, 64, {300, 130}, 0, 1, 0, 32},
        {"mma hd128 gqa4 n1000 ragged", 1000, 8, 2, 128, {1300, 900}, 500, 1, 0, 64},
        {"mma hd128 gqa2 shuffled n300", 300, 4, 2, 128, {300, 250}, 0, 1, 0, 32, true},
        {"mma hd64 no visible key", 100, 4, 2, 64, {100, 100}, 0, 1, 37, 16},
        {"mma hd64 gqa4 n4096", 4096, 4, 1, 64, {4096}, 0, 1, 0, 64},
    };
    for (const AttnShape& sh : shapes) {
        const uint32_t seed = static_cast<uint32_t>(sh.n * 1000 + sh.H * 10 + sh.d);
        auto q = std::make_shared<std::vector<float>>(
            randn(seed, static_cast<size_t>(sh.n * sh.H * sh.d)));
        auto K = std::make_shared<std::vector<std::vector<float>>>();
        auto V = std::make_shared<std::vector<std::vector<float>>>();
        auto P = std::make_shared<std::vector<std::vector<int64_t>>>();
        for (int64_t g = 0; g < sh.G; ++g) {
            const int64_t len = sh.lens[static_cast<size_t>(g)];
            K->push_back(
                randn(seed + 1 + static_cast<uint32_t>(g), static_cast<size_t>(len * sh.d)));
            V->push_back(
                randn(seed + 100 + static_cast<uint32_t>(g), static_cast<size_t>(len * sh.d)));
            std::vector<int64_t> pos(static_cast<size_t>(len));
            for (int64_t j = 0; j < len; ++j)
                pos[static_cast<size_t>(j)] = sh.kpos0 + j * sh.pos_stride;
            if (sh.shuffled) {
                std::mt19937 rng(seed + 7 + static_cast<uint32_t>(g));
                std::shuffle(pos.begin(), pos.end(), rng);
            }
            P->push_back(pos);
        }
        auto qpos = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(sh.n));
        for (int64_t i = 0; i < sh.n; ++i) (*qpos)[static_cast<size_t>(i)] = sh.q_pos0 + i;
        const float scale = 1.0f / std::sqrt(static_cast<float>(sh.d));
        const AttnShape s = sh;
        OpCase c;
        c.op = "attention";
        c.name = sh.label;
        c.bf16_attention = sh.n > 8 && (sh.d == 64 || sh.d == 128);  // see tolerance_for
        c.run = [=](Backend& be) {
            Scope sc(be);
            std::vector<KVHeadView> views;
            for (int64_t g = 0; g < s.G; ++g)
                views.push_back(
                    {(*K)[static_cast<size_t>(g)].data(), (*V)[static_cast<size_t>(g)].data(),
                     (*P)[static_cast<size_t>(g)].data(), s.lens[static_cast<size_t>(g)]});
            const int64_t group = s.H / s.G;
            std::vector<std::vector<float>> col(static_cast<size_t>(s.H)),
                rows(static_cast<size_t>(s.H)), lse(static_cast<size_t>(s.H));
            AttentionStats st;
            st.n_rows_tail = s.tail;
            for (int64_t h = 0; h < s.H; ++h) {
                const auto len = static_cast<size_t>(s.lens[static_cast<size_t>(h / group)]);
                col[static_cast<size_t>(h)].assign(len, 0.5f);  // colsum accumulates: start off 0
                rows[static_cast<size_t>(h)].assign(static_cast<size_t>(s.tail) * len, NAN);
                lse[static_cast<size_t>(h)].assign(static_cast<size_t>(s.n), NAN);
                st.colsum.push_back(col[static_cast<size_t>(h)].data());
                st.rows.push_back(rows[static_cast<size_t>(h)].data());
                st.lse.push_back(lse[static_cast<size_t>(h)].data());
            }
            Tensor Q = sc.act(*q, {s.n, s.H, s.d});
            Tensor O = sc.act({}, {s.n, s.H, s.d});
            AttentionArgs a{&Q, qpos->data(), views.data(), s.G, scale, &O, &st};
            be.attention(a);
            Outputs out{{"out", sc.get(O)}};
            std::vector<float> c2, r2, l2;
            for (int64_t h = 0; h < s.H; ++h) {
                c2.insert(c2.end(), col[static_cast<size_t>(h)].begin(),
                          col[static_cast<size_t>(h)].end());
                r2.insert(r2.end(), rows[static_cast<size_t>(h)].begin(),
                          rows[static_cast<size_t>(h)].end());
                l2.insert(l2.end(), lse[static_cast<size_t>(h)].begin(),
                          lse[static_cast<size_t>(h)].end());
            }
            out.push_back({"colsum", c2});
            out.push_back({"rows", r2});
            out.push_back({"lse", l2});
            return out;
        };
        // The float64 reference. Each output adds the same terms in the same order as the
        // textbook loops (keys in ascending j); only the P.V product runs key-major over the
        // visible keys (an invisible key's probability is exactly 0 and adds nothing), with row
        // pointers: the column-strided loop over every key made this test ~2.5 minutes of the
        // sanitized suite, 4096 x 4096 causal prefill the most.
        c.naive = [=] {
            const int64_t group = s.H / s.G;
            std::vector<float> o(static_cast<size_t>(s.n * s.H * s.d), 0.0f), c2, r2, l2;
            for (int64_t h = 0; h < s.H; ++h) {
                const size_t g = static_cast<size_t>(h / group);
                const int64_t len = s.lens[g];
                const int64_t* pos = (*P)[g].data();
                const float* Kg = (*K)[g].data();
                const float* Vg = (*V)[g].data();
                std::vector<double> cs(static_cast<size_t>(len), 0.5);
                std::vector<float> rh(static_cast<size_t>(s.tail * len));
                for (int64_t i = 0; i < s.n; ++i) {
                    const int64_t qp = (*qpos)[static_cast<size_t>(i)];
                    const float* qi = q->data() + (i * s.H + h) * s.d;
                    std::vector<double> p(static_cast<size_t>(len), 0.0);
                    double mx = -std::numeric_limits<double>::infinity();
                    for (int64_t j = 0; j < len; ++j) {
                        if (pos[j] > qp) continue;
                        const float* kj = Kg + j * s.d;
                        double dot = 0;
                        for (int64_t c3 = 0; c3 < s.d; ++c3)
                            dot += static_cast<double>(qi[c3]) * kj[c3];
                        p[static_cast<size_t>(j)] = dot * scale;
                        mx = std::max(mx, p[static_cast<size_t>(j)]);
                    }
                    double sum = 0;
                    for (int64_t j = 0; j < len; ++j) {
                        const bool vis = pos[j] <= qp;
                        p[static_cast<size_t>(j)] =
                            vis ? std::exp(p[static_cast<size_t>(j)] - mx) : 0.0;
                        sum += p[static_cast<size_t>(j)];
                    }
                    for (int64_t j = 0; j < len; ++j) {
                        if (sum > 0) p[static_cast<size_t>(j)] /= sum;
                        cs[static_cast<size_t>(j)] += p[static_cast<size_t>(j)];
                        if (i >= s.n - s.tail)
                            rh[static_cast<size_t>((i - (s.n - s.tail)) * len + j)] =
                                static_cast<float>(p[static_cast<size_t>(j)]);
                    }
                    std::vector<double> acc(static_cast<size_t>(s.d), 0.0);
                    for (int64_t j = 0; j < len; ++j) {
                        if (pos[j] > qp) continue;
                        const double pj = p[static_cast<size_t>(j)];
                        const float* vj = Vg + j * s.d;
                        for (int64_t c3 = 0; c3 < s.d; ++c3)
                            acc[static_cast<size_t>(c3)] += pj * vj[c3];
                    }
                    for (int64_t c3 = 0; c3 < s.d; ++c3)
                        o[static_cast<size_t>((i * s.H + h) * s.d + c3)] =
                            static_cast<float>(acc[static_cast<size_t>(c3)]);
                    l2.push_back(sum > 0 ? static_cast<float>(mx + std::log(sum))
                                         : -std::numeric_limits<float>::infinity());
                }
                for (double v : cs) c2.push_back(static_cast<float>(v));
                r2.insert(r2.end(), rh.begin(), rh.end());
            }
            // l2 is head-major like the run's output.
            return Outputs{{"out", o}, {"colsum", c2}, {"rows", r2}, {"lse", l2}};
        };
        cases.push_back(c);
    }
}

const std::vector<OpCase>& all_cases() {
    static const std::vector<OpCase> cases = [] {
        std::vector<OpCase> v;
        add_embedding(v);
        add_rmsnorm(v);
        add_rope(v);
        add_elementwise(v);
        add_matmul(v);
        add_attention(v);
        add_fused_cases(v);  // backend_ops_fused_cases.cpp
        return v;
    }();
    return cases;
}

const std::vector<std::string> kOps = {"embedding",    "rmsnorm", "rope",       "silu_mul",
                                       "add",          "matmul",  "attention",  "rope_qk",
                                       "matmul_parts", "swiglu",  "add_rmsnorm"};

bool perf_mode() {
    const char* e = std::getenv("KVSCOPE_OPS_PERF");
    return e && std::string(e) == "1";
}

template <class F>
auto timed(const std::string& what, F&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = f();
    if (perf_mode())
        std::printf("  %-60s %9.3f ms\n", what.c_str(),
                    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                        .count());
    return r;
}

class BackendOps : public ::testing::TestWithParam<std::string> {};

TEST_P(BackendOps, CpuVsNaive) {
    auto cpu = make_cpu_backend(2);
    int n = 0;
    for (const OpCase& c : all_cases()) {
        if (c.op != GetParam() || !c.naive) continue;
        SCOPED_TRACE(c.op + " / " + c.name);
        const Outputs got = timed("cpu   " + c.op + " " + c.name, [&] { return c.run(*cpu); });
        expect_close(got, c.naive(), kCpuVsNaive);
        ++n;
    }
    EXPECT_GT(n, 0) << "no case for op " << GetParam();
    EXPECT_EQ(cpu->memory().in_use, 0) << "a case leaked an activation";
}

TEST_P(BackendOps, CudaVsCpu) {
    const DeviceProbe p = probe_cuda();
    if (!p.available) GTEST_SKIP() << "CUDA cases skipped: " << p.detail;
    auto cpu = make_cpu_backend(2);
    auto dev = make_backend("cuda");
    int n = 0;
    for (const OpCase& c : all_cases()) {
        if (c.op != GetParam()) continue;
        SCOPED_TRACE(c.op + " / " + c.name);
        const Outputs ref = c.run(*cpu);
        c.run(*dev);  // warm-up (first-call setup out of the timing)
        const Outputs got = timed("cuda  " + c.op + " " + c.name, [&] { return c.run(*dev); });
        expect_close(got, ref,
                     tolerance_for(c.op, c.wdt, c.bf16_attention && !cuda_attention_fp32()));
        ++n;
    }
    EXPECT_GT(n, 0);
    EXPECT_EQ(dev->memory().in_use, 0) << "a case leaked device memory";
}

INSTANTIATE_TEST_SUITE_P(Ops, BackendOps, ::testing::ValuesIn(kOps),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// The CUDA attention path is deterministic (no atomics): two runs give identical bits.
TEST(BackendOpsCuda, AttentionStatisticsAreDeterministic) {
    const DeviceProbe p = probe_cuda();
    if (!p.available) GTEST_SKIP() << "CUDA cases skipped: " << p.detail;
    auto dev = make_backend("cuda");
    for (const OpCase& c : all_cases()) {
        if (c.op != "attention") continue;
        SCOPED_TRACE(c.name);
        const Outputs a = c.run(*dev), b = c.run(*dev);
        for (size_t o = 0; o < a.size(); ++o) {
            for (size_t i = 0; i < a[o].second.size(); ++i) {
                if (std::isnan(a[o].second[i]) && std::isnan(b[o].second[i])) continue;
                ASSERT_EQ(a[o].second[i], b[o].second[i]) << a[o].first << " at " << i;
            }
        }
    }
}

// ---- make_backend -------------------------------------------------------------------------------
TEST(MakeBackend, NamesAndRefusals) {
    EXPECT_EQ(make_backend("cpu", 1)->name(), "cpu");
    EXPECT_THROW((void)make_backend("tpu", 1), std::invalid_argument);
    const DeviceProbe p = probe_cuda();
    EXPECT_FALSE(p.detail.empty());
    auto a = make_backend("auto", 1);
    EXPECT_EQ(a->name(), p.available ? "cuda" : "cpu");
    if (!p.available) {
        try {
            (void)make_backend("cuda", 1);
            ADD_FAILURE() << "make_backend(\"cuda\") did not throw without a usable GPU";
        } catch (const std::runtime_error& e) {
            const std::string m = e.what();
            EXPECT_NE(m.find("compute capability 9.0"), std::string::npos) << m;  // what is needed
            EXPECT_NE(m.find("found: " + p.detail), std::string::npos) << m;      // what was found
        }
    }
    EXPECT_EQ(describe_device("cpu").rfind("cpu: ", 0), 0u);
}

#ifdef KVSCOPE_HAVE_CUDA
}  // namespace
}  // namespace kvscope
#include "kernels/cuda/cuda_common.h"
namespace kvscope {
namespace {
// cuBLAS is dlopen'ed on first use; where the toolkit is installed (CI, dev machines) it must load
// and resolve every entry point, GPU or not.
TEST(MakeBackend, CublasLoadsAtRunTime) {
    std::string why;
    const cuda::CublasApi* api = cuda::cublas_api(&why);
    ASSERT_NE(api, nullptr) << why;
    EXPECT_NE(api->gemm_ex, nullptr);
    EXPECT_STREQ(cuda::cublas_status_string(CUBLAS_STATUS_SUCCESS), "success");  // from libcublas
}
#endif

TEST(MakeBackend, CpuBackendCountsItsMemory) {
    auto be = make_cpu_backend(1);
    Tensor t = be->alloc(DType::kF32, {10, 10});
    EXPECT_EQ(be->memory().in_use, 400);
    be->release(t);
    EXPECT_EQ(be->memory().in_use, 0);
    EXPECT_EQ(be->memory().peak, 400);
    EXPECT_GT(be->measure_copy_gbs(1 << 16, 3), 0.0);
}

}  // namespace
}  // namespace kvscope
