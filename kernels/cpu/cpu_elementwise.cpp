// CPU embedding lookup and elementwise ops (SwiGLU gate, residual add).
#include <cmath>

#include "kernels/cpu/cpu_ops.h"

namespace kvscope::cpu {

void embedding(const void* table, DType dt, int64_t vocab, int64_t d, const int32_t* ids, int64_t n,
               float* out) {
    const auto* base = static_cast<const uint8_t*>(table);
    for (int64_t i = 0; i < n; ++i) {
        const int64_t id = ids[i];
        if (id < 0 || id >= vocab) {  // callers validate; keep the kernel memory-safe anyway
            for (int64_t j = 0; j < d; ++j) out[i * d + j] = 0.0f;
            continue;
        }
        load_row_f32(base + static_cast<size_t>(id * d) * dtype_size(dt), dt, d, out + i * d);
    }
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

void add_inplace(float* x, const float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace kvscope::cpu
