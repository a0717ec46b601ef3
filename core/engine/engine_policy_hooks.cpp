// Where the engine hands its statistics to the policy (as a ScoreView over its own buffers and
// the cache's arrays) and applies the plans it gets back.
#include <algorithm>
#include <cmath>
#include <span>

#include "core/cache/kv_cache.h"
#include "core/engine/engine.h"
#include "core/engine/engine_internal.h"
#include "core/engine/prefill_view.h"
#include "core/policies/plan.h"
#include "core/policies/policy.h"

namespace kvscope {
namespace {

ScoreView base_view(const ModelSpec& sp, int64_t prompt_len, int64_t step) {
    ScoreView view;
    view.n_layers = sp.n_layers;
    view.n_heads = sp.n_heads;
    view.n_kv_heads = sp.n_kv_heads;
    view.head_dim = sp.head_dim;
    view.prompt_len = prompt_len;
    view.step = step;
    return view;
}

// One head's entry with what the cache itself holds: its positions and, when the policy asks,
// views of its keys [n * d] (post-RoPE, and pre-RoPE when the cache stores them). Prefill and
// decode views both start from it.
HeadScores cache_head_scores(const KVCache& cache, int64_t l, int64_t kv, int64_t d,
                             const PolicyNeeds& nd) {
    HeadScores hs;
    hs.layer = l;
    hs.kv_head = kv;
    hs.positions = cache.positions(l, kv);
    const size_t nd_elems = hs.positions.size() * static_cast<size_t>(d);
    if (nd.keys) hs.keys = std::span<const float>(cache.k(l, kv), nd_elems);
    if (nd.prerope_keys && cache.k_prerope(l, kv))
        hs.keys_prerope = std::span<const float>(cache.k_prerope(l, kv), nd_elems);
    return hs;
}

}  // namespace

bool Engine::wants_prerope() const {
    if (!policy_) return false;
    const PolicyNeeds nd = policy_->needs();
    return nd.prerope_keys || nd.queries;
}

bool Engine::wants_control() const {
    return policy_ && policy_->needs().control_neuron;
}

void Engine::extract_control(int64_t n) {
    // DMC: channel d-1 of the pre-RoPE k (and of the group's q) is the decision neuron. Record
    // its raw value per token and KV head, then zero it so attention never sees it. The
    // activations go through host copies (to_host / from_host): they may live on a device.
    const ModelSpec& sp = spec();
    const int64_t G = sp.n_kv_heads, H = sp.n_heads, g = sp.group_size(), d = sp.head_dim;
    Tensor kt = make_tensor_view(s_->k.data, DType::kF32, {n, G, d}, s_->k.device);
    Tensor qt = make_tensor_view(s_->q.data, DType::kF32, {n, H, d}, s_->q.device);
    s_->k_host.resize(static_cast<size_t>(n * G * d));
    s_->q_host.resize(static_cast<size_t>(n * H * d));
    backend_.to_host(kt, s_->k_host.data());
    backend_.to_host(qt, s_->q_host.data());
    float* k = s_->k_host.data();  // [n, G, d]
    float* q = s_->q_host.data();  // [n, H, d]
    s_->control.assign(static_cast<size_t>(n * G * (1 + g)), 0.0f);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t kv = 0; kv < G; ++kv) {
            float* c = s_->control.data() + (i * G + kv) * (1 + g);
            float& kl = k[(i * G + kv) * d + d - 1];
            c[0] = kl;
            kl = 0.0f;
            for (int64_t j = 0; j < g; ++j) {
                float& ql = q[(i * H + kv * g + j) * d + d - 1];
                c[1 + j] = ql;
                ql = 0.0f;
            }
        }
    backend_.from_host(kt, k);
    backend_.from_host(qt, q);
}

void Engine::zero_control(int64_t n) {
    const ModelSpec& sp = spec();
    const int64_t G = sp.n_kv_heads, H = sp.n_heads, d = sp.head_dim;
    Tensor kt = make_tensor_view(s_->k.data, DType::kF32, {n, G, d}, s_->k.device);
    Tensor qt = make_tensor_view(s_->q.data, DType::kF32, {n, H, d}, s_->q.device);
    s_->k_host.resize(static_cast<size_t>(n * G * d));
    s_->q_host.resize(static_cast<size_t>(n * H * d));
    backend_.to_host(kt, s_->k_host.data());
    backend_.to_host(qt, s_->q_host.data());
    float* k = s_->k_host.data();
    float* q = s_->q_host.data();
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t kv = 0; kv < G; ++kv) k[(i * G + kv) * d + d - 1] = 0.0f;
        for (int64_t h = 0; h < H; ++h) q[(i * H + h) * d + d - 1] = 0.0f;
    }
    backend_.from_host(kt, k);
    backend_.from_host(qt, q);
}

ScoreView make_prefill_view(const ModelSpec& sp, int64_t prompt_len,
                            const std::vector<LayerPrefillStats>& stats, const KVCache& cache,
                            const PolicyNeeds& nd) {
    const int64_t G = sp.n_kv_heads, g = sp.group_size(), d = sp.head_dim;
    ScoreView view = base_view(sp, prompt_len, -1);
    for (int64_t l = 0; l < sp.n_layers; ++l) {
        const LayerPrefillStats& ps = stats[static_cast<size_t>(l)];
        LayerScores ls;
        ls.layer = l;
        for (int64_t kv = 0; kv < G; ++kv) {
            HeadScores hs = cache_head_scores(cache, l, kv, d, nd);
            const size_t n = hs.positions.size();
            // The engine may hold more window rows than the policy asked for (a recorder or a
            // what-if snapshot wants more): the policy sees only its own last w rows.
            const int64_t w = std::min(nd.window_rows(), ps.window_rows);
            for (int64_t q = 0; q < g; ++q) {
                const size_t h = static_cast<size_t>(kv * g + q);
                if (!ps.colsum.empty()) hs.colsum.emplace_back(ps.colsum[h]);
                if (w > 0) {
                    std::span<const float> all(ps.window[h]);
                    hs.window.push_back(all.subspan(
                        static_cast<size_t>((ps.window_rows - w) * static_cast<int64_t>(n))));
                }
            }
            hs.window_rows = w;
            if (!ps.key_norm.empty()) hs.key_norms = ps.key_norm[static_cast<size_t>(kv)];
            if (!ps.control.empty()) hs.control = ps.control[static_cast<size_t>(kv)];
            if (!ps.query_absmax.empty())
                hs.query_absmax = ps.query_absmax[static_cast<size_t>(kv)];
            ls.heads.push_back(std::move(hs));
        }
        view.layers.push_back(std::move(ls));
    }
    return view;
}

void Engine::policy_after_prefill() {
    const ScoreView view =
        make_prefill_view(spec(), prompt_len_, prefill_stats_, *cache_, policy_->needs());
    const Plan plan = policy_->after_prefill(view);
    apply(plan, *cache_);
    if (on_plan) on_plan(plan);
}

bool Engine::policy_on_append(int64_t l, int64_t g, const float* k, const float* v,
                              const float* k_pre, const float* q_pre, int64_t pos) {
    const ModelSpec& sp = spec();
    const size_t d = static_cast<size_t>(sp.head_dim);
    AppendContext ctx;
    ctx.layer = l;
    ctx.kv_head = g;
    ctx.pos = pos;
    ctx.step = step_;
    ctx.k = std::span<const float>(k, d);
    ctx.v = std::span<const float>(v, d);
    if (k_pre) ctx.k_prerope = std::span<const float>(k_pre, d);
    if (q_pre)
        ctx.queries = std::span<const float>(q_pre, d * static_cast<size_t>(sp.group_size()));
    if (wants_control() && !s_->control.empty()) {  // decode: one token, so index kv head only
        const size_t c = static_cast<size_t>(1 + sp.group_size());
        ctx.control = std::span<const float>(s_->control.data() + static_cast<size_t>(g) * c, c);
    }
    ctx.cache = cache_.get();
    const AppendDecision dec = policy_->on_append(ctx);
    apply_append(dec, *cache_, l, g, k, v, pos, cache_->store_prerope() ? k_pre : nullptr);
    return dec.merge;
}

void Engine::policy_after_decode_layer(int64_t l) {
    const ModelSpec& sp = spec();
    const PolicyNeeds nd = policy_->needs();
    const int64_t G = sp.n_kv_heads, g = sp.group_size(), d = sp.head_dim;
    ScoreView view = base_view(sp, prompt_len_, step_);
    LayerScores ls;
    ls.layer = l;
    // Key norms of the whole layer, computed on demand (one buffer, spans into it).
    std::vector<size_t> offsets;
    if (nd.key_norms) {
        norms_scratch_.clear();
        for (int64_t kv = 0; kv < G; ++kv) {
            offsets.push_back(norms_scratch_.size());
            const float* kk = cache_->k(l, kv);
            for (int64_t j = 0; j < cache_->n_slots(l, kv); ++j) {
                double ss = 0;
                for (int64_t c = 0; c < d; ++c)
                    ss += static_cast<double>(kk[j * d + c]) * kk[j * d + c];
                norms_scratch_.push_back(static_cast<float>(std::sqrt(ss)));
            }
        }
    }
    for (int64_t kv = 0; kv < G; ++kv) {
        HeadScores hs = cache_head_scores(*cache_, l, kv, d, nd);
        const size_t n = hs.positions.size();
        if (!step_rows_.empty())
            for (int64_t q = 0; q < g; ++q)
                hs.step_row.emplace_back(
                    step_rows_[static_cast<size_t>(l)][static_cast<size_t>(kv * g + q)]);
        if (nd.key_norms)
            hs.key_norms =
                std::span<const float>(norms_scratch_.data() + offsets[static_cast<size_t>(kv)], n);
        ls.heads.push_back(std::move(hs));
    }
    view.layers.push_back(std::move(ls));
    const Plan plan = policy_->after_decode_layer(view);
    if (!plan.empty()) {
        apply(plan, *cache_);
        if (on_plan) on_plan(plan);
    }
}

}  // namespace kvscope
