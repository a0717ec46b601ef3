// RoPE on the device, in place. CPU twin: cpu::rope (kernels/cpu/cpu_norm_rope.cpp): the angle is
// float(pos) * inv_freq[i] in fp32, as HF computes it; cosf/sinf are the accurate (not __cosf)
// versions so positions of 128k stay within the op test's tolerance.
// Floor: n*heads*d*8 bytes (read + write); ~6 FLOPs per element plus one sincos per pair.
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_device.cuh"

namespace kvscope::cuda {
namespace {

__global__ void rope_kernel(float* x, int64_t n, int64_t heads, int64_t head_dim,
                            const int64_t* positions, const float* inv_freq, bool half_pairs) {
    const int64_t half = head_dim / 2;
    const int64_t total = n * heads * half;
    for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
         e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t i = e % half;
        const int64_t th = e / half;  // t * heads + h
        const int64_t t = th / heads;
        const float ang = static_cast<float>(positions[t]) * inv_freq[i];
        float s, c;
        sincosf(ang, &s, &c);
        float* v = x + th * head_dim;
        const int64_t a = half_pairs ? i : 2 * i;
        const int64_t b = half_pairs ? i + half : 2 * i + 1;
        const float x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x1 * c + x0 * s;
    }
}

}  // namespace

void rope(float* x, int64_t n, int64_t heads, int64_t head_dim, const int64_t* positions,
          const float* inv_freq, RopePairs pairs, cudaStream_t stream) {
    const int64_t total = n * heads * (head_dim / 2);
    if (total <= 0) return;
    rope_kernel<<<grid_1d(total, 256), 256, 0, stream>>>(x, n, heads, head_dim, positions, inv_freq,
                                                         pairs == RopePairs::kHalf);
    KVS_CUDA_CHECK_LAUNCH();
}

}  // namespace kvscope::cuda
