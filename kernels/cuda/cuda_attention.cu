// Attention on the device: causal-by-position softmax attention with GQA over ragged per-KV-head
// slot arrays, plus the statistics the policies read. CPU twin: cpu::attention
// (kernels/cpu/cpu_attention.cpp), which forms every probability row explicitly.
//
// Paths. Prefill (n > kDecodeMaxRows) with head_dim 64 or 128 in native math runs on bf16 tensor
// cores: flash_fwd_mma / probs_pass_mma in cuda_attention_mma.cu (its file comment has the block
// shapes, shared memory and floors; ~1e-2 relative vs this file's fp32 kernels).
// attention_prefill / attention_probs pick it through attention_mma_eligible(), so both passes
// always take the same path (probs recomputes the logits the LSE came from). Everything else runs
// the fp32 kernels below: KVSCOPE_CUDA_MATH=fp32 (golden logits within 1e-4),
// KVSCOPE_CUDA_ATTENTION=fp32 (the tensor-core path is the default since it passed the op tests
// on an H100) and head_dims 48/80/256...; decode (n <= 8 rows) is cuda_attention_decode.cu.
//
// fp32 kernels (CUDA cores):
//   flash_fwd      prefill, one block per (16 queries, query head): loops over key tiles of 32
//                  with an online softmax (never an n x n matrix), writes out and the row LSE.
//                  Floor: FLOPs 4*n*L*d per query head (about half under the causal mask);
//                  bytes Q + O + (n/16) passes over K and V of the head (L2-resident in practice).
//   probs_pass     exact statistics from the saved LSE, parallel over KEY tiles (the layout of
//                  flash attention's dK/dV pass): each block keeps 32 keys on chip, loops over the
//                  query tiles, recomputes p = exp(q.k*scale - LSE) under the mask and sums over
//                  the queries in a fixed order (no atomics: deterministic). The same pass writes
//                  the last W query rows (SnapKV/PyramidKV window). Floor: +2*n*L*d FLOPs (~+50%).
//   decode         n <= 8 query rows: cuda_attention_decode.cu.
// Masking: slot j is visible to query i iff kpos[j] <= q_pos[i] (positions need not be sorted).
// A row that sees no key gets out = 0 and LSE = -inf (as on the CPU).
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/cuda_attention_dispatch.cuh"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_device.cuh"

namespace kvscope::cuda {
namespace {

constexpr int kBQ = 16;        // query rows per tile
constexpr int kBK = 32;        // keys per tile (one per lane)
constexpr int kThreads = 128;  // 4 warps; warp w owns query rows 4w .. 4w+3 of a tile
constexpr int kRowsPerWarp = kBQ / (kThreads / 32);
constexpr int64_t kNoPos = INT64_MAX;

template <int DMAX>
constexpr size_t tile_smem_bytes() {
    return sizeof(int64_t) * (kBQ + kBK) +
           sizeof(float) * (kBQ * DMAX + kBK * (DMAX + 1) + kBK * DMAX + kBQ);
}

// ---- prefill forward ------------------------------------------------------------------------
template <int DMAX>
__global__ void __launch_bounds__(kThreads) flash_fwd(AttentionDev a) {
    constexpr int DPL = DMAX / 32;  // output dims per lane
    extern __shared__ __align__(16) unsigned char smem_raw[];
    int64_t* sQpos = reinterpret_cast<int64_t*>(smem_raw);
    int64_t* sKpos = sQpos + kBQ;
    float* sQ = reinterpret_cast<float*>(sKpos + kBK);  // [kBQ][DMAX]
    float* sK = sQ + kBQ * DMAX;                        // [kBK][DMAX + 1] (padded: no conflicts)
    float* sV = sK + kBK * (DMAX + 1);                  // [kBK][DMAX]

    const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
    const int64_t d = a.d, n = a.n, H = a.H;
    const int64_t h = blockIdx.y, g = h / (H / a.G);
    const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kBQ;
    const int64_t len = a.kv_len[g];
    const float* K = a.k + a.kv_off[g] * d;
    const float* V = a.v + a.kv_off[g] * d;
    const int64_t* kpos = a.kpos + a.kv_off[g];

    for (int e = tid; e < kBQ * DMAX; e += kThreads) {
        const int r = e / DMAX, c = e % DMAX;
        const int64_t qi = q0 + r;
        sQ[e] = (qi < n && c < d) ? a.q[(qi * H + h) * d + c] : 0.0f;
    }
    if (tid < kBQ) sQpos[tid] = (q0 + tid < n) ? a.q_pos[q0 + tid] : INT64_MIN;
    __syncthreads();
    int64_t qmax = INT64_MIN;
    for (int r = 0; r < kBQ; ++r) qmax = qmax > sQpos[r] ? qmax : sQpos[r];

    float m[kRowsPerWarp], l[kRowsPerWarp], o[kRowsPerWarp][DPL];
#pragma unroll
    for (int e = 0; e < kRowsPerWarp; ++e) {
        m[e] = -INFINITY;
        l[e] = 0.0f;
#pragma unroll
        for (int t = 0; t < DPL; ++t) o[e][t] = 0.0f;
    }

    for (int64_t kt = 0; kt < len; kt += kBK) {
        __syncthreads();  // the previous tile's readers are done
        for (int e = tid; e < kBK * DMAX; e += kThreads) {
            const int j = e / DMAX, c = e % DMAX;
            const bool ok = kt + j < len && c < d;
            sK[j * (DMAX + 1) + c] = ok ? K[(kt + j) * d + c] : 0.0f;
            sV[j * DMAX + c] = ok ? V[(kt + j) * d + c] : 0.0f;
        }
        int any = 0;
        if (tid < kBK) {
            sKpos[tid] = (kt + tid < len) ? kpos[kt + tid] : kNoPos;
            any = sKpos[tid] <= qmax;
        }
        if (!__syncthreads_or(any)) continue;  // no query of this tile sees these keys

        float s[kRowsPerWarp], p[kRowsPerWarp];
#pragma unroll
        for (int e = 0; e < kRowsPerWarp; ++e) {
            const int r = warp * kRowsPerWarp + e;
            float acc = 0.0f;
            const float* qr = sQ + r * DMAX;
            const float* kr = sK + lane * (DMAX + 1);
            for (int64_t x = 0; x < d; ++x) acc += qr[x] * kr[x];
            s[e] = sKpos[lane] <= sQpos[r] ? acc * a.scale : -INFINITY;
        }
#pragma unroll
        for (int e = 0; e < kRowsPerWarp; ++e) {
            const float m_new = fmaxf(m[e], warp_max(s[e]));
            float corr = 1.0f;
            p[e] = 0.0f;
            if (m_new != -INFINITY) {
                corr = expf(m[e] - m_new);  // 0 when m was -inf
                p[e] = expf(s[e] - m_new);  // 0 for masked keys
            }
            l[e] = l[e] * corr + warp_sum(p[e]);
            m[e] = m_new;
#pragma unroll
            for (int t = 0; t < DPL; ++t) o[e][t] *= corr;
        }
#pragma unroll
        for (int j = 0; j < kBK; ++j) {
            float vj[DPL];
#pragma unroll
            for (int t = 0; t < DPL; ++t) vj[t] = sV[j * DMAX + lane + 32 * t];
#pragma unroll
            for (int e = 0; e < kRowsPerWarp; ++e) {
                const float pj = __shfl_sync(0xffffffffu, p[e], j);
#pragma unroll
                for (int t = 0; t < DPL; ++t) o[e][t] += pj * vj[t];
            }
        }
    }

#pragma unroll

    for (int e = 0; e < kRowsPerWarp; ++e) {
        const int64_t qi = q0 + warp * kRowsPerWarp + e;
        if (qi >= n) continue;
        const float inv = l[e] > 0.0f ? 1.0f / l[e] : 0.0f;
#pragma unroll
        for (int t = 0; t < DPL; ++t) {
            const int64_t c = lane + 32 * t;
            if (c < d) a.out[(qi * H + h) * d + c] = o[e][t] * inv;
        }
        if (lane == 0) a.lse[h * n + qi] = l[e] > 0.0f ? m[e] + logf(l[e]) : -INFINITY;
    }
}

// ---- exact statistics pass (parallel over key tiles) -----------------------------------------
template <int DMAX>
__global__ void __launch_bounds__(kThreads)
    probs_pass(AttentionDev a, int64_t q_begin, float* colsum, float* rows, int64_t n_tail) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    int64_t* sQpos = reinterpret_cast<int64_t*>(smem_raw);
    int64_t* sKpos = sQpos + kBQ;
    float* sQ = reinterpret_cast<float*>(sKpos + kBK);  // [kBQ][DMAX]
    float* sK = sQ + kBQ * DMAX;                        // [kBK][DMAX + 1]
    float* sLse = sK + kBK * (DMAX + 1) + kBK * DMAX;   // [kBQ] (sV's room is unused here)
    __shared__ float red[kThreads / 32][32];

    const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
    const int64_t d = a.d, n = a.n, H = a.H, ld = a.max_len;
    const int64_t h = blockIdx.y, g = h / (H / a.G);
    const int64_t kt = static_cast<int64_t>(blockIdx.x) * kBK;
    const int64_t len = a.kv_len[g];
    if (kt >= len) return;  // whole block: this head holds fewer keys
    const float* K = a.k + a.kv_off[g] * d;
    const int64_t* kpos = a.kpos + a.kv_off[g];
    const int64_t tail0 = n - n_tail;

    for (int e = tid; e < kBK * DMAX; e += kThreads) {
        const int j = e / DMAX, c = e % DMAX;
        sK[j * (DMAX + 1) + c] = (kt + j < len && c < d) ? K[(kt + j) * d + c] : 0.0f;
    }
    if (tid < kBK) sKpos[tid] = (kt + tid < len) ? kpos[kt + tid] : kNoPos;
    __syncthreads();
    int64_t kmin = kNoPos;
    for (int j = 0; j < kBK; ++j) kmin = kmin < sKpos[j] ? kmin : sKpos[j];

    float acc = 0.0f;  // this lane's key, summed over the rows this warp scores
    for (int64_t qt = q_begin; qt < n; qt += kBQ) {
        __syncthreads();
        for (int e = tid; e < kBQ * DMAX; e += kThreads) {
            const int r = e / DMAX, c = e % DMAX;
            const int64_t qi = qt + r;
            sQ[e] = (qi < n && c < d) ? a.q[(qi * H + h) * d + c] : 0.0f;
        }
        int any = 0;
        if (tid < kBQ) {
            const int64_t qi = qt + tid;
            sQpos[tid] = qi < n ? a.q_pos[qi] : INT64_MIN;
            sLse[tid] = qi < n ? a.lse[h * n + qi] : -INFINITY;
            any = sQpos[tid] >= kmin;
        }
        if (!__syncthreads_or(any)) continue;
#pragma unroll
        for (int e = 0; e < kRowsPerWarp; ++e) {
            const int r = warp * kRowsPerWarp + e;
            const int64_t qi = qt + r;
            float p = 0.0f;
            if (sKpos[lane] <= sQpos[r]) {
                float dot = 0.0f;
                const float* qr = sQ + r * DMAX;
                const float* kr = sK + lane * (DMAX + 1);
                for (int64_t x = 0; x < d; ++x) dot += qr[x] * kr[x];
                p = expf(dot * a.scale - sLse[r]);
            }
            acc += p;
            if (rows && qi >= tail0 && qi < n && kt + lane < len)
                rows[(h * n_tail + (qi - tail0)) * ld + kt + lane] = p;
        }
    }
    __syncthreads();
    red[warp][lane] = acc;
    __syncthreads();
    if (colsum && warp == 0 && kt + lane < len) {
        float s = 0.0f;
        for (int w = 0; w < kThreads / 32; ++w) s += red[w][lane];
        colsum[h * ld + kt + lane] = s;
    }
}

}  // namespace

void attention_prefill(const AttentionDev& a, cudaStream_t stream) {
    check_attention_shape(a);
    if (a.n <= 0) return;
    if (attention_mma_eligible(a)) return attention_prefill_mma(a, stream);
    const dim3 grid(static_cast<unsigned int>((a.n + kBQ - 1) / kBQ),
                    static_cast<unsigned int>(a.H));
    with_dmax(a.d, [&](auto dm) {
        constexpr int DMAX = decltype(dm)::value;
        const size_t bytes = tile_smem_bytes<DMAX>();
        KVS_CUDA_CHECK(cudaFuncSetAttribute(
            flash_fwd<DMAX>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
        flash_fwd<DMAX><<<grid, kThreads, bytes, stream>>>(a);
        KVS_CUDA_CHECK_LAUNCH();
    });
}

void attention_probs(const AttentionDev& a, int64_t q_begin, float* colsum, float* rows,
                     int64_t n_tail, cudaStream_t stream) {
    check_attention_shape(a);
    if (a.n <= 0 || a.max_len <= 0 || (!colsum && !rows)) return;
    // The same choice as attention_prefill made: the LSE was formed from these logits.
    if (attention_mma_eligible(a))
        return attention_probs_mma(a, q_begin, colsum, rows, n_tail, stream);
    const dim3 grid(static_cast<unsigned int>((a.max_len + kBK - 1) / kBK),
                    static_cast<unsigned int>(a.H));
    with_dmax(a.d, [&](auto dm) {
        constexpr int DMAX = decltype(dm)::value;
        const size_t bytes = tile_smem_bytes<DMAX>();
        KVS_CUDA_CHECK(cudaFuncSetAttribute(probs_pass<DMAX>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(bytes)));
        probs_pass<DMAX><<<grid, kThreads, bytes, stream>>>(a, q_begin, colsum, rows, n_tail);
        KVS_CUDA_CHECK_LAUNCH();
    });
}

}  // namespace kvscope::cuda
