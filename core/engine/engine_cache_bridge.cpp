#include "core/engine/engine_cache_bridge.h"

#include <cmath>

namespace kvscope {

std::unique_ptr<KVCache> make_engine_cache(const ModelSpec& spec) {
    const int elem = spec.weight_dtype == DType::kF32 ? 4 : 2;
    return std::make_unique<KVCache>(spec.n_layers, spec.n_kv_heads, spec.head_dim, elem);
}

void install_rotate(KVCache& cache, const ModelSpec& spec, const std::vector<float>& inv_freq,
                    bool zero_last) {
    const bool half = spec.rope.style == RopeStyle::kHalf;
    const int64_t d = spec.head_dim;
    cache.set_rotate([half, d, inv_freq, zero_last](float* k, int64_t pos) {
        // Same arithmetic as kernels/cpu rope(): fp32 angle, pairs by style.
        for (int64_t i = 0; i < d / 2; ++i) {
            const float ang = static_cast<float>(pos) * inv_freq[static_cast<size_t>(i)];
            const float c = std::cos(ang), s = std::sin(ang);
            const int64_t a = half ? i : 2 * i, b = half ? i + d / 2 : 2 * i + 1;
            const float x0 = k[a], x1 = k[b];
            k[a] = x0 * c - x1 * s;
            k[b] = x1 * c + x0 * s;
        }
        if (zero_last) k[d - 1] = 0.0f;
    });
}

KVHeadView head_view(const KVCache& cache, int64_t layer, int64_t head) {
    KVHeadView v;
    v.k = cache.k(layer, head);
    v.v = cache.v(layer, head);
    v.pos = cache.positions(layer, head).data();
    v.len = cache.n_slots(layer, head);
    v.cache_uid = cache.uid();
    v.layer = layer;
    v.head = head;
    v.journal = &cache.journal(layer, head);
    v.version = v.journal->version();
    return v;
}

}  // namespace kvscope
