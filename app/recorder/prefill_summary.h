#pragma once
// What a trace keeps of a prompt's statistics, per layer (trace::PrefillLayerStats): per cache
// head the attention each key received and the window's scores (means over the head's query
// group), the key norms, D2O's attention density, and the key-norm vs attention probes
// (Spearman rho, drop-curve area). The layers are independent, so a recorder summarises them in
// parallel: at 32k tokens of the 8B shape this is 32 x 8 heads of 32k-long sorts and sums.
#include <cstdint>
#include <vector>

#include "core/engine/engine.h"
#include "traces/trace_schema.h"

namespace kvscope::record {

// Mean over the g query heads of KV head kv: per-query-head arrays -> one cache-head array
// out[0, len) of per_q[kv * g + q][offset, offset + len) (zeroed here).
void group_mean_into(const std::vector<std::vector<float>>& per_q, int64_t kv, int64_t g,
                     size_t offset, size_t len, float* out);
std::vector<float> group_mean(const std::vector<std::vector<float>>& per_q, int64_t kv, int64_t g,
                              size_t offset, size_t len);

// One layer: `window` caps the rows summed into window_scores (the last ones computed).
trace::PrefillLayerStats summarize_prefill_layer(const LayerPrefillStats& ps, int64_t layer,
                                                 int64_t n_kv_heads, int64_t group, int64_t window);

// Every layer, on up to `threads` host threads (<= 1: this thread), in layer order.
std::vector<trace::PrefillLayerStats> summarize_prefill(const std::vector<LayerPrefillStats>& st,
                                                        int64_t n_kv_heads, int64_t group,
                                                        int64_t window, int threads);

}  // namespace kvscope::record
