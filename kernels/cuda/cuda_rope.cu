// RoPE on the device, in place. CPU twin: cpu::rope (kernels/cpu/cpu_norm_rope.cpp): the angle is
// float(pos) * inv_freq[i] in fp32, as HF computes it; cosf/sinf are the accurate (not __cosf)
// versions so positions of 128k stay within the op test's tolerance.
// Floor: n*heads*d*8 bytes (read + write); ~6 FLOPs per element plus one sincos per pair.
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_device.cuh"

namespace kvscope::cuda {
namespace {

// Elements of x ([n, heads, head_dim]) first, then those of x2 ([n, heads2, head_dim], may be
// empty): q and k in one launch.
__global__ void rope_kernel(float* x, int64_t heads, float* x2, int64_t heads2, int64_t n,
                            int64_t head_dim, const int64_t* positions, const float* inv_freq,
                            bool half_pairs) {
    grid_wait();  // launched as a dependent (cuda_device.cuh)
    grid_release();
    const int64_t half = head_dim / 2;
    const int64_t total1 = n * heads * half;
    const int64_t total = total1 + n * heads2 * half;
    for (int64_t e0 = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e0 < total;
         e0 += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const bool second = e0 >= total1;
        const int64_t e = second ? e0 - total1 : e0;
        const int64_t hs = second ? heads2 : heads;
        const int64_t i = e % half;
        const int64_t th = e / half;  // t * hs + h
        const int64_t t = th / hs;
        const float ang = static_cast<float>(positions[t]) * inv_freq[i];
        float s, c;
        sincosf(ang, &s, &c);
        float* v = (second ? x2 : x) + th * head_dim;
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
    rope_qk(x, heads, nullptr, 0, n, head_dim, positions, inv_freq, pairs, stream);
}

void rope_qk(float* q, int64_t heads_q, float* k, int64_t heads_k, int64_t n, int64_t head_dim,
             const int64_t* positions, const float* inv_freq, RopePairs pairs,
             cudaStream_t stream) {
    const int64_t total = n * (heads_q + heads_k) * (head_dim / 2);
    if (total <= 0) return;
    launch_dependent(rope_kernel, grid_1d(total, 256), 256, 0, stream, q, heads_q, k, heads_k, n,
                     head_dim, positions, inv_freq, pairs == RopePairs::kHalf);
}

}  // namespace kvscope::cuda
