// Tensor-core prefill attention (native math mode, head_dim 64 and 128): the bf16 twins of
// flash_fwd / probs_pass in cuda_attention.cu, which selects between the two paths
// (attention_mma_eligible). On Hopper at head_dim 128 the wgmma kernels of
// cuda_attention_wgmma.cu take both passes (dispatch below), from the same Bf16Scratch. Semantics
// are those of cuda_attention.cu's file comment: slot j is visible to query i iff kpos[j] <=
// q_pos[i]; a row that sees no key gets out 0, LSE -inf.
//
// One file (~830 lines) on purpose: the forward and the statistics pass must form every logit
// through the same inlined fragment helpers (qk_tile, the PTX wrappers; the cp.async ones come
// from cuda_device.cuh and move bytes only) compiled in one
// translation unit with one set of flags, which is what makes the statistics pass's p rows sum to
// 1 against the forward's LSE (see Numerics); the dispatch and scratch below serve exactly these
// two kernels.
//
// Numerics: Q, K and V are rounded to bf16 (8-bit mantissa) once per call into stream-ordered
// scratch (to_bf16_*: Q as [n, H, d], K and V compacted per KV head to [G, max_len, d]); P is
// rounded to bf16 before P.V. Q.K^T and P.V run on mma.sync m16n8k16 (bf16 in, fp32 accumulate);
// the online softmax, l, m and the LSE are fp32 in the log2 domain (t = acc * scale * log2 e,
// exp2 by ex2.approx.ftz). Expect ~1e-2 relative against the fp32 path (the op tests' bound and
// why: tests/kernels/backend_ops_harness.h, tolerance_for). Both kernels form every logit with the
// same helper (qk_tile: per 8-key column block, k steps ascending from a zero accumulator) and
// the same rounded t, so probs_pass_mma's p = exp2(t - LSE log2 e) rows sum to 1 to fp32
// rounding.
//
// Fragments. The register layouts of mma.sync.m16n8k16 and ldmatrix are those the PTX ISA
// documents (lane = 4 * g + c: g = lane / 4 owns rows g and g + 8, c = lane % 4 owns columns
// 2c, 2c + 1 of each 8-column block). Operands come from shared memory through ldmatrix (K as
// the col-major B of Q.K^T, V through ldmatrix.trans as the row-major B of P.V); the scores stay
// in registers and become P.V's A operand without a trip through shared memory (the C layout
// of two adjacent 8-key blocks is the A layout of one 16-key step). Tiles are row-padded to
// D + 8 elements (16 bytes): the 8 rows of an ldmatrix 8x8 read hit 8 distinct bank groups.
//
// Layout: the HB heads of a block share one KV head (HB = 4, 2 or 1 by the GQA group), so a K/V
// tile on chip serves HB heads; a warp's rows are consecutive queries of ONE head.
//
//   flash_fwd_mma   4 warps x 32 rows (two 16-row mma groups, each K/V fragment feeds both) =
//                   128 (query, head) rows x 64-key tiles, softmax-updated in halves of 32 keys;
//                   grid (ceil(n / QB), H / HB), QB = 128 / HB (Llama-3 8B: 4 heads x 32 queries),
//                   the latest query blocks (most keys under a causal mask) launched first. Q stays
//                   in shared memory (fragments re-read per tile); K/V tiles are double-buffered
//                   with cp.async (tile j + 1 lands while tile j is computed). Tiles no query of
//                   the block sees are skipped before they are loaded, from per-tile key-position
//                   bounds (tile_bounds; valid for unsorted positions, read 32 tiles per ballot); a
//                   warp skips a tile none of its rows sees and drops the per-element mask when
//                   the whole tile is visible to all its rows. ~254 registers, 2 blocks/SM.
//                   Floor: 4*n*L*d FLOPs per query head on tensor cores (about half under the
//                   causal mask); bytes: K and V (bf16, from L2) once per 128 rows of a KV group.
//   probs_pass_mma  4 warps, 128 keys per block; grid (ceil(max_len / 128), H / HB). A block
//                   keeps 128 keys of one KV head in shared memory; each warp walks its head's
//                   16-query steps in order from the first one that sees the block (tile_bounds
//                   over the queries), each step's Q rows, positions and LSEs double-buffered with
//                   cp.async; it recomputes S = Q K^T, p = exp2(t - LSE log2 e) under the mask,
//                   and sums the columns in registers in query order; the lanes of a column and
//                   then the warps of one head are added in a fixed order (no atomics:
//                   deterministic); the last n_tail rows are written out. Every exp2 is issued
//                   unconditionally and masked by a select (independent, pipelined: 23 % faster
//                   at 32k than exp2s under the mask's branch, which fit 3 blocks/SM in 144
//                   registers but stalled on dependencies, ncu). ~190 registers, 2 blocks/SM.
//                   32-query steps (two row groups per K fragment, as the forward; 32-key
//                   sub-tiles to stay unspilled at 239 registers) were slower: 25.7 against
//                   20.7 ms at 32k (commit 24be681; bench/RESULTS.md, "Fifteenth run").
//                   Floor: +2*n*L*d FLOPs (~+50%); bytes: Q (bf16) once per 128 keys.
//   Measured (bench_cuda_attention, H100, 8B shape, 32k): bench/RESULTS.md, "Seventh run".
//
// Shared memory (bytes, d = 128 / 64): fwd 105,472 / 56,320 (Q, 2 stages of K + V, positions);
// probs 74,240 / 41,472 (the dynamic limit is raised per launch).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/cuda_attention_bf16.cuh"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_device.cuh"

namespace kvscope::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kRowsG = 16;            // rows of one mma row group
constexpr int kRG = 2;                // row groups per warp: each K/V fragment feeds both
constexpr int kRowsW = kRowsG * kRG;  // rows per warp: one head, 32 consecutive queries
// flash_fwd_mma: 4 warps = 128 (query, head) rows x 64-key tiles.
constexpr int kWarpsF = 4;
constexpr int kThreadsF = 32 * kWarpsF;
constexpr int kRowsF = kRowsW * kWarpsF;
constexpr int kKeysF = 64;
constexpr int kNtF = kKeysF / 8;    // 8-key column blocks of a 64-key tile
constexpr int kHalfF = kKeysF / 2;  // the forward's softmax step
constexpr int kNtH = kHalfF / 8;
static_assert(kNtH == 4, "the forward's row trees take 4 blocks of 8 keys");
// probs_pass_mma: 4 warps, 128 keys per block, computed in halves of kKeysF.
constexpr int kWarpsP = 4;
constexpr int kThreadsP = 32 * kWarpsP;
constexpr int kKeysP = 128;
constexpr int kNtP = kKeysP / 8;
constexpr int64_t kNoPosM = INT64_MAX;   // slot past a head's length: visible to no query
constexpr int64_t kNoQuery = INT64_MIN;  // row past n: sees no key
constexpr float kLog2e = 1.4426950408889634f;

template <int D>
struct Layout {
    static constexpr int kLd = D + 8;  // bf16 row stride of Q/K/V tiles (16 B pad)
    // flash_fwd_mma: the block's 128 Q rows (fragments re-read per tile); two stages, each the
    // K tile then the V tile; query positions.
    static constexpr size_t kTileF = size_t{kKeysF} * kLd * 2;
    static constexpr size_t f_q = 0;
    static constexpr size_t f_st = f_q + size_t{kRowsF} * kLd * 2;
    static constexpr size_t f_qpos = f_st + 4 * kTileF;
    static constexpr size_t f_bytes = f_qpos + kRowsF * 8;
    // probs_pass_mma: the K tile; per warp two step buffers (16 Q rows, their positions and
    // LSEs); key positions; the cross-warp column-sum buffer.
    static constexpr size_t kTileP = size_t{kKeysP} * kLd * 2;
    static constexpr size_t kQRows = size_t{kRowsG} * kLd * 2;
    static constexpr size_t kQBuf = kQRows + kRowsG * 8 + kRowsG * 4;
    static constexpr size_t p_q = kTileP;
    static constexpr size_t p_kpos = p_q + kWarpsP * 2 * kQBuf;
    static constexpr size_t p_red = p_kpos + kKeysP * 8;
    static constexpr size_t p_bytes = p_red + kWarpsP * kKeysP * 4;
    // Two blocks per SM of each kernel (Hopper: 228 KB per SM, 1 KB reserved per block).
    static_assert(2 * (f_bytes + 1024) <= 228 * 1024 && 2 * (p_bytes + 1024) <= 228 * 1024,
                  "the blocks fit one Hopper SM");
    static_assert(f_st % 128 == 0 && kTileF % 128 == 0 && kQBuf % 16 == 0,
                  "16-byte cp.async / ldmatrix rows");
};

// ---- PTX wrappers (sm_80+) -------------------------------------------------------------------
// Four 8x8 bf16 matrices; lane l gives the address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p))
                 : "memory");
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const bf16* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p))
                 : "memory");
}
// c[16 x 8] += a[16 x 16] b[16 x 8], bf16 in, fp32 accumulate.
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

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

// Bf16Ops (cuda_attention_bf16.cuh): the copies to_bf16_* make once per call, and tile bounds.
static_assert(kKeysF == kBoundTile, "kb holds one entry per forward tile");

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

// out[(s * ntiles + t) * 2 + {0, 1}] = {min, max} of pos over entries t * tile .. t * tile +
// tile - 1 of segment s (blockIdx.y), which starts at pos + off[s] (0 when off is null) and holds
// len[s] (len1 when len is null) entries; entries past it count as `pad`. 64 threads, tile <= 64.
__global__ void tile_bounds(const int64_t* pos, const int64_t* off, const int64_t* len,
                            int64_t len1, int tile, long long pad, int64_t ntiles, int64_t* out) {
    const int64_t s = blockIdx.y, t = blockIdx.x;
    const int64_t base = off ? off[s] : 0, n = len ? len[s] : len1;
    const int64_t j = t * tile + threadIdx.x;
    const long long p = (static_cast<int>(threadIdx.x) < tile && j < n) ? pos[base + j] : pad;
    long long lo = static_cast<int>(threadIdx.x) < tile ? p : kNoPosM;
    long long hi = static_cast<int>(threadIdx.x) < tile ? p : INT64_MIN;
    lo = warp_min_ll(lo);
    hi = warp_max_ll(hi);
    __shared__ long long part[2][2];
    const int w = static_cast<int>(threadIdx.x) >> 5;
    if ((threadIdx.x & 31) == 0) {
        part[w][0] = lo;
        part[w][1] = hi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        out[(s * ntiles + t) * 2] = part[0][0] < part[1][0] ? part[0][0] : part[1][0];
        out[(s * ntiles + t) * 2 + 1] = part[0][1] > part[1][1] ? part[0][1] : part[1][1];
    }
}

// s[rg][nb] = Q_rg K^T for the warp's row groups rg (rows 16 rg .. 16 rg + 15 at sQw, stride
// D + 8) and the 8-key blocks nb = 0 .. NB - 1 of the keys at sK (stride D + 8): each
// accumulator starts at zero and takes the D / 16 k steps in ascending order. Both kernels form
// every logit here (see the file comment). Per k step: the row groups' Q fragments (ldmatrix x4:
// rows 0-7 / 8-15 x dims 0-7 / 8-15 = a0..a3), then per 16 keys one ldmatrix x4 over 16 keys x 16
// dims, matrices (keys 0-7, dims 0-7), (0-7, 8-15), (8-15, 0-7), (8-15, 8-15) = b0, b1 of block
// 2p and of block 2p + 1, each used by every row group.
template <int D, int RG, int NB>
__device__ __forceinline__ void qk_tile(float (&s)[RG][NB][4], const bf16* sQw, const bf16* sK,
                                        int lane) {
    constexpr int LD = D + 8;
#pragma unroll
    for (int rg = 0; rg < RG; ++rg)
#pragma unroll
        for (int nb = 0; nb < NB; ++nb)
            s[rg][nb][0] = s[rg][nb][1] = s[rg][nb][2] = s[rg][nb][3] = 0.0f;
    const int qrow = lane & 15, qcol = (lane >> 4) * 8;
    const int krow = (lane & 7) + ((lane >> 4) << 3), kcol = ((lane >> 3) & 1) * 8;
#pragma unroll
    for (int k = 0; k < D / 16; ++k) {
        uint32_t qa[RG][4];
#pragma unroll
        for (int rg = 0; rg < RG; ++rg)
            ldsm_x4(qa[rg], sQw + (rg * kRowsG + qrow) * LD + k * 16 + qcol);
#pragma unroll
        for (int p = 0; p < NB / 2; ++p) {
            uint32_t kf[4];
            ldsm_x4(kf, sK + (p * 16 + krow) * LD + k * 16 + kcol);
#pragma unroll
            for (int rg = 0; rg < RG; ++rg) {
                mma16816(s[rg][2 * p], qa[rg], kf[0], kf[1]);
                mma16816(s[rg][2 * p + 1], qa[rg], kf[2], kf[3]);
            }
        }
    }
}

// ---- prefill forward --------------------------------------------------------------------------
// A lane's rows: i = 2 rg + hf is row 8 i + g4 of its warp (fragment elements 2 hf, 2 hf + 1 of
// row group rg).
template <int D, int HB>
__global__ void __launch_bounds__(kThreadsF, 2)
    flash_fwd_mma(AttentionDev a, Bf16Ops b, float cl2) {
    using L = Layout<D>;
    constexpr int LD = L::kLd;
    constexpr int QB = kRowsF / HB;  // queries per block
    constexpr int ND = D / 8, C8 = D / 8, NR = 2 * kRG;
    extern __shared__ __align__(128) unsigned char smem[];
    const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
    const int g4 = lane >> 2, c2 = 2 * (lane & 3);  // fragment rows g4, g4 + 8; columns c2, c2 + 1
    bf16* const sQ = reinterpret_cast<bf16*>(smem + L::f_q);
    bf16* const stage0 = reinterpret_cast<bf16*>(smem + L::f_st);
    bf16* const stage1 = stage0 + 2 * kKeysF * LD;
    int64_t* sQpos = reinterpret_cast<int64_t*>(smem + L::f_qpos);

    const int64_t n = a.n, H = a.H;
    const int64_t nqb = (n + QB - 1) / QB;
    const int64_t q0 = (nqb - 1 - static_cast<int64_t>(blockIdx.x)) * QB;  // most keys first
    const int64_t h0 = static_cast<int64_t>(blockIdx.y) * HB;
    const int64_t g = h0 / (H / a.G);
    const int64_t hw = h0 + warp % HB;    // this warp's query head
    const int wq = (warp / HB) * kRowsW;  // this warp's first query within the block
    const int64_t len = a.kv_len[g];
    const int64_t ntl = (a.max_len + kKeysF - 1) / kKeysF;
    const int64_t* kb = b.kb + g * ntl * 2;
    const bf16* K = b.k + g * a.max_len * D;
    const bf16* V = b.v + g * a.max_len * D;
    const int64_t* kpos = a.kpos + a.kv_off[g];

    // Q: block row r is row r % 32 of warp r / 32 (query q0 + (w / HB) * 32 + r % 32, head
    // h0 + w % HB).
    for (int e = tid; e < kRowsF * C8; e += kThreadsF) {
        const int r = e / C8, c = (e % C8) * 8, w = r / kRowsW;
        const int64_t q = q0 + (w / HB) * kRowsW + r % kRowsW;
        const bool ok = q < n;
        cp_async16(sQ + r * LD + c, b.q + ((ok ? q : 0) * H + h0 + w % HB) * D + c, ok);
    }
    cp_async_commit();
    if (tid < QB) sQpos[tid] = q0 + tid < n ? a.q_pos[q0 + tid] : kNoQuery;
    __syncthreads();
    long long bqmax = kNoQuery;
    for (int r = 0; r < QB; ++r) bqmax = bqmax > sQpos[r] ? bqmax : sQpos[r];
    long long qp[NR], lo = kNoPosM, hi = kNoQuery;
#pragma unroll
    for (int i = 0; i < NR; ++i) {
        qp[i] = sQpos[wq + 8 * i + g4];
        lo = qp[i] < lo ? qp[i] : lo;
        hi = qp[i] > hi ? qp[i] : hi;
    }
    const long long wqmax = warp_max_ll(hi), wqmin = warp_min_ll(lo);

    // First tile at or after j that some query of the block sees. The visibility of 32 tiles is
    // read at once (one ballot) and kept (win, wmask), so a tile costs no global read on the
    // critical path; every warp computes the same answer.
    int64_t win = -32;
    unsigned wmask = 0;
    auto next_tile = [&](int64_t j) -> int64_t {
        while (j < ntl) {
            const int64_t w0 = j & ~int64_t{31};
            if (w0 != win) {
                win = w0;
                const int64_t t = w0 + lane;
                wmask = __ballot_sync(0xffffffffu, t < ntl && kb[2 * t] <= bqmax);
            }
            const unsigned m = wmask & (0xffffffffu << static_cast<int>(j - w0));
            if (m) return w0 + __ffs(static_cast<int>(m)) - 1;
            j = w0 + 32;
        }
        return ntl;
    };
    auto load_tile = [&](int64_t j, bf16* dst) {
        const int64_t kt = j * kKeysF;
        for (int e = tid; e < kKeysF * C8; e += kThreadsF) {
            const int r = e / C8, c = (e % C8) * 8;
            const bool ok = kt + r < len;
            const int64_t off = (ok ? kt + r : 0) * D + c;
            cp_async16(dst + r * LD + c, K + off, ok);
            cp_async16(dst + (kKeysF + r) * LD + c, V + off, ok);
        }
    };

    int64_t cur = next_tile(0);
    long long kmin = kNoPosM, kmax = kNoPosM;  // tile cur's key-position bounds
    if (cur < ntl) {
        load_tile(cur, stage0);
        kmin = kb[2 * cur];
        kmax = kb[2 * cur + 1];
    }
    cp_async_commit();
    const bf16* sQw = sQ + warp * kRowsW * LD;

    float o[kRG][ND][4];
#pragma unroll
    for (int rg = 0; rg < kRG; ++rg)
#pragma unroll
        for (int f = 0; f < ND; ++f) o[rg][f][0] = o[rg][f][1] = o[rg][f][2] = o[rg][f][3] = 0.0f;
    float m[NR], l[NR];  // running max (log2 units) and this lane's share of the running sum
#pragma unroll
    for (int i = 0; i < NR; ++i) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    int st = 0;
    while (cur < ntl) {
        // Tile cur is in stage st (and Q in sQ); every warp is done with the other stage.
        cp_async_wait<0>();
        __syncthreads();
        const int64_t nxt = next_tile(cur + 1);
        long long nmin = kNoPosM, nmax = kNoPosM;  // read now, used next tile
        if (nxt < ntl) {
            load_tile(nxt, st ? stage0 : stage1);
            nmin = kb[2 * nxt];
            nmax = kb[2 * nxt + 1];
        }
        cp_async_commit();
        const bf16* sK = st ? stage1 : stage0;
        const bf16* sV = sK + kKeysF * LD;
        const int64_t kt = cur * kKeysF;
        const bool seen = kmin <= wqmax;  // some row of this warp sees the tile
        const bool full = kmax <= wqmin;  // every key visible to every row of the warp
        st ^= 1;
        cur = nxt;
        kmin = nmin;
        kmax = nmax;
        if (!seen) continue;

            // Two halves of 32 keys, each its own online-softmax update (S for 32 rows x 64 keys
            // would not fit in registers beside O).
#pragma unroll 1
        for (int half = 0; half < 2; ++half) {
            const int64_t kh = kt + half * kHalfF;
            float s[kRG][kNtH][4];
            qk_tile<D, kRG, kNtH>(s, sQw, sK + half * kHalfF * LD, lane);
            // t = acc * scale * log2 e (__fmul_rn: no FMA contraction, probs_pass_mma forms the
            // same t), -inf where masked.
#pragma unroll
            for (int nb = 0; nb < kNtH; ++nb)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    long long kp = kNoQuery;
                    if (!full) {
                        const int64_t j = kh + nb * 8 + c2 + e;
                        kp = j < len ? kpos[j] : kNoPosM;
                    }
#pragma unroll
                    for (int i = 0; i < NR; ++i) {
                        float& x = s[i / 2][nb][2 * (i % 2) + e];
                        x = kp > qp[i] ? -INFINITY : __fmul_rn(x, cl2);
                    }
                }
            float corr[NR];
            bool rescale = false;
#pragma unroll
            for (int i = 0; i < NR; ++i) {
                // Max and sum of this lane's 8 entries of row i as trees (independent operations
                // instead of one dependent chain; ncu: fixed-latency stalls).
                float(&x)[kNtH][4] = s[i / 2];
                const int c = 2 * (i % 2);
                const float mx = quad_max(fmaxf(
                    m[i], fmaxf(fmaxf(fmaxf(x[0][c], x[0][c + 1]), fmaxf(x[1][c], x[1][c + 1])),
                                fmaxf(fmaxf(x[2][c], x[2][c + 1]), fmaxf(x[3][c], x[3][c + 1])))));
                // Nothing visible yet: subtract 0 (p = exp2(-inf) = 0), never -inf - -inf.
                const float base = mx == -INFINITY ? 0.0f : mx;
                corr[i] = exp2_ftz(m[i] - base);  // 0 when m was -inf
                rescale = rescale || corr[i] != 1.0f;
                m[i] = mx;
#pragma unroll
                for (int nb = 0; nb < kNtH; ++nb) {
                    x[nb][c] = exp2_ftz(x[nb][c] - base);
                    x[nb][c + 1] = exp2_ftz(x[nb][c + 1] - base);
                }
                const float r = ((x[0][c] + x[0][c + 1]) + (x[1][c] + x[1][c + 1])) +
                                ((x[2][c] + x[2][c + 1]) + (x[3][c] + x[3][c + 1]));
                l[i] = l[i] * corr[i] + r;
            }
            if (__any_sync(0xffffffffu, rescale)) {  // the running max moved for some row
#pragma unroll
                for (int rg = 0; rg < kRG; ++rg)
#pragma unroll
                    for (int f = 0; f < ND; ++f) {
                        o[rg][f][0] *= corr[2 * rg];
                        o[rg][f][1] *= corr[2 * rg];
                        o[rg][f][2] *= corr[2 * rg + 1];
                        o[rg][f][3] *= corr[2 * rg + 1];
                    }
            }
            // O += P V: P's A fragment for keys 16kk .. 16kk + 15 is blocks 2kk, 2kk + 1 of s;
            // ldmatrix.trans x4 over 16 keys x 16 dims gives b0, b1 of dim blocks 2f2, 2f2 + 1.
            const int vrow = lane & 15, vcol = (lane >> 4) * 8;
#pragma unroll
            for (int kk = 0; kk < kHalfF / 16; ++kk) {
                uint32_t pa[kRG][4];
#pragma unroll
                for (int rg = 0; rg < kRG; ++rg) {
                    pa[rg][0] = pack_bf16(s[rg][2 * kk][0], s[rg][2 * kk][1]);
                    pa[rg][1] = pack_bf16(s[rg][2 * kk][2], s[rg][2 * kk][3]);
                    pa[rg][2] = pack_bf16(s[rg][2 * kk + 1][0], s[rg][2 * kk + 1][1]);
                    pa[rg][3] = pack_bf16(s[rg][2 * kk + 1][2], s[rg][2 * kk + 1][3]);
                }
#pragma unroll
                for (int f2 = 0; f2 < ND / 2; ++f2) {
                    uint32_t vf[4];
                    ldsm_x4_t(vf, sV + (half * kHalfF + kk * 16 + vrow) * LD + f2 * 16 + vcol);
#pragma unroll
                    for (int rg = 0; rg < kRG; ++rg) {
                        mma16816(o[rg][2 * f2], pa[rg], vf[0], vf[1]);
                        mma16816(o[rg][2 * f2 + 1], pa[rg], vf[2], vf[3]);
                    }
                }
            }
        }
    }
    cp_async_wait<0>();

    // Normalise; the LSE (natural log) and the output.
#pragma unroll
    for (int i = 0; i < NR; ++i)
        write_forward_row(a, o[i / 2], i % 2, m[i], l[i], q0 + wq + 8 * i + g4, hw, lane);
}

// ---- exact statistics pass (parallel over key tiles) -------------------------------------------

template <int D, int HB>
__global__ void __launch_bounds__(kThreadsP, 2)
    probs_pass_mma(AttentionDev a, Bf16Ops b, float cl2, int64_t q_begin, float* colsum,
                   float* rows, int64_t n_tail) {
    using L = Layout<D>;
    constexpr int LD = L::kLd, C8 = D / 8;
    constexpr int WS = kWarpsP / HB;  // warps per head: a warp takes every WS-th 16-query step
    extern __shared__ __align__(128) unsigned char smem[];
    const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
    const int g4 = lane >> 2, c2 = 2 * (lane & 3);
    bf16* sK = reinterpret_cast<bf16*>(smem);
    unsigned char* sStep = smem + L::p_q + warp * 2 * L::kQBuf;  // two step buffers
    int64_t* sKpos = reinterpret_cast<int64_t*>(smem + L::p_kpos);
    float* sRed = reinterpret_cast<float*>(smem + L::p_red);  // [kWarpsP][kKeysP]

    const int64_t n = a.n, H = a.H, ld = a.max_len;
    const int64_t h0 = static_cast<int64_t>(blockIdx.y) * HB;
    const int64_t g = h0 / (H / a.G);
    const int64_t kt = static_cast<int64_t>(blockIdx.x) * kKeysP;
    const int64_t len = a.kv_len[g];
    if (kt >= len) return;  // whole block: this KV head holds fewer keys
    const int64_t hw = h0 + warp % HB;
    const int64_t tail0 = n - n_tail;
    const int64_t ntq = (n - q_begin + kRowsG - 1) / kRowsG;

    for (int e = tid; e < kKeysP * C8; e += kThreadsP) {
        const int r = e / C8, c = (e % C8) * 8;
        const bool ok = kt + r < len;
        cp_async16(sK + r * LD + c, b.k + (g * ld + (ok ? kt + r : 0)) * D + c, ok);
    }
    cp_async_commit();
    for (int t = tid; t < kKeysP; t += kThreadsP)
        sKpos[t] = kt + t < len ? a.kpos[a.kv_off[g] + kt + t] : kNoPosM;
    cp_async_wait<0>();
    __syncthreads();
    long long kmin = kNoPosM, kmax = kNoQuery;
    for (int t = lane; t < kKeysP; t += 32) {
        kmin = sKpos[t] < kmin ? sKpos[t] : kmin;
        kmax = sKpos[t] > kmax ? sKpos[t] : kmax;
    }
    kmin = warp_min_ll(kmin);
    kmax = warp_max_ll(kmax);

    // This warp's first step (of i, i + WS, ...) whose latest query sees the block's first key,
    // from the per-step bounds; later steps are taken in order and checked on chip (positions
    // need not be sorted; under a causal mask every later step sees the block).
    int64_t cur = ntq;
    for (int64_t i = warp / HB; i < ntq; i += 32 * WS) {
        const int64_t t = i + lane * WS;
        const unsigned m = __ballot_sync(0xffffffffu, t < ntq && b.qb[2 * t + 1] >= kmin);
        if (m) {
            cur = i + static_cast<int64_t>(__ffs(static_cast<int>(m)) - 1) * WS;
            break;
        }
    }
    // Step i: 16 Q rows, their positions and LSEs (rows past n zero-filled, masked below).
    auto load_step = [&](int64_t i, unsigned char* dst) {
        const int64_t qt = q_begin + i * kRowsG;
        bf16* dq = reinterpret_cast<bf16*>(dst);
        for (int e = lane; e < kRowsG * C8; e += 32) {
            const int r = e / C8, c = (e % C8) * 8;
            const bool ok = qt + r < n;
            cp_async16(dq + r * LD + c, b.q + ((ok ? qt + r : 0) * H + hw) * D + c, ok);
        }
        const int r = lane & 15;
        const bool ok = qt + r < n;
        if (lane < 16)
            cp_async8(dst + L::kQRows + r * 8, a.q_pos + (ok ? qt + r : 0), ok);
        else
            cp_async4(dst + L::kQRows + kRowsG * 8 + r * 4, a.lse + hw * n + (ok ? qt + r : 0), ok);
    };

    float acc[kNtP][2];  // column sums of this lane's columns over its rows, in query order
#pragma unroll
    for (int nb = 0; nb < kNtP; ++nb) acc[nb][0] = acc[nb][1] = 0.0f;
    if (cur < ntq) load_step(cur, sStep);
    cp_async_commit();
    int buf = 0;
    while (cur < ntq) {
        const int64_t nxt = cur + WS;
        if (nxt < ntq) load_step(nxt, sStep + (buf ^ 1) * L::kQBuf);
        cp_async_commit();
        cp_async_wait<1>();  // step cur is in (this lane's copies of) buffer buf
        __syncwarp();
        const unsigned char* step = sStep + buf * L::kQBuf;
        const int64_t qs = q_begin + cur * kRowsG;  // the step's first query
        const int64_t* sqp = reinterpret_cast<const int64_t*>(step + L::kQRows);
        const float* slse = reinterpret_cast<const float*>(step + L::kQRows + kRowsG * 8);
        const bool ok0 = qs + g4 < n, ok1 = qs + g4 + 8 < n;
        const long long qp0 = ok0 ? sqp[g4] : kNoQuery, qp1 = ok1 ? sqp[g4 + 8] : kNoQuery;
        // LSE in log2 units; -inf for a row that sees no key (its p are 0).
        const float e0 = ok0 ? slse[g4] * kLog2e : -INFINITY;
        const float e1 = ok1 ? slse[g4 + 8] * kLog2e : -INFINITY;
        const long long wmax = warp_max_ll(qp0 > qp1 ? qp0 : qp1);
        const long long wmin = warp_min_ll(qp0 < qp1 ? qp0 : qp1);
        if (wmax >= kmin) {                  // some row of the step sees some key of the block
            const bool full = kmax <= wmin;  // every key visible to every row
            const bool window = rows && qs + kRowsG > tail0;  // a row of the step is written out
            // Rows that see some key (a finite LSE); the others' p are 0.
            const bool live0 = e0 != -INFINITY, live1 = e1 != -INFINITY;
            float s[1][kNtF][4];
#pragma unroll
            for (int half = 0; half < kKeysP / kKeysF; ++half) {
                qk_tile<D, 1, kNtF>(s, reinterpret_cast<const bf16*>(step), sK + half * kKeysF * LD,
                                    lane);
                // p in place: every exp2 issued unconditionally (independent, pipelined), then
                // masked by a select; a masked or dead row's exp2 may be inf and is dropped.
#pragma unroll
                for (int nb = 0; nb < kNtF; ++nb)
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        bool v0 = live0, v1 = live1;
                        if (!full) {
                            const long long kp = sKpos[half * kKeysF + nb * 8 + c2 + e];
                            v0 = v0 && kp <= qp0;
                            v1 = v1 && kp <= qp1;
                        }
                        const float t0 = exp2_ftz(__fmul_rn(s[0][nb][e], cl2) - e0);
                        const float t1 = exp2_ftz(__fmul_rn(s[0][nb][2 + e], cl2) - e1);
                        s[0][nb][e] = v0 ? t0 : 0.0f;
                        s[0][nb][2 + e] = v1 ? t1 : 0.0f;
                    }
#pragma unroll
                for (int nb = 0; nb < kNtF; ++nb)
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        acc[half * kNtF + nb][e] += s[0][nb][e];
                        acc[half * kNtF + nb][e] += s[0][nb][2 + e];
                    }
                if (window) {
                    const int64_t qa = qs + g4, qc = qa + 8;
                    float* ra =
                        qa >= tail0 && ok0 ? rows + (hw * n_tail + qa - tail0) * ld : nullptr;
                    float* rc =
                        qc >= tail0 && ok1 ? rows + (hw * n_tail + qc - tail0) * ld : nullptr;
#pragma unroll
                    for (int nb = 0; nb < kNtF; ++nb)
#pragma unroll
                        for (int e = 0; e < 2; ++e) {
                            const int64_t j = kt + half * kKeysF + nb * 8 + c2 + e;
                            if (j >= len) continue;
                            if (ra) ra[j] = s[0][nb][e];
                            if (rc) rc[j] = s[0][nb][2 + e];
                        }
                }
            }
        }
        __syncwarp();  // buffer buf is refilled two steps on
        buf ^= 1;
        cur = nxt;
    }
    cp_async_wait<0>();

    // Column c2 + e of block nb: add the 8 row groups (lanes c, c + 4, ..., fixed order), then
    // the warps of one head in warp order.
#pragma unroll
    for (int nb = 0; nb < kNtP; ++nb)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            float v = acc[nb][e];
            v += __shfl_xor_sync(0xffffffffu, v, 4);
            v += __shfl_xor_sync(0xffffffffu, v, 8);
            v += __shfl_xor_sync(0xffffffffu, v, 16);
            if (g4 == 0) sRed[warp * kKeysP + nb * 8 + c2 + e] = v;
        }
    __syncthreads();
    if (colsum && warp < HB) {  // warps warp, warp + HB, ... hold the same head
        float* dst = colsum + (h0 + warp) * ld + kt;
        for (int c = lane; c < kKeysP; c += 32) {
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

// The bf16 copies and tile bounds of one call, in stream-ordered memory (cudaMallocAsync;
// released with cudaFreeAsync after the kernels that read them, so nothing is held between
// calls). The default pool keeps up to kPoolKeep bytes cached across synchronisations: without
// that every call would map fresh memory (the backend synchronises after each op).
constexpr uint64_t kPoolKeep = 4ull << 30;

enum class Pass { kForward, kProbs };

struct Bf16Scratch {
    Bf16Ops ops;
    void* base = nullptr;
    cudaStream_t stream;
    Bf16Scratch(const AttentionDev& a, Pass pass, int64_t q_begin, cudaStream_t s) : stream(s) {
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
        const bool fwd = pass == Pass::kForward;
        auto up = [](size_t b) { return (b + 255) / 256 * 256; };
        const int64_t ntl = (a.max_len + kKeysF - 1) / kKeysF;
        const int64_t ntq = (a.n - q_begin + kRowsG - 1) / kRowsG;
        const size_t qb = up(static_cast<size_t>(a.n * a.H * a.d) * 2);
        const size_t kb = up(static_cast<size_t>(a.G * a.max_len * a.d) * 2);
        const size_t bb = up(static_cast<size_t>(fwd ? a.G * ntl : ntq) * 2 * sizeof(int64_t));
        const size_t total = qb + kb * (fwd ? 2 : 1) + bb;
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
        auto* v = fwd ? reinterpret_cast<bf16*>(p + qb + kb) : nullptr;
        auto* bounds = reinterpret_cast<int64_t*>(p + qb + kb * (fwd ? 2 : 1));
        ops = {q, k, v, fwd ? bounds : nullptr, fwd ? nullptr : bounds};
        const int64_t q4 = a.n * a.H * a.d / 4;
        to_bf16_flat<<<grid_1d(q4, 256, 4096), 256, 0, stream>>>(a.q, q, q4);
        KVS_CUDA_CHECK_LAUNCH();
        if (a.max_len > 0) {
            const dim3 grid(grid_1d(a.max_len * a.d / 4, 256, 1024),
                            static_cast<unsigned int>(a.G));
            to_bf16_heads<<<grid, 256, 0, stream>>>(a.k, a.kv_off, a.kv_len, a.d, a.max_len, k);
            KVS_CUDA_CHECK_LAUNCH();
            if (fwd) {
                to_bf16_heads<<<grid, 256, 0, stream>>>(a.v, a.kv_off, a.kv_len, a.d, a.max_len, v);
                KVS_CUDA_CHECK_LAUNCH();
            }
        }
        if (fwd && ntl > 0) {
            const dim3 grid(static_cast<unsigned int>(ntl), static_cast<unsigned int>(a.G));
            tile_bounds<<<grid, 64, 0, stream>>>(a.kpos, a.kv_off, a.kv_len, 0, kKeysF, kNoPosM,
                                                 ntl, bounds);
            KVS_CUDA_CHECK_LAUNCH();
        } else if (!fwd && ntq > 0) {
            tile_bounds<<<dim3(static_cast<unsigned int>(ntq), 1), 64, 0, stream>>>(
                a.q_pos + q_begin, nullptr, nullptr, a.n - q_begin, kRowsG, kNoQuery, ntq, bounds);
            KVS_CUDA_CHECK_LAUNCH();
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
    Bf16Scratch sc(a, Pass::kForward, 0, stream);
    // The wgmma forward on Hopper (cuda_attention_wgmma.cu): the default since its op cases passed
    // on an H100 (bench/RESULTS.md, sixteenth run); KVSCOPE_CUDA_FWD_WGMMA=0 keeps this file's.
    static const bool wgmma_on = switched_on("KVSCOPE_CUDA_FWD_WGMMA");
    with_shape(a, [&](auto dm, auto hb) {
        constexpr int D = decltype(dm)::value, HB = decltype(hb)::value;
        if (wgmma_on && flash_fwd_wgmma_fits(a))
            return flash_fwd_wgmma(a, sc.ops, scale_log2(a), HB, stream);
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
    Bf16Scratch sc(a, Pass::kProbs, q_begin, stream);
    static const bool wgmma_on = switched_on("KVSCOPE_CUDA_PROBS_WGMMA");  // as the forward
    with_shape(a, [&](auto dm, auto hb) {
        constexpr int D = decltype(dm)::value, HB = decltype(hb)::value;
        if (wgmma_on && flash_fwd_wgmma_fits(a))
            return probs_pass_wgmma(a, sc.ops, scale_log2(a), q_begin, colsum, rows, n_tail, HB,
                                    stream);
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
