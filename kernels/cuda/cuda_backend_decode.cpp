// The CUDA backend's fused decode-row ops whose kernels are GEMVs with an epilogue (cuda_gemv.cu;
// the class is in cuda_backend.h): a projection with the residual add and the next norm
// (Backend::matmul_add_rmsnorm), the q/k/v projections with RoPE (Backend::matmul_qkv_rope).
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_common.h"

namespace kvscope::cuda {

// One decode row whose GEMV fits (gemv_fits) with KVSCOPE_CUDA_NORM_TAIL=1: the GEMV adds its
// row to x and its last block writes out = rmsnorm(x); y is left unwritten. Otherwise the
// unfused ops (Backend's default): matmul into y, then add_rmsnorm.
void CudaBackend::matmul_add_rmsnorm(const Tensor& a, const Tensor& w, const Tensor* bias,
                                     Tensor& y, Tensor& x, const Tensor& g, float eps,
                                     Tensor& out) {
    const int64_t k = w.dim(1), m = w.dim(0);
    const int64_t n = a.numel() / k;
    const bool fits = norm_tail_on_ && fused_on_ && gemv_on_ && n == 1 && x.numel() == m &&
                      g.numel() == m && out.numel() == m && out.data != x.data &&
                      gemv_fits(a.as<float>(), n, k, w.data, w.dtype, m);
    if (!fits) return Backend::matmul_add_rmsnorm(a, w, bias, y, x, g, eps, out);
    prof::Scope ps = op_scope("matmul_add_rmsnorm");
    auto* ticket = static_cast<unsigned int*>(
        gemv_ticket_.ensure_zeroed(sizeof(unsigned int), sizeof(unsigned int), stream_));
    gemv(a.as<float>(), n, k, w.data, w.dtype, m, bias ? bias->data : nullptr,
         bias ? bias->dtype : DType::kF32, x.as<float>(), stream_,
         GemvNormTail{g.data, g.dtype, eps, out.as<float>(), ticket});
}

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
