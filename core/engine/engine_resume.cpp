// Snapshots of the full-cache state after a prompt, and decoding resumed from one under any
// policy (the what-if re-run: one prefill, many budgets). See core/engine/prefill_state.h.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "core/cache/kv_cache.h"
#include "core/engine/engine.h"
#include "core/engine/engine_cache_bridge.h"
#include "core/engine/prefill_state.h"
#include "core/error.h"
#include "core/policies/policy.h"

namespace kvscope {

StatsRequest snapshot_stats_request(int64_t window) {
    StatsRequest r;
    r.colsum = true;
    r.key_norms = true;
    r.query_absmax = true;
    r.window = window;
    return r;
}

std::shared_ptr<const PrefillState> Engine::snapshot_prefill(std::vector<float> last_logits) const {
    const ModelSpec& sp = spec();
    if (prompt_len_ == 0 || step_ != 0 || pos_ != prompt_len_)
        throw std::logic_error("snapshot_prefill: call it right after prefill()");
    for (int64_t l = 0; l < sp.n_layers; ++l)
        for (int64_t g = 0; g < sp.n_kv_heads; ++g)
            if (cache_->n_slots(l, g) != prompt_len_ ||
                cache_->bytes_held(l, g) != cache_->bytes_full_precision(l, g))
                throw std::logic_error(
                    "snapshot_prefill: the cache was compressed; snapshot a full-cache prefill");
    auto st = std::make_shared<PrefillState>();
    st->prompt_ids = prompt_ids_;
    st->last_logits = std::move(last_logits);
    st->stats = prefill_stats_;
    st->computed = req_;
    auto copy = make_engine_cache(sp);
    copy->copy_contents_from(*cache_);
    st->cache = std::move(copy);
    return st;
}

std::string Engine::resume_blocker(const PrefillState& st, const Policy* policy) {
    if (!st.cache) return "the snapshot holds no cache";
    if (!policy) return "";
    const PolicyNeeds nd = policy->needs();
    const std::string who = policy->info().name;
    if (nd.control_neuron)
        return who +
               " in checkpoint mode changes the prompt's own forward pass (it zeroes channel d-1 "
               "of every query and key), so it needs a prefill of its own";
    if (nd.prerope_keys || nd.queries)
        return who +
               " keeps pre-RoPE keys of the prompt, which a snapshot does not hold; it "
               "needs a prefill of its own";
    if (nd.colsum && !st.computed.colsum) return who + " needs column sums the snapshot lacks";
    if (nd.key_norms && !st.computed.key_norms) return who + " needs key norms the snapshot lacks";
    if (nd.query_absmax && !st.computed.query_absmax)
        return who + " needs query maxima the snapshot lacks";
    const int64_t want = nd.window_rows();
    if (want > st.window_rows() && st.window_rows() < st.prompt_len())
        return who + " observes the last " + std::to_string(want) +
               " prompt queries; the snapshot holds " + std::to_string(st.window_rows());
    return "";
}

std::vector<float> Engine::resume(const PrefillState& st) {
    const std::string why = resume_blocker(st, policy_);
    if (!why.empty()) throw InputError("cannot decode from the saved prompt state: " + why);
    if (static_cast<int64_t>(st.stats.size()) != spec().n_layers)
        throw InputError("the saved prompt state belongs to another model (layers differ)");
    cache_->clear();
    cache_->copy_contents_from(*st.cache);  // throws on a different shape
    backend_.forget_kv(cache_->uid());      // a new sequence: device copies start over
    prompt_ids_ = st.prompt_ids;
    prompt_len_ = st.prompt_len();
    pos_ = prompt_len_;
    step_ = 0;
    prefill_stats_ = st.stats;
    all_logits_.clear();
    step_rows_.clear();
    cache_->set_step(-1);
    if (policy_) {
        ModelDims dims{spec().n_layers, spec().n_heads, spec().n_kv_heads, spec().head_dim};
        policy_->begin(dims, prompt_len_);
        policy_after_prefill();
    }
    if (on_layer_done) on_layer_done(-1);
    return st.last_logits;
}

}  // namespace kvscope
