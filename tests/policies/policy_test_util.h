#pragma once
// Test helpers: statistics owned by the test, viewed as a ScoreView (what the engine or a trace
// reader would fill), and a KV cache filled with synthetic keys.
#include <cstdint>
#include <random>
#include <vector>

#include "core/cache/kv_cache.h"
#include "core/policies/policy.h"
#include "core/policies/score_view.h"

namespace kvscope::test {

// Prompt statistics of a model with L layers, H query heads, Hkv KV heads, N prompt tokens.
struct OwnedStats {
    int64_t L = 0, H = 0, Hkv = 0, d = 4, N = 0, w = 0;
    std::vector<std::vector<std::vector<float>>> colsum;    // [L][H][N]
    std::vector<std::vector<std::vector<float>>> window;    // [L][H][w*N]
    std::vector<std::vector<std::vector<float>>> key_norm;  // [L][Hkv][N]
    std::vector<int64_t> positions;                         // [N] = 0..N-1

    OwnedStats(int64_t layers, int64_t heads, int64_t kv_heads, int64_t n, int64_t window_rows)
        : L(layers), H(heads), Hkv(kv_heads), N(n), w(window_rows) {
        colsum.assign(L, std::vector<std::vector<float>>(H, std::vector<float>(N, 0.0f)));
        window.assign(L, std::vector<std::vector<float>>(H, std::vector<float>(w * N, 0.0f)));
        key_norm.assign(L, std::vector<std::vector<float>>(Hkv, std::vector<float>(N, 1.0f)));
        for (int64_t i = 0; i < N; ++i) positions.push_back(i);
    }

    ModelDims dims() const { return ModelDims{L, H, Hkv, d}; }

    // Random causal softmax-like rows: colsum and window consistent with one attention matrix.
    void randomize(uint32_t seed) {
        std::mt19937 rng(seed);
        std::uniform_real_distribution<float> u(0.0f, 1.0f);
        for (int64_t l = 0; l < L; ++l)
            for (int64_t h = 0; h < H; ++h) {
                std::fill(colsum[l][h].begin(), colsum[l][h].end(), 0.0f);
                for (int64_t i = 0; i < N; ++i) {
                    std::vector<float> row(N, 0.0f);
                    float s = 0;
                    for (int64_t j = 0; j <= i; ++j) s += row[j] = u(rng) * u(rng);
                    for (int64_t j = 0; j <= i; ++j) {
                        row[j] /= s;
                        colsum[l][h][j] += row[j];
                    }
                    if (i >= N - w)
                        std::copy(row.begin(), row.end(), window[l][h].begin() + (i - (N - w)) * N);
                }
            }
        for (auto& layer : key_norm)
            for (auto& head : layer)
                for (float& x : head) x = 0.5f + u(rng);
    }

    ScoreView view(bool with_colsum = true, bool with_window = true, bool with_norms = true) const {
        ScoreView v;
        v.n_layers = L;
        v.n_heads = H;
        v.n_kv_heads = Hkv;
        v.head_dim = d;
        v.prompt_len = N;
        v.step = -1;
        const int64_t g = H / Hkv;
        for (int64_t l = 0; l < L; ++l) {
            LayerScores ls;
            ls.layer = l;
            for (int64_t kv = 0; kv < Hkv; ++kv) {
                HeadScores hs;
                hs.layer = l;
                hs.kv_head = kv;
                hs.positions = positions;
                for (int64_t q = 0; q < g; ++q) {
                    if (with_colsum) hs.colsum.push_back(colsum[l][kv * g + q]);
                    if (with_window && w > 0) hs.window.push_back(window[l][kv * g + q]);
                }
                hs.window_rows = with_window ? w : 0;
                if (with_norms) hs.key_norms = key_norm[l][kv];
                ls.heads.push_back(std::move(hs));
            }
            v.layers.push_back(std::move(ls));
        }
        return v;
    }
};

// kept slot indices of (layer, head) after the plan, for a head of n slots (all when no keep).
inline std::vector<int64_t> kept_of(const Plan& p, int64_t layer, int64_t head, int64_t n) {
    const HeadPlan* hp = p.find(layer, head);
    if (hp && hp->keep) return *hp->keep;
    std::vector<int64_t> all;
    for (int64_t i = 0; i < n; ++i) all.push_back(i);
    return all;
}

// A cache with `n` tokens (positions 0..n-1) in every (layer, head); key channel c of token t is
// a deterministic function so tests can recognise tokens after eviction.
inline KVCache make_filled_cache(int64_t L, int64_t Hkv, int64_t d, int64_t n, int elem_bytes) {
    KVCache c(L, Hkv, d, elem_bytes);
    std::vector<float> k(d), v(d);
    for (int64_t l = 0; l < L; ++l)
        for (int64_t h = 0; h < Hkv; ++h)
            for (int64_t t = 0; t < n; ++t) {
                for (int64_t i = 0; i < d; ++i) {
                    k[i] = static_cast<float>(t) + 0.01f * static_cast<float>(i);
                    v[i] = -static_cast<float>(t) - 0.01f * static_cast<float>(i);
                }
                c.append(l, h, k.data(), v.data(), t);
            }
    return c;
}

}  // namespace kvscope::test
