// The CUDA backend's projection with the residual add and the next norm in one launch
// (Backend::matmul_add_rmsnorm; the class is in cuda_backend.h, the kernel in cuda_gemv.cu).
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

}  // namespace kvscope::cuda
