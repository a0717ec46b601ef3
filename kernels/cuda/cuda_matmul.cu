// Matrix multiply on the device through cuBLAS: out[n, m] = x[n, k] @ w[m, k]^T (+ bias[m]).
// CPU twin: cpu::matmul (kernels/cpu/cpu_matmul.cpp).
// Floor: FLOPs 2*n*m*k; bytes m*k*sizeof(w) + n*k*4 + n*m*4. Decode (n = 1) is bound by the weight
// bytes (the whole model streams once per token); prefill is bound by the tensor cores.
//
// Precision: activations are fp32. For f16/bf16 weights x is rounded to the weight dtype and
// cublasGemmEx multiplies A and B of that dtype with fp32 accumulation (CUBLAS_COMPUTE_32F, fp32
// output) -- the mixed fp32-activation x bf16-weight product the CPU computes has no cuBLAS
// kernel. fp32 weights use CUBLAS_COMPUTE_32F as well (no TF32), so the "fp32 mode" (weights
// converted to fp32 at upload, KVSCOPE_CUDA_MATH=fp32) matches the CPU oracle to ~1e-6.
//
// Row-major to cuBLAS's column-major: out^T [m, n] = W [m, k] . x^T [k, n]. W's row-major buffer
// is the column-major k x m matrix W^T, so A = W with op T (lda = k); x's buffer is column-major
// k x n, op N (ldb = k); C is column-major m x n with ldc = m, i.e. row-major out [n, m].
#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_device.cuh"

namespace kvscope::cuda {
namespace {

__global__ void cast_kernel(const float* x, int64_t n, DType to, void* dst) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        if (to == DType::kBf16)
            static_cast<__nv_bfloat16*>(dst)[i] = __float2bfloat16_rn(x[i]);
        else
            static_cast<__half*>(dst)[i] = __float2half_rn(x[i]);
    }
}

__global__ void to_f32_kernel(const void* src, DType dt, int64_t n, float* dst) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        dst[i] = load_f32(src, dt, i);
}

__global__ void bias_kernel(float* out, int64_t n, int64_t m, const void* bias, DType bdt) {
    const int64_t total = n * m;
    for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
         e += static_cast<int64_t>(gridDim.x) * blockDim.x)
        out[e] += load_f32(bias, bdt, e % m);
}

cudaDataType_t cuda_type(DType t) {
    switch (t) {
        case DType::kF32:
            return CUDA_R_32F;
        case DType::kF16:
            return CUDA_R_16F;
        case DType::kBf16:
            return CUDA_R_16BF;
        default:
            break;
    }
    throw std::runtime_error(std::string("cuda matmul: unsupported weight dtype ") + dtype_name(t));
}

int as_int(int64_t v, const char* what) {
    if (v < 0 || v > 0x7fffffff)
        throw std::runtime_error(std::string("cuda matmul: ") + what + " exceeds INT_MAX");
    return static_cast<int>(v);
}

}  // namespace

void matmul(cublasHandle_t handle, const float* x, int64_t n, int64_t k, const void* w, DType wdt,
            int64_t m, const void* bias, DType bdt, float* out, void* xcast, cudaStream_t stream) {
    if (n <= 0 || m <= 0) return;
    const cudaDataType_t wt = cuda_type(wdt);
    const void* b = x;
    if (wdt != DType::kF32) {
        cast_kernel<<<grid_1d(n * k, 256), 256, 0, stream>>>(x, n * k, wdt, xcast);
        KVS_CUDA_CHECK_LAUNCH();
        b = xcast;
    }
    const float alpha = 1.0f, beta = 0.0f;
    const CublasApi* blas = cublas_api(nullptr);
    if (!blas) throw std::runtime_error("cuda matmul: cuBLAS is not loaded");
    KVS_CUBLAS_CHECK(blas->set_stream(handle, stream));
    KVS_CUBLAS_CHECK(blas->gemm_ex(handle, CUBLAS_OP_T, CUBLAS_OP_N, as_int(m, "m"), as_int(n, "n"),
                                   as_int(k, "k"), &alpha, w, wt, as_int(k, "k"), b, wt,
                                   as_int(k, "k"), &beta, out, CUDA_R_32F, as_int(m, "m"),
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if (bias) {
        bias_kernel<<<grid_1d(n * m, 256), 256, 0, stream>>>(out, n, m, bias, bdt);
        KVS_CUDA_CHECK_LAUNCH();
    }
}

void convert_to_f32(const void* src, DType dt, int64_t n, float* dst, cudaStream_t stream) {
    if (n <= 0) return;
    to_f32_kernel<<<grid_1d(n, 256), 256, 0, stream>>>(src, dt, n, dst);
    KVS_CUDA_CHECK_LAUNCH();
}

}  // namespace kvscope::cuda
