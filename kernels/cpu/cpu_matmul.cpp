// CPU matmul (fp32 accumulate) with on-the-fly weight conversion. Twin of the device GEMM/GEMV.
// Parallel over output features: each task converts a block of weight rows once and reuses them
// for every input row (prefill), so conversion costs m*k regardless of n.
#include <algorithm>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace kvscope::cpu {

void load_row_f32(const void* src, DType dtype, int64_t k, float* dst) {
    switch (dtype) {
        case DType::kF32: {
            const float* s = static_cast<const float*>(src);
            std::copy(s, s + k, dst);
            return;
        }
        case DType::kBf16: {
            const uint16_t* s = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < k; ++i) dst[i] = bf16_to_f32(s[i]);
            return;
        }
        case DType::kF16: {
            const uint16_t* s = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < k; ++i) dst[i] = f16_to_f32(s[i]);
            return;
        }
        default:
            break;
    }
    std::fill(dst, dst + k, 0.0f);
}

float dot_f32(const float* a, const float* b, int64_t k) {
    // Eight independent accumulators let the compiler vectorise without -ffast-math.
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= k; i += 8)
        for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < k; ++i) s += a[i] * b[i];
    return s;
}

void matmul(ThreadPool& pool, const float* x, int64_t n, int64_t k, const void* w, DType wdt,
            int64_t m, const void* bias, DType bdt, float* out) {
    const size_t esz = dtype_size(wdt);
    const auto* wbytes = static_cast<const uint8_t*>(w);
    constexpr int64_t kBlock = 16;  // weight rows converted per block
    const int64_t n_blocks = (m + kBlock - 1) / kBlock;
    pool.parallel_for(n_blocks, [&](int64_t b0, int64_t b1) {
        std::vector<float> rows(static_cast<size_t>(kBlock * k));
        float bias_row[kBlock];
        for (int64_t b = b0; b < b1; ++b) {
            const int64_t j0 = b * kBlock;
            const int64_t nj = std::min(kBlock, m - j0);
            const bool direct = (wdt == DType::kF32);
            for (int64_t jj = 0; jj < nj; ++jj) {
                if (!direct)
                    load_row_f32(wbytes + static_cast<size_t>((j0 + jj) * k) * esz, wdt, k,
                                 rows.data() + jj * k);
                bias_row[jj] = 0.0f;
                if (bias) {
                    const uint8_t* bp = static_cast<const uint8_t*>(bias) +
                                        static_cast<size_t>(j0 + jj) * dtype_size(bdt);
                    load_row_f32(bp, bdt, 1, &bias_row[jj]);
                }
            }
            for (int64_t i = 0; i < n; ++i) {
                const float* xi = x + i * k;
                float* oi = out + i * m + j0;
                for (int64_t jj = 0; jj < nj; ++jj) {
                    const float* wr = direct
                                          ? reinterpret_cast<const float*>(wbytes) + (j0 + jj) * k
                                          : rows.data() + jj * k;
                    oi[jj] = dot_f32(xi, wr, k) + bias_row[jj];
                }
            }
        }
    });
}

}  // namespace kvscope::cpu
