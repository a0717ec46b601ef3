// The CUDA backend's fused forms of a decode step's projections (Backend::matmul_parts, swiglu,
// matmul_add, rmsnorm_matmul_parts, rmsnorm_swiglu): one GEMV launch each (cuda_gemv.cu) where
// the rows fit the GEMV, else the Backend defaults (cuBLAS and the unfused kernels).
//
// The folded forms (KVSCOPE_CUDA_FOLD_NORMS=1, folds_norms()): the o and down GEMVs add their rows
// to the residual stream themselves, and the q/k/v, gate/up and LM-head GEMVs apply the RMSNorm
// in front of them as r * ((x * g) @ w^T) (GemvNorm). A decode step of the 8B shape then has no
// add_rmsnorm launches (64 of them, 6.2 us each; ncu, bench/RESULTS.md, tenth run).
#include "kernels/cuda/cuda_backend.h"

namespace kvscope::cuda {

bool CudaBackend::parts_fit(const Tensor& x, int count, const Tensor* const* ws) const {
    if (!fused_on_ || !gemv_on_ || count < 1 || count > kMaxGemvParts) return false;
    const int64_t k = ws[0]->dim(1);
    const int64_t n = x.numel() / k;
    int64_t rows = 0;
    for (int i = 0; i < count; ++i) {
        const Tensor& w = *ws[i];
        if (w.dim(1) != k || w.dtype != ws[0]->dtype ||
            !gemv_fits(x.as<float>(), n, k, w.data, w.dtype, w.dim(0)))
            return false;
        rows += w.dim(0);
    }
    return rows <= 65535LL * 8;
}

bool CudaBackend::swiglu_fits(const Tensor& x, const Tensor& w_gate, const Tensor& w_up) const {
    const int64_t k = w_gate.dim(1), m = w_gate.dim(0);
    const int64_t n = x.numel() / k;
    return fused_on_ && gemv_on_ && w_up.dim(0) == m && w_up.dim(1) == k &&
           w_up.dtype == w_gate.dtype &&
           gemv_fits(x.as<float>(), n, k, w_gate.data, w_gate.dtype, m) &&
           gemv_fits(x.as<float>(), n, k, w_up.data, w_up.dtype, m);
}

// The norm folds into a GEMV of w for one row of x, norm weights of w's dtype and k values.
bool CudaBackend::norm_fits(const Tensor& x, const Tensor& norm_w, const Tensor& w) const {
    const int64_t k = w.dim(1);
    return fold_norms_on_ && norm_w.numel() == k && x.numel() % k == 0 &&
           gemv_norm_fits(x.numel() / k, k, norm_w.data, norm_w.dtype, w.dtype);
}

void CudaBackend::launch_parts(const Tensor& x, int count, const Tensor* const* ws,
                               const Tensor* const* biases, Tensor* const* outs,
                               const GemvNorm& norm) {
    const int64_t k = ws[0]->dim(1);
    GemvPart parts[kMaxGemvParts];
    for (int i = 0; i < count; ++i)
        parts[i] = GemvPart{ws[i]->data, ws[i]->dim(0), biases[i] ? biases[i]->data : nullptr,
                            biases[i] ? biases[i]->dtype : DType::kF32, outs[i]->as<float>()};
    gemv_parts(x.as<float>(), x.numel() / k, k, ws[0]->dtype, parts, count, stream_, norm);
}

void CudaBackend::matmul_parts(const Tensor& x, int count, const Tensor* const* ws,
                               const Tensor* const* biases, Tensor* const* outs) {
    if (!parts_fit(x, count, ws)) return Backend::matmul_parts(x, count, ws, biases, outs);
    prof::Scope ps = op_scope("matmul_parts");
    launch_parts(x, count, ws, biases, outs, GemvNorm{});
}

void CudaBackend::rmsnorm_matmul_parts(const Tensor& x, const Tensor& norm_w, float eps, Tensor& h,
                                       int count, const Tensor* const* ws,
                                       const Tensor* const* biases, Tensor* const* outs) {
    if (!parts_fit(x, count, ws) || !norm_fits(x, norm_w, *ws[0]))
        return Backend::rmsnorm_matmul_parts(x, norm_w, eps, h, count, ws, biases, outs);
    prof::Scope ps = op_scope("rmsnorm_matmul_parts");
    launch_parts(x, count, ws, biases, outs, GemvNorm{norm_w.data, eps});
}

void CudaBackend::swiglu(const Tensor& x, const Tensor& w_gate, const Tensor& w_up, Tensor& gate,
                         Tensor& up, Tensor& out) {
    if (!swiglu_fits(x, w_gate, w_up)) return Backend::swiglu(x, w_gate, w_up, gate, up, out);
    prof::Scope ps = op_scope("swiglu");
    const int64_t k = w_gate.dim(1);
    gemv_swiglu(x.as<float>(), x.numel() / k, k, w_gate.data, w_up.data, w_gate.dtype,
                w_gate.dim(0), gate.as<float>(), up.as<float>(), out.as<float>(), stream_);
}

void CudaBackend::rmsnorm_swiglu(const Tensor& x, const Tensor& norm_w, float eps, Tensor& h,
                                 const Tensor& w_gate, const Tensor& w_up, Tensor& gate, Tensor& up,
                                 Tensor& out) {
    if (!swiglu_fits(x, w_gate, w_up) || !norm_fits(x, norm_w, w_gate))
        return Backend::rmsnorm_swiglu(x, norm_w, eps, h, w_gate, w_up, gate, up, out);
    prof::Scope ps = op_scope("rmsnorm_swiglu");
    const int64_t k = w_gate.dim(1);
    gemv_swiglu(x.as<float>(), 1, k, w_gate.data, w_up.data, w_gate.dtype, w_gate.dim(0),
                gate.as<float>(), up.as<float>(), out.as<float>(), stream_,
                GemvNorm{norm_w.data, eps});
}

void CudaBackend::matmul_add(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& tmp,
                             Tensor& out) {
    const int64_t k = w.dim(1), m = w.dim(0);
    const int64_t n = x.numel() / k;
    if (!fold_norms_on_ || !fused_on_ || !gemv_on_ || n != 1 || out.numel() != m ||
        !gemv_fits(x.as<float>(), n, k, w.data, w.dtype, m))
        return Backend::matmul_add(x, w, bias, tmp, out);
    prof::Scope ps = op_scope("matmul_add");
    gemv(x.as<float>(), n, k, w.data, w.dtype, m, bias ? bias->data : nullptr,
         bias ? bias->dtype : DType::kF32, out.as<float>(), stream_, /*accumulate=*/true);
}

}  // namespace kvscope::cuda
