// RMSNorm on the device: y = x * rsqrt(mean(x^2) + eps) * w, fp32 compute (HF upcasts too).
// CPU twin: cpu::rmsnorm (kernels/cpu/cpu_norm_rope.cpp; it sums squares in double, we in fp32
// with a fixed block reduction: the op test's tolerance covers the difference).
// Floor: rows*d*8 bytes (read x, write y) + d*sizeof(w); 4 FLOPs per element. One block per row.
#include <stdexcept>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_device.cuh"

namespace kvscope::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void rmsnorm_kernel(const float* x, int64_t d, const void* w, DType wdt, float eps,
                               float* out) {
    __shared__ float red[kThreads / 32];
    const float* xr = x + blockIdx.x * d;
    float* yr = out + blockIdx.x * d;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += kThreads) ss += xr[i] * xr[i];
    ss = block_sum<kThreads>(ss, red);
    const float inv = rsqrtf(ss / static_cast<float>(d) + eps);
    // Each element is read and written by the same thread: out may alias x.
    for (int64_t i = threadIdx.x; i < d; i += kThreads) yr[i] = load_f32(w, wdt, i) * (xr[i] * inv);
}

// x += y, then out = rmsnorm(x): the residual add and the next norm in one launch. The same
// loops and block reduction as rmsnorm_kernel, so out equals add_inplace then rmsnorm bit for
// bit. Each element is read and written by one thread: out may alias y (not x).
__global__ void add_rmsnorm_kernel(float* x, const float* y, int64_t d, const void* w, DType wdt,
                                   float eps, float* out) {
    __shared__ float red[kThreads / 32];
    float* xr = x + blockIdx.x * d;
    const float* yr = y + blockIdx.x * d;
    float* zr = out + blockIdx.x * d;
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
    rmsnorm_kernel<<<static_cast<unsigned int>(rows), kThreads, 0, stream>>>(x, d, w, wdt, eps,
                                                                             out);
    KVS_CUDA_CHECK_LAUNCH();
}

void add_rmsnorm(float* x, const float* y, int64_t rows, int64_t d, const void* w, DType wdt,
                 float eps, float* out, cudaStream_t stream) {
    if (rows <= 0) return;
    if (rows > 0x7fffffff) throw std::runtime_error("cuda add_rmsnorm: too many rows");
    add_rmsnorm_kernel<<<static_cast<unsigned int>(rows), kThreads, 0, stream>>>(x, y, d, w, wdt,
                                                                                 eps, out);
    KVS_CUDA_CHECK_LAUNCH();
}

}  // namespace kvscope::cuda
