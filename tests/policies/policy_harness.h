#pragma once
// Test harness of the policy tests (tests/policies): statistics owned by the test, viewed as a
// ScoreView (what the engine or a trace reader would fill), small helpers to read plans and
// caches, and a small synthetic "engine" (random statistics, a real KVCache, the real policy
// hooks) for property tests. Caches filled with synthetic tokens: tests/cache/cache_harness.h.
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "core/cache/kv_cache.h"
#include "core/policies/plan.h"
#include "core/policies/policy.h"
#include "core/policies/score_view.h"
#include "tests/cache/cache_harness.h"

namespace kvscope::test {

// Prompt statistics of a model with L layers, H query heads, Hkv KV heads, N prompt tokens, the
// last w attention rows: dense arrays the hand-computed tests fill directly.
struct OwnedStats {
    int64_t L = 0, H = 0, Hkv = 0, d = 4, N = 0, w = 0;
    std::vector<std::vector<std::vector<float>>> colsum;    // [L][H][N]
    std::vector<std::vector<std::vector<float>>> window;    // [L][H][w*N]
    std::vector<std::vector<std::vector<float>>> key_norm;  // [L][Hkv][N]
    std::vector<int64_t> positions;                         // [N] = 0..N-1

    OwnedStats(int64_t layers, int64_t heads, int64_t kv_heads, int64_t n, int64_t window_rows);

    ModelDims dims() const { return ModelDims{L, H, Hkv, d}; }

    // Random causal softmax-like rows: colsum and window consistent with one attention matrix.
    void randomize(uint32_t seed);

    // Spans into this object: keep it alive while the view is used.
    ScoreView view(bool with_colsum = true, bool with_window = true, bool with_norms = true) const;
};

// A ScoreView with its shape filled and no layers yet.
ScoreView empty_view(const ModelDims& dims, int64_t prompt_len, int64_t step);

// A policy from the registry with a budget of `tokens` per (layer, KV head).
std::unique_ptr<Policy> make_with_tokens(const std::string& name, int64_t tokens,
                                         const std::vector<std::string>& params = {});

// kept slot indices of (layer, head) after the plan, for a head of n slots (all when no keep).
std::vector<int64_t> kept_of(const Plan& p, int64_t layer, int64_t head, int64_t n);

// The plan's note `key` for `layer`, or nullptr.
const LayerNote* find_note(const Plan& p, int64_t layer, const std::string& key);

// Per-slot bit widths of one cache head (KVCache::k_bits / v_bits), as a comparable vector.
std::vector<int> bits_of(std::span<const int> b);

// One (layer, KV head) worth of statistics; empty members are "not computed".
struct HeadData {
    std::vector<int64_t> pos;
    std::vector<std::vector<float>> colsum;  // [g][n]
    std::vector<std::vector<float>> window;  // [g][w * n]
    int64_t window_rows = 0;
    std::vector<std::vector<float>> step_row;  // [g][n]
    std::vector<float> keys;                   // [n * d]
    std::vector<float> keys_prerope;           // [n * d]
    std::vector<float> control;                // [n * (1 + g)]
    std::vector<float> query_absmax;           // [d]
};

struct ViewData {
    int64_t n_layers = 1, n_heads = 1, n_kv_heads = 1, head_dim = 4, prompt_len = 0, step = -1;
    std::vector<int64_t> layer_ids;            // model layer of each entry of heads
    std::vector<std::vector<HeadData>> heads;  // [entries][n_kv_heads]

    // Spans into this object: keep it alive while the view is used.
    ScoreView view() const;
};

ModelDims dims_of(const ViewData& v);

// Positions 0..n-1.
std::vector<int64_t> iota_positions(int64_t n);

// Slot positions of one cache head.
std::vector<int64_t> positions_of(const KVCache& c, int64_t layer, int64_t head);

// Memory of the cache recomputed independently from the per-slot bits (per-token quantisation
// only: d * bits / 8 + ceil(d / group) * 4 bytes per quantised part, d * element_bytes for a
// full-precision one). Summed per head with the cache's rounding up to whole bytes.
int64_t expected_bytes_per_token_quant(const KVCache& c, int64_t group);

// A synthetic run: random keys/values, random attention statistics shaped like the engine's,
// the real cache and the policy's hooks in engine order.
class SyntheticRun {
  public:
    SyntheticRun(const ModelDims& dims, int64_t prompt_len, uint32_t seed, Policy& policy);

    void prefill();
    void decode_step();
    KVCache& cache() { return *cache_; }
    const std::vector<Plan>& plans() const { return plans_; }
    int64_t next_position() const { return pos_; }

  private:
    std::vector<float> rand_vec(int64_t n, float scale);
    std::vector<float> rand_positive(int64_t n);

    ModelDims dims_;
    int64_t prompt_len_;
    std::mt19937 rng_;
    Policy& policy_;
    std::unique_ptr<KVCache> cache_;
    int64_t pos_ = 0;
    int64_t step_ = 0;
    std::vector<Plan> plans_;
};

}  // namespace kvscope::test
