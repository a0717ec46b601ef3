#pragma once
// What the tensor-core prefill kernels share across files: the bf16 operand copies one call makes
// (cuda_attention_mma.cu, Bf16Scratch) and the Hopper forward that reads them
// (cuda_attention_wgmma.cu).
#include <cuda_bf16.h>

#include <cstdint>
#include <cstring>

#include "kernels/cuda/cuda_common.h"

namespace kvscope::cuda {

// Bf16 copies made once per call: Q as [n, H, D]; K and V compacted to [G, ld, D] (head g's slot
// j at row g * ld + j, ld = max_len) so tiles are read as 16-byte chunks. kb: per KV head and
// 64-key tile {min, max} key position ([G][ceil(ld / 64)][2]); qb: per 16-query tile from
// q_begin {min, max} query position ([ceil((n - q_begin) / 16)][2]).
struct Bf16Ops {
    const __nv_bfloat16* q = nullptr;
    const __nv_bfloat16* k = nullptr;
    const __nv_bfloat16* v = nullptr;
    const int64_t* kb = nullptr;
    const int64_t* qb = nullptr;
};
constexpr int kBoundTile = 64;  // keys per kb entry
constexpr float kLn2 = 0.6931471805599453f;

// ---- cuda_attention_wgmma.cu --------------------------------------------------------------------
// The forward (out, LSE) on Hopper's warpgroup MMA, for what flash_fwd_mma computes: the default
// where it fits (head_dim 128 on a compute capability 9.0 device) since its op cases passed on an
// H100; KVSCOPE_CUDA_FWD_WGMMA=0 keeps flash_fwd_mma, =2 / =3 select other shapes (file comment
// of cuda_attention_wgmma.cu). cl2 = scale * log2 e (the value both passes multiply logits by).
bool flash_fwd_wgmma_fits(const AttentionDev& a);
void flash_fwd_wgmma(const AttentionDev& a, const Bf16Ops& b, float cl2, int hb,
                     cudaStream_t stream);
// The statistics pass (column sums, the last n_tail rows) on wgmma, for what probs_pass_mma
// computes: the default where it fits, as the forward (KVSCOPE_CUDA_PROBS_WGMMA=0 keeps
// probs_pass_mma). b.qb: 16-query tile bounds.
void probs_pass_wgmma(const AttentionDev& a, const Bf16Ops& b, float cl2, int64_t q_begin,
                      float* colsum, float* rows, int64_t n_tail, int hb, cudaStream_t stream);

#ifdef __CUDACC__
// ---- device helpers both files use (fragment layouts: cuda_attention_mma.cu's file comment) ----
// 2^x on the special-function unit, subnormal results flushed to 0 (a probability below 2^-126
// adds nothing a float sum keeps); exp2f adds a range fix-up around the same instruction.
__device__ __forceinline__ float exp2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &v, 4);
    return u;
}
// Max over the 4 lanes of a fragment row group (lanes 4g .. 4g + 3).
__device__ __forceinline__ float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}
// A forward's epilogue for one of a lane's rows: its 4 lanes' sums of exp added, the LSE
// (natural log; -inf for a row that saw no key) from the running max m (log2 units), and the
// normalised output row from the accumulator elements {2 half, 2 half + 1} of each 8-dim block
// of o. Every lane calls it (the sum is a shuffle), rows past n write nothing.
template <int ND>
__device__ __forceinline__ void write_forward_row(const AttentionDev& a, const float (&o)[ND][4],
                                                  int half, float m, float l, int64_t q, int64_t h,
                                                  int lane) {
    const float li = quad_sum(l);
    const float inv = li > 0.0f ? 1.0f / li : 0.0f;
    if (q >= a.n) return;
    if ((lane & 3) == 0) a.lse[h * a.n + q] = li > 0.0f ? (m + log2f(li)) * kLn2 : -INFINITY;
    float* dst = a.out + (q * a.H + h) * (8 * ND) + 2 * (lane & 3);
#pragma unroll
    for (int f = 0; f < ND; ++f)
        *reinterpret_cast<float2*>(dst + f * 8) =
            make_float2(o[f][2 * half] * inv, o[f][2 * half + 1] * inv);
}
#endif

}  // namespace kvscope::cuda
