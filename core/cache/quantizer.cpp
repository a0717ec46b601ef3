#include "core/cache/quantizer.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/dtype.h"

namespace kvscope {

namespace {

constexpr float kF16Max = 65504.0f;

// The fp16 neighbour of h toward -inf (h finite).
uint16_t f16_next_down(uint16_t h) {
    if (h == 0x0000u || h == 0x8000u) return 0x8001u;  // +-0 -> -smallest subnormal
    if (h & 0x8000u) return static_cast<uint16_t>(h + 1);
    return static_cast<uint16_t>(h - 1);
}

uint16_t f16_next_up(uint16_t h) {
    if (h == 0x0000u || h == 0x8000u) return 0x0001u;
    if (h & 0x8000u) return static_cast<uint16_t>(h - 1);
    return static_cast<uint16_t>(h + 1);
}

}  // namespace

float f16_round_down(float x) {
    x = std::clamp(x, -kF16Max, kF16Max);
    uint16_t h = f32_to_f16(x);
    if (f16_to_f32(h) > x) h = f16_next_down(h);
    return f16_to_f32(h);
}

float f16_round_up(float x) {
    x = std::clamp(x, -kF16Max, kF16Max);
    uint16_t h = f32_to_f16(x);
    if (f16_to_f32(h) < x) h = f16_next_up(h);
    return f16_to_f32(h);
}

QuantGroupParams quant_group_params(float lo, float hi, int bits) {
    QuantGroupParams p;
    p.zero = f16_round_down(lo);
    const float levels = static_cast<float>((1u << bits) - 1u);
    const float span = hi - p.zero;
    p.scale = span > 0.0f ? f16_round_up(span / levels) : 0.0f;
    return p;
}

QuantGroupParams fake_quantize_group(float* x, int64_t n, int64_t stride, int bits) {
    if (n <= 0) return {};
    float lo = x[0], hi = x[0];
    for (int64_t i = 1; i < n; ++i) {
        lo = std::min(lo, x[i * stride]);
        hi = std::max(hi, x[i * stride]);
    }
    const QuantGroupParams p = quant_group_params(lo, hi, bits);
    const float max_code = static_cast<float>((1u << bits) - 1u);
    for (int64_t i = 0; i < n; ++i) {
        float& e = x[i * stride];
        float code = 0.0f;
        if (p.scale > 0.0f)
            code = std::clamp(std::nearbyint((e - p.zero) / p.scale), 0.0f, max_code);
        e = code * p.scale + p.zero;
    }
    return p;
}

}  // namespace kvscope
