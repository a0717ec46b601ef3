#pragma once
// Shared by the CUDA backend's files: error checking (every CUDA / cuBLAS call goes through
// KVS_CUDA_CHECK / KVS_CUBLAS_CHECK and becomes a std::runtime_error naming the call, the error
// and file:line), and the launchers each kernel file exports to cuda_backend.cpp.
//
// Conventions: all pointers given to a launcher are device memory (cudaMalloc'd weights,
// activations, scratch, KV mirrors, or the device half of the backend's staging ring); dtype codes
// are kvscope::DType; every launcher only enqueues on `stream` (cuda_backend.cpp decides when to
// synchronise).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "kernels/backend.h"
#include "kernels/dtype.h"

namespace kvscope::cuda {

[[noreturn]] void throw_cuda_error(const char* call, const char* what, int code, const char* file,
                                   int line);

// cuBLAS entry points, loaded with dlopen on first use (cuda_cublas.cpp): programs that never make
// a CUDA backend never load cuBLAS. Null (and *why_not set) when libcublas cannot be loaded.
struct CublasApi {
    bool loaded = false;
    cublasStatus_t (*create)(cublasHandle_t*) = nullptr;
    cublasStatus_t (*destroy)(cublasHandle_t) = nullptr;
    cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t) = nullptr;
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                              const void*, const void*, cudaDataType, int, const void*,
                              cudaDataType, int, const void*, void*, cudaDataType, int,
                              cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
    const char* (*status_string)(cublasStatus_t) = nullptr;
};
const CublasApi* cublas_api(std::string* why_not);
const char* cublas_status_string(cublasStatus_t st);

}  // namespace kvscope::cuda

#define KVS_CUDA_CHECK(call)                                                                   \
    do {                                                                                       \
        const cudaError_t kvs_err_ = (call);                                                   \
        if (kvs_err_ != cudaSuccess)                                                           \
            ::kvscope::cuda::throw_cuda_error(#call, cudaGetErrorString(kvs_err_),             \
                                              static_cast<int>(kvs_err_), __FILE__, __LINE__); \
    } while (0)

#define KVS_CUBLAS_CHECK(call)                                                                \
    do {                                                                                      \
        const cublasStatus_t kvs_st_ = (call);                                                \
        if (kvs_st_ != CUBLAS_STATUS_SUCCESS)                                                 \
            ::kvscope::cuda::throw_cuda_error(#call,                                          \
                                              ::kvscope::cuda::cublas_status_string(kvs_st_), \
                                              static_cast<int>(kvs_st_), __FILE__, __LINE__); \
    } while (0)

// After a kernel launch: launch-configuration errors surface here, not at the next sync.
#define KVS_CUDA_CHECK_LAUNCH() KVS_CUDA_CHECK(cudaGetLastError())

namespace kvscope::cuda {

// The backend's switches (KVSCOPE_CUDA_*, listed in cuda_backend.h's file comment): on unless the
// variable is "0". Each was written without a GPU and opt-in until its op cases passed on one.
inline bool switched_on(const char* name) {
    const char* e = std::getenv(name);
    return !(e && std::string(e) == "0");
}
// An opt-in switch: on only when the variable is "1".
inline bool opted_in(const char* name) {
    const char* e = std::getenv(name);
    return e && std::string(e) == "1";
}

// ---- cuda_embedding.cu ----------------------------------------------------------------------
// out[i, :] = f32(table[ids[i], :]); ids out of [0, vocab) give a zero row (as on the CPU).
void embedding(const void* table, DType dt, int64_t vocab, int64_t d, const int32_t* ids, int64_t n,
               float* out, cudaStream_t stream);

// ---- cuda_rmsnorm.cu ------------------------------------------------------------------------
// Row-wise over [rows, d]; w [d] f32/f16/bf16; out may alias x.
void rmsnorm(const float* x, int64_t rows, int64_t d, const void* w, DType wdt, float eps,
             float* out, cudaStream_t stream);
// x += y, then out = rmsnorm(x) (one launch; out may alias y, not x).
void add_rmsnorm(float* x, const float* y, int64_t rows, int64_t d, const void* w, DType wdt,
                 float eps, float* out, cudaStream_t stream);

// ---- cuda_rope.cu ---------------------------------------------------------------------------
// In place on x [n, heads, head_dim]; positions [n]; inv_freq [head_dim/2].
void rope(float* x, int64_t n, int64_t heads, int64_t head_dim, const int64_t* positions,
          const float* inv_freq, RopePairs pairs, cudaStream_t stream);
// The same on q [n, heads_q, head_dim] and k [n, heads_k, head_dim] in one launch.
void rope_qk(float* q, int64_t heads_q, float* k, int64_t heads_k, int64_t n, int64_t head_dim,
             const int64_t* positions, const float* inv_freq, RopePairs pairs, cudaStream_t stream);

// ---- cuda_elementwise.cu --------------------------------------------------------------------
void silu_mul(const float* gate, const float* up, int64_t n, float* out, cudaStream_t stream);
void add_inplace(float* x, const float* y, int64_t n, cudaStream_t stream);

// ---- cuda_matmul.cu -------------------------------------------------------------------------
// out[n, m] = x[n, k] @ w[m, k]^T (+ bias[m]) through cuBLAS with fp32 accumulation. f16/bf16
// weights: x is rounded to the weight dtype into `xcast` (>= n*k*2 bytes) first.
void matmul(cublasHandle_t handle, const float* x, int64_t n, int64_t k, const void* w, DType wdt,
            int64_t m, const void* bias, DType bdt, float* out, void* xcast, cudaStream_t stream);
// ---- cuda_gemv.cu ---------------------------------------------------------------------------
// The decode rows' matmul (n <= kGemvMaxRows) without cuBLAS: fp32 x times w in its stored dtype,
// fp32 accumulation. gemv_fits() says whether the shapes and alignment allow it (k a multiple of
// 8, 16-byte aligned x and w); otherwise matmul() above. Launched as dependents (cuda_device.cuh):
// the first rows of w are read before the kernel waits for the one queued before it, so w must not
// be that kernel's output (weights never are).
constexpr int64_t kGemvMaxRows = 8;
bool gemv_fits(const float* x, int64_t n, int64_t k, const void* w, DType wdt, int64_t m);
void gemv(const float* x, int64_t n, int64_t k, const void* w, DType wdt, int64_t m,
          const void* bias, DType bdt, float* out, cudaStream_t stream);
// Several matrices of one dtype sharing x (q/k/v) in one launch: parts[i].out = x @ w_i^T (+ bias).
// Each part must pass gemv_fits() on its own.
constexpr int kMaxGemvParts = 3;
struct GemvPart {
    const void* w;
    int64_t m;
    const void* bias;  // may be null
    DType bdt;
    float* out;
};
void gemv_parts(const float* x, int64_t n, int64_t k, DType wdt, const GemvPart* parts, int count,
                cudaStream_t stream);
// gate = x @ w_gate^T, up = x @ w_up^T, out = silu(gate) * up in one launch (both [m, k], one
// dtype, each passing gemv_fits()).
void gemv_swiglu(const float* x, int64_t n, int64_t k, const void* w_gate, const void* w_up,
                 DType wdt, int64_t m, float* gate, float* up, float* out, cudaStream_t stream);
// dst[i] = f32(src[i]) on the device (weights uploaded in fp32 mode, tests).
void convert_to_f32(const void* src, DType dt, int64_t n, float* dst, cudaStream_t stream);

// ---- cuda_attention.cu, cuda_attention_decode.cu -------------------------------------------
// One call's attention over ragged per-KV-head slot arrays. K/V/pos of every KV head are packed
// one after another (rows kv_off[g] .. kv_off[g] + kv_len[g]); kv_off/kv_len are device arrays.
struct AttentionDev {
    const float* q = nullptr;         // [n, H, d]
    const int64_t* q_pos = nullptr;   // [n]
    const float* k = nullptr;         // [sum len, d]
    const float* v = nullptr;         // [sum len, d]
    const int64_t* kpos = nullptr;    // [sum len]
    const int64_t* kv_off = nullptr;  // [G]
    const int64_t* kv_len = nullptr;  // [G]
    int64_t n = 0, H = 0, G = 0, d = 0;
    int64_t max_len = 0;  // max over heads of kv_len (the stride of score buffers)
    float scale = 1.0f;
    float* out = nullptr;  // [n, H, d]
    float* lse = nullptr;  // [H, n] row log-sum-exp (natural log), always written
};
// Largest head_dim the kernels are instantiated for.
constexpr int64_t kMaxHeadDim = 256;
// Bytes of scratch attention_decode needs (tickets, scores, split partials). Its first
// kDecodeTicketBytes are counters the kernels leave at zero: zero them when the scratch is
// allocated (cuda_attention_decode.cu).
constexpr size_t kDecodeTicketBytes = 16384;
size_t attention_decode_scratch_bytes(const AttentionDev& a);
// Rows up to this count take the split-K decode path; longer calls the flash path.
constexpr int64_t kDecodeMaxRows = 8;
// Flash-style forward (tiles of queries x keys, online softmax, never an n x n matrix): out, lse.
void attention_prefill(const AttentionDev& a, cudaStream_t stream);
// Exact statistics from the saved LSE, parallel over key blocks (no atomics, deterministic):
// for query rows [q_begin, n): colsum[h * max_len + j] = sum_i p_ij (when colsum != null) and
// rows[(h * n_tail + (i - (n - n_tail))) * max_len + j] = p_ij for the last n_tail rows (when
// rows != null). Entries past a head's length are left untouched.
void attention_probs(const AttentionDev& a, int64_t q_begin, float* colsum, float* rows,
                     int64_t n_tail, cudaStream_t stream);
// Split-K decode for n <= kDecodeMaxRows: out, lse, and (from the same scores) colsum / rows as
// attention_probs defines them. `scratch` holds attention_decode_scratch_bytes(a).
void attention_decode(const AttentionDev& a, void* scratch, float* colsum, float* rows,
                      int64_t n_tail, cudaStream_t stream);

// ---- cuda_attention_mma.cu ------------------------------------------------------------------
// Tensor-core (bf16 mma.sync, fp32 accumulate) twins of attention_prefill / attention_probs, which
// call them when attention_mma_eligible(a): head_dim 64 or 128, neither KVSCOPE_CUDA_ATTENTION
// nor KVSCOPE_CUDA_MATH set to fp32, q/k/v/out 16-byte aligned.
// Same outputs and conventions (lse natural log; colsum/rows as attention_probs defines them).
bool attention_mma_eligible(const AttentionDev& a);
void attention_prefill_mma(const AttentionDev& a, cudaStream_t stream);
void attention_probs_mma(const AttentionDev& a, int64_t q_begin, float* colsum, float* rows,
                         int64_t n_tail, cudaStream_t stream);

// ---- cuda_kv_mirror.cu ----------------------------------------------------------------------
// Row moves of the device copies of KV heads (see cuda_backend.cpp, "KV mirrors"). A row is
// K [d] f32, V [d] f32 and a position (int64). Job i, for each row r in [0, n):
//   destination row  dst_index ? dst_index[r] : r                     (of dk / dv / dpos)
//   source           map ? map[r] : r; m >= 0: row m of sk / sv / spos, m < 0: row -m-1 of
//                    pk / pv / ppos (rows staged from the host)
// Sources and destinations of one launch must not overlap (a compaction goes through scratch).
struct KVRowJob {
    float* dk = nullptr;
    float* dv = nullptr;
    int64_t* dpos = nullptr;
    const float* sk = nullptr;
    const float* sv = nullptr;
    const int64_t* spos = nullptr;
    const float* pk = nullptr;
    const float* pv = nullptr;
    const int64_t* ppos = nullptr;
    const int64_t* dst_index = nullptr;
    const int64_t* map = nullptr;
    int64_t s_stride = 0;  // floats between sk / sv rows; 0 = d (new rows of [n, G, d]: G*d)
    int64_t n = 0;
};
// jobs: device array [n_jobs]; max_rows: the largest n among them (grid size).
void kv_rows(const KVRowJob* jobs, int64_t n_jobs, int64_t max_rows, int64_t d,
             cudaStream_t stream);
// A few jobs passed by value with the kernel, with the positions they take from the host
// (KVRowJobsInline::pos): a decode step's appends need no copy to the device before they run.
// Why: that copy, one per layer, stood between the step's kernels and kept each layer's row
// moves from being launched as a dependent (cuda_device.cuh).
constexpr int kInlineJobs = 16;
constexpr int kInlinePositions = 64;
struct KVRowJobsInline {
    KVRowJob jobs[kInlineJobs];
    int64_t spos_at[kInlineJobs];  // >= 0: job i's source positions are pos[spos_at[i] ...]
    int64_t pos[kInlinePositions];
    int64_t n_jobs = 0;
};
void kv_rows_inline(const KVRowJobsInline& jobs, int64_t max_rows, int64_t d, cudaStream_t stream);

}  // namespace kvscope::cuda
