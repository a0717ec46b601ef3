// The default CPU matmul: out[n, m] = x[n, k] @ w[m, k]^T (+ bias). Prefill (n > kGemvRows) goes to
// BLAS sgemm, the output features split over the pool's threads (single-threaded sgemm calls);
// decode (n <= kGemvRows) to our own gemv, which bench/bench_cpu_kernels measured faster
// than sgemm at n = 1 (sgemm packs the weight panel, a pure cost when every weight is read once).
// Weights are f32 here when the backend converted them at upload (the usual case); bf16 / f16
// weights (a model over the conversion cap) are converted in cache-sized blocks of rows per call.
#include <algorithm>
#include <vector>

#include "kernels/cpu/cpu_blas.h"
#include "kernels/cpu/cpu_ops.h"

namespace kvscope::cpu {
namespace {

constexpr int64_t kGemvRows = 1;
// Rows of a bf16 weight converted per block: ~128 KiB of f32 at k = 4096 (fits L2 with x).
int64_t block_rows(int64_t k) {
    return std::max<int64_t>(8, (int64_t{32} * 1024) / std::max<int64_t>(k, 1));
}

// Runtime dispatch: AVX-512 / AVX2+FMA clones of the dot product, the portable one otherwise
// (the binary must run on any x86-64; no -march).
#if defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define KVSCOPE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KVSCOPE_CLONES
#endif

}  // namespace

KVSCOPE_CLONES
void gemv_f32(const float* x, int64_t k, const float* w, int64_t rows, float* out) {
    // Four weight rows at a time share each load of x; 16 lanes per row keep the FMAs busy.
    int64_t j = 0;
    for (; j + 4 <= rows; j += 4) {
        const float* w0 = w + j * k;
        const float* w1 = w0 + k;
        const float* w2 = w1 + k;
        const float* w3 = w2 + k;
        float a0[16] = {}, a1[16] = {}, a2[16] = {}, a3[16] = {};
        int64_t i = 0;
        for (; i + 16 <= k; i += 16)
            for (int l = 0; l < 16; ++l) {
                const float xv = x[i + l];
                a0[l] += xv * w0[i + l];
                a1[l] += xv * w1[i + l];
                a2[l] += xv * w2[i + l];
                a3[l] += xv * w3[i + l];
            }
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int l = 0; l < 16; ++l) {
            s0 += a0[l];
            s1 += a1[l];
            s2 += a2[l];
            s3 += a3[l];
        }
        for (; i < k; ++i) {
            s0 += x[i] * w0[i];
            s1 += x[i] * w1[i];
            s2 += x[i] * w2[i];
            s3 += x[i] * w3[i];
        }
        out[j] = s0;
        out[j + 1] = s1;
        out[j + 2] = s2;
        out[j + 3] = s3;
    }
    for (; j < rows; ++j) out[j] = dot_f32(x, w + j * k, k);
}

namespace {

void add_bias(const void* bias, DType bdt, int64_t j0, int64_t j1, float* o) {
    if (!bias) return;
    std::vector<float> b(static_cast<size_t>(j1 - j0));
    load_row_f32(static_cast<const uint8_t*>(bias) + static_cast<size_t>(j0) * dtype_size(bdt), bdt,
                 j1 - j0, b.data());
    for (int64_t j = j0; j < j1; ++j) o[j] += b[static_cast<size_t>(j - j0)];
}

}  // namespace

void matmul_fast(ThreadPool& pool, const float* x, int64_t n, int64_t k, const void* w, DType wdt,
                 int64_t m, const void* bias, DType bdt, float* out) {
    const BlasApi* blas = blas_api();
    const bool gemv = n <= kGemvRows;
    if (!gemv && !blas) {  // no BLAS here: the reference loops
        matmul(pool, x, n, k, w, wdt, m, bias, bdt, out);
        return;
    }
    const bool f32 = wdt == DType::kF32;
    const auto* wb = static_cast<const uint8_t*>(w);
    const size_t esz = dtype_size(wdt);
    // Parts: contiguous ranges of output features in multiples of 16, 4 per thread, claimed by
    // whichever thread is running (see thread_pool.h); the split depends on m and the thread count
    // only, so results do not depend on scheduling.
    const int64_t unit = 16;
    const int64_t units = (m + unit - 1) / unit;
    const int64_t parts = std::min<int64_t>(units, 4 * pool.size());
    pool.parallel_for_work(parts, n * m * k, [&](int64_t p0, int64_t p1) {
        const int64_t j0 = std::min(m, units * p0 / parts * unit);
        const int64_t j1 = std::min(m, units * p1 / parts * unit);
        if (j0 >= j1) return;
        std::vector<float> conv;
        const int64_t br = f32 ? (j1 - j0) : block_rows(k);
        for (int64_t b0 = j0; b0 < j1; b0 += br) {
            const int64_t rows = std::min(br, j1 - b0);
            const float* wf;
            if (f32) {
                wf = reinterpret_cast<const float*>(w) + b0 * k;
            } else {
                conv.resize(static_cast<size_t>(rows * k));
                load_row_f32(wb + static_cast<size_t>(b0 * k) * esz, wdt, rows * k, conv.data());
                wf = conv.data();
            }
            if (gemv) {
                for (int64_t i = 0; i < n; ++i) gemv_f32(x + i * k, k, wf, rows, out + i * m + b0);
            } else {
                blas->sgemm(kRowMajor, kNoTrans, kTrans, static_cast<int>(n),
                            static_cast<int>(rows), static_cast<int>(k), 1.0f, x,
                            static_cast<int>(k), wf, static_cast<int>(k), 0.0f, out + b0,
                            static_cast<int>(m));
            }
        }
        if (bias)
            for (int64_t i = 0; i < n; ++i) add_bias(bias, bdt, j0, j1, out + i * m);
    });
}

}  // namespace kvscope::cpu
