#pragma once
// PrefillState: the full-cache state right after a prompt, before any compression. It is what a
// what-if preview decides from (core/whatif) and what a re-run decodes from without a second
// prefill (Engine::resume). Immutable once made; shared between threads read-only.
//
// Shapes (L layers, H query heads, G KV heads, P prompt tokens, d head_dim):
//   prompt_ids   [P]
//   last_logits  [vocab]  logits of the last prompt position (what prefill() returned)
//   stats        [L]      LayerPrefillStats as the engine computed them (see `computed`)
//   cache        every prompt token in every (layer, KV head), full precision, positions 0..P-1
#include <cstdint>
#include <memory>
#include <vector>

#include "core/cache/kv_cache.h"
#include "core/engine/engine.h"

namespace kvscope {

struct PrefillState {
    std::vector<int32_t> prompt_ids;
    std::vector<float> last_logits;
    std::vector<LayerPrefillStats> stats;
    StatsRequest computed;  // which statistics `stats` holds (window = rows requested)
    std::shared_ptr<const KVCache> cache;

    int64_t prompt_len() const { return static_cast<int64_t>(prompt_ids.size()); }
    // Rows of the prompt's last query rows held per layer (min(computed.window, P)).
    int64_t window_rows() const { return stats.empty() ? 0 : stats.front().window_rows; }
    int64_t bytes_full() const { return cache ? cache->bytes_held() : 0; }
};

// The statistics a full-cache snapshot computes so that every policy whose prefill decisions can
// be replayed finds what it needs: column sums, key norms, MiKV's query maxima and the last
// `window` query rows (policies with a larger observation window need their own prefill).
StatsRequest snapshot_stats_request(int64_t window = 64);

}  // namespace kvscope
