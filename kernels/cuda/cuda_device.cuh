#pragma once
// Device-side helpers shared by the kernel files (.cu only): dtype loads and warp/block reductions.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace kvscope::cuda {

__device__ __forceinline__ float load_f32(const void* base, DType dt, int64_t i) {
    switch (dt) {
        case DType::kF16:
            return __half2float(static_cast<const __half*>(base)[i]);
        case DType::kBf16:
            return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
        default:
            return static_cast<const float*>(base)[i];
    }
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a block of kThreads (a multiple of 32); every thread gets the result. `red` holds
// kThreads / 32 floats. Fixed reduction order: deterministic.
template <int kThreads>
__device__ __forceinline__ float block_sum(float v, float* red) {
    v = warp_sum(v);
    const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float s = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) s += red[w];
    return s;
}

template <int kThreads>
__device__ __forceinline__ float block_max(float v, float* red) {
    v = warp_max(v);
    const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float m = red[0];
    for (int w = 1; w < kThreads / 32; ++w) m = fmaxf(m, red[w]);
    return m;
}

inline unsigned int grid_1d(int64_t n, int threads, int64_t cap = 65535 * 16) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > cap) b = cap;
    return static_cast<unsigned int>(b);
}

}  // namespace kvscope::cuda
