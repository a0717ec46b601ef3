// CPU RMSNorm and RoPE. RMSNorm: y = x * rsqrt(mean(x^2) + eps) * w, computed in fp32 like HF's
// LlamaRMSNorm (which upcasts to fp32). RoPE angles in double then rounded, cos/sin per pair.
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace kvscope::cpu {

void rmsnorm(ThreadPool& pool, const float* x, int64_t rows, int64_t d, const void* w, DType wdt,
             float eps, float* out) {
    std::vector<float> wf(static_cast<size_t>(d));
    load_row_f32(w, wdt, d, wf.data());
    pool.parallel_for(rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* xr = x + r * d;
            float* yr = out + r * d;
            double ss = 0.0;
            for (int64_t i = 0; i < d; ++i) ss += static_cast<double>(xr[i]) * xr[i];
            const float inv =
                static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));
            for (int64_t i = 0; i < d; ++i) yr[i] = wf[static_cast<size_t>(i)] * (xr[i] * inv);
        }
    });
}

void rope(ThreadPool& pool, float* x, int64_t n, int64_t heads, int64_t head_dim,
          const int64_t* positions, const float* inv_freq, RopePairs pairs) {
    const int64_t half = head_dim / 2;
    pool.parallel_for(n, [&](int64_t t0, int64_t t1) {
        std::vector<float> c(static_cast<size_t>(half)), s(static_cast<size_t>(half));
        for (int64_t t = t0; t < t1; ++t) {
            for (int64_t i = 0; i < half; ++i) {
                // HF computes the angle as float32(pos) * float32(inv_freq) in fp32.
                const float ang = static_cast<float>(positions[t]) * inv_freq[i];
                c[static_cast<size_t>(i)] = std::cos(ang);
                s[static_cast<size_t>(i)] = std::sin(ang);
            }
            for (int64_t h = 0; h < heads; ++h) {
                float* v = x + (t * heads + h) * head_dim;
                for (int64_t i = 0; i < half; ++i) {
                    const int64_t a = pairs == RopePairs::kHalf ? i : 2 * i;
                    const int64_t b = pairs == RopePairs::kHalf ? i + half : 2 * i + 1;
                    const float x0 = v[a], x1 = v[b];
                    v[a] = x0 * c[static_cast<size_t>(i)] - x1 * s[static_cast<size_t>(i)];
                    v[b] = x1 * c[static_cast<size_t>(i)] + x0 * s[static_cast<size_t>(i)];
                }
            }
        }
    });
}

}  // namespace kvscope::cpu
