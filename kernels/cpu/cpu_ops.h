#pragma once
// The CPU kernels (fp32 compute): the reference loops (matmul, attention; KVSCOPE_CPU_KERNELS=
// reference runs only these) and the fast default (matmul_fast, attention_blocked). Each function
// is the CPU twin of a device kernel, checked against float64 loops in tests/kernels. Shapes are
// given per function.
#include <cstdint>

#include "kernels/backend.h"
#include "kernels/cpu/thread_pool.h"

namespace kvscope::cpu {

// dst[0..k) = src row converted to f32 (src is f32, f16 or bf16).
void load_row_f32(const void* src, DType dtype, int64_t k, float* dst);
float dot_f32(const float* a, const float* b, int64_t k);
// out[j] = w[j, :] . x for j in [0, rows); w [rows, k] row-major f32. AVX-512 / AVX2 clones chosen
// at run time; the decode matmul (n = 1) and the few-row attention scores (q . k_j) use it.
void gemv_f32(const float* x, int64_t k, const float* w, int64_t rows, float* out);
// Attention scores of one query against len keys: out[j] = q . k[j, :], k [len, hd] row-major
// (gemv_f32's contract, for short rows: 16 keys reduced together; cpu_key_scores.cpp).
void key_scores_f32(const float* q, int64_t hd, const float* k, int64_t len, float* out);
// Attention output of one row: o[0, hd) += sum_j p[j] * v[j, :] for j in [k0, k1), v [len, hd]
// row-major (cpu_value_sum.cpp).
void value_sum_f32(const float* p, const float* v, int64_t k0, int64_t k1, int64_t hd, float* o);

// out[n, m] = x[n, k] @ w[m, k]^T (+ bias[m]). FLOPs 2nmk; bytes ~ m*k*sizeof(w) + n*(k+m)*4.
void matmul(ThreadPool& pool, const float* x, int64_t n, int64_t k, const void* w, DType wdt,
            int64_t m, const void* bias, DType bdt, float* out);
// The default (fast) matmul: BLAS sgemm for n > 1, our gemv for n = 1; w f32 (converted at
// upload) or bf16 / f16 (converted in blocks of rows per call). Same contract as matmul().
void matmul_fast(ThreadPool& pool, const float* x, int64_t n, int64_t k, const void* w, DType wdt,
                 int64_t m, const void* bias, DType bdt, float* out);
// Row-wise RMSNorm over [rows, d]; w [d] any float dtype. out may alias x.
void rmsnorm(ThreadPool& pool, const float* x, int64_t rows, int64_t d, const void* w, DType wdt,
             float eps, float* out);
// In place on x [n, heads, head_dim].
void rope(ThreadPool& pool, float* x, int64_t n, int64_t heads, int64_t head_dim,
          const int64_t* positions, const float* inv_freq, RopePairs pairs);
void embedding(const void* table, DType dt, int64_t vocab, int64_t d, const int32_t* ids, int64_t n,
               float* out);
void silu_mul(const float* gate, const float* up, int64_t n, float* out);
void add_inplace(float* x, const float* y, int64_t n);
// See AttentionArgs in kernels/backend.h. q/out [n, H, hd].
void attention(ThreadPool& pool, const float* q, int64_t n, int64_t n_heads, int64_t head_dim,
               const int64_t* q_pos, const KVHeadView* kv, int64_t n_kv_heads, float scale,
               float* out, AttentionStats* stats);
// The default (fast) attention: blocked over query rows and key tiles, fully masked tiles
// skipped. Same contract and statistics as attention().
void attention_blocked(ThreadPool& pool, const float* q, int64_t n, int64_t n_heads,
                       int64_t head_dim, const int64_t* q_pos, const KVHeadView* kv,
                       int64_t n_kv_heads, float scale, float* out, AttentionStats* stats);

}  // namespace kvscope::cpu
