// Tensor-core prefill attention (native math mode, head_dim 64 and 128): the bf16 twins of
// flash_fwd / probs_pass in cuda_attention.cu, which selects between the two paths
// (attention_mma_eligible). Semantics are those of cuda_attention.cu's file comment: slot j is
// visible to query i iff kpos[j] <= q_pos[i]; a row that sees no key gets out 0, LSE -inf.
//
// Numerics: Q, K and V are rounded to bf16 (8-bit mantissa) once per call into stream-ordered
// scratch (to_bf16_*: Q as [n, H, d], K and V compacted per KV head to [G, max_len, d]); P is
// rounded to bf16 before P.V. Q.K^T and P.V run on nvcuda::wmma m16n16k16 with fp32
// accumulation; the online softmax, l, m and the LSE are fp32 in the log2 domain
// (t = acc * scale * log2 e, exp2f). Expect ~1e-2 relative against the fp32 path (the op tests'
// bound and why: tests/kernels/backend_ops_test.cpp, tolerance_for). probs_pass_mma recomputes
// every logit from the same bf16 copies with the same fragment sequence (k steps ascending from
// a zero accumulator) and the same rounded t, so its p = exp2(t - LSE log2 e) rows sum to 1 to
// fp32 rounding.
//
// Layout: a warp owns 16 (query, head) rows of ONE query head (16 consecutive queries); the HB
// heads of a block share one KV head (HB = 4, 2 or 1 by the GQA group), so a K/V tile brought on
// chip serves HB heads (Llama-3 8B: 4 heads x 16 queries). Scores go through shared memory as fp32
// (16 x 68 per warp; softmax rows read with 16-byte loads, conflict-free) and come back as bf16 P
// for the P.V fragment loads. The output accumulator stays in registers; its element -> row map
// is read off a fragment loaded from a matrix of row numbers once per warp (no reliance on the
// undocumented wmma register layout).
//
//   flash_fwd_mma   4 warps = 64 rows x 64-key tiles; grid (ceil(n / QB), H / HB), QB = 64 / HB.
//                   Per key tile: positions first; the tile is skipped when no query of the block
//                   sees any of its keys (min over keys > max over queries: valid for unsorted
//                   positions), a warp skips it when none of its 16 rows does, and the per-element
//                   mask is dropped when the whole tile is visible to the warp (max key pos <= min
//                   query pos). Registers: 253 (d 128, 2 blocks/SM) / 168 (d 64, 3 blocks/SM).
//                   Floor: 4*n*L*d FLOPs per query head on tensor cores (about half under the
//                   causal mask); bytes: K and V (bf16, from L2) once per 64 rows of a KV group.
//   probs_pass_mma  4 warps, 128 keys per block; grid (ceil(max_len / 128), H / HB). A block
//                   keeps 128 keys of one KV head in shared memory and each warp walks its head's
//                   query tiles (16 rows, skipped when none of them sees a key of the block),
//                   recomputes S = Q K^T, p = exp2(t - LSE log2 e) under the mask; lane c sums
//                   columns c, c+32, c+64, c+96 over the rows in order, the warps of one head are
//                   added in a fixed order (no atomics: deterministic); the last n_tail rows are
//                   written out. Registers ~96. Floor: +2*n*L*d FLOPs (~+50%); bytes: Q (bf16)
//                   once per 128 keys.
//
// Shared memory (bytes, d = 128 / 64): fwd 62,720 / 46,336; probs 72,448 / 56,064 (the dynamic
// limit is raised per launch). All wmma tiles start on 32-byte boundaries (row strides d+8 bf16 =
// 272/144 B, 68 or 132 floats, 72 bf16; 16-row blocks are multiples of 32 B) and every stride is
// a multiple of 8 (bf16) / 4 (float) elements, as wmma requires.
#include <mma.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_device.cuh"

namespace kvscope::cuda {
namespace {

namespace wmma = nvcuda::wmma;
using bf16 = __nv_bfloat16;

constexpr int kRowsW = 16;  // rows per warp: one head, 16 consecutive queries
// flash_fwd_mma: 4 warps = 64 (query, head) rows x 64-key tiles.
constexpr int kWarpsF = 4;
constexpr int kThreadsF = 32 * kWarpsF;
constexpr int kRowsF = kRowsW * kWarpsF;
constexpr int kKeysF = 64;
constexpr int kSLd = kKeysF + 4;  // fp32 score row stride (floats)
constexpr int kPLd = kKeysF + 8;  // bf16 probability row stride (elements)
// probs_pass_mma: 4 warps = 64 rows per query step x 128 keys per block.
constexpr int kWarpsP = 4;
constexpr int kThreadsP = 32 * kWarpsP;
constexpr int kRowsP = kRowsW * kWarpsP;
constexpr int kKeysP = 128;
constexpr int kSLdP = kKeysP + 4;
constexpr int64_t kNoPosM = INT64_MAX;  // slot past a head's length: visible to no query
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using FragKt = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;  // K^T
using FragV = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using FragAcc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
constexpr int kAccN = FragAcc::num_elements;

template <int D>
struct Layout {
    static constexpr int kLd = D + 8;  // bf16 row stride of Q/K/V tiles (16 B pad: no conflicts)
    static constexpr size_t kQW = size_t{kRowsW} * kLd * 2;  // a warp's bf16 Q rows
    // flash_fwd_mma: K, V tiles; per warp an fp32 score tile (Q staging at start, O staging at
    // the end) and a bf16 P tile; positions; per-row corrections.
    static constexpr size_t kTileF = size_t{kKeysF} * kLd * 2;
    static constexpr size_t kSWarp = size_t{kRowsW} * kSLd * 4;
    static constexpr size_t kPWarp = size_t{kRowsW} * kPLd * 2;
    static_assert(kQW <= kSWarp, "Q staging fits the warp's score tile");
    static constexpr size_t f_k = 0;
    static constexpr size_t f_v = f_k + kTileF;
    static constexpr size_t f_s = f_v + kTileF;
    static constexpr size_t f_p = f_s + kWarpsF * kSWarp;
    static constexpr size_t f_qpos = f_p + kWarpsF * kPWarp;
    static constexpr size_t f_kpos = f_qpos + kRowsF * 8;
    static constexpr size_t f_row = f_kpos + kKeysF * 8;
    static constexpr size_t f_bytes = f_row + kWarpsF * kRowsW * 4;
    // probs_pass_mma: the K tile; per warp an fp32 score tile (Q staging first); positions,
    // row LSEs, the cross-warp column-sum buffer.
    static constexpr size_t kTileP = size_t{kKeysP} * kLd * 2;
    static constexpr size_t kSWarpP = size_t{kRowsW} * kSLdP * 4;
    static_assert(kQW <= kSWarpP, "Q staging fits the warp's score tile");
    static constexpr size_t p_k = 0;
    static constexpr size_t p_s = p_k + kTileP;
    static constexpr size_t p_kpos = p_s + kWarpsP * kSWarpP;
    static constexpr size_t p_qpos = p_kpos + kKeysP * 8;
    static constexpr size_t p_lse = p_qpos + kWarpsP * kRowsW * 8;
    static constexpr size_t p_red = p_lse + kWarpsP * kRowsW * 4;
    static constexpr size_t p_bytes = p_red + kWarpsP * kKeysP * 4;
    static_assert(f_bytes <= 227 * 1024 && p_bytes <= 227 * 1024, "fits one Hopper SM");
    static_assert(kTileF % 32 == 0 && kSWarp % 32 == 0 && kPWarp % 32 == 0 && kTileP % 32 == 0 &&
                      kSWarpP % 32 == 0,
                  "every wmma tile starts on a 32-byte boundary");
};

__device__ __forceinline__ long long warp_min_ll(long long v) {
    for (int o = 16; o > 0; o >>= 1) {
        const long long w = __shfl_xor_sync(0xffffffffu, v, o);
        v = w < v ? w : v;
    }
    return v;
}
__device__ __forceinline__ long long warp_max_ll(long long v) {
    for (int o = 16; o > 0; o >>= 1) {
        const long long w = __shfl_xor_sync(0xffffffffu, v, o);
        v = w > v ? w : v;
    }
    return v;
}

// Bf16 copies made once per call (to_bf16_*): Q as [n, H, D]; K and V compacted to [G, ld, D]
// (head g's slot j at row g * ld + j, ld = max_len) so tiles are read as 16-byte chunks.
struct Bf16Ops {
    const bf16* q = nullptr;
    const bf16* k = nullptr;
    const bf16* v = nullptr;
};

// 4 floats -> 4 bf16 (round to nearest even) at dst (8-byte aligned).
__device__ __forceinline__ void store_bf16x4(bf16* dst, float4 v) {
    __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y);
    __nv_bfloat162 hi = __floats2bfloat162_rn(v.z, v.w);
    uint2 u;
    memcpy(&u.x, &lo, 4);
    memcpy(&u.y, &hi, 4);
    *reinterpret_cast<uint2*>(dst) = u;
}

// dst[i] = bf16(src[i]) for i < n4 * 4 (both 16-byte aligned).
__global__ void to_bf16_flat(const float* src, bf16* dst, int64_t n4) {
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n4;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        store_bf16x4(dst + 4 * i, __ldg(reinterpret_cast<const float4*>(src) + i));
}

// Rows 0 .. kv_len[g] of KV head g (at kv_off[g]) -> dst[g * ld + j]; grid.y = g.
__global__ void to_bf16_heads(const float* src, const int64_t* kv_off, const int64_t* kv_len,
                              int64_t d, int64_t ld, bf16* dst) {
    const int64_t g = blockIdx.y;
    const int64_t n4 = kv_len[g] * d / 4;
    const float4* s = reinterpret_cast<const float4*>(src + kv_off[g] * d);
    bf16* o = dst + g * ld * d;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n4;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        store_bf16x4(o + 4 * i, __ldg(s + i));
}

// rows x D bf16 from global (row r at src + r * stride; rows >= valid read as 0) -> shared
// [rows][D+8], in 16-byte chunks by `nthr` threads numbered t.
template <int D>
__device__ __forceinline__ void load_rows(bf16* dst, const bf16* src, int64_t stride, int rows,
                                          int64_t valid, int t, int nthr) {
    constexpr int C8 = D / 8;
#pragma unroll 4
    for (int e = t; e < rows * C8; e += nthr) {
        const int r = e / C8, c = (e % C8) * 8;
        uint4 v = make_uint4(0u, 0u, 0u, 0u);
        if (r < valid) v = __ldg(reinterpret_cast<const uint4*>(src + r * stride + c));
        *reinterpret_cast<uint4*>(dst + r * (D + 8) + c) = v;
    }
}

// K and V tiles together (twice the loads in flight).
template <int D>
__device__ __forceinline__ void load_kv(bf16* dk, bf16* dv, const bf16* k, const bf16* v, int rows,
                                        int64_t valid, int t, int nthr) {
    constexpr int C8 = D / 8;
#pragma unroll 4
    for (int e = t; e < rows * C8; e += nthr) {
        const int r = e / C8, c = (e % C8) * 8;
        uint4 a = make_uint4(0u, 0u, 0u, 0u), b = a;
        if (r < valid) {
            a = __ldg(reinterpret_cast<const uint4*>(k + r * D + c));
            b = __ldg(reinterpret_cast<const uint4*>(v + r * D + c));
        }
        *reinterpret_cast<uint4*>(dk + r * (D + 8) + c) = a;
        *reinterpret_cast<uint4*>(dv + r * (D + 8) + c) = b;
    }
}

// Row of each accumulator element of this lane (the same for every FragAcc of the kernel):
// load a 16 x 16 matrix whose entries are their row numbers. `scratch`: 16 x kSLd floats.
__device__ __forceinline__ void acc_rows(float* scratch, int lane, int (&row)[kAccN]) {
    for (int e = lane; e < 256; e += 32)
        scratch[(e / 16) * kSLd + e % 16] = static_cast<float>(e / 16);
    __syncwarp();
    FragAcc f;
    wmma::load_matrix_sync(f, scratch, kSLd, wmma::mem_row_major);
#pragma unroll
    for (int i = 0; i < kAccN; ++i) row[i] = static_cast<int>(f.x[i]);
    __syncwarp();
}

// S[16 x KEYS] = Q[16 x D] K^T: the fragment sequence both kernels use for every logit (k steps
// ascending from a zero accumulator), stored fp32 to sS (row stride LDS floats).
template <int D, int KEYS, int LDS>
__device__ __forceinline__ void scores(const FragA (&qf)[D / 16], const bf16* sK, float* sS) {
#pragma unroll
    for (int nt = 0; nt < KEYS / 16; ++nt) {
        FragAcc s;
        wmma::fill_fragment(s, 0.0f);
#pragma unroll
        for (int k = 0; k < D / 16; ++k) {
            FragKt kb;
            wmma::load_matrix_sync(kb, sK + nt * 16 * (D + 8) + k * 16, D + 8);
            wmma::mma_sync(s, qf[k], kb, s);
        }
        wmma::store_matrix_sync(sS + nt * 16, s, LDS, wmma::mem_row_major);
    }
}

// ---- prefill forward --------------------------------------------------------------------------
template <int D, int HB>
__global__ void __launch_bounds__(kThreadsF, D == 128 ? 2 : 3)  // <= 255 / 168 registers
    flash_fwd_mma(AttentionDev a, Bf16Ops b, float cl2) {
    using L = Layout<D>;
    constexpr int QB = kRowsF / HB;  // queries per block
    constexpr int NF = D / 16;
    extern __shared__ __align__(128) unsigned char smem[];
    const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
    bf16* sK = reinterpret_cast<bf16*>(smem + L::f_k);
    bf16* sV = reinterpret_cast<bf16*>(smem + L::f_v);
    float* sS = reinterpret_cast<float*>(smem + L::f_s + warp * L::kSWarp);
    bf16* sP = reinterpret_cast<bf16*>(smem + L::f_p + warp * L::kPWarp);
    int64_t* sQpos = reinterpret_cast<int64_t*>(smem + L::f_qpos);
    int64_t* sKpos = reinterpret_cast<int64_t*>(smem + L::f_kpos);
    float* sRow = reinterpret_cast<float*>(smem + L::f_row) + warp * kRowsW;

    const int64_t n = a.n, H = a.H;
    const int64_t h0 = static_cast<int64_t>(blockIdx.y) * HB;
    const int64_t g = h0 / (H / a.G);
    const int64_t q0 = static_cast<int64_t>(blockIdx.x) * QB;
    const int64_t hw = h0 + warp % HB;    // this warp's query head
    const int wq = (warp / HB) * kRowsW;  // this warp's first query within the block
    const int64_t len = a.kv_len[g];
    const bf16* K = b.k + g * a.max_len * D;
    const bf16* V = b.v + g * a.max_len * D;
    const int64_t* kpos = a.kpos + a.kv_off[g];

    if (tid < QB) sQpos[tid] = q0 + tid < n ? a.q_pos[q0 + tid] : INT64_MIN;
    // This warp's Q rows (stride H*D between queries), staged in its score tile.
    bf16* sQ = reinterpret_cast<bf16*>(sS);
    load_rows<D>(sQ, b.q + ((q0 + wq) * H + hw) * D, H * D, kRowsW, n - (q0 + wq), lane, 32);
    __syncthreads();
    FragA qf[NF];
#pragma unroll
    for (int k = 0; k < NF; ++k) wmma::load_matrix_sync(qf[k], sQ + k * 16, D + 8);
    __syncwarp();
    int arow[kAccN];
    acc_rows(sS, lane, arow);

    long long bqmax = INT64_MIN;
    for (int r = 0; r < QB; ++r) bqmax = bqmax > sQpos[r] ? bqmax : sQpos[r];
    const int r = lane & 15, hf = lane >> 4;  // softmax: this lane's row and half (32 keys)
    const long long qp = sQpos[wq + r];
    const long long wqmax = warp_max_ll(qp), wqmin = warp_min_ll(qp);

    float m = -INFINITY, l = 0.0f;  // running max (log2 units) and sum of row r
    FragAcc o[NF];
#pragma unroll
    for (int f = 0; f < NF; ++f) wmma::fill_fragment(o[f], 0.0f);

    for (int64_t kt = 0; kt < len; kt += kKeysF) {
        __syncthreads();  // the previous tile's readers of sK/sV/sKpos are done
        int vis = 0;
        if (tid < kKeysF) {
            const int64_t p = kt + tid < len ? kpos[kt + tid] : kNoPosM;
            sKpos[tid] = p;
            vis = p <= bqmax;
        }
        if (!__syncthreads_or(vis)) continue;  // no query of the block sees this tile
        load_kv<D>(sK, sV, K + kt * D, V + kt * D, kKeysF, len - kt, tid, kThreadsF);
        __syncthreads();
        const long long kp0 = sKpos[lane], kp1 = sKpos[lane + 32];
        const long long kmin = warp_min_ll(kp0 < kp1 ? kp0 : kp1);
        const long long kmax = warp_max_ll(kp0 > kp1 ? kp0 : kp1);
        if (kmin > wqmax) continue;       // none of this warp's rows sees the tile
        const bool full = kmax <= wqmin;  // every key visible to every row of the warp

        scores<D, kKeysF, kSLd>(qf, sK, sS);
        __syncwarp();

        // Online softmax of row r over keys hf*32 .. hf*32+31 (the other half is lane ^ 16).
        float s[32];
        const float4* src = reinterpret_cast<const float4*>(sS + r * kSLd + hf * 32);
#pragma unroll
        for (int c4 = 0; c4 < 8; ++c4) {
            const float4 v = src[c4];
            s[4 * c4] = v.x;
            s[4 * c4 + 1] = v.y;
            s[4 * c4 + 2] = v.z;
            s[4 * c4 + 3] = v.w;
        }
        unsigned vbits = 0xffffffffu;  // bit c: key hf*32 + c visible to row r
        if (!full) {
            vbits = 0;
#pragma unroll 1
            for (int c = 0; c < 32; ++c)
                vbits |= static_cast<unsigned>(sKpos[hf * 32 + c] <= qp) << c;
        }
        float mx = -INFINITY;
#pragma unroll
        for (int c = 0; c < 32; ++c) {
            // __fmul_rn: no FMA contraction, probs_pass_mma forms the same t.
            const float t = (vbits >> c) & 1u ? __fmul_rn(s[c], cl2) : -INFINITY;
            s[c] = t;
            mx = fmaxf(mx, t);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 16));
        const float m_new = fmaxf(m, mx);
        float corr = 1.0f, sum = 0.0f;
        if (m_new == -INFINITY) {  // nothing visible yet: p = 0 (never exp(-inf - -inf))
#pragma unroll
            for (int c = 0; c < 32; ++c) s[c] = 0.0f;
        } else {
            corr = exp2f(m - m_new);  // 0 when m was -inf
#pragma unroll
            for (int c = 0; c < 32; ++c) {
                s[c] = exp2f(s[c] - m_new);  // 0 for masked keys
                sum += s[c];
            }
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 16);
        l = l * corr + sum;
        m = m_new;
        uint4* dst = reinterpret_cast<uint4*>(sP + r * kPLd + hf * 32);
#pragma unroll
        for (int c8 = 0; c8 < 4; ++c8) {
            __nv_bfloat162 pb[4];
#pragma unroll
            for (int u = 0; u < 4; ++u)
                pb[u] = __floats2bfloat162_rn(s[8 * c8 + 2 * u], s[8 * c8 + 2 * u + 1]);
            uint4 w;
            memcpy(&w, pb, 16);
            dst[c8] = w;
        }
        if (hf == 0) sRow[r] = corr;
        __syncwarp();

        // O = O * corr (per row) + P V.
        float cr[kAccN];
#pragma unroll
        for (int i = 0; i < kAccN; ++i) cr[i] = sRow[arow[i]];
#pragma unroll
        for (int f = 0; f < NF; ++f)
#pragma unroll
            for (int i = 0; i < kAccN; ++i) o[f].x[i] *= cr[i];
#pragma unroll
        for (int kk = 0; kk < kKeysF / 16; ++kk) {
            FragA pa;
            wmma::load_matrix_sync(pa, sP + kk * 16, kPLd);
#pragma unroll
            for (int f = 0; f < NF; ++f) {
                FragV vb;
                wmma::load_matrix_sync(vb, sV + kk * 16 * (D + 8) + f * 16, D + 8);
                wmma::mma_sync(o[f], pa, vb, o[f]);
            }
        }
        __syncwarp();  // sRow / sP / sS are rewritten by the next tile
    }

    // Normalise, write the LSE (natural log) and the output through the warp's score tile.
    const int64_t qr = q0 + wq + r;
    if (hf == 0) {
        sRow[r] = l > 0.0f ? 1.0f / l : 0.0f;
        if (qr < n) a.lse[hw * n + qr] = l > 0.0f ? (m + log2f(l)) * kLn2 : -INFINITY;
    }
    __syncwarp();
    float inv[kAccN];
#pragma unroll
    for (int i = 0; i < kAccN; ++i) inv[i] = sRow[arow[i]];
#pragma unroll
    for (int fg = 0; fg < NF; fg += 4) {  // 4 fragments (64 columns) per round
#pragma unroll
        for (int f = fg; f < fg + 4; ++f) {
#pragma unroll
            for (int i = 0; i < kAccN; ++i) o[f].x[i] *= inv[i];
            wmma::store_matrix_sync(sS + (f - fg) * 16, o[f], kSLd, wmma::mem_row_major);
        }
        __syncwarp();
#pragma unroll
        for (int t = 0; t < 8; ++t) {  // 16 rows x 16 float4
            const int e = lane + 32 * t, rr = e / 16, c4 = e % 16;
            const int64_t qi = q0 + wq + rr;
            if (qi < n)
                *reinterpret_cast<float4*>(a.out + (qi * H + hw) * D + fg * 16 + c4 * 4) =
                    *reinterpret_cast<const float4*>(sS + rr * kSLd + c4 * 4);
        }
        __syncwarp();
    }
}

// ---- exact statistics pass (parallel over key tiles) -------------------------------------------
template <int D, int HB>
__global__ void __launch_bounds__(kThreadsP)
    probs_pass_mma(AttentionDev a, Bf16Ops b, float cl2, int64_t q_begin, float* colsum,
                   float* rows, int64_t n_tail) {
    using L = Layout<D>;
    constexpr int QB = kRowsP / HB;  // queries per step of the block (each warp: 16 of one head)
    constexpr int NF = D / 16;
    constexpr int CL = kKeysP / 32;  // columns per lane: lane, lane + 32, ...
    extern __shared__ __align__(128) unsigned char smem[];
    const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
    bf16* sK = reinterpret_cast<bf16*>(smem + L::p_k);
    float* sS = reinterpret_cast<float*>(smem + L::p_s + warp * L::kSWarpP);
    int64_t* sKpos = reinterpret_cast<int64_t*>(smem + L::p_kpos);
    int64_t* sQp = reinterpret_cast<int64_t*>(smem + L::p_qpos) + warp * kRowsW;
    float* sL = reinterpret_cast<float*>(smem + L::p_lse) + warp * kRowsW;
    float* sRed = reinterpret_cast<float*>(smem + L::p_red);  // [kWarpsP][kKeysP]

    const int64_t n = a.n, H = a.H, ld = a.max_len;
    const int64_t h0 = static_cast<int64_t>(blockIdx.y) * HB;
    const int64_t g = h0 / (H / a.G);
    const int64_t kt = static_cast<int64_t>(blockIdx.x) * kKeysP;
    const int64_t len = a.kv_len[g];
    if (kt >= len) return;  // whole block: this KV head holds fewer keys
    const int64_t hw = h0 + warp % HB;
    const int wq = (warp / HB) * kRowsW;
    const int64_t tail0 = n - n_tail;

    if (tid < kKeysP) sKpos[tid] = kt + tid < len ? a.kpos[a.kv_off[g] + kt + tid] : kNoPosM;
    load_rows<D>(sK, b.k + (g * ld + kt) * D, D, kKeysP, len - kt, tid, kThreadsP);
    __syncthreads();
    long long kp[CL];  // positions of this lane's columns (kNoPosM past the head's length)
    long long kmin = kNoPosM;
#pragma unroll
    for (int t = 0; t < CL; ++t) {
        kp[t] = sKpos[lane + 32 * t];
        kmin = kp[t] < kmin ? kp[t] : kmin;
    }
    kmin = warp_min_ll(kmin);

    float acc[CL];  // column sums over this warp's rows, in row order
#pragma unroll
    for (int t = 0; t < CL; ++t) acc[t] = 0.0f;
    bf16* sQ = reinterpret_cast<bf16*>(sS);
    for (int64_t qt = q_begin + wq; qt < n; qt += QB) {
        long long qp = INT64_MIN;
        float l2 = -INFINITY;
        if (lane < kRowsW && qt + lane < n) {
            qp = a.q_pos[qt + lane];
            l2 = a.lse[hw * n + qt + lane] * kLog2e;
        }
        if (warp_max_ll(qp) < kmin) continue;  // no row of this step sees these keys
        if (lane < kRowsW) {
            sQp[lane] = qp;
            sL[lane] = l2;
        }
        load_rows<D>(sQ, b.q + (qt * H + hw) * D, H * D, kRowsW, n - qt, lane, 32);
        __syncwarp();
        FragA qf[NF];
#pragma unroll
        for (int k = 0; k < NF; ++k) wmma::load_matrix_sync(qf[k], sQ + k * 16, D + 8);
        __syncwarp();  // sQ is overwritten by the scores
        scores<D, kKeysP, kSLdP>(qf, sK, sS);
        __syncwarp();
        for (int rr = 0; rr < kRowsW; ++rr) {
            const long long qpr = sQp[rr];
            const float lr = sL[rr];
            const int64_t qi = qt + rr;
            float* dst = (rows && qi >= tail0 && qi < n)
                             ? rows + (hw * n_tail + (qi - tail0)) * ld + kt
                             : nullptr;
#pragma unroll
            for (int t = 0; t < CL; ++t) {
                const int c = lane + 32 * t;
                // lr is finite whenever a key is visible to the row (the forward saw it).
                const float p = (kp[t] <= qpr && lr != -INFINITY)
                                    ? exp2f(__fmul_rn(sS[rr * kSLdP + c], cl2) - lr)
                                    : 0.0f;
                acc[t] += p;
                if (dst && kt + c < len) dst[c] = p;
            }
        }
        __syncwarp();  // sS / sQp / sL are rewritten by the next step
    }
#pragma unroll
    for (int t = 0; t < CL; ++t) sRed[warp * kKeysP + lane + 32 * t] = acc[t];
    __syncthreads();
    if (colsum && warp < HB) {  // warps warp, warp + HB, ... hold the same head: fixed order
        float* dst = colsum + (h0 + warp) * ld + kt;
#pragma unroll
        for (int t = 0; t < CL; ++t) {
            const int c = lane + 32 * t;
            float sum = 0.0f;
            for (int w = warp; w < kWarpsP; w += HB) sum += sRed[w * kKeysP + c];
            if (kt + c < len) dst[c] = sum;
        }
    }
}

// ---- dispatch ---------------------------------------------------------------------------------
bool env_is(const char* name, const char* value) {
    const char* e = std::getenv(name);
    return e && std::strcmp(e, value) == 0;
}

bool aligned16(const void* p) {
    return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// Heads per block: the largest of 4, 2, 1 dividing the GQA group (all of a block's heads read the
// same KV head).
template <class F>
void with_shape(const AttentionDev& a, F&& f) {
    const int64_t group = a.H / a.G;
    auto by_d = [&](auto hb) {
        if (a.d == 64)
            f(std::integral_constant<int, 64>{}, hb);
        else
            f(std::integral_constant<int, 128>{}, hb);
    };
    if (group % 4 == 0)
        by_d(std::integral_constant<int, 4>{});
    else if (group % 2 == 0)
        by_d(std::integral_constant<int, 2>{});
    else
        by_d(std::integral_constant<int, 1>{});
}

// The bf16 copies of one call, in stream-ordered memory (cudaMallocAsync; released with
// cudaFreeAsync after the kernels that read them, so nothing is held between calls). The default
// pool keeps up to kPoolKeep bytes cached across synchronisations: without that every call would
// map fresh memory (the backend synchronises after each op).
constexpr uint64_t kPoolKeep = 4ull << 30;

struct Bf16Scratch {
    Bf16Ops ops;
    void* base = nullptr;
    cudaStream_t stream;
    Bf16Scratch(const AttentionDev& a, bool with_v, cudaStream_t s) : stream(s) {
        static std::once_flag once;
        std::call_once(once, [] {
            int dev = 0;
            cudaMemPool_t pool;
            if (cudaGetDevice(&dev) == cudaSuccess &&
                cudaDeviceGetDefaultMemPool(&pool, dev) == cudaSuccess) {
                uint64_t keep = kPoolKeep;
                (void)cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
            }
            (void)cudaGetLastError();  // a pool setting is an optimisation only
        });
        auto up = [](size_t b) { return (b + 255) / 256 * 256; };
        const size_t qb = up(static_cast<size_t>(a.n * a.H * a.d) * 2);
        const size_t kb = up(static_cast<size_t>(a.G * a.max_len * a.d) * 2);
        const size_t total = qb + kb * (with_v ? 2 : 1);
        const cudaError_t e = cudaMallocAsync(&base, total, stream);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            throw std::runtime_error(
                "cuda attention: no room for the bf16 copies of Q/K/V (" + std::to_string(total) +
                " bytes, cudaMallocAsync: " + cudaGetErrorString(e) +
                "); KVSCOPE_CUDA_ATTENTION=fp32 selects the fp32 kernels, which need none");
        }
        auto* p = static_cast<unsigned char*>(base);
        auto* q = reinterpret_cast<bf16*>(p);
        auto* k = reinterpret_cast<bf16*>(p + qb);
        auto* v = with_v ? reinterpret_cast<bf16*>(p + qb + kb) : nullptr;
        ops = {q, k, v};
        const int64_t q4 = a.n * a.H * a.d / 4;
        to_bf16_flat<<<grid_1d(q4, 256, 4096), 256, 0, stream>>>(a.q, q, q4);
        KVS_CUDA_CHECK_LAUNCH();
        if (a.max_len > 0) {
            const dim3 grid(grid_1d(a.max_len * a.d / 4, 256, 1024),
                            static_cast<unsigned int>(a.G));
            to_bf16_heads<<<grid, 256, 0, stream>>>(a.k, a.kv_off, a.kv_len, a.d, a.max_len, k);
            KVS_CUDA_CHECK_LAUNCH();
            if (with_v) {
                to_bf16_heads<<<grid, 256, 0, stream>>>(a.v, a.kv_off, a.kv_len, a.d, a.max_len, v);
                KVS_CUDA_CHECK_LAUNCH();
            }
        }
    }
    ~Bf16Scratch() { (void)cudaFreeAsync(base, stream); }  // after the kernels queued so far
    Bf16Scratch(const Bf16Scratch&) = delete;
    Bf16Scratch& operator=(const Bf16Scratch&) = delete;
};

float scale_log2(const AttentionDev& a) {
    return a.scale * kLog2e;  // the one value both kernels multiply the logits by
}

}  // namespace

bool attention_mma_eligible(const AttentionDev& a) {
    if (a.d != 64 && a.d != 128) return false;
    // The default since the op tests passed on an H100 (bench/RESULTS.md, GPU, second run);
    // KVSCOPE_CUDA_ATTENTION=fp32 (or KVSCOPE_CUDA_MATH=fp32) keeps the fp32 CUDA-core kernels.
    if (env_is("KVSCOPE_CUDA_MATH", "fp32") || env_is("KVSCOPE_CUDA_ATTENTION", "fp32"))
        return false;
    return aligned16(a.q) && aligned16(a.k) && aligned16(a.v) && aligned16(a.out);
}

void attention_prefill_mma(const AttentionDev& a, cudaStream_t stream) {
    if (a.n <= 0) return;
    Bf16Scratch sc(a, true, stream);
    with_shape(a, [&](auto dm, auto hb) {
        constexpr int D = decltype(dm)::value, HB = decltype(hb)::value;
        constexpr size_t bytes = Layout<D>::f_bytes;
        constexpr int QB = kRowsF / HB;
        const dim3 grid(static_cast<unsigned int>((a.n + QB - 1) / QB),
                        static_cast<unsigned int>(a.H / HB));
        KVS_CUDA_CHECK(cudaFuncSetAttribute(flash_fwd_mma<D, HB>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(bytes)));
        flash_fwd_mma<D, HB><<<grid, kThreadsF, bytes, stream>>>(a, sc.ops, scale_log2(a));
        KVS_CUDA_CHECK_LAUNCH();
    });
}

void attention_probs_mma(const AttentionDev& a, int64_t q_begin, float* colsum, float* rows,
                         int64_t n_tail, cudaStream_t stream) {
    if (a.n <= 0 || a.max_len <= 0 || (!colsum && !rows)) return;
    Bf16Scratch sc(a, false, stream);
    with_shape(a, [&](auto dm, auto hb) {
        constexpr int D = decltype(dm)::value, HB = decltype(hb)::value;
        constexpr size_t bytes = Layout<D>::p_bytes;
        const dim3 grid(static_cast<unsigned int>((a.max_len + kKeysP - 1) / kKeysP),
                        static_cast<unsigned int>(a.H / HB));
        KVS_CUDA_CHECK(cudaFuncSetAttribute(probs_pass_mma<D, HB>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(bytes)));
        probs_pass_mma<D, HB><<<grid, kThreadsP, bytes, stream>>>(a, sc.ops, scale_log2(a), q_begin,
                                                                  colsum, rows, n_tail);
        KVS_CUDA_CHECK_LAUNCH();
    });
}

}  // namespace kvscope::cuda
