#pragma once
// STATUS: stable (additions only from here on)
// Engine: the Llama-family forward pass (one implementation for every architecture; differences
// are data in ModelSpec), driving a Backend, holding the KV cache, computing the statistics that
// policies and probes need, and calling the policy's hooks.
//
// Flow:   Engine e(model, backend, opts);
//         e.set_policy(policy);                 // optional; none = full cache
//         auto logits = e.prefill(prompt_ids);  // stats in e.prefill_stats(); policy compresses
//         for (...) logits = e.decode(next_id); // per-step rows in e.step_rows()
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/model/model.h"
#include "kernels/backend.h"

namespace kvscope {

class KVCache;
namespace cpu {
class ThreadPool;
}
struct Plan;
class Policy;
struct PolicyNeeds;
struct PrefillState;

// What prefill and decode must compute besides logits: the caller's own request
// (EngineOptions::stats) with the policy's PolicyNeeds added by set_policy() through add(). The
// statistics fields mean the same as their PolicyNeeds twins; all_logits and maps are for callers
// only (a policy never reads them).
struct StatsRequest {
    bool colsum = false;        // column sums of the prompt attention, per query head
    int64_t window = 0;         // last `window` query rows of the prompt attention, per query head
    bool key_norms = false;     // L2 norm of every cached (post-RoPE) key, per KV head
    bool step_rows = false;     // each decode step's attention row, per query head
    bool all_logits = false;    // logits of every prompt position (kvscope logits)
    bool query_absmax = false;  // per KV head and channel: max |q| over the prompt rows and the
                                // group's query heads, post-RoPE (MiKV channel balancing)
    bool maps = false;  // every prompt row of every query head, handed to on_prefill_map one layer
                        // at a time and then dropped (only `window` rows are kept)

    // ORs in the statistics a policy needs (window: the larger row count).
    void add(const PolicyNeeds& needs);
};

struct EngineOptions {
    int threads = 0;     // CPU threads (0 = all cores)
    StatsRequest stats;  // what the caller (recorder, CLI) wants on top of the policy
    // Decode steps the host KV cache has room for after the prompt before it must grow (a
    // growth copies every head: one slow step). Set it to the tokens a run will generate.
    int64_t decode_reserve = 1024;
    // Host-side copies and sums of at least this many bytes per layer (the prompt's rows into the
    // cache, prefill key norms) run on a host thread pool; smaller ones inline.
    int64_t host_parallel_min_bytes = int64_t{8} << 20;
};

// Prefill statistics of one layer. Index h is the query head, g the KV head; n = prompt length.
struct LayerPrefillStats {
    std::vector<std::vector<float>> colsum;        // [H][n]   sum over prompt rows of softmax probs
    std::vector<std::vector<float>> window;        // [H][w*n] last w rows, row-major
    int64_t window_rows = 0;                       // w actually computed (min(window, n))
    std::vector<std::vector<float>> key_norm;      // [H_kv][n] ||k_j||_2 of post-RoPE keys
    std::vector<std::vector<float>> control;       // [H_kv][n*(1+g)] raw k[d-1], q_0..q_{g-1}[d-1]
    std::vector<std::vector<float>> query_absmax;  // [H_kv][d] see StatsRequest::query_absmax
};

class Engine {
  public:
    Engine(const Model& model, Backend& backend, EngineOptions opts = {});
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    const ModelSpec& spec() const { return model_.spec; }
    const Model& model() const { return model_; }
    KVCache& cache() { return *cache_; }
    const KVCache& cache() const { return *cache_; }

    // nullptr = full cache. Must be called before prefill(). The engine does not own the policy.
    void set_policy(Policy* policy);
    Policy* policy() const { return policy_; }
    // Decode step index (0 for the first generated token) and next position.
    int64_t step() const { return step_; }
    int64_t position() const { return pos_; }

    // Runs the prompt from an empty cache. Returns the last position's logits [vocab]; with
    // stats.all_logits, all_logits() holds [n, vocab]. Throws InputError on invalid ids.
    std::vector<float> prefill(const std::vector<int32_t>& ids);
    // Feeds one token at the next position and returns its logits [vocab].
    std::vector<float> decode(int32_t id);

    // After prefill() of the full cache (no policy, or one that compressed nothing): a copy of
    // the cache, the statistics and `last_logits` (what prefill() returned), from which resume()
    // decodes under any policy without a second prefill. Throws std::logic_error when the cache
    // no longer holds every prompt token at full precision.
    std::shared_ptr<const PrefillState> snapshot_prefill(std::vector<float> last_logits) const;
    // Starts a sequence from a snapshot instead of prefill(state.prompt_ids): the cache becomes
    // the snapshot's full cache, prefill_stats() its statistics, then the policy compresses as
    // after a prefill (same ScoreView, same plan). Returns the snapshot's last logits. Throws
    // InputError when the policy needs what the snapshot lacks (resume_blocker()).
    std::vector<float> resume(const PrefillState& state);
    // "" when resume(state) can serve `policy` exactly, else the reason it cannot.
    static std::string resume_blocker(const PrefillState& state, const Policy* policy);

    const std::vector<LayerPrefillStats>& prefill_stats() const { return prefill_stats_; }
    const std::vector<float>& all_logits() const { return all_logits_; }
    // The last decode step's attention rows: [L][H][len of that head's cache at that step].
    const std::vector<std::vector<std::vector<float>>>& step_rows() const { return step_rows_; }

    // Called in decode after each layer's attention, before the policy's plan for that layer
    // (layer index), and once after prefill and its compression (-1); lets a recorder observe
    // without the engine knowing about traces.
    std::function<void(int64_t layer)> on_layer_done;
    // Called with every plan the policy returned (after it was applied): budgets and layer notes
    // for the recorder.
    std::function<void(const Plan&)> on_plan;
    // With StatsRequest::maps, called in prefill after each layer's attention with the full
    // prompt attention of that layer: rows[h] is [n * n] (query-major softmax rows of query head
    // h). Valid during the call only: the buffer is reused for the next layer, so memory stays
    // at one layer's maps (H * n * n floats) however many layers the model has.
    std::function<void(int64_t layer, const std::vector<std::vector<float>>& rows)> on_prefill_map;

  private:
    struct Weights;
    struct Scratch;
    std::vector<float> forward(const int32_t* ids, int64_t n, bool is_prefill);
    void attention_layer(int64_t l, int64_t n, bool is_prefill);
    // Policy hooks (engine_policy_hooks.cpp).
    bool wants_prerope() const;
    bool wants_control() const;
    void extract_control(int64_t n);  // DMC decision neuron: record raw values, zero channel d-1
    void zero_control(int64_t n);     // zero channel d-1 of q and k again after RoPE
    void policy_after_prefill();
    bool policy_on_append(int64_t l, int64_t g, const float* k, const float* v, const float* k_pre,
                          const float* q_pre, int64_t pos);
    void policy_after_decode_layer(int64_t l);
    void after_decode_layers();  // observers and policy, per layer, at a decode step's end
    // KVCache::ParallelFor for a copy of `bytes` (engine_attention.cpp): host_parallel() on the
    // pool of the prompt's fill tasks, stats_parallel() on the pool of the statistics-buffer
    // tasks (Scratch::stats_ahead; a ThreadPool takes one caller at a time, and both kinds of
    // task run beside the engine thread).
    std::function<void(int64_t, const std::function<void(int64_t)>&)> host_parallel(int64_t bytes);
    std::function<void(int64_t, const std::function<void(int64_t)>&)> stats_parallel(int64_t bytes);
    std::function<void(int64_t, const std::function<void(int64_t)>&)> pool_parallel(
        std::unique_ptr<cpu::ThreadPool>& pool, int64_t bytes);
    // Zeroed host buffers for a layer's prompt statistics: `count` of `len` floats, each
    // allocated and zeroed by a pool thread when large (engine_attention.cpp).
    void zeroed_buffers(std::vector<std::vector<float>>& bufs, int64_t count, int64_t len);
    // Layer l's prompt-statistics buffers (column sums: H x n; window rows: H x window x n) in
    // prefill_stats_[l], made by Scratch::stats_ahead while the device runs layer l - 1; waits
    // for them and starts layer l + 1's (engine_attention.cpp).
    void prefill_stats_buffers(int64_t l, int64_t n, bool colsum, int64_t window);
    // The pending prompt fill (Scratch::fill_layer): the backend's queued copies delivered
    // (Backend::deliver_copies), then the layer's rows and key norms on a host thread.
    void start_prompt_fill();
    // A call's new keys and values go into the cache as slots now and rows later (the backend
    // reads them from its own memory): plain appends on such a backend (engine_attention.cpp).
    bool rows_later(bool is_prefill) const;
    // prefill_stats_[l].key_norm from the layer's keys k [n, G, d] (engine_attention.cpp).
    void prefill_key_norms(
        int64_t l, int64_t n, const float* k,
        const std::function<void(int64_t, const std::function<void(int64_t)>&)>& parallel);

    const Model& model_;
    Backend& backend_;
    EngineOptions opts_;
    StatsRequest req_;
    Policy* policy_ = nullptr;
    std::unique_ptr<Weights> w_;
    std::unique_ptr<Scratch> s_;
    std::unique_ptr<KVCache> cache_;
    std::vector<float> inv_freq_;
    int64_t pos_ = 0;
    int64_t step_ = 0;
    int64_t prompt_len_ = 0;
    std::vector<int32_t> prompt_ids_;
    std::vector<LayerPrefillStats> prefill_stats_;
    std::vector<float> all_logits_;
    std::vector<std::vector<std::vector<float>>> step_rows_;
    std::vector<float> norms_scratch_;            // key norms for decode-time views
    std::unique_ptr<cpu::ThreadPool> host_pool_;  // large host-side row copies (host_parallel)
    // Prompt statistics' buffers (stats_parallel), used only by Scratch::stats_ahead's tasks.
    std::unique_ptr<cpu::ThreadPool> stats_pool_;
};

}  // namespace kvscope
