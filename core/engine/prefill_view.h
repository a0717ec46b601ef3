#pragma once
// The ScoreView a policy sees after the prompt: spans over the engine's prefill statistics and
// the cache's arrays. One builder for the live engine and the what-if replay (core/whatif), so a
// preview decides from exactly what a real run decides from.
#include <cstdint>
#include <vector>

#include "core/cache/kv_cache.h"
#include "core/engine/engine.h"
#include "core/model/model_spec.h"
#include "core/policies/policy.h"

namespace kvscope {

// The view holds spans into `stats` and `cache`: both must outlive it. When the statistics hold
// more window rows than the policy asks for, the policy sees only its own last rows.
ScoreView make_prefill_view(const ModelSpec& spec, int64_t prompt_len,
                            const std::vector<LayerPrefillStats>& stats, const KVCache& cache,
                            const PolicyNeeds& needs);

}  // namespace kvscope
