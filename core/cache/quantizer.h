#pragma once
// STATUS: stable (additions only from here on)
// Asymmetric round-to-nearest group quantiser (KIVI, MiKV): per group of values,
//   zero = min (rounded DOWN to fp16), scale = (max - zero) / (2^bits - 1) (rounded UP to fp16),
//   code = clamp(round((x - zero) / scale), 0, 2^bits - 1),   x' = code * scale + zero.
// Scale and zero are stored as fp16 (the accounting counts 2 bytes each), so they are rounded to
// fp16 here, in the direction that keeps [zero, zero + (2^bits-1)*scale] covering [min, max]:
// the error is then at most scale/2 per element (plus float rounding).
#include <cstdint>

namespace kvscope {

struct QuantGroupParams {
    float scale = 0.0f;  // fp16-representable
    float zero = 0.0f;   // fp16-representable
};

QuantGroupParams quant_group_params(float lo, float hi, int bits);

// Replaces the n values x[0], x[stride], ... by their dequantised values; returns the group's
// parameters.
QuantGroupParams fake_quantize_group(float* x, int64_t n, int64_t stride, int bits);

// fp16 rounding helpers (round toward -inf / +inf), exposed for tests.
float f16_round_down(float x);
float f16_round_up(float x);

}  // namespace kvscope
