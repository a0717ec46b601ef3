#pragma once
// Test harness of the policies-2 tests: a ScoreView built from owned arrays, and a small
// synthetic "engine" (random statistics, a real KVCache, the real policy hooks) for property tests.
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/cache/kv_cache.h"
#include "core/policies/policy.h"
#include "core/policies/score_view.h"

namespace kvscope::test {

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
