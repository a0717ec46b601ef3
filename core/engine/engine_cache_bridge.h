#pragma once
// The few places where the engine meets the cache and the policy API, kept in one header so the
// forward pass (engine.cpp) reads independently of them.
#include <memory>
#include <vector>

#include "core/cache/kv_cache.h"
#include "core/engine/engine.h"
#include "core/model/model_spec.h"
#include "kernels/backend.h"

namespace kvscope {

// A cache for the model: element bytes of its storage dtype (bf16/fp16: 2, fp32: 4) for the
// byte accounting.
std::unique_ptr<KVCache> make_engine_cache(const ModelSpec& spec);
// Gives the cache the model's RoPE, for merges that re-rotate pre-RoPE keys (DMC).
// zero_last: DMC checkpoints zero the decision channel d-1 after rotation too.
void install_rotate(KVCache& cache, const ModelSpec& spec, const std::vector<float>& inv_freq,
                    bool zero_last);
// The attention op's view of one (layer, KV head).
KVHeadView head_view(const KVCache& cache, int64_t layer, int64_t head);

}  // namespace kvscope
