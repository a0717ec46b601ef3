#include "core/engine/rope_freqs.h"

#include <cmath>

namespace kvscope {

std::vector<float> rope_inv_freq(const ModelSpec& spec) {
    const int64_t d = spec.head_dim;
    std::vector<float> inv(static_cast<size_t>(d / 2));
    for (int64_t i = 0; i < d / 2; ++i) {
        // HF: 1.0 / (base ** (arange(0, d, 2).float() / d)) evaluated in fp32.
        const float expo = static_cast<float>(2 * i) / static_cast<float>(d);
        inv[static_cast<size_t>(i)] =
            1.0f /
            static_cast<float>(std::pow(static_cast<double>(static_cast<float>(spec.rope.theta)),
                                        static_cast<double>(expo)));
    }
    const RopeSpec& r = spec.rope;
    if (r.scaling == RopeScaling::kLinear) {
        for (auto& f : inv) f = static_cast<float>(f / r.factor);
    } else if (r.scaling == RopeScaling::kLlama3) {
        // Llama 3.1: long wavelengths are divided by `factor`, short ones kept, and the band in
        // between interpolated smoothly (HF _compute_llama3_parameters).
        const double old_ctx = static_cast<double>(r.original_max_position);
        const double low_wavelen = old_ctx / r.low_freq_factor;
        const double high_wavelen = old_ctx / r.high_freq_factor;
        for (auto& f : inv) {
            const double wavelen = 2.0 * M_PI / f;
            if (wavelen > low_wavelen) {
                f = static_cast<float>(f / r.factor);
            } else if (wavelen >= high_wavelen) {
                const double smooth = (old_ctx / wavelen - r.low_freq_factor) /
                                      (r.high_freq_factor - r.low_freq_factor);
                f = static_cast<float>((1.0 - smooth) * f / r.factor + smooth * f);
            }
        }
    }
    return inv;
}

}  // namespace kvscope
