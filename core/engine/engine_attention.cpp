// The engine's attention step and its meeting point with the KV cache and the policy:
//   prefill: append the prompt's keys/values, attend (collecting column sums / window rows /
//            key norms as requested), and after the last layer let the policy compress;
//   decode:  ask the policy whether the new token is appended or merged (DMC), attend over the
//            cache (collecting this step's rows), then let the policy evict / merge / quantise.
#include <algorithm>
#include <cmath>
#include <optional>
#include <thread>
#include <vector>

#include "core/cache/kv_cache.h"
#include "core/engine/engine.h"
#include "core/engine/engine_cache_bridge.h"
#include "core/engine/engine_internal.h"
#include "core/policies/policy.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/op_profile.h"

namespace kvscope {

// Large row copies (a prompt's keys and values into fresh host pages: 64 MB per layer for an 8B
// model at 8k tokens) go through a host thread pool; small ones (decode, the demo model) run
// inline, where waking threads would cost more than the copy.
std::function<void(int64_t, const std::function<void(int64_t)>&)> Engine::host_parallel(
    int64_t bytes) {
    return pool_parallel(host_pool_, bytes);
}

std::function<void(int64_t, const std::function<void(int64_t)>&)> Engine::stats_parallel(
    int64_t bytes) {
    return pool_parallel(stats_pool_, bytes);
}

std::function<void(int64_t, const std::function<void(int64_t)>&)> Engine::pool_parallel(
    std::unique_ptr<cpu::ThreadPool>& pool, int64_t bytes) {
    if (bytes < opts_.host_parallel_min_bytes) return {};
    if (!pool) {
        const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
        pool =
            std::make_unique<cpu::ThreadPool>(std::min(opts_.threads > 0 ? opts_.threads : hw, 16));
    }
    return [p = pool.get()](int64_t tasks, const std::function<void(int64_t)>& task) {
        p->parallel_for(tasks, [&](int64_t b, int64_t e) {
            for (int64_t t = b; t < e; ++t) task(t);
        });
    };
}

// The window rows of a recorded 32k prompt are 32 heads x 32 rows x 32k keys = 134 MB per layer
// (4.3 GB for the 8B shape), fresh memory each prefill: one thread's first touch of it was the
// largest host bucket of that prefill on the H100 host (2.6 s of 10.7 s, "host.attention_args",
// bench/RESULTS.md, fifth run). Pool threads allocate and zero a head each.
void Engine::zeroed_buffers(std::vector<std::vector<float>>& bufs, int64_t count, int64_t len) {
    bufs.resize(static_cast<size_t>(count));
    const auto zero = [&](int64_t i) {
        bufs[static_cast<size_t>(i)].assign(static_cast<size_t>(len), 0.0f);
    };
    if (auto parallel = stats_parallel(count * len * static_cast<int64_t>(sizeof(float))))
        parallel(count, zero);
    else
        for (int64_t i = 0; i < count; ++i) zero(i);
}

// Zeroing 134 MB of window rows per layer (8B shape, 32k, recorded) on the engine thread kept
// the device idle between a layer's projections and its attention ("host.attention_args",
// 809 ms of a 6.3 s prefill, bench/RESULTS.md, seventh run): layer l + 1's buffers are made on
// a background thread while the device runs layer l. The tasks run one at a time and are the
// only users of stats_pool_; each touches only its own layer's LayerPrefillStats.
void Engine::prefill_stats_buffers(int64_t l, int64_t n, bool colsum, int64_t window) {
    Scratch& s = *s_;
    const int64_t H = spec().n_heads;
    auto start = [&](int64_t layer) {
        LayerPrefillStats* ps = &prefill_stats_[static_cast<size_t>(layer)];
        s.ahead_task = s.stats_ahead.start([this, ps, H, n, colsum, window] {
            if (colsum) zeroed_buffers(ps->colsum, H, n);
            if (window > 0) {
                ps->window_rows = window;
                zeroed_buffers(ps->window, H, window * n);
            }
        });
        s.ahead_layer = layer;
    };
    if (s.ahead_layer != l) start(l);
    s.stats_ahead.wait(s.ahead_task);  // rethrows the task's failure (bad_alloc)
    if (l + 1 < spec().n_layers) start(l + 1);
}

bool Engine::rows_later(bool is_prefill) const {
    const bool plain_appends = is_prefill || !policy_ || !policy_->needs().append_decisions;
    return plain_appends && !cache_->store_prerope() && backend_.new_rows_stay_on_device();
}

void Engine::attention_layer(int64_t l, int64_t n, bool is_prefill) {
    const ModelSpec& sp = spec();
    const int64_t G = sp.n_kv_heads, H = sp.n_heads, d = sp.head_dim;
    Scratch& s = *s_;
    const bool have_prerope = wants_prerope();
    const int64_t kv_off = s.kv_row0 * G * d;  // this layer's rows (Scratch::kv_row0)
    const Tensor k_dev = make_tensor_view(static_cast<float*>(s.k.data) + kv_off, DType::kF32,
                                          {n, G, d}, s.k.device);
    const Tensor v_dev = make_tensor_view(static_cast<float*>(s.v.data) + kv_off, DType::kF32,
                                          {n, G, d}, s.v.device);
    // The prompt, and decode tokens a policy takes no decision on, go in as plain appends (DMC
    // may merge a decode token instead). A policy that evicts in decode does so after the step's
    // last layer (after_decode_layers), so its tokens are plain appends too.
    const bool plain_appends = is_prefill || !policy_ || !policy_->needs().append_decisions;
    // Appends on a backend that reads new rows from its own memory: the slots go in now and
    // their rows later, so the layer never waits for the host's copy. Decode: at the step's end
    // (after_decode_layers; Engine::forward copies every layer's rows at once). The prompt: on a
    // host thread while the device runs the next layers (Scratch::fills), the keys and values in
    // one of two buffers, reused two layers on.
    const bool rows_later = this->rows_later(is_prefill);
    const bool fill_behind = rows_later && is_prefill;
    std::vector<float>* fill_k = nullptr;
    std::vector<float>* fill_v = nullptr;
    if (fill_behind) {
        {
            prof::Scope wait("host.fill_wait");
            s.fills.wait(s.fills.size() - 2);  // the task that read this buffer two layers ago
        }
        fill_k = &s.k_fill[l % 2];
        fill_v = &s.v_fill[l % 2];
        fill_k->resize(static_cast<size_t>(n * G * d));
        fill_v->resize(static_cast<size_t>(n * G * d));
        // Both arrive when the layer's copies are delivered (start_prompt_fill): the device goes
        // on to the attention meanwhile instead of idling while the host waits for the copy and
        // appends the slots.
        backend_.to_host_later(k_dev, fill_k->data());
        backend_.to_host_later(v_dev, fill_v->data());
    } else if (!rows_later) {  // (decode rows later: copied after the step's last layer)
        // The new keys/values on the host (the cache is host memory; backend tensors may not be).
        s.k_host.resize(static_cast<size_t>(n * G * d));
        s.v_host.resize(static_cast<size_t>(n * G * d));
        backend_.to_host_later(k_dev, s.k_host.data());  // [n, G, d] post-RoPE; with V's copy
        backend_.to_host(v_dev, s.v_host.data());
    }
    const float* k = s.k_host.data();
    const float* v = s.v_host.data();

    // 1. New keys/values into the cache (the policy may merge a decode token instead: DMC).
    std::optional<prof::Scope> host(std::in_place, "host.cache_append");
    if (rows_later)
        cache_->append_layer_slots(l, s.positions.data(), n);
    else if (plain_appends)  // the prompt: one growth per head, heads copied in parallel
        cache_->append_layer(l, k, v, s.positions.data(), n,
                             cache_->store_prerope() && have_prerope ? s.k_prerope.data() : nullptr,
                             host_parallel(n * G * d * static_cast<int64_t>(sizeof(float))));
    for (int64_t g = 0; g < G && !plain_appends; ++g) {
        for (int64_t i = 0; i < n; ++i) {
            const float* ki = k + (i * G + g) * d;
            const float* vi = v + (i * G + g) * d;
            const float* kp = have_prerope ? s.k_prerope.data() + (i * G + g) * d : nullptr;
            const int64_t pos = s.positions[static_cast<size_t>(i)];
            const float* qp =
                have_prerope ? s.q_prerope.data() + (i * H + g * (H / G)) * d : nullptr;
            policy_on_append(l, g, ki, vi, kp, qp, pos);  // appends or merges (DMC)
        }
    }

    // 2. Attention over what the cache now holds, with the statistics asked for.
    host->next("host.attention_args");
    std::vector<KVHeadView> views(static_cast<size_t>(G));
    for (int64_t g = 0; g < G; ++g) views[static_cast<size_t>(g)] = head_view(*cache_, l, g);
    AttentionStats stats;
    AttentionStats* pstats = nullptr;
    const bool full_rows = is_prefill && req_.maps && on_prefill_map;
    if (is_prefill && (req_.colsum || req_.window > 0 || full_rows)) {
        LayerPrefillStats& ps = prefill_stats_[static_cast<size_t>(l)];
        pstats = &stats;
        // Read after the prompt (policy_after_prefill, observers), from buffers that live until
        // then: delivered with the layer's rows (start_prompt_fill) or at a later sync. The
        // full maps are read below, at once.
        stats.deferred = !full_rows;
        prefill_stats_buffers(
            l, n, req_.colsum,
            !full_rows && req_.window > 0 ? std::min<int64_t>(req_.window, n) : 0);
        if (req_.colsum)
            for (auto& c : ps.colsum) stats.colsum.push_back(c.data());
        if (full_rows) {  // every row into the reused map buffer; the window is cut from it
            s.map_rows.resize(static_cast<size_t>(H));
            for (auto& m : s.map_rows) {
                m.resize(static_cast<size_t>(n * n));
                stats.rows.push_back(m.data());
            }
            stats.n_rows_tail = n;
        } else if (req_.window > 0) {
            for (auto& w : ps.window) stats.rows.push_back(w.data());
            stats.n_rows_tail = ps.window_rows;
        }
    } else if (!is_prefill && req_.step_rows) {
        if (step_rows_.size() != static_cast<size_t>(sp.n_layers))
            step_rows_.assign(static_cast<size_t>(sp.n_layers), {});
        auto& rows = step_rows_[static_cast<size_t>(l)];
        rows.assign(static_cast<size_t>(H), {});
        for (int64_t h = 0; h < H; ++h) {
            rows[static_cast<size_t>(h)].assign(
                static_cast<size_t>(views[static_cast<size_t>(h / (H / G))].len), 0.0f);
            stats.rows.push_back(rows[static_cast<size_t>(h)].data());
        }
        stats.n_rows_tail = 1;
        stats.deferred = true;  // read after the step's last layer (Engine::forward)
        pstats = &stats;
    }
    AttentionArgs args;
    Tensor q3 = make_tensor_view(s.q.data, DType::kF32, {n, H, d}, s.q.device);
    Tensor out = make_tensor_view(s.att.data, DType::kF32, {n, H, d}, s.att.device);
    args.q = &q3;
    args.q_pos = s.positions.data();
    args.kv = views.data();
    args.n_kv_heads = G;
    args.scale = 1.0f / std::sqrt(static_cast<float>(d));
    args.out = &out;
    args.stats = pstats;
    // Every head's last n slots are these rows when they went in through append_layer above.
    if (plain_appends) {
        args.new_k = &k_dev;
        args.new_v = &v_dev;
    }
    host.reset();  // the backend's own op buckets take over
    backend_.attention(args);
    if (full_rows) {
        on_prefill_map(l, s.map_rows);
        LayerPrefillStats& ps = prefill_stats_[static_cast<size_t>(l)];
        ps.window_rows = std::min<int64_t>(req_.window, n);
        ps.window.assign(ps.window_rows > 0 ? static_cast<size_t>(H) : 0, {});
        for (int64_t h = 0; h < H && ps.window_rows > 0; ++h) {
            const auto& m = s.map_rows[static_cast<size_t>(h)];
            ps.window[static_cast<size_t>(h)].assign(m.end() - ps.window_rows * n, m.end());
        }
    }

    if (is_prefill && wants_control()) {
        // Per KV head, token-major [n, 1 + g] of the raw decision-neuron values (HeadScores).
        LayerPrefillStats& ps = prefill_stats_[static_cast<size_t>(l)];
        const int64_t c = 1 + H / G;
        ps.control.assign(static_cast<size_t>(G), std::vector<float>(static_cast<size_t>(n * c)));
        for (int64_t i = 0; i < n; ++i)
            for (int64_t g = 0; g < G; ++g)
                std::copy_n(s.control.data() + (i * G + g) * c, c,
                            ps.control[static_cast<size_t>(g)].data() + i * c);
    }
    if (is_prefill && req_.query_absmax) {
        LayerPrefillStats& ps = prefill_stats_[static_cast<size_t>(l)];
        std::vector<float>& qh = s.q_host;
        qh.resize(static_cast<size_t>(n * H * d));
        backend_.to_host(q3, qh.data());  // [n, H, d] post-RoPE
        ps.query_absmax.assign(static_cast<size_t>(G),
                               std::vector<float>(static_cast<size_t>(d), 0.0f));
        for (int64_t i = 0; i < n; ++i)
            for (int64_t h = 0; h < H; ++h) {
                float* m = ps.query_absmax[static_cast<size_t>(h / (H / G))].data();
                const float* q = qh.data() + (i * H + h) * d;
                for (int64_t c = 0; c < d; ++c) m[c] = std::max(m[c], std::fabs(q[c]));
            }
    }

    if (fill_behind) {
        // Rows, then key norms, behind the device, once the layer's MLP is queued
        // (start_prompt_fill); host_parallel() makes its pool here, on this thread.
        s.fill_parallel = host_parallel(n * G * d * static_cast<int64_t>(sizeof(float)));
        s.fill_layer = l;
        s.fill_n = n;
    } else if (is_prefill && req_.key_norms) {
        prefill_key_norms(l, n, k, host_parallel(n * G * d * static_cast<int64_t>(sizeof(float))));
    }
}

// Layer l's keys and values (and its deferred statistics) come back while the device runs the
// layer's MLP, queued before this is called: deliver_copies() waits only for the copies, where a
// synchronisation had the device idle through every layer's unpacks. The buffers stay untouched
// until the task is waited for (attention_layer, two layers on; Engine::forward before it
// returns).
void Engine::start_prompt_fill() {
    Scratch& s = *s_;
    if (s.fill_layer < 0) return;
    const int64_t l = s.fill_layer, n = s.fill_n;
    s.fill_layer = -1;
    backend_.deliver_copies();
    const float* fk = s.k_fill[l % 2].data();
    const float* fv = s.v_fill[l % 2].data();
    const bool norms = req_.key_norms;
    auto parallel = s.fill_parallel;
    s.fills.start([this, l, n, fk, fv, parallel, norms] {
        cache_->fill_pending_rows(l, fk, fv, parallel);
        if (norms) prefill_key_norms(l, n, fk, parallel);
    });
}

// Key norms of the prompt's keys: the cache's rows of this layer are exactly these.
void Engine::prefill_key_norms(
    int64_t l, int64_t n, const float* k,
    const std::function<void(int64_t, const std::function<void(int64_t)>&)>& parallel) {
    const ModelSpec& sp = spec();
    const int64_t G = sp.n_kv_heads, d = sp.head_dim;
    LayerPrefillStats& ps = prefill_stats_[static_cast<size_t>(l)];
    ps.key_norm.assign(static_cast<size_t>(G), std::vector<float>(static_cast<size_t>(n), 0.0f));
    // Heads in parallel when large (8B at 32k: 33 M multiply-adds per layer in double).
    auto head_norms = [&](int64_t g) {
        for (int64_t j = 0; j < n; ++j) {
            const float* kj = k + (j * G + g) * d;
            double ss = 0;
            for (int64_t c = 0; c < d; ++c) ss += static_cast<double>(kj[c]) * kj[c];
            ps.key_norm[static_cast<size_t>(g)][static_cast<size_t>(j)] =
                static_cast<float>(std::sqrt(ss));
        }
    };
    if (parallel)
        parallel(G, head_norms);
    else
        for (int64_t g = 0; g < G; ++g) head_norms(g);
}

}  // namespace kvscope
