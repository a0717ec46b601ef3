#pragma once
// STATUS: stable (additions only from here on)
// ScoreView: the statistics a policy decides from. Plain data: the engine fills it with spans over
// its own buffers; a test or a trace reader fills it by hand. Nothing here owns memory.
//
// For one (layer, KV head) with n = positions.size() cached slots and g = H / H_kv query heads
// (query head q of the group is global head kv_head * g + q, the HF repeat_kv convention):
//   colsum[q]     [n]        prefill: column sums of the prompt attention (sum over all prompt
//                            query rows of the softmax probabilities received by slot j)
//   window[q]     [w * n]    prefill: the last w prompt query rows, row-major (row i = query
//                            N - w + i); masked (future) entries are 0
//   last_row[q]   [n]        prefill: the last prompt query's row (= window row w-1 when w > 0)
//   step_row[q]   [n]        decode: this step's attention row of the new token over the cache
//                            (the new token included, it is the last slot)
//   key_norms     [n]        ||k_j||_2 of the cached post-RoPE keys
//   keys          [n * d]    cached post-RoPE keys (cosine similarities on demand)
//   keys_prerope  [n * d]    cached pre-RoPE keys (when the cache stores them)
//   queries       [g * d]    decode: the new token's pre-RoPE queries of the group (DMC)
// Empty spans mean "not computed" (the policy did not ask for it).
#include <cstdint>
#include <span>
#include <vector>

namespace kvscope {

struct HeadScores {
    int64_t layer = 0;
    int64_t kv_head = 0;
    std::span<const int64_t> positions;
    std::vector<std::span<const float>> colsum;
    std::vector<std::span<const float>> window;
    int64_t window_rows = 0;
    std::vector<std::span<const float>> last_row;
    std::vector<std::span<const float>> step_row;
    std::span<const float> key_norms;
    std::span<const float> keys;
    std::span<const float> keys_prerope;
    std::span<const float> queries;
    // prefill, when needs().control_neuron: [n * (1 + g)] per slot (token-major) the RAW value of
    // channel d-1 of the token's pre-RoPE key, then of its g pre-RoPE queries (DMC)
    std::span<const float> control;
    // prefill, when needs().query_absmax: [d] max over the prompt tokens and the group's query
    // heads of |q_c| of the post-RoPE queries (MiKV key/query channel balancing)
    std::span<const float> query_absmax;

    int64_t n() const { return static_cast<int64_t>(positions.size()); }
    int64_t group() const;  // number of query heads with any per-query-head data
    // The last-query row of query head q: last_row[q] if given, else window row w-1; empty if
    // neither.
    std::span<const float> last_query_row(int64_t q) const;
};

struct LayerScores {
    int64_t layer = 0;
    std::vector<HeadScores> heads;  // [n_kv_heads]
};

struct ScoreView {
    int64_t n_layers = 0;  // of the model
    int64_t n_heads = 0;   // query heads
    int64_t n_kv_heads = 0;
    int64_t head_dim = 0;
    int64_t prompt_len = 0;
    int64_t step = -1;                // -1 = after prefill, 0.. = decode step
    std::vector<LayerScores> layers;  // after prefill: every layer; in decode: the current one

    int64_t group() const { return n_kv_heads > 0 ? n_heads / n_kv_heads : 1; }
    // The entry for model layer `layer`; throws std::out_of_range when absent.
    const LayerScores& layer(int64_t layer) const;
    // Checks shapes (sizes against positions, g, head_dim); throws std::invalid_argument with
    // a description. Policies call it on entry.
    void check() const;
};

}  // namespace kvscope
