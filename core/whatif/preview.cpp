#include "core/whatif/preview.h"

#include <algorithm>
#include <chrono>

#include "core/engine/engine.h"
#include "core/engine/engine_cache_bridge.h"
#include "core/engine/prefill_view.h"
#include "core/engine/rope_freqs.h"
#include "core/error.h"

namespace kvscope::whatif {

double Preview::survival_mean(size_t s) const {
    if (s >= survival.size() || survival[s].empty()) return 0.0;
    double sum = 0;
    for (float v : survival[s]) sum += v;
    return sum / static_cast<double>(survival[s].size());
}

double Preview::survival_min(size_t s) const {
    if (s >= survival.size() || survival[s].empty()) return 0.0;
    return *std::min_element(survival[s].begin(), survival[s].end());
}

std::string preview_blocker(const PrefillState& state, const Policy& policy) {
    return Engine::resume_blocker(state, &policy);
}

Preview preview(const PrefillState& state, const ModelSpec& sp, Policy& policy,
                const std::vector<TokenSpan>& spans) {
    Previewer p(state, sp);
    return p.run(policy, spans);
}

Previewer::Previewer(const PrefillState& state, const ModelSpec& spec)
    : state_(state), spec_(spec) {
    // A cache like the engine's (same element bytes, same RoPE for merges).
    scratch_ = make_engine_cache(spec);
    install_rotate(*scratch_, spec, rope_inv_freq(spec), false);
}

Previewer::~Previewer() = default;

Preview Previewer::run(Policy& policy, const std::vector<TokenSpan>& spans) {
    const PrefillState& state = state_;
    const ModelSpec& sp = spec_;
    const auto t0 = std::chrono::steady_clock::now();
    const std::string why = preview_blocker(state, policy);
    if (!why.empty()) throw InputError("cannot preview " + policy.info().name + ": " + why);
    const int64_t L = sp.n_layers, G = sp.n_kv_heads, P = state.prompt_len();

    // The prompt's full cache, copied into the scratch cache's existing buffers.
    KVCache* cache = scratch_.get();
    cache->copy_contents_from(*state.cache);
    cache->set_step(-1);

    Preview out;
    out.events.reserve(static_cast<size_t>(state.cache->total_slots()));
    out.policy = policy.info().name;
    out.budget = policy.budget();
    out.decode_time = policy.info().regime == Regime::kDecodeContinuous;
    out.n_layers = L;
    out.n_kv_heads = G;
    out.bytes_full = state.bytes_full();
    const int obs = cache->add_observer([&out](const CacheEvent& e) { out.events.push_back(e); });

    policy.begin(ModelDims{L, sp.n_heads, G, sp.head_dim}, P);
    const ScoreView view = make_prefill_view(sp, P, state.stats, *cache, policy.needs());
    const Plan plan = policy.after_prefill(view);
    apply(plan, *cache);
    cache->remove_observer(obs);
    out.notes = plan.notes;

    out.heads.resize(static_cast<size_t>(L * G));
    out.bytes_layer.assign(static_cast<size_t>(L), 0);
    out.survival.assign(spans.size(), std::vector<float>(static_cast<size_t>(L * G), 0.0f));
    for (int64_t l = 0; l < L; ++l)
        for (int64_t g = 0; g < G; ++g) {
            HeadOutcome& h = out.heads[static_cast<size_t>(l * G + g)];
            const auto pos = cache->positions(l, g);
            h.positions.assign(pos.begin(), pos.end());
            const auto kb = cache->k_bits(l, g), vb = cache->v_bits(l, g);
            h.k_bits.assign(kb.begin(), kb.end());
            h.v_bits.assign(vb.begin(), vb.end());
            if (const HeadPlan* hp = plan.find(l, g)) h.budget = hp->budget;
            h.bytes = cache->bytes_held(l, g);
            out.bytes_layer[static_cast<size_t>(l)] += h.bytes;
            out.tokens_held += static_cast<int64_t>(pos.size());
            for (size_t s = 0; s < spans.size(); ++s) {
                const TokenSpan& sp_ = spans[s];
                int64_t held = 0;
                for (int64_t p = sp_.begin; p < sp_.end; ++p)
                    held += std::binary_search(pos.begin(), pos.end(), p) ? 1 : 0;
                out.survival[s][static_cast<size_t>(l * G + g)] =
                    static_cast<float>(held) /
                    static_cast<float>(std::max<int64_t>(1, sp_.end - sp_.begin));
            }
        }
    out.bytes_total = cache->bytes_held();
    out.elapsed_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return out;
}

}  // namespace kvscope::whatif
