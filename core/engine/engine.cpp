// The Llama-family forward pass. Shapes (n = tokens in this call, H = query heads, G = KV heads,
// d = head_dim, D = hidden, F = intermediate, V = vocab):
//   x [n, D] -> per layer: h = rmsnorm(x); q [n, H*d], k/v [n, G*d] (+bias); q/k-norm per head;
//   RoPE; k/v appended to the cache per KV head; attention [n, H*d]; x += o_proj; MLP SwiGLU.
//   Final norm; lm_head on the last row (or all rows when asked).
#include "core/engine/engine.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <string>

#include "core/cache/kv_cache.h"
#include "core/engine/engine_cache_bridge.h"
#include "core/engine/engine_internal.h"
#include "core/engine/rope_freqs.h"
#include "core/error.h"
#include "core/policies/plan.h"
#include "core/policies/policy.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/op_profile.h"

namespace kvscope {

namespace {

Tensor upload(Backend& b, const WeightTensor& w) {
    if (w.shape.size() == 1) return b.upload_weight(w.data, w.dtype, {w.shape[0]});
    return b.upload_weight(w.data, w.dtype, {w.shape[0], w.shape[1]});
}

void free_all(Backend& b, std::initializer_list<Tensor*> ts) {
    for (Tensor* t : ts)
        if (t->data) b.release(*t);
}

}  // namespace

Engine::Engine(const Model& model, Backend& backend, EngineOptions opts)
    : model_(model), backend_(backend), opts_(opts), req_(opts.stats) {
    const ModelSpec& sp = model.spec;
    const WeightStore& ws = model.weights;
    w_ = std::make_unique<Weights>();
    w_->embed = upload(backend, ws.at("model.embed_tokens.weight"));
    w_->final_norm = upload(backend, ws.at("model.norm.weight"));
    w_->lm_head = sp.tied_embeddings ? w_->embed : upload(backend, ws.at("lm_head.weight"));
    for (int64_t l = 0; l < sp.n_layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        Weights::Layer L;
        L.attn_norm = upload(backend, ws.at(p + "input_layernorm.weight"));
        L.wq = upload(backend, ws.at(p + "self_attn.q_proj.weight"));
        L.wk = upload(backend, ws.at(p + "self_attn.k_proj.weight"));
        L.wv = upload(backend, ws.at(p + "self_attn.v_proj.weight"));
        L.wo = upload(backend, ws.at(p + "self_attn.o_proj.weight"));
        L.ffn_norm = upload(backend, ws.at(p + "post_attention_layernorm.weight"));
        L.w_gate = upload(backend, ws.at(p + "mlp.gate_proj.weight"));
        L.w_up = upload(backend, ws.at(p + "mlp.up_proj.weight"));
        L.w_down = upload(backend, ws.at(p + "mlp.down_proj.weight"));
        if (sp.attention_bias) {
            L.has_qkv_bias = true;
            L.bq = upload(backend, ws.at(p + "self_attn.q_proj.bias"));
            L.bk = upload(backend, ws.at(p + "self_attn.k_proj.bias"));
            L.bv = upload(backend, ws.at(p + "self_attn.v_proj.bias"));
        }
        if (sp.o_bias) {
            L.has_o_bias = true;
            L.bo = upload(backend, ws.at(p + "self_attn.o_proj.bias"));
        }
        if (sp.qk_norm) {
            L.has_qk_norm = true;
            L.q_norm = upload(backend, ws.at(p + "self_attn.q_norm.weight"));
            L.k_norm = upload(backend, ws.at(p + "self_attn.k_norm.weight"));
        }
        w_->layers.push_back(L);
    }
    s_ = std::make_unique<Scratch>();
    inv_freq_ = rope_inv_freq(sp);
    cache_ = make_engine_cache(sp);
    install_rotate(*cache_, sp, inv_freq_, false);
}

Engine::~Engine() {
    if (cache_) {
        try {
            backend_.forget_kv(cache_->uid());  // the backend's device copies of the cache
        } catch (...) {  // a destructor must not throw; the backend frees them when destroyed
        }
    }
    if (s_) {
        Scratch& s = *s_;
        free_all(backend_, {&s.x, &s.h, &s.q, &s.k, &s.v, &s.att, &s.o, &s.gate, &s.up, &s.act,
                            &s.down, &s.last, &s.logits});
    }
}

void StatsRequest::add(const PolicyNeeds& nd) {
    colsum = colsum || nd.colsum;
    window = std::max<int64_t>(window, nd.window_rows());
    key_norms = key_norms || nd.key_norms;
    step_rows = step_rows || nd.step_rows;
    query_absmax = query_absmax || nd.query_absmax;
}

void Engine::set_policy(Policy* policy) {
    policy_ = policy;
    req_ = opts_.stats;
    cache_->set_store_prerope(false);
    if (policy_) {
        const PolicyNeeds nd = policy_->needs();
        req_.add(nd);
        cache_->set_store_prerope(nd.prerope_keys);
    }
    install_rotate(*cache_, spec(), inv_freq_, wants_control());
}

std::vector<float> Engine::prefill(const std::vector<int32_t>& ids) {
    if (ids.empty()) throw InputError("prompt is empty: nothing to prefill");
    for (int32_t id : ids)
        if (id < 0 || id >= spec().vocab_size)
            throw InputError("token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                             std::to_string(spec().vocab_size) + ")");
    cache_->clear();
    cache_->reserve(static_cast<int64_t>(ids.size()) + std::max<int64_t>(0, opts_.decode_reserve));
    backend_.forget_kv(cache_->uid());  // a new sequence: device copies start over
    pos_ = 0;
    step_ = 0;
    prompt_len_ = static_cast<int64_t>(ids.size());
    prompt_ids_ = ids;
    prefill_stats_.assign(static_cast<size_t>(spec().n_layers), LayerPrefillStats{});
    all_logits_.clear();
    step_rows_.clear();
    cache_->set_step(-1);
    if (policy_) {
        ModelDims dims{spec().n_layers, spec().n_heads, spec().n_kv_heads, spec().head_dim};
        policy_->begin(dims, prompt_len_);
    }
    prof::begin_phase("prefill");
    std::vector<float> logits;
    {
        prof::Scope wall("step (wall)");
        logits = forward(ids.data(), prompt_len_, true);
    }
    s_->map_rows = {};  // one layer's full maps (StatsRequest::maps): not kept for decode
    if (policy_) policy_after_prefill();
    if (on_layer_done) on_layer_done(-1);
    return logits;
}

std::vector<float> Engine::decode(int32_t id) {
    if (id < 0 || id >= spec().vocab_size)
        throw InputError("token id " + std::to_string(id) + " is outside the vocabulary");
    if (prompt_len_ == 0) throw InputError("decode() called before prefill()");
    cache_->set_step(step_);
    prof::begin_phase("decode");
    std::vector<float> logits;
    {
        prof::Scope wall("step (wall)");
        logits = forward(&id, 1, false);
    }
    ++step_;
    return logits;
}

std::vector<float> Engine::forward(const int32_t* ids, int64_t n, bool is_prefill) {
    const ModelSpec& sp = spec();
    Scratch& s = *s_;
    // Row fills behind the device (a prompt's, engine_attention.cpp) end before this returns,
    // also when it throws: they write into the cache and read the scratch buffers.
    struct FillsEnd {
        OrderedTasks& t;
        explicit FillsEnd(OrderedTasks& tasks) : t(tasks) {}
        FillsEnd(const FillsEnd&) = delete;
        FillsEnd& operator=(const FillsEnd&) = delete;
        ~FillsEnd() { t.wait_quietly(); }
    } fills_end{s.fills}, ahead_end{s.stats_ahead};
    // Copies the backend still owes (to_host_later, deferred statistics) land in the scratch
    // and prefill_stats_ buffers: when this throws, they land before those may be reallocated.
    struct CopiesEnd {
        Backend& b;
        int on_entry = std::uncaught_exceptions();
        explicit CopiesEnd(Backend& backend) : b(backend) {}
        CopiesEnd(const CopiesEnd&) = delete;
        CopiesEnd& operator=(const CopiesEnd&) = delete;
        ~CopiesEnd() {
            if (std::uncaught_exceptions() == on_entry) return;
            try {
                b.synchronize();
            } catch (...) {  // NOLINT(bugprone-empty-catch): the first error is the one thrown
            }
        }
    } copies_end{backend_};
    s.ahead_layer = s.ahead_task = -1;
    s.fill_layer = -1;
    if (n > s.cap) {
        free_all(backend_, {&s.x, &s.h, &s.q, &s.k, &s.v, &s.att, &s.o, &s.gate, &s.up, &s.act,
                            &s.down, &s.last, &s.logits});
        s.cap = n;
        s.x = backend_.alloc(DType::kF32, {n, sp.hidden});
        s.h = backend_.alloc(DType::kF32, {n, sp.hidden});
        s.q = backend_.alloc(DType::kF32, {n, sp.n_heads, sp.head_dim});
        // At least a row per layer: a decode step may keep each layer's new K/V row apart
        // (Scratch::kv_row0).
        const int64_t kv_rows = std::max(n, sp.n_layers);
        s.k = backend_.alloc(DType::kF32, {kv_rows, sp.n_kv_heads, sp.head_dim});
        s.v = backend_.alloc(DType::kF32, {kv_rows, sp.n_kv_heads, sp.head_dim});
        s.att = backend_.alloc(DType::kF32, {n, sp.n_heads, sp.head_dim});
        s.o = backend_.alloc(DType::kF32, {n, sp.hidden});
        s.gate = backend_.alloc(DType::kF32, {n, sp.intermediate});
        s.up = backend_.alloc(DType::kF32, {n, sp.intermediate});
        s.act = backend_.alloc(DType::kF32, {n, sp.intermediate});
        s.down = backend_.alloc(DType::kF32, {n, sp.hidden});
        s.last = backend_.alloc(DType::kF32, {1, sp.hidden});
        s.logits = backend_.alloc(DType::kF32, {1, sp.vocab_size});
    }
    // Views of exactly n rows over the scratch buffers.
    auto rows = [&](const Tensor& t, int64_t cols) {
        return make_tensor_view(t.data, DType::kF32, {n, cols}, t.device);
    };
    Tensor x = rows(s.x, sp.hidden), h = rows(s.h, sp.hidden), o = rows(s.o, sp.hidden);
    Tensor q2 = rows(s.q, sp.q_dim());
    Tensor att2 = rows(s.att, sp.q_dim());
    Tensor gate = rows(s.gate, sp.intermediate), up = rows(s.up, sp.intermediate);
    Tensor act = rows(s.act, sp.intermediate), down = rows(s.down, sp.hidden);
    // Views only (pointer arithmetic, never a dereference: the memory may be on a device).
    Tensor q3 = make_tensor_view(s.q.data, DType::kF32, {n, sp.n_heads, sp.head_dim}, s.q.device);
    Tensor qh = make_tensor_view(s.q.data, DType::kF32, {n * sp.n_heads, sp.head_dim}, s.q.device);
    // A decode step whose new rows stay on the device keeps each layer's keys and values in
    // rows [l * n, (l + 1) * n) of s.k / s.v, copied to the host once after the last layer
    // (one copy each instead of one per layer: 64 small copies a step on the 8B shape).
    const bool step_rows = !is_prefill && rows_later(false);

    s.positions.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) s.positions[static_cast<size_t>(i)] = pos_ + i;
    const RopePairs pairs =
        sp.rope.style == RopeStyle::kHalf ? RopePairs::kHalf : RopePairs::kInterleaved;
    const float eps = static_cast<float>(sp.norm_eps);

    backend_.embedding(w_->embed, ids, n, x);
    for (int64_t l = 0; l < sp.n_layers; ++l) {
        const Weights::Layer& L = w_->layers[static_cast<size_t>(l)];
        s.kv_row0 = step_rows ? l * n : 0;
        const int64_t kv_off = s.kv_row0 * sp.kv_dim();
        Tensor k2 = make_tensor_view(static_cast<float*>(s.k.data) + kv_off, DType::kF32,
                                     {n, sp.kv_dim()}, s.k.device);
        Tensor v2 = make_tensor_view(static_cast<float*>(s.v.data) + kv_off, DType::kF32,
                                     {n, sp.kv_dim()}, s.v.device);
        Tensor k3 =
            make_tensor_view(k2.data, DType::kF32, {n, sp.n_kv_heads, sp.head_dim}, s.k.device);
        Tensor kh =
            make_tensor_view(k2.data, DType::kF32, {n * sp.n_kv_heads, sp.head_dim}, s.k.device);
        if (l == 0) backend_.rmsnorm(x, L.attn_norm, eps, h);  // later layers: add_rmsnorm below
        {
            const Tensor* ws[3] = {&L.wq, &L.wk, &L.wv};
            const Tensor* bs[3] = {L.has_qkv_bias ? &L.bq : nullptr,
                                   L.has_qkv_bias ? &L.bk : nullptr,
                                   L.has_qkv_bias ? &L.bv : nullptr};
            Tensor* outs[3] = {&q2, &k2, &v2};
            backend_.matmul_parts(h, 3, ws, bs, outs);  // q, k, v (one launch on the GPU)
        }
        if (L.has_qk_norm) {
            backend_.rmsnorm(qh, L.q_norm, eps, qh);
            backend_.rmsnorm(kh, L.k_norm, eps, kh);
        }
        if (wants_control()) extract_control(n);
        if (wants_prerope()) {
            s.k_prerope.resize(static_cast<size_t>(n * sp.kv_dim()));
            s.q_prerope.resize(static_cast<size_t>(n * sp.q_dim()));
            backend_.to_host(k2, s.k_prerope.data());
            backend_.to_host(q2, s.q_prerope.data());
        }
        backend_.rope_qk(q3, k3, s.positions.data(), inv_freq_.data(), pairs);
        if (wants_control()) zero_control(n);
        attention_layer(l, n, is_prefill);
        backend_.matmul(att2, L.wo, L.has_o_bias ? &L.bo : nullptr, o);
        backend_.add_rmsnorm(x, o, L.ffn_norm, eps, h);  // x += o; h = norm(x)
        backend_.swiglu(h, L.w_gate, L.w_up, gate, up, act);
        backend_.matmul(act, L.w_down, nullptr, down);
        if (l + 1 < sp.n_layers)  // x += down; h = the next layer's attention norm of x
            backend_.add_rmsnorm(x, down, w_->layers[static_cast<size_t>(l + 1)].attn_norm, eps, h);
        else
            backend_.add_inplace(x, down);
        start_prompt_fill();  // this layer's rows, while the device runs the MLP just queued
    }
    pos_ += n;

    const int64_t V = sp.vocab_size;
    if (is_prefill && req_.all_logits) {
        Tensor hn = rows(s.h, sp.hidden);
        backend_.rmsnorm(x, w_->final_norm, eps, hn);
        Tensor all = backend_.alloc(DType::kF32, {n, V});
        backend_.matmul(hn, w_->lm_head, nullptr, all);
        all_logits_.resize(static_cast<size_t>(n * V));
        backend_.to_host(all, all_logits_.data());
        backend_.release(all);
        s.fills.wait_all();  // as below
        return std::vector<float>(all_logits_.end() - V, all_logits_.end());
    }
    Tensor xl = make_tensor_view(static_cast<float*>(s.x.data) + (n - 1) * sp.hidden, DType::kF32,
                                 {1, sp.hidden}, s.x.device);
    backend_.rmsnorm(xl, w_->final_norm, eps, s.last);
    backend_.matmul(s.last, w_->lm_head, nullptr, s.logits);
    if (step_rows) {  // every layer's new keys and values (read by after_decode_layers)
        const int64_t kv = sp.n_layers * n * sp.kv_dim();
        s.k_step.resize(static_cast<size_t>(kv));
        s.v_step.resize(static_cast<size_t>(kv));
        backend_.to_host_later(
            make_tensor_view(s.k.data, DType::kF32, {sp.n_layers * n, sp.kv_dim()}, s.k.device),
            s.k_step.data());
        backend_.to_host_later(
            make_tensor_view(s.v.data, DType::kF32, {sp.n_layers * n, sp.kv_dim()}, s.v.device),
            s.v_step.data());
    }
    std::vector<float> logits(static_cast<size_t>(V));
    backend_.to_host(s.logits, logits.data());  // also delivers the step's deferred rows
    {
        prof::Scope wait("host.fill_wait");
        s.fills.wait_all();  // the prompt's last rows and key norms; rethrows a failure
    }
    if (!is_prefill) after_decode_layers();
    return logits;
}

// Observers and the policy see each layer's attention rows against the cache they were computed
// on, before the policy changes it, layer by layer. They run after the whole step: a layer's
// cache changes only through its own appends (made before its attention) and its own plan, so
// each sees what it would have seen right after that layer, and the device runs the step
// without waiting for the host between layers.
void Engine::after_decode_layers() {
    {
        prof::Scope host("host.cache_append");  // rows of slots appended during the step
        for (int64_t l = 0; l < spec().n_layers; ++l)
            if (cache_->pending_rows(l) > 0) {
                const auto off = static_cast<size_t>(l * spec().kv_dim());  // one row a layer
                cache_->fill_pending_rows(l, s_->k_step.data() + off, s_->v_step.data() + off);
            }
    }
    for (int64_t l = 0; l < spec().n_layers; ++l) {
        prof::Scope host("host.observer");
        if (on_layer_done) on_layer_done(l);
        host.next("host.policy");
        if (policy_) policy_after_decode_layer(l);
    }
}

}  // namespace kvscope
