#pragma once
// What-if preview: what a policy at a given budget keeps of a prompt, computed from a saved
// full-cache prefill state (core/engine/prefill_state.h) without running the model again.
//
// The preview runs the policy's own after_prefill() on the same ScoreView a real run builds
// (make_prefill_view) and applies the plan to a copy of the full cache, so what it reports — kept
// positions, bits, bytes held, needle survival — is exactly the state after step 0 of a real run
// at that budget (tests/whatif checks this for every policy). For decode-time policies (H2O, TOVA,
// D2O, DMC...) it is their prefill decision only; decoding changes the cache afterwards
// (Preview::decode_time tells), so those need a re-run to see the rest.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/cache/cache_event.h"
#include "core/engine/prefill_state.h"
#include "core/model/model_spec.h"
#include "core/policies/plan.h"
#include "core/policies/policy.h"

namespace kvscope::whatif {

// A token range [begin, end) whose survival is followed (a needle).
struct TokenSpan {
    int64_t begin = 0;
    int64_t end = 0;
};

// One (layer, KV head) after the compression.
struct HeadOutcome {
    std::vector<int64_t> positions;  // held positions, ascending
    std::vector<int> k_bits;         // [positions] 16 = full precision
    std::vector<int> v_bits;
    int64_t budget = -1;  // the plan's budget for the head, -1 none
    int64_t bytes = 0;    // bytes held (KVCache::bytes_held)
};

struct Preview {
    std::string policy;
    Budget budget;
    bool decode_time = false;  // the policy keeps deciding while decoding
    int64_t n_layers = 0, n_kv_heads = 0;
    std::vector<HeadOutcome> heads;    // [L * G], index layer * G + head
    std::vector<CacheEvent> events;    // the compression's cache events, in order (step -1)
    std::vector<LayerNote> notes;      // the plan's per-layer notes
    std::vector<int64_t> bytes_layer;  // [L]
    int64_t bytes_total = 0;
    int64_t bytes_full = 0;   // the full cache of the prompt
    int64_t tokens_held = 0;  // slots held over all heads
    // [spans][L * G] fraction of the span's tokens held (quantised tokens count as held)
    std::vector<std::vector<float>> survival;
    double elapsed_ms = 0.0;

    const HeadOutcome& head(int64_t layer, int64_t kv) const {
        return heads[static_cast<size_t>(layer * n_kv_heads + kv)];
    }
    double memory_fraction() const {
        return bytes_full > 0 ? static_cast<double>(bytes_total) / bytes_full : 0.0;
    }
    // Mean and minimum survival of span s over every (layer, head).
    double survival_mean(size_t s) const;
    double survival_min(size_t s) const;
};

// "" when `policy` can be previewed (and re-run) from `state`, else why not
// (Engine::resume_blocker).
std::string preview_blocker(const PrefillState& state, const Policy& policy);

// Runs policy.begin() + after_prefill() on the state's statistics and applies the plan to a copy
// of its cache. The policy is reset by begin(), so one object can be previewed many times.
// Throws InputError when preview_blocker() is not empty.
Preview preview(const PrefillState& state, const ModelSpec& spec, Policy& policy,
                const std::vector<TokenSpan>& spans = {});

// The same, for many previews of one state (a budget slider): keeps its scratch cache between
// runs, so a preview copies the prompt's K/V into memory it already holds instead of faulting
// in fresh pages (on the 2k demo prompt: ~40 ms a preview without, a few ms with). Not
// thread-safe: one Previewer per thread. The state must outlive it.
class Previewer {
  public:
    Previewer(const PrefillState& state, const ModelSpec& spec);
    ~Previewer();
    Previewer(const Previewer&) = delete;
    Previewer& operator=(const Previewer&) = delete;

    Preview run(Policy& policy, const std::vector<TokenSpan>& spans = {});

  private:
    const PrefillState& state_;
    const ModelSpec& spec_;
    std::unique_ptr<KVCache> scratch_;
};

}  // namespace kvscope::whatif
