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
// on an H100), head_dims 48/80/256..., and decode.
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
//   decode_*       n <= 8 query rows (decode): split-K over chunks of 256 keys (64 when that
//                  leaves SMs idle: decode_chunk()) per (split, head, row), scores kept in a [n*H,
//                  L] buffer, partials combined per head in a fixed order, then the probability row
//                  / column sums from the kept scores. Floor: bytes 2*L*d*4 per KV head (K and V
//                  read once) + the score row.
// Masking: slot j is visible to query i iff kpos[j] <= q_pos[i] (positions need not be sorted).
// A row that sees no key gets out = 0 and LSE = -inf (as on the CPU).
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_device.cuh"

namespace kvscope::cuda {
namespace {

constexpr int kBQ = 16;        // query rows per tile
constexpr int kBK = 32;        // keys per tile (one per lane)
constexpr int kThreads = 128;  // 4 warps; warp w owns query rows 4w .. 4w+3 of a tile
constexpr int kRowsPerWarp = kBQ / (kThreads / 32);
constexpr int kChunk = 256;  // keys per decode split
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

// ---- decode (split-K) -------------------------------------------------------------------------
struct DecodeScratch {
    float* scores;  // [n*H, ld]
    float* pm;      // [n*H, S] split max
    float* pl;      // [n*H, S] split sum of exp
    float* po;      // [n*H, S, d] split unnormalised output
    int64_t splits;
};

// Keys per decode split: kChunk, or kShortChunk where kChunk would give the GPU fewer than two
// blocks per SM. The 8B shape at 1k keys made 4 splits x 32 heads = 128 blocks of 256 keys, one
// per SM, each a long dependent chain (~30 us a layer on an H100, KVSCOPE_PROFILE=1).
constexpr int kShortChunk = 64;
int64_t decode_chunk(const AttentionDev& a) {
    static const int sms = [] {
        int dev = 0, n = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
            return 132;
        return n;
    }();
    const int64_t long_splits = a.max_len > 0 ? (a.max_len + kChunk - 1) / kChunk : 1;
    return a.n * a.H * long_splits < 2 * static_cast<int64_t>(sms) ? kShortChunk : kChunk;
}

DecodeScratch carve(const AttentionDev& a, void* base) {
    DecodeScratch s;
    const int64_t chunk = decode_chunk(a);
    s.splits = a.max_len > 0 ? (a.max_len + chunk - 1) / chunk : 1;
    const int64_t rows = a.n * a.H;
    s.scores = static_cast<float*>(base);
    s.pm = s.scores + rows * a.max_len;
    s.pl = s.pm + rows * s.splits;
    s.po = s.pl + rows * s.splits;
    return s;
}

// head_dim not a multiple of 4: one warp per key (the first version; the vector kernel below
// is the one head dims 48/64/80/128/256 take).
template <int DMAX, int CHUNK>
__global__ void __launch_bounds__(kThreads)
    decode_partial_scalar(AttentionDev a, DecodeScratch sc) {
    __shared__ float sq[DMAX];
    __shared__ float sp[CHUNK];
    __shared__ float red[kThreads / 32];
    const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
    const int64_t d = a.d, H = a.H, ld = a.max_len;
    const int64_t split = blockIdx.x, h = blockIdx.y, i = blockIdx.z, g = h / (H / a.G);
    const int64_t len = a.kv_len[g];
    const float* K = a.k + a.kv_off[g] * d;
    const float* V = a.v + a.kv_off[g] * d;
    const int64_t* kpos = a.kpos + a.kv_off[g];
    const int64_t j0 = split * CHUNK;
    const int64_t j1 = j0 + CHUNK < len ? j0 + CHUNK : len;  // may be <= j0: empty split
    const int64_t qpos = a.q_pos[i];
    const int64_t row = i * H + h;

    for (int64_t c = tid; c < d; c += kThreads) sq[c] = a.q[row * d + c];
    __syncthreads();
    for (int64_t j = j0 + warp; j < j0 + CHUNK; j += kThreads / 32) {
        float s = -INFINITY;
        if (j < j1 && kpos[j] <= qpos) {  // uniform over the warp
            float part = 0.0f;
            for (int64_t c = lane; c < d; c += 32) part += sq[c] * K[j * d + c];
            s = warp_sum(part) * a.scale;
        }
        if (lane == 0) {
            sp[j - j0] = s;
            if (j < j1) sc.scores[row * ld + j] = s;
        }
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int t = tid; t < CHUNK; t += kThreads) mx = fmaxf(mx, sp[t]);
    mx = block_max<kThreads>(mx, red);
    float sum = 0.0f;
    for (int t = tid; t < CHUNK; t += kThreads) {
        const float p = mx == -INFINITY ? 0.0f : expf(sp[t] - mx);
        sp[t] = p;
        sum += p;
    }
    sum = block_sum<kThreads>(sum, red);  // its barriers also publish sp
    const int64_t cnt = j1 > j0 ? j1 - j0 : 0;
    const int64_t slot = row * sc.splits + split;
    for (int64_t c = tid; c < d; c += kThreads) {
        float o = 0.0f;
        for (int64_t t = 0; t < cnt; ++t) o += sp[t] * V[(j0 + t) * d + c];
        sc.po[slot * d + c] = o;
    }
    if (tid == 0) {
        sc.pm[slot] = mx;
        sc.pl[slot] = sum;
    }
}

// head_dim a multiple of 4 (float4 rows). Scores: thread t scores keys j0 + t, j0 + t + kThreads
// (a whole row each, d/4 independent 16-byte loads in flight, written to the score row
// coalesced). Values: thread t owns dims 4*(t % LPR) .. +3 of key group t / LPR (LPR = DMAX/4
// lanes per row, NG = kThreads / LPR groups), sums its group's keys, and the NG partial rows are
// added in a fixed order through shared memory (deterministic). The first version gave one warp
// per key and reduced every score across the warp: 64 dependent steps per warp, ~100 us per
// layer at any length on an H100 (KVSCOPE_PROFILE=1, bench/RESULTS.md).
template <int DMAX, int CHUNK>
__global__ void __launch_bounds__(kThreads) decode_partial(AttentionDev a, DecodeScratch sc) {
    constexpr int LPR = DMAX / 4 < kThreads ? DMAX / 4 : kThreads;
    constexpr int NG = kThreads / LPR;
    __shared__ __align__(16) float sq[DMAX];
    __shared__ float sp[CHUNK];
    __shared__ float red[kThreads / 32];
    __shared__ __align__(16) float so[NG][DMAX];
    const int tid = static_cast<int>(threadIdx.x);
    const int64_t d = a.d, H = a.H, ld = a.max_len, d4 = d / 4;
    const int64_t split = blockIdx.x, h = blockIdx.y, i = blockIdx.z, g = h / (H / a.G);
    const int64_t len = a.kv_len[g];
    const float* K = a.k + a.kv_off[g] * d;
    const float* V = a.v + a.kv_off[g] * d;
    const int64_t* kpos = a.kpos + a.kv_off[g];
    const int64_t j0 = split * CHUNK;
    const int64_t j1 = j0 + CHUNK < len ? j0 + CHUNK : len;  // may be <= j0: empty split
    const int64_t qpos = a.q_pos[i];
    const int64_t row = i * H + h;

    for (int64_t c = tid; c < d; c += kThreads) sq[c] = a.q[row * d + c];
    __syncthreads();
    const float4* q4 = reinterpret_cast<const float4*>(sq);
    for (int t = tid; t < CHUNK; t += kThreads) {
        const int64_t j = j0 + t;
        float s = -INFINITY;
        if (j < j1 && kpos[j] <= qpos) {
            const float4* k4 = reinterpret_cast<const float4*>(K + j * d);
            float acc = 0.0f;
#pragma unroll 8
            for (int64_t c = 0; c < d4; ++c) {
                const float4 kv = k4[c], qv = q4[c];
                acc += qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w;
            }
            s = acc * a.scale;
        }
        sp[t] = s;
        if (j < j1) sc.scores[row * ld + j] = s;
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int t = tid; t < CHUNK; t += kThreads) mx = fmaxf(mx, sp[t]);
    mx = block_max<kThreads>(mx, red);
    float sum = 0.0f;
    for (int t = tid; t < CHUNK; t += kThreads) {
        const float p = mx == -INFINITY ? 0.0f : expf(sp[t] - mx);
        sp[t] = p;
        sum += p;
    }
    sum = block_sum<kThreads>(sum, red);  // its barriers also publish sp
    const int64_t cnt = j1 > j0 ? j1 - j0 : 0;
    const int col = tid % LPR, grp = tid / LPR;
    float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (col < d4) {
        const float4* v4 = reinterpret_cast<const float4*>(V + j0 * d) + col;
#pragma unroll 4
        for (int64_t t = grp; t < cnt; t += NG) {
            const float p = sp[t];
            const float4 vv = v4[t * d4];
            o.x += p * vv.x;
            o.y += p * vv.y;
            o.z += p * vv.z;
            o.w += p * vv.w;
        }
    }
    reinterpret_cast<float4*>(so[grp])[col] = o;
    __syncthreads();
    const int64_t slot = row * sc.splits + split;
    for (int64_t c = tid; c < d; c += kThreads) {
        float acc = 0.0f;
#pragma unroll
        for (int gq = 0; gq < NG; ++gq) acc += so[gq][c];
        sc.po[slot * d + c] = acc;
    }
    if (tid == 0) {
        sc.pm[slot] = mx;
        sc.pl[slot] = sum;
    }
}

// One block per (head, row): the splits' max and sum of exp reduced across the block, the
// rescaled weights kept in shared memory, then each dim summed over the splits in split order.
constexpr int kMaxCombineSplits = 4096;  // 1M keys at kChunk = 256
__global__ void __launch_bounds__(kThreads) decode_combine(AttentionDev a, DecodeScratch sc) {
    __shared__ float sw[kMaxCombineSplits];
    __shared__ float red[kThreads / 32];
    const int64_t h = blockIdx.x, i = blockIdx.y, H = a.H, d = a.d, S = sc.splits;
    const int tid = static_cast<int>(threadIdx.x);
    const int64_t row = i * H + h;
    const float* pm = sc.pm + row * S;
    const float* pl = sc.pl + row * S;
    float M = -INFINITY;
    for (int64_t s = tid; s < S; s += kThreads) M = fmaxf(M, pm[s]);
    M = block_max<kThreads>(M, red);
    float L = 0.0f;
    for (int64_t s = tid; s < S; s += kThreads) {
        const float w = M == -INFINITY ? 0.0f : expf(pm[s] - M);
        sw[s] = w;
        L += pl[s] * w;
    }
    L = block_sum<kThreads>(L, red);  // its barriers also publish sw
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;
    for (int64_t c = tid; c < d; c += kThreads) {
        float o = 0.0f;
#pragma unroll 8
        for (int64_t s = 0; s < S; ++s) o += sc.po[(row * S + s) * d + c] * sw[s];
        a.out[row * d + c] = o * inv;
    }
    if (tid == 0) a.lse[h * a.n + i] = L > 0.0f ? M + logf(L) : -INFINITY;
}

__global__ void decode_probs(AttentionDev a, DecodeScratch sc, float* colsum, float* rows,
                             int64_t n_tail) {
    const int64_t h = blockIdx.y, H = a.H, n = a.n, ld = a.max_len;
    const int64_t len = a.kv_len[h / (H / a.G)];
    const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (j >= len) return;
    const int64_t tail0 = n - n_tail;
    float acc = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
        const float s = sc.scores[(i * H + h) * ld + j];
        const float lse = a.lse[h * n + i];
        const float p = (s == -INFINITY || lse == -INFINITY) ? 0.0f : expf(s - lse);
        acc += p;
        if (rows && i >= tail0) rows[(h * n_tail + (i - tail0)) * ld + j] = p;
    }
    if (colsum) colsum[h * ld + j] = acc;
}

// ---- dispatch -------------------------------------------------------------------------------
// Calls f(std::integral_constant<int, DMAX>) for the smallest instantiated DMAX >= d.
template <class F>
void with_dmax(int64_t d, F&& f) {
    if (d <= 64)
        f(std::integral_constant<int, 64>{});
    else if (d <= 128)
        f(std::integral_constant<int, 128>{});
    else if (d <= kMaxHeadDim)
        f(std::integral_constant<int, 256>{});
    else
        throw std::runtime_error("cuda attention: head_dim " + std::to_string(d) +
                                 " is above the supported " + std::to_string(kMaxHeadDim));
}

void check_shape(const AttentionDev& a) {
    if (a.G <= 0 || a.H % a.G != 0)
        throw std::runtime_error("cuda attention: query heads must be a multiple of KV heads");
    if (a.H > 65535 || a.n > 65535LL * 65535LL)
        throw std::runtime_error("cuda attention: too many heads or rows for the grid");
}

}  // namespace

size_t attention_decode_scratch_bytes(const AttentionDev& a) {
    const int64_t chunk = decode_chunk(a);
    const int64_t splits = a.max_len > 0 ? (a.max_len + chunk - 1) / chunk : 1;
    const int64_t rows = a.n * a.H;
    return sizeof(float) *
           static_cast<size_t>(rows * a.max_len + 2 * rows * splits + rows * splits * a.d);
}

void attention_prefill(const AttentionDev& a, cudaStream_t stream) {
    check_shape(a);
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
    check_shape(a);
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

void attention_decode(const AttentionDev& a, void* scratch, float* colsum, float* rows,
                      int64_t n_tail, cudaStream_t stream) {
    check_shape(a);
    if (a.n <= 0) return;
    if (a.n > kDecodeMaxRows)
        throw std::runtime_error("cuda attention: the decode path takes at most " +
                                 std::to_string(kDecodeMaxRows) + " rows");
    const DecodeScratch sc = carve(a, scratch);
    if (sc.splits > kMaxCombineSplits)
        throw std::runtime_error("cuda attention: decode over more than " +
                                 std::to_string(kMaxCombineSplits * kChunk) + " keys");
    const dim3 grid(static_cast<unsigned int>(sc.splits), static_cast<unsigned int>(a.H),
                    static_cast<unsigned int>(a.n));
    const bool short_chunks = decode_chunk(a) == kShortChunk;
    with_dmax(a.d, [&](auto dm) {
        constexpr int DMAX = decltype(dm)::value;
        if (a.d % 4 == 0 && short_chunks)
            decode_partial<DMAX, kShortChunk><<<grid, kThreads, 0, stream>>>(a, sc);
        else if (a.d % 4 == 0)
            decode_partial<DMAX, kChunk><<<grid, kThreads, 0, stream>>>(a, sc);
        else if (short_chunks)
            decode_partial_scalar<DMAX, kShortChunk><<<grid, kThreads, 0, stream>>>(a, sc);
        else
            decode_partial_scalar<DMAX, kChunk><<<grid, kThreads, 0, stream>>>(a, sc);
        KVS_CUDA_CHECK_LAUNCH();
    });
    decode_combine<<<dim3(static_cast<unsigned int>(a.H), static_cast<unsigned int>(a.n)), kThreads,
                     0, stream>>>(a, sc);
    KVS_CUDA_CHECK_LAUNCH();
    if ((colsum || rows) && a.max_len > 0) {
        decode_probs<<<dim3(static_cast<unsigned int>((a.max_len + 255) / 256),
                            static_cast<unsigned int>(a.H)),
                       256, 0, stream>>>(a, sc, colsum, rows, n_tail);
        KVS_CUDA_CHECK_LAUNCH();
    }
}

}  // namespace kvscope::cuda
