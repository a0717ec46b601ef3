// Decode attention on the device (n <= kDecodeMaxRows query rows, usually one): causal-by-position
// softmax attention with GQA over ragged per-KV-head slot arrays, and the statistics the policies
// read (probability rows, column sums) from the same scores. CPU twin: cpu::attention
// (kernels/cpu/cpu_attention.cpp). Prefill is cuda_attention.cu / cuda_attention_mma.cu.
//
// Split-K: each head's keys are cut into chunks of 256 (64 where that leaves SMs idle); a chunk's
// softmax partial (max, sum of exp, unnormalised output) is combined with the others in split
// order (deterministic, no floating-point atomics).
//   decode_gqa      opt-in, KVSCOPE_CUDA_DECODE_FUSED=1 (head_dim a multiple of 4, up to 8 query
//                   heads per KV head; slower so far: 31 and then 50 us a layer on the 8B shape
//                   at 1k keys against 14 + 6 us for the two kernels, ninth run): one
//                   block per (split, KV head, row) scores its chunk against all the group's query
//                   heads, so each key and value row is read once per group, not once per query
//                   head. The block that finishes a (KV head, row) last -- a ticket counter,
//                   reset by that block -- combines the splits, and for a single row over short
//                   caches also writes the probability rows / column sums: one launch per layer.
//                   Why: the two-kernel version took 14 + 6 us a layer on the 8B shape at 1k keys
//                   (0.65 ms of a 8.8 ms step, ncu, bench/RESULTS.md, eighth run), reading every
//                   K/V row four times.
//   decode_split    the default: one block per (split, query head, row), then a combine kernel
//     + _combine    per (query head, row), which for one row also writes the probabilities;
//     + _probs      decode_probs for the statistics of several rows. Head dims not a multiple of
//                   4 take decode_partial_scalar. decode_split replaced decode_partial (same grid
//                   and results, each phase several memory round trips) in session 18: with the
//                   dependent launches, 7.25-7.36 against 7.33-7.38 ms a token on the 8B shape at
//                   1k (bench/RESULTS.md, eleventh run).
// Floor: bytes 2*L*d*4 per KV head (K and V read once) + the score row when statistics are kept.
// Masking: slot j is visible to query i iff kpos[j] <= q_pos[i]; a row that sees no key gets
// out = 0 and LSE = -inf (as on the CPU).
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/cuda_attention_dispatch.cuh"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_device.cuh"

namespace kvscope::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kChunk = 256;         // keys per split
constexpr int kShortChunk = 64;     // where kChunk would give the GPU fewer than two blocks per SM
constexpr int kGqaShortChunk = 32;  // decode_gqa's chunks: 32, 128 or 256 keys (decode_plan)
constexpr int kGqaMidChunk = 128;
constexpr int kMaxGroup = 8;         // query heads per KV head that decode_gqa takes
constexpr int kCombineSlots = 4096;  // decode_gqa's combine weights, [group][splits], in smem
constexpr int64_t kTickets = static_cast<int64_t>(kDecodeTicketBytes / sizeof(unsigned int));
constexpr int64_t kProbsInKernel = 8192;  // group * keys the combining block turns into probs

struct DecodeScratch {
    unsigned int* tickets;  // [n * G] splits done per (row, KV head); zero between launches
    float* scores;          // [n*H, ld]
    float* pm;              // [n*H, S] split max
    float* pl;              // [n*H, S] split sum of exp
    float* po;              // [n*H, S, d] split unnormalised output
    int64_t splits;
};

struct DecodePlan {
    int64_t chunk = kChunk;
    int64_t splits = 1;
    bool fused = false;  // decode_gqa
};

// The 8B shape at 1k keys made 4 splits x 32 heads = 128 blocks of 256 keys, one per SM, each a
// long dependent chain (~30 us a layer on an H100, KVSCOPE_PROFILE=1): short chunks there.
DecodePlan decode_plan(const AttentionDev& a) {
    static const int sms = [] {
        int dev = 0, n = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
            return 132;
        return n;
    }();
    // Opt-in (=1): slower than the two-kernel path so far, and its last fix (head dims below
    // DMAX) has not run on a GPU yet (bench/RESULTS.md, ninth run).
    static const bool fused_on = opted_in("KVSCOPE_CUDA_DECODE_FUSED");
    const int64_t group = a.G > 0 ? a.H / a.G : 1;
    const bool gqa = fused_on && a.d % 4 == 0 && group <= kMaxGroup && a.n * a.G <= kTickets;
    const auto splits_of = [&](int64_t chunk) {
        return a.max_len > 0 ? (a.max_len + chunk - 1) / chunk : int64_t{1};
    };
    DecodePlan p;
    if (gqa) {  // the shortest chunk that still gives at most 4 blocks per SM
        const int64_t most = 4 * static_cast<int64_t>(sms);
        p.chunk = a.n * a.G * splits_of(kGqaShortChunk) <= most ? kGqaShortChunk
                  : a.n * a.G * splits_of(kGqaMidChunk) <= most ? kGqaMidChunk
                                                                : kChunk;
        p.splits = splits_of(p.chunk);
        p.fused = group * p.splits <= kCombineSlots;
        if (p.fused) return p;
    }
    // The two-kernel path (its kernels are instantiated for kShortChunk and kChunk).
    p.chunk = a.n * a.H * splits_of(kChunk) < 2 * static_cast<int64_t>(sms) ? kShortChunk : kChunk;
    p.splits = splits_of(p.chunk);
    p.fused = false;
    return p;
}

DecodeScratch carve(const AttentionDev& a, const DecodePlan& p, void* base) {
    DecodeScratch s;
    s.splits = p.splits;
    const int64_t rows = a.n * a.H;
    s.tickets = static_cast<unsigned int*>(base);
    s.scores = reinterpret_cast<float*>(static_cast<unsigned char*>(base) + kDecodeTicketBytes);
    s.pm = s.scores + rows * a.max_len;
    s.pl = s.pm + rows * s.splits;
    s.po = s.pl + rows * s.splits;
    return s;
}

// The keys split `split` of KV head g covers: slots [j0, j1) of the head (j1 <= j0: empty).
struct SplitKeys {
    const float* k;
    const float* v;
    const int64_t* kpos;
    int64_t len, j0, j1;
};
template <int CHUNK>
__device__ __forceinline__ SplitKeys split_keys(const AttentionDev& a, int64_t g, int64_t split) {
    SplitKeys s;
    s.len = a.kv_len[g];
    s.k = a.k + a.kv_off[g] * a.d;
    s.v = a.v + a.kv_off[g] * a.d;
    s.kpos = a.kpos + a.kv_off[g];
    s.j0 = split * CHUNK;
    s.j1 = s.j0 + CHUNK < s.len ? s.j0 + CHUNK : s.len;
    return s;
}

// One block per (split, KV head g, row i); the group's query heads h0 .. h0 + group - 1 are
// scored together, and each phase issues all its loads before it uses them: at decode lengths
// the kernel is bound by memory latency, not bandwidth (a first version with one thread per key
// walking its row 4 loads at a time took 31 us a layer on the 8B shape at 1k, ncu, ninth run).
//   scores   kLanesPerKey lanes per key, each holding DMAX/16 16-byte pieces of the K row in
//            registers; dot products with every head's query (shared memory), reduced over the
//            key's lanes by shuffles. Positions and K rows are loaded together.
//   softmax  warp w takes heads w, w + 4, ...
//   values   thread t owns dims 4*(t % LPR) .. +3 of keys t / LPR + NG*u, loaded 8 keys at a
//            time for every head; the NG partial rows added in a fixed order in shared memory.
//   ticket   the last split of (i, g) to finish combines all of them in split order.
constexpr int kLanesPerKey = 4;
template <int DMAX, int CHUNK>
__global__ void __launch_bounds__(kThreads)
    decode_gqa(AttentionDev a, DecodeScratch sc, float* colsum, float* rows, bool keep_scores,
               bool probs_here) {
    constexpr int LPR = DMAX / 4;  // <= kThreads for DMAX <= 256
    constexpr int NG = kThreads / LPR;
    constexpr int kWarps = kThreads / 32;
    constexpr int VPL = DMAX / 4 / kLanesPerKey;        // K pieces per lane
    constexpr int KPP = kThreads / kLanesPerKey;        // keys per scoring pass
    constexpr int kMaxE = kMaxGroup * DMAX / kThreads;  // output elements per thread
    constexpr int SB = kMaxE >= 64 ? 1 : 64 / kMaxE;    // splits per combine batch
    static_assert(NG * kMaxGroup * DMAX == kCombineSlots, "so[] holds the combine's weights");
    __shared__ __align__(16) float sq[kMaxGroup * DMAX];
    __shared__ float sp[kMaxGroup][CHUNK];
    __shared__ __align__(16) float so[NG * kMaxGroup * DMAX];
    __shared__ float smx[kMaxGroup], ssum[kMaxGroup];
    __shared__ bool last;
    grid_wait();  // launched as a dependent (cuda_device.cuh)
    grid_release();
    const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
    const int64_t d = a.d, H = a.H, ld = a.max_len, d4 = d / 4, S = sc.splits;
    const int group = static_cast<int>(H / a.G);
    const int64_t split = blockIdx.x, g = blockIdx.y, i = blockIdx.z, h0 = g * group;
    const SplitKeys sk = split_keys<CHUNK>(a, g, split);
    const int64_t len = sk.len, j0 = sk.j0, j1 = sk.j1;
    const int64_t cnt = j1 > j0 ? j1 - j0 : 0;
    const int64_t qpos = a.q_pos[i];

    {  // the group's query rows, [group, d] at a.q + (i*H + h0)*d, as 16-byte pieces
        const float4* qg = reinterpret_cast<const float4*>(a.q + (i * H + h0) * d);
        float4* sq4 = reinterpret_cast<float4*>(sq);
        for (int64_t e = tid; e < group * d4; e += kThreads)
            sq4[(e / d4) * (DMAX / 4) + e % d4] = qg[e];
    }
    __syncthreads();

    // 1. Scores of the chunk, every head of the group.
    const int sub = tid % kLanesPerKey;
    for (int t0 = 0; t0 < CHUNK; t0 += KPP) {
        const int t = t0 + tid / kLanesPerKey;
        const int64_t j = j0 + t;
        const bool in = j < j1;
        const float4* k4 = reinterpret_cast<const float4*>(sk.k + (in ? j : j0) * d);
        const int64_t kp = in ? sk.kpos[j] : 0;
        float4 kv[VPL];
#pragma unroll
        for (int u = 0; u < VPL; ++u) {
            const int64_t c = sub + kLanesPerKey * u;
            kv[u] = in && c < d4 ? k4[c] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
        float acc[kMaxGroup];
#pragma unroll
        for (int hh = 0; hh < kMaxGroup; ++hh) {
            acc[hh] = 0.0f;
            if (hh >= group) continue;
            const float4* q4 = reinterpret_cast<const float4*>(sq + hh * DMAX);
#pragma unroll
            for (int u = 0; u < VPL; ++u) {
                // Pieces past d: sq holds whatever the block before left there (-inf scores
                // among it: 0 * -inf is NaN), so they are skipped, not multiplied by zero.
                if (sub + kLanesPerKey * u >= d4) break;
                const float4 qv = q4[sub + kLanesPerKey * u];
                acc[hh] += qv.x * kv[u].x + qv.y * kv[u].y + qv.z * kv[u].z + qv.w * kv[u].w;
            }
        }
        const bool visible = in && kp <= qpos;
#pragma unroll
        for (int hh = 0; hh < kMaxGroup; ++hh) {
            if (hh >= group) break;
            float v = acc[hh];
#pragma unroll
            for (int o = 1; o < kLanesPerKey; o <<= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (sub == 0) {
                const float s = visible ? v * a.scale : -INFINITY;
                sp[hh][t] = s;
                if (keep_scores && in) sc.scores[(i * H + h0 + hh) * ld + j] = s;
            }
        }
    }
    __syncthreads();

    // 2. The chunk's softmax partial of each head.
    for (int hh = warp; hh < group; hh += kWarps) {
        float mx = -INFINITY;
        for (int t = lane; t < CHUNK; t += 32) mx = fmaxf(mx, sp[hh][t]);
        mx = warp_max(mx);
        float sum = 0.0f;
        for (int t = lane; t < CHUNK; t += 32) {
            const float p = mx == -INFINITY ? 0.0f : expf(sp[hh][t] - mx);
            sp[hh][t] = p;
            sum += p;
        }
        sum = warp_sum(sum);
        if (lane == 0) {
            smx[hh] = mx;
            ssum[hh] = sum;
        }
    }
    __syncthreads();

    // 3. Values: each V row read once for the whole group, 8 keys' loads in flight.
    const int col = tid % LPR, kg = tid / LPR;
    float4 o[kMaxGroup];
#pragma unroll
    for (int hh = 0; hh < kMaxGroup; ++hh) o[hh] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    const float4* v4 = reinterpret_cast<const float4*>(sk.v + j0 * d) + col;
    for (int64_t tb = kg; tb < cnt; tb += 8 * NG) {
        float4 vv[8];
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            const int64_t t = tb + NG * u;
            vv[u] = t < cnt && col < d4 ? v4[t * d4] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            const int64_t t = tb + NG * u;
            if (t >= cnt) break;
#pragma unroll
            for (int hh = 0; hh < kMaxGroup; ++hh) {
                if (hh >= group) break;
                const float p = sp[hh][t];
                o[hh].x += p * vv[u].x;
                o[hh].y += p * vv[u].y;
                o[hh].z += p * vv[u].z;
                o[hh].w += p * vv[u].w;
            }
        }
    }
#pragma unroll
    for (int hh = 0; hh < kMaxGroup; ++hh) {
        if (hh >= group) break;
        reinterpret_cast<float4*>(so + (kg * kMaxGroup + hh) * DMAX)[col] = o[hh];
    }
    __syncthreads();
    for (int64_t e = tid; e < group * d; e += kThreads) {
        const int64_t hh = e / d, c = e % d;
        float acc = 0.0f;
#pragma unroll
        for (int q = 0; q < NG; ++q) acc += so[(q * kMaxGroup + hh) * DMAX + c];
        sc.po[((i * H + h0 + hh) * S + split) * d + c] = acc;
    }
    if (tid < group) {
        const int64_t slot = (i * H + h0 + tid) * S + split;
        sc.pm[slot] = smx[tid];
        sc.pl[slot] = ssum[tid];
    }

    // 4. Publish this split, then take a ticket: the last split of (i, g) combines.
    __threadfence();
    __syncthreads();
    if (tid == 0) {
        unsigned int* ticket = sc.tickets + i * a.G + g;
        last = atomicAdd(ticket, 1u) + 1u == static_cast<unsigned int>(S);
        if (last) atomicExch(ticket, 0u);  // every split has counted: zero for the next launch
    }
    __syncthreads();
    if (!last) return;
    __threadfence();

    // 5. Combine (other blocks' partials: read through L2, __ldcg). Weights [group][S] in so.
    float* sw = so;
    for (int hh = warp; hh < group; hh += kWarps) {
        const int64_t row = i * H + h0 + hh;
        float M = -INFINITY;
        for (int64_t s = lane; s < S; s += 32) M = fmaxf(M, __ldcg(sc.pm + row * S + s));
        M = warp_max(M);
        float L = 0.0f;
        for (int64_t s = lane; s < S; s += 32) {
            const float w = M == -INFINITY ? 0.0f : expf(__ldcg(sc.pm + row * S + s) - M);
            sw[hh * S + s] = w;
            L += __ldcg(sc.pl + row * S + s) * w;
        }
        L = warp_sum(L);
        if (lane == 0) {
            const float lse = L > 0.0f ? M + logf(L) : -INFINITY;
            a.lse[(h0 + hh) * a.n + i] = lse;
            smx[hh] = lse;
            ssum[hh] = L > 0.0f ? 1.0f / L : 0.0f;
        }
    }
    __syncthreads();
    // Element r of this thread is e = tid + kThreads * r; SB splits' loads in flight per batch.
    const int64_t n_e = group * d;
    float out[kMaxE];
#pragma unroll
    for (int r = 0; r < kMaxE; ++r) out[r] = 0.0f;
    for (int64_t s0 = 0; s0 < S; s0 += SB) {
        float pv[kMaxE][SB];
#pragma unroll
        for (int r = 0; r < kMaxE; ++r) {
            const int64_t e = tid + static_cast<int64_t>(kThreads) * r;
            const int64_t row = i * H + h0 + e / d;
#pragma unroll
            for (int u = 0; u < SB; ++u)
                pv[r][u] =
                    e < n_e && s0 + u < S ? __ldcg(sc.po + (row * S + s0 + u) * d + e % d) : 0.0f;
        }
#pragma unroll
        for (int r = 0; r < kMaxE; ++r) {
            const int64_t e = tid + static_cast<int64_t>(kThreads) * r;
            if (e >= n_e) break;
            const float* w = sw + (e / d) * S + s0;
#pragma unroll
            for (int u = 0; u < SB; ++u)
                if (s0 + u < S) out[r] += pv[r][u] * w[u];
        }
    }
#pragma unroll
    for (int r = 0; r < kMaxE; ++r) {
        const int64_t e = tid + static_cast<int64_t>(kThreads) * r;
        if (e >= n_e) break;
        a.out[(i * H + h0) * d + e] = out[r] * ssum[e / d];
    }
    if (!probs_here) return;
    // 6. One row (n == 1) over a short cache: its probabilities here, as decode_probs writes them,
    //    8 scores' loads in flight.
    const int64_t n_p = group * len;
    for (int64_t e0 = tid; e0 < n_p; e0 += 8 * kThreads) {
        float sv[8];
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            const int64_t e = e0 + static_cast<int64_t>(kThreads) * u;
            sv[u] = e < n_p ? __ldcg(sc.scores + (h0 + e / len) * ld + e % len) : -INFINITY;
        }
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            const int64_t e = e0 + static_cast<int64_t>(kThreads) * u;
            if (e >= n_p) break;
            const int64_t h = h0 + e / len, j = e % len;
            const float lse = smx[e / len];
            const float p = (sv[u] == -INFINITY || lse == -INFINITY) ? 0.0f : expf(sv[u] - lse);
            if (colsum) colsum[h * ld + j] = p;
            if (rows) rows[h * ld + j] = p;
        }
    }
}

// A split's softmax partial over its CHUNK scores in shared memory, by the whole block:
// sp[t] = exp(sp[t] - max) (0 when the max is -inf); returns {max, sum}. The last barrier of
// block_sum also publishes sp.
template <int CHUNK>
__device__ __forceinline__ float2 chunk_softmax(float* sp, float* red) {
    const int tid = static_cast<int>(threadIdx.x);
    float mx = -INFINITY;
    for (int t = tid; t < CHUNK; t += kThreads) mx = fmaxf(mx, sp[t]);
    mx = block_max<kThreads>(mx, red);
    float sum = 0.0f;
    for (int t = tid; t < CHUNK; t += kThreads) {
        const float p = mx == -INFINITY ? 0.0f : expf(sp[t] - mx);
        sp[t] = p;
        sum += p;
    }
    return make_float2(mx, block_sum<kThreads>(sum, red));
}

// head_dim not a multiple of 4: one warp per key (the first version; the vector kernel below
// is the one head dims 48/64/80/128/256 take).
template <int DMAX, int CHUNK>
__global__ void __launch_bounds__(kThreads)
    decode_partial_scalar(AttentionDev a, DecodeScratch sc) {
    __shared__ float sq[DMAX];
    __shared__ float sp[CHUNK];
    __shared__ float red[kThreads / 32];
    grid_wait();  // a dependent launch (cuda_device.cuh): every read after it
    grid_release();
    const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
    const int64_t d = a.d, H = a.H, ld = a.max_len;
    const int64_t split = blockIdx.x, h = blockIdx.y, i = blockIdx.z, g = h / (H / a.G);
    const SplitKeys sk = split_keys<CHUNK>(a, g, split);
    const int64_t j0 = sk.j0, j1 = sk.j1, row = i * H + h;
    for (int64_t c = tid; c < d; c += kThreads) sq[c] = a.q[row * d + c];
    __syncthreads();
    for (int64_t j = j0 + warp; j < j0 + CHUNK; j += kThreads / 32) {
        float s = -INFINITY;
        if (j < j1 && sk.kpos[j] <= a.q_pos[i]) {  // uniform over the warp
            float part = 0.0f;
            for (int64_t c = lane; c < d; c += 32) part += sq[c] * sk.k[j * d + c];
            s = warp_sum(part) * a.scale;
        }
        if (lane == 0) {
            sp[j - j0] = s;
            if (j < j1) sc.scores[row * ld + j] = s;
        }
    }
    __syncthreads();
    const float2 ms = chunk_softmax<CHUNK>(sp, red);
    const float mx = ms.x, sum = ms.y;
    const int64_t cnt = j1 > j0 ? j1 - j0 : 0;
    const int64_t slot = row * sc.splits + split;
    for (int64_t c = tid; c < d; c += kThreads) {
        float o = 0.0f;
        for (int64_t t = 0; t < cnt; ++t) o += sp[t] * sk.v[(j0 + t) * d + c];
        sc.po[slot * d + c] = o;
    }
    if (tid == 0) {
        sc.pm[slot] = mx;
        sc.pl[slot] = sum;
    }
}

// A split's result from a block whose thread (grp, col) holds dims 4*col .. +3 of value group
// grp: the NG groups' rows added in a fixed order through shared memory (deterministic) into
// slot `slot` of the scratch, with the chunk's max and sum of exp.
template <int NG, int DMAX>
__device__ __forceinline__ void write_partial(float (*so)[DMAX], float4 o, int grp, int col,
                                              const DecodeScratch& sc, int64_t slot, int64_t d,
                                              float mx, float sum) {
    const int tid = static_cast<int>(threadIdx.x);
    reinterpret_cast<float4*>(so[grp])[col] = o;
    __syncthreads();
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

// Ask L2 for the bytes [p, p + bytes) (a hint: no registers held, nothing waits for it).
__device__ __forceinline__ void prefetch_l2(const void* p, int64_t bytes) {
    const char* c = static_cast<const char*>(p);
    for (int64_t off = static_cast<int64_t>(threadIdx.x) * 128; off < bytes;
         off += static_cast<int64_t>(blockDim.x) * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(c + off));
}

// decode_split (head_dim a multiple of 4): each phase one memory round trip. Why: the kernel it
// replaced (decode_partial) took 13.8 us a layer on the 8B shape at 1k keys (ncu, bench/RESULTS.md,
// tenth run) for 32 KB of K and 32 KB of V a block: two of its four warps scored 64 keys, each
// walking a 512-byte row 8 loads at a time, then the values came in 4 more rounds; this one 13.5
// (eleventh run), and with its combine writing the probabilities one launch a layer fewer.
//   prefetch  the chunk's V rows (and K rows past the first pass) are asked of L2 first;
//   scores    LPK lanes per key (1, 2, 4 for DMAX 64, 128, 256), each holding VPL 16-byte pieces
//             of the row in registers, all loaded before the query is staged and used; the
//             lanes' dot products added by shuffles;
//   softmax   every warp takes the chunk's max itself (no block reduction); warp 0 the sum;
//   values    thread t owns dims 4*(t % LPR) .. +3 of keys t / LPR + NG*u, 16 rows' loads in
//             flight, each key's weight exp(s - max) computed where it is used; the NG partial
//             rows added in a fixed order in shared memory (deterministic).
template <int DMAX, int CHUNK>
__global__ void __launch_bounds__(kThreads) decode_split(AttentionDev a, DecodeScratch sc) {
    constexpr int LPK = DMAX >= 128 ? DMAX / 64 : 1;
    constexpr int KP = kThreads / LPK;  // keys per scoring pass
    constexpr int VPL = DMAX / 4 / LPK;
    constexpr int LPR = DMAX / 4;
    constexpr int NG = kThreads / LPR;
    constexpr int PER = CHUNK / NG;          // keys per value group
    constexpr int VB = PER < 16 ? PER : 16;  // value rows in flight
    static_assert(LPR <= kThreads && PER % VB == 0, "decode_split's shapes");
    __shared__ __align__(16) float sq[DMAX];
    __shared__ float sp[CHUNK];
    __shared__ float ssum;
    __shared__ __align__(16) float so[NG][DMAX];
    grid_wait();  // a dependent launch (cuda_device.cuh): every read after it
    grid_release();
    const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
    const int64_t d = a.d, H = a.H, ld = a.max_len, d4 = d / 4;
    const int64_t split = blockIdx.x, h = blockIdx.y, i = blockIdx.z, g = h / (H / a.G);
    const SplitKeys sk = split_keys<CHUNK>(a, g, split);
    const int64_t j0 = sk.j0, cnt = sk.j1 > sk.j0 ? sk.j1 - sk.j0 : 0;
    const int64_t row = i * H + h, qpos = a.q_pos[i];
    const int64_t row_bytes = d * static_cast<int64_t>(sizeof(float));
    if (cnt > 0) {
        prefetch_l2(sk.v + j0 * d, cnt * row_bytes);
        if (cnt > KP) prefetch_l2(sk.k + (j0 + KP) * d, (cnt - KP) * row_bytes);
    }

    // 1. Scores, KP keys a pass; the first pass's loads go out before the query is staged.
    const int sub = tid % LPK, kt = tid / LPK;
    float4 kv[VPL];
    int64_t kp = 0;
    const auto load_keys = [&](int t0) {
        const int64_t t = t0 + kt;
        const bool in = t < cnt;
        const float4* k4 = reinterpret_cast<const float4*>(sk.k + (j0 + (in ? t : 0)) * d);
        kp = in ? sk.kpos[j0 + t] : 0;
#pragma unroll
        for (int u = 0; u < VPL; ++u) {
            const int64_t c = sub + LPK * u;
            kv[u] = in && c < d4 ? k4[c] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
    };
    load_keys(0);
    for (int64_t c = tid; c < d; c += kThreads) sq[c] = a.q[row * d + c];
    __syncthreads();
    const float4* q4 = reinterpret_cast<const float4*>(sq);
#pragma unroll
    for (int t0 = 0; t0 < CHUNK; t0 += KP) {
        if (t0 > 0) load_keys(t0);
        float acc = 0.0f;
#pragma unroll
        for (int u = 0; u < VPL; ++u) {
            if (sub + LPK * u >= d4) break;  // sq holds only d floats
            const float4 qv = q4[sub + LPK * u];
            acc += qv.x * kv[u].x + qv.y * kv[u].y + qv.z * kv[u].z + qv.w * kv[u].w;
        }
#pragma unroll
        for (int o = 1; o < LPK; o <<= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        const int64_t t = t0 + kt;
        if (sub == 0 && t < CHUNK) {
            const bool in = t < cnt;
            const float s = in && kp <= qpos ? acc * a.scale : -INFINITY;
            sp[t] = s;
            if (in) sc.scores[row * ld + j0 + t] = s;
        }
    }
    __syncthreads();

    // 2. The chunk's max, by every warp; its sum of exp, by warp 0.
    float mx = -INFINITY;
#pragma unroll
    for (int t = lane; t < CHUNK; t += 32) mx = fmaxf(mx, sp[t]);
    mx = warp_max(mx);
    if (warp == 0) {
        float sum = 0.0f;
#pragma unroll
        for (int t = lane; t < CHUNK; t += 32) sum += mx == -INFINITY ? 0.0f : expf(sp[t] - mx);
        sum = warp_sum(sum);
        if (lane == 0) ssum = sum;
    }

    // 3. Values.
    const int col = tid % LPR, grp = tid / LPR;
    float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (col < d4) {
        const float4* v4 = reinterpret_cast<const float4*>(sk.v + j0 * d) + col;
#pragma unroll
        for (int u0 = 0; u0 < PER; u0 += VB) {
            float4 vv[VB];
            float p[VB];
#pragma unroll
            for (int u = 0; u < VB; ++u) {
                const int t = grp + NG * (u0 + u);
                const bool in = t < cnt;
                vv[u] = in ? v4[t * d4] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                p[u] = in && mx != -INFINITY ? expf(sp[t] - mx) : 0.0f;
            }
#pragma unroll
            for (int u = 0; u < VB; ++u) {
                o.x += p[u] * vv[u].x;
                o.y += p[u] * vv[u].y;
                o.z += p[u] * vv[u].z;
                o.w += p[u] * vv[u].w;
            }
        }
    }
    write_partial<NG, DMAX>(so, o, grp, col, sc, row * sc.splits + split, d, mx, ssum);
}

// One block per (head, row): the splits' max and sum of exp reduced across the block, the
// rescaled weights kept in shared memory, then each dim summed over the splits in split order.
// With colsum or rows (decode_split's path, one row: n == 1) the block then writes its head's
// probabilities as decode_probs would, one launch a layer fewer.
constexpr int kMaxCombineSplits = 4096;  // 1M keys at kChunk = 256
__global__ void __launch_bounds__(kThreads)
    decode_combine(AttentionDev a, DecodeScratch sc, float* colsum, float* rows) {
    __shared__ float sw[kMaxCombineSplits];
    __shared__ float red[kThreads / 32];
    grid_wait();
    grid_release();
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
    const float lse = L > 0.0f ? M + logf(L) : -INFINITY;
    if (tid == 0) a.lse[h * a.n + i] = lse;
    if (!colsum && !rows) return;
    const int64_t len = a.kv_len[h / (H / a.G)], ld = a.max_len;
    for (int64_t j0 = tid; j0 < len; j0 += 8 * kThreads) {  // 8 scores' loads in flight
        float sv[8];
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            const int64_t j = j0 + static_cast<int64_t>(kThreads) * u;
            sv[u] = j < len ? sc.scores[row * ld + j] : -INFINITY;
        }
#pragma unroll
        for (int u = 0; u < 8; ++u) {
            const int64_t j = j0 + static_cast<int64_t>(kThreads) * u;
            if (j >= len) break;
            const float p = (sv[u] == -INFINITY || lse == -INFINITY) ? 0.0f : expf(sv[u] - lse);
            if (colsum) colsum[h * ld + j] = p;
            if (rows) rows[h * ld + j] = p;
        }
    }
}

__global__ void decode_probs(AttentionDev a, DecodeScratch sc, float* colsum, float* rows,
                             int64_t n_tail) {
    grid_wait();
    grid_release();
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

}  // namespace

size_t attention_decode_scratch_bytes(const AttentionDev& a) {
    const DecodePlan p = decode_plan(a);
    const int64_t rows = a.n * a.H;
    return kDecodeTicketBytes +
           sizeof(float) *
               static_cast<size_t>(rows * a.max_len + 2 * rows * p.splits + rows * p.splits * a.d);
}

void attention_decode(const AttentionDev& a, void* scratch, float* colsum, float* rows,
                      int64_t n_tail, cudaStream_t stream) {
    check_attention_shape(a);
    if (a.n <= 0) return;
    if (a.n > kDecodeMaxRows)
        throw std::runtime_error("cuda attention: the decode path takes at most " +
                                 std::to_string(kDecodeMaxRows) + " rows");
    const DecodePlan plan = decode_plan(a);
    const DecodeScratch sc = carve(a, plan, scratch);
    if (sc.splits > kMaxCombineSplits)
        throw std::runtime_error("cuda attention: decode over more than " +
                                 std::to_string(kMaxCombineSplits * kChunk) + " keys");
    const bool stats = (colsum || rows) && a.max_len > 0;
    const bool short_chunks = plan.chunk == kShortChunk;
    if (plan.fused) {
        const int64_t group = a.H / a.G;
        // n == 1: the row is the last one, so n_tail (<= n) is 1 whenever rows are asked for.
        const bool probs_here = stats && a.n == 1 && group * a.max_len <= kProbsInKernel;
        const dim3 grid(static_cast<unsigned int>(sc.splits), static_cast<unsigned int>(a.G),
                        static_cast<unsigned int>(a.n));
        with_dmax(a.d, [&](auto dm) {
            constexpr int DMAX = decltype(dm)::value;
            auto* kernel = plan.chunk == kGqaShortChunk ? decode_gqa<DMAX, kGqaShortChunk>
                           : plan.chunk == kGqaMidChunk ? decode_gqa<DMAX, kGqaMidChunk>
                                                        : decode_gqa<DMAX, kChunk>;
            launch_dependent(kernel, grid, kThreads, 0, stream, a, sc, colsum, rows, stats,
                             probs_here);
        });
        if (!stats || probs_here) return;
    } else {
        const dim3 grid(static_cast<unsigned int>(sc.splits), static_cast<unsigned int>(a.H),
                        static_cast<unsigned int>(a.n));
        with_dmax(a.d, [&](auto dm) {
            constexpr int DMAX = decltype(dm)::value;
            auto* kernel = a.d % 4 != 0   ? (short_chunks ? decode_partial_scalar<DMAX, kShortChunk>
                                                          : decode_partial_scalar<DMAX, kChunk>)
                           : short_chunks ? decode_split<DMAX, kShortChunk>
                                          : decode_split<DMAX, kChunk>;
            launch_dependent(kernel, grid, kThreads, 0, stream, a, sc);
        });
        // One row (n == 1, so n_tail is 0 or 1): its probabilities in the combine's blocks.
        const bool probs_here = stats && a.n == 1;
        launch_dependent(decode_combine,
                         dim3(static_cast<unsigned int>(a.H), static_cast<unsigned int>(a.n)),
                         kThreads, 0, stream, a, sc, probs_here ? colsum : nullptr,
                         probs_here && n_tail > 0 ? rows : nullptr);
        if (!stats || probs_here) return;
    }
    launch_dependent(
        decode_probs,
        dim3(static_cast<unsigned int>((a.max_len + 255) / 256), static_cast<unsigned int>(a.H)),
        256, 0, stream, a, sc, colsum, rows, n_tail);
}

}  // namespace kvscope::cuda
