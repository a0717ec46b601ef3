// Decode matmul without cuBLAS: out[n, m] = x[n, k] @ w[m, k]^T (+ bias[m]) for n <= kGemvMaxRows
// (decode rows), x in fp32 and w in its stored dtype (bf16 / f16 / f32), fp32 accumulation.
// CPU twin: cpu::matmul (kernels/cpu/cpu_matmul.cpp), which also multiplies fp32 x by the
// widened weights, so this path is closer to the CPU than cuBLAS's (x rounded to bf16 there).
//
// Why: a decode step is bound by reading the weights once (8B model: 16 GB per token). Through
// cuBLAS each of the 7 projections per layer cost a cast kernel (x -> bf16) plus a GEMM launch
// whose n = 1 kernels reached 30-60 % of the bandwidth floor on the small projections (H100,
// KVSCOPE_PROFILE=1: 4096x4096 at 38 us vs 11 us of bytes; bench/RESULTS.md).
//
// Layout: one warp per output row m (8 warps, 8 rows per block). Lane l reads 16-byte vectors of
// the row, vector v = l, l + 32, ... (coalesced: a warp reads 512 contiguous bytes per step), with
// kUnroll vectors in flight per lane; x is read through the read-only cache (every warp of the
// block reads the same x). Each of the n rows' partial sums is reduced across the warp at the end.
// Floor: bytes m*k*sizeof(w) (+ n*k*4 for x, cached); FLOPs 2*n*m*k.
// Needs k a multiple of the vector width and 16-byte aligned w and x rows (gemv_fits()); the
// caller falls back to cuBLAS otherwise.
#include <cstdint>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_device.cuh"

namespace kvscope::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kUnroll = 4;

template <class W>
struct Vec;  // 16 bytes of weights widened to floats
template <>
struct Vec<__nv_bfloat16> {
    static constexpr int kN = 8;
    static __device__ __forceinline__ void widen(const uint4& r, float* f) {
        const auto* h = reinterpret_cast<const __nv_bfloat162*>(&r);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 p = __bfloat1622float2(h[i]);
            f[2 * i] = p.x;
            f[2 * i + 1] = p.y;
        }
    }
};
template <>
struct Vec<__half> {
    static constexpr int kN = 8;
    static __device__ __forceinline__ void widen(const uint4& r, float* f) {
        const auto* h = reinterpret_cast<const __half2*>(&r);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 p = __half22float2(h[i]);
            f[2 * i] = p.x;
            f[2 * i + 1] = p.y;
        }
    }
};
template <>
struct Vec<float> {
    static constexpr int kN = 4;
    static __device__ __forceinline__ void widen(const uint4& r, float* f) {
        const auto* p = reinterpret_cast<const float*>(&r);
#pragma unroll
        for (int i = 0; i < 4; ++i) f[i] = p[i];
    }
};

template <class W, int N>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(const float* __restrict__ x, int64_t k, const W* __restrict__ w, int64_t m,
                const void* bias, DType bdt, float* __restrict__ out) {
    constexpr int VN = Vec<W>::kN;
    const int lane = static_cast<int>(threadIdx.x) & 31;
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
    if (row >= m) return;
    const int64_t nv = k / VN;  // vectors per row
    const uint4* wr = reinterpret_cast<const uint4*>(w + row * k);
    float acc[N];
#pragma unroll
    for (int i = 0; i < N; ++i) acc[i] = 0.0f;
    for (int64_t v0 = lane; v0 < nv; v0 += 32 * kUnroll) {
        uint4 raw[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {  // the loads first: kUnroll in flight
            const int64_t v = v0 + 32 * u;
            raw[u] = v < nv ? __ldg(wr + v) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int64_t v = v0 + 32 * u;
            if (v >= nv) break;
            float wf[VN];
            Vec<W>::widen(raw[u], wf);
#pragma unroll
            for (int i = 0; i < N; ++i) {
                const float4* xr = reinterpret_cast<const float4*>(x + i * k + v * VN);
#pragma unroll
                for (int q = 0; q < VN / 4; ++q) {
                    const float4 xv = __ldg(xr + q);
                    acc[i] += wf[4 * q] * xv.x + wf[4 * q + 1] * xv.y + wf[4 * q + 2] * xv.z +
                              wf[4 * q + 3] * xv.w;
                }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < N; ++i) {
        const float s = warp_sum(acc[i]);
        if (lane == 0) out[i * m + row] = s + (bias ? load_f32(bias, bdt, row) : 0.0f);
    }
}

template <class W>
void launch(const float* x, int64_t n, int64_t k, const W* w, int64_t m, const void* bias,
            DType bdt, float* out, cudaStream_t stream) {
    const dim3 grid(static_cast<unsigned int>((m + kWarps - 1) / kWarps));
    switch (n) {
#define KVS_GEMV_CASE(N)                                                                 \
    case N:                                                                              \
        gemv_kernel<W, N><<<grid, kWarps * 32, 0, stream>>>(x, k, w, m, bias, bdt, out); \
        break;
        KVS_GEMV_CASE(1)
        KVS_GEMV_CASE(2)
        KVS_GEMV_CASE(3)
        KVS_GEMV_CASE(4)
        KVS_GEMV_CASE(5)
        KVS_GEMV_CASE(6)
        KVS_GEMV_CASE(7)
        KVS_GEMV_CASE(8)
#undef KVS_GEMV_CASE
        default:
            return;
    }
    KVS_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool gemv_fits(const float* x, int64_t n, int64_t k, const void* w, DType wdt, int64_t m) {
    if (n < 1 || n > kGemvMaxRows || m < 1 || m > 65535LL * kWarps) return false;
    const int vn = wdt == DType::kF32 ? 4 : (wdt == DType::kBf16 || wdt == DType::kF16 ? 8 : 0);
    if (vn == 0 || k % vn != 0 || k % 4 != 0) return false;  // x rows as float4 too
    const auto a16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
    return a16(x) && a16(w);
}

void gemv(const float* x, int64_t n, int64_t k, const void* w, DType wdt, int64_t m,
          const void* bias, DType bdt, float* out, cudaStream_t stream) {
    switch (wdt) {
        case DType::kBf16:
            return launch(x, n, k, static_cast<const __nv_bfloat16*>(w), m, bias, bdt, out, stream);
        case DType::kF16:
            return launch(x, n, k, static_cast<const __half*>(w), m, bias, bdt, out, stream);
        case DType::kF32:
            return launch(x, n, k, static_cast<const float*>(w), m, bias, bdt, out, stream);
        default:
            return;
    }
}

}  // namespace kvscope::cuda
