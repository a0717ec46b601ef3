#pragma once
// Helpers shared by the kernel files (.cu only): dtype loads, warp/block reductions, and the
// programmatic dependent launch of the decode path's kernels.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <utility>

#include "kernels/cuda/cuda_common.h"
#include "kernels/dtype.h"

namespace kvscope::cuda {

__device__ __forceinline__ float to_f32(float v) {
    return v;
}
__device__ __forceinline__ float to_f32(__half v) {
    return __half2float(v);
}
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) {
    return __bfloat162float(v);
}

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

// ---- Programmatic dependent launch (Hopper) --------------------------------------------------
// A decode step is ~300 small kernels in one stream; between two of them the GPU idles while the
// first drains and the second is launched (~1.2 ms of a 8.8 ms step on the 8B shape, ncu,
// bench/RESULTS.md, eighth run). A kernel launched with launch_dependent() may be scheduled while
// the kernel before it finishes. Contract for such a kernel: it calls grid_wait() before it reads
// or writes memory another kernel writes or reads (weights, never written, may be loaded before),
// on every path of every thread that touches memory, then grid_release(), which lets the next
// dependent kernel launch -- after the wait, so at most one kernel runs ahead. grid_wait() returns
// once the kernel before has completed and its writes are visible, so the chain stays ordered as
// plain stream order would. Launched without the attribute (KVSCOPE_CUDA_PDL=0, or after a copy)
// both are no-ops.
__device__ __forceinline__ void grid_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void grid_release() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

inline bool pdl_on() {
    static const bool on = switched_on("KVSCOPE_CUDA_PDL");
    return on;
}

// kernel<<<grid, block, smem, stream>>>(args...) as a programmatic dependent launch (see above).
template <class... Params, class... Args>
void launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                      cudaStream_t stream, Args&&... args) {
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl_on() ? 1 : 0;
    KVS_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

// ---- Asynchronous copies to shared memory (sm_80+) --------------------------------------------
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16 bytes global -> shared, asynchronously, through L2 only; zero-filled when !ok (src is then
// not read).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool ok) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(ok ? 16 : 0)
                 : "memory");
}
// 8 and 4 bytes global -> shared, asynchronously (through L1), zero-filled when !ok: positions
// (int64) and rows of floats that need not be 16-byte aligned.
__device__ __forceinline__ void cp_async8(void* dst, const void* src, bool ok) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(ok ? 8 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src, bool ok) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(ok ? 4 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

inline unsigned int grid_1d(int64_t n, int threads, int64_t cap = 65535 * 16) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > cap) b = cap;
    return static_cast<unsigned int>(b);
}

}  // namespace kvscope::cuda
