#pragma once
// Engine internals shared by its implementation files (not part of the engine's API).
#include <functional>
#include <vector>

#include "core/engine/engine.h"
#include "core/engine/ordered_tasks.h"

namespace kvscope {

struct Engine::Weights {
    struct Layer {
        Tensor attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down;
        Tensor bq, bk, bv, bo, q_norm, k_norm;
        bool has_qkv_bias = false, has_o_bias = false, has_qk_norm = false;
    };
    Tensor embed, final_norm, lm_head;
    std::vector<Layer> layers;
};

// Activations for up to `cap` tokens; regrown when a longer call comes.
struct Engine::Scratch {
    int64_t cap = 0;
    Tensor x, h, q, k, v, att, o, gate, up, act, down, last, logits;
    std::vector<int64_t> positions;
    std::vector<float> k_prerope;  // [n, G, d] pre-RoPE keys (DMC)
    std::vector<float> q_prerope;  // [n, H, d] pre-RoPE queries (DMC)
    std::vector<float> control;    // [n, G, 1 + g] raw channel d-1 of k, then of the group's q
    // Host copies of activations the engine reads (to_host; never a dereference of a backend
    // tensor, whose memory may be on a device). Reused across calls: no per-step allocation.
    std::vector<float> k_host;  // [n, G, d] post-RoPE keys for the cache append (DMC: pre-RoPE
                                // while the decision neuron is extracted)
    std::vector<float> v_host;  // [n, G, d] values for the cache append
    std::vector<float> q_host;  // [n, H, d] queries (query maxima; DMC decision neuron)
    // [L, n, G, d] a decode step's keys and values, arriving by the step's end when the backend
    // keeps new rows on the device (KVCache::append_layer_slots).
    std::vector<float> k_step, v_step;
    // The current layer's first row in k / v: l * n in such a decode step (each layer's rows
    // apart, copied at once after the last layer), else 0.
    int64_t kv_row0 = 0;
    // [H][n * n] one layer's full prefill attention (StatsRequest::maps), reused across layers
    // and freed after the prefill.
    std::vector<std::vector<float>> map_rows;
    // A prompt's keys and values [n, G, d] of layer l in buffer l % 2 when the backend keeps new
    // rows on the device: `fills` copies them into the cache (and takes their key norms) while
    // the device runs the next layer. Declared after the buffers, so that it waits for its tasks
    // before they go.
    std::vector<float> k_fill[2], v_fill[2];
    OrderedTasks fills;
    // The fill of layer fill_layer (-1: none), started once that layer's MLP is queued and its
    // copies are delivered (Engine::start_prompt_fill): the device runs the MLP meanwhile.
    int64_t fill_layer = -1, fill_n = 0;
    std::function<void(int64_t, const std::function<void(int64_t)>&)> fill_parallel;
    // A prompt's statistics buffers, a layer ahead (Engine::prefill_stats_buffers): task
    // ahead_task makes layer ahead_layer's (-1: none started in this forward call).
    OrderedTasks stats_ahead;
    int64_t ahead_layer = -1, ahead_task = -1;
};

}  // namespace kvscope
