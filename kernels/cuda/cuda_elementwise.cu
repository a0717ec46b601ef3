// Elementwise ops on the device: SwiGLU's silu(gate) * up and the residual add.
// CPU twins: cpu::silu_mul, cpu::add_inplace (kernels/cpu/cpu_elementwise.cpp).
// Floor: silu_mul 12 bytes/element (2 reads + 1 write), add 12 bytes/element; a few FLOPs each.
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_device.cuh"

namespace kvscope::cuda {
namespace {

__global__ void silu_mul_kernel(const float* gate, const float* up, int64_t n, float* out) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
    grid_wait();  // launched as a dependent (cuda_device.cuh)
    grid_release();
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        x[i] += y[i];
}

}  // namespace

void silu_mul(const float* gate, const float* up, int64_t n, float* out, cudaStream_t stream) {
    if (n <= 0) return;
    silu_mul_kernel<<<grid_1d(n, 256), 256, 0, stream>>>(gate, up, n, out);
    KVS_CUDA_CHECK_LAUNCH();
}

void add_inplace(float* x, const float* y, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    launch_dependent(add_kernel, grid_1d(n, 256), 256, 0, stream, x, y, n);
}

}  // namespace kvscope::cuda
