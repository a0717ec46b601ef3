// RMSNorm on the device: y = x * rsqrt(mean(x^2) + eps) * w, fp32 compute (HF upcasts too).
// CPU twin: cpu::rmsnorm (kernels/cpu/cpu_norm_rope.cpp; it sums squares in double, we in fp32
// with a fixed block reduction: the op test's tolerance covers the difference).
// Floor: rows*d*8 bytes (read x, write y) + d*sizeof(w); 4 FLOPs per element. One block per row.
#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_device.cuh"

namespace kvscope::cuda {
namespace {

constexpr int kThreads = 256;
// Elements per thread kept in registers: rows of up to kThreads * kPer (8,192) are read once,
// with every load in flight together. Why: a decode row (n = 1) is one block, and the loops
// below, one dependent global load and store after another, took 14.6 us per add_rmsnorm on
// the 8B shape (0.92 ms of a 8.9 ms step; ncu, bench/RESULTS.md, eighth run). Longer rows take
// the loops. Thread t owns elements t, t + kThreads, ... and sums their squares in that order
// in both paths, so the results are the same bit for bit. KVSCOPE_CUDA_NORM_REGS=0 takes the
// loops for every row.
constexpr int kPer = 32;

bool norm_regs() {
    static const bool on = switched_on("KVSCOPE_CUDA_NORM_REGS");
    return on;
}

// Sum of squares of row r (length d) into the block, v[k] = r[t + k * kThreads].
__device__ __forceinline__ float load_row(const float* __restrict__ r, int64_t d,
                                          float (&v)[kPer]) {
    const int t = static_cast<int>(threadIdx.x);
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
        const int64_t i = t + static_cast<int64_t>(k) * kThreads;
        v[k] = i < d ? r[i] : 0.0f;
    }
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < kPer; ++k) ss += v[k] * v[k];  // zeros past d add nothing
    return ss;
}

// The norm's weights of this thread's elements, wv[k] = f32(w[t + k * kThreads]), loaded before
// the kernel waits for the one before it (weights are never written): one branch on the dtype,
// then every load in flight. Why: load_f32's switch inside the unrolled store loop put each load
// behind a branch, one dependent load after another (add_rmsnorm still took 10.2 us with the
// rows in registers; ncu, bench/RESULTS.md, ninth run).
template <class W>
__device__ __forceinline__ void load_weights_as(const W* __restrict__ w, int64_t d,
                                                float (&wv)[kPer]) {
    const int t = static_cast<int>(threadIdx.x);
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
        const int64_t i = t + static_cast<int64_t>(k) * kThreads;
        wv[k] = i < d ? to_f32(w[i]) : 0.0f;
    }
}
__device__ __forceinline__ void load_weights(const void* w, DType wdt, int64_t d,
                                             float (&wv)[kPer]) {
    switch (wdt) {
        case DType::kBf16:
            return load_weights_as(static_cast<const __nv_bfloat16*>(w), d, wv);
        case DType::kF16:
            return load_weights_as(static_cast<const __half*>(w), d, wv);
        default:
            return load_weights_as(static_cast<const float*>(w), d, wv);
    }
}

__device__ __forceinline__ void store_norm(const float (&v)[kPer], const float (&wv)[kPer],
                                           int64_t d, float inv, float* __restrict__ out) {
    const int t = static_cast<int>(threadIdx.x);
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
        const int64_t i = t + static_cast<int64_t>(k) * kThreads;
        if (i < d) out[i] = wv[k] * (v[k] * inv);
    }
}

__global__ void rmsnorm_kernel(const float* x, int64_t d, const void* w, DType wdt, float eps,
                               float* out, bool regs) {
    __shared__ float red[kThreads / 32];
    const bool in_regs = regs && d <= static_cast<int64_t>(kThreads) * kPer;
    float wv[kPer];
    if (in_regs) load_weights(w, wdt, d, wv);
    grid_wait();  // launched as a dependent (cuda_device.cuh)
    grid_release();
    const float* xr = x + blockIdx.x * d;
    float* yr = out + blockIdx.x * d;
    if (in_regs) {
        float v[kPer];
        float ss = load_row(xr, d, v);
        ss = block_sum<kThreads>(ss, red);
        const float inv = rsqrtf(ss / static_cast<float>(d) + eps);
        store_norm(v, wv, d, inv, yr);  // out may alias x: x was read before
        return;
    }
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += kThreads) ss += xr[i] * xr[i];
    ss = block_sum<kThreads>(ss, red);
    const float inv = rsqrtf(ss / static_cast<float>(d) + eps);
    // Each element is read and written by the same thread: out may alias x.
    for (int64_t i = threadIdx.x; i < d; i += kThreads) yr[i] = load_f32(w, wdt, i) * (xr[i] * inv);
}

// x += y, then out = rmsnorm(x): the residual add and the next norm in one launch. The same
// order of sums and block reduction as rmsnorm_kernel, so out equals add_inplace then rmsnorm
// bit for bit. Each element is read and written by one thread: out may alias y (not x).
__global__ void add_rmsnorm_kernel(float* x, const float* y, int64_t d, const void* w, DType wdt,
                                   float eps, float* out, bool regs) {
    __shared__ float red[kThreads / 32];
    const bool in_regs = regs && d <= static_cast<int64_t>(kThreads) * kPer;
    float wv[kPer];
    if (in_regs) load_weights(w, wdt, d, wv);
    grid_wait();
    grid_release();
    float* xr = x + blockIdx.x * d;
    const float* yr = y + blockIdx.x * d;
    float* zr = out + blockIdx.x * d;
    if (in_regs) {
        const int t = static_cast<int>(threadIdx.x);
        float v[kPer];
#pragma unroll
        for (int k = 0; k < kPer; ++k) {  // every load first: all in flight
            const int64_t i = t + static_cast<int64_t>(k) * kThreads;
            v[k] = i < d ? xr[i] + yr[i] : 0.0f;
        }
        float ss = 0.0f;
#pragma unroll
        for (int k = 0; k < kPer; ++k) {
            const int64_t i = t + static_cast<int64_t>(k) * kThreads;
            if (i < d) xr[i] = v[k];
            ss += v[k] * v[k];
        }
        ss = block_sum<kThreads>(ss, red);
        const float inv = rsqrtf(ss / static_cast<float>(d) + eps);
        store_norm(v, wv, d, inv, zr);
        return;
    }
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += kThreads) {
        const float v = xr[i] + yr[i];
        xr[i] = v;
        ss += v * v;
    }
    ss = block_sum<kThreads>(ss, red);
    const float inv = rsqrtf(ss / static_cast<float>(d) + eps);
    for (int64_t i = threadIdx.x; i < d; i += kThreads) zr[i] = load_f32(w, wdt, i) * (xr[i] * inv);
}

}  // namespace

void rmsnorm(const float* x, int64_t rows, int64_t d, const void* w, DType wdt, float eps,
             float* out, cudaStream_t stream) {
    if (rows <= 0) return;
    if (rows > 0x7fffffff) throw std::runtime_error("cuda rmsnorm: too many rows");
    launch_dependent(rmsnorm_kernel, dim3(static_cast<unsigned int>(rows)), kThreads, 0, stream, x,
                     d, w, wdt, eps, out, norm_regs());
}

void add_rmsnorm(float* x, const float* y, int64_t rows, int64_t d, const void* w, DType wdt,
                 float eps, float* out, cudaStream_t stream) {
    if (rows <= 0) return;
    if (rows > 0x7fffffff) throw std::runtime_error("cuda add_rmsnorm: too many rows");
    launch_dependent(add_rmsnorm_kernel, dim3(static_cast<unsigned int>(rows)), kThreads, 0, stream,
                     x, y, d, w, wdt, eps, out, norm_regs());
}

}  // namespace kvscope::cuda
