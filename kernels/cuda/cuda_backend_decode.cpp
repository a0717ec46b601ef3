// The CUDA backend's q/k/v projections with RoPE in one GEMV launch (Backend::matmul_qkv_rope; the
// class is in cuda_backend.h, the kernel in cuda_gemv.cu).
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_common.h"

namespace kvscope::cuda {

// One decode row with KVSCOPE_CUDA_QKV_ROPE=1 whose three parts fit gemv_parts (matmul_parts
// above) and whose head_dim gemv_rope_fits: q and k leave the GEMV rotated, so no rope_qk launch.
// Otherwise Backend's default: matmul_parts, then rope_qk.
void CudaBackend::matmul_qkv_rope(const Tensor& x, const Tensor* const* ws,
                                  const Tensor* const* biases, Tensor& q, Tensor& k, Tensor& v,
                                  const int64_t* positions, const float* inv_freq,
                                  RopePairs pairs) {
    const int64_t kk = ws[0]->dim(1), hd = q.dim(2);
    const int64_t n = x.numel() / kk;
    Tensor* outs[3] = {&q, &k, &v};
    bool fits = qkv_rope_on_ && fused_on_ && gemv_on_ && gemv_rope_fits(n, hd) && k.dim(2) == hd &&
                q.dim(0) == n && k.dim(0) == n;
    for (int i = 0; fits && i < 3; ++i) {
        const Tensor& w = *ws[i];
        fits = w.dim(1) == kk && w.dtype == ws[0]->dtype && outs[i]->numel() == n * w.dim(0) &&
               gemv_fits(x.as<float>(), n, kk, w.data, w.dtype, w.dim(0));
    }
    fits = fits && ws[0]->dim(0) % hd == 0 && ws[1]->dim(0) % hd == 0;
    if (!fits) return Backend::matmul_qkv_rope(x, ws, biases, q, k, v, positions, inv_freq, pairs);
    prof::Scope ps = op_scope("matmul_qkv_rope");
    GemvPart parts[3];
    for (int i = 0; i < 3; ++i)
        parts[i] = GemvPart{ws[i]->data, ws[i]->dim(0), biases[i] ? biases[i]->data : nullptr,
                            biases[i] ? biases[i]->dtype : DType::kF32, outs[i]->as<float>()};
    GemvRope rope;
    rope.parts = 2;
    rope.positions = stage_same(positions, 1);
    rope.inv_freq = stage_same(inv_freq, static_cast<size_t>(hd / 2));
    rope.head_dim = hd;
    rope.half_pairs = pairs == RopePairs::kHalf;
    gemv_parts(x.as<float>(), n, kk, ws[0]->dtype, parts, 3, stream_, rope);
}

}  // namespace kvscope::cuda
