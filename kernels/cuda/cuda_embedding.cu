// Embedding lookup on the device. CPU twin: cpu::embedding (kernels/cpu/cpu_elementwise.cpp).
// Floor: n*d*sizeof(table) bytes read + n*d*4 written; no FLOPs. Bandwidth-bound and tiny (once
// per forward).
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_device.cuh"

namespace kvscope::cuda {
namespace {

__global__ void embedding_kernel(const void* table, DType dt, int64_t vocab, int64_t d,
                                 const int32_t* ids, int64_t n, float* out) {
    grid_wait();  // launched as a dependent (cuda_device.cuh)
    grid_release();
    const int64_t total = n * d;
    for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
         e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t i = e / d, c = e % d;
        const int64_t id = ids[i];
        out[e] = (id < 0 || id >= vocab) ? 0.0f : load_f32(table, dt, id * d + c);
    }
}

}  // namespace

void embedding(const void* table, DType dt, int64_t vocab, int64_t d, const int32_t* ids, int64_t n,
               float* out, cudaStream_t stream) {
    if (n <= 0 || d <= 0) return;
    launch_dependent(embedding_kernel, grid_1d(n * d, 256), 256, 0, stream, table, dt, vocab, d,
                     ids, n, out);
}

}  // namespace kvscope::cuda
