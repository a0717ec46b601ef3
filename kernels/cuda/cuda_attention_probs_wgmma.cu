// The exact statistics pass of the prefill attention on Hopper's warpgroup MMA (sm_90a): column
// sums from the saved LSE and the last n_tail probability rows, what probs_pass_mma
// (cuda_attention_mma.cu) computes with mma.sync. The default where it fits (head_dim 128,
// compute capability 9.0; KVSCOPE_CUDA_PROBS_WGMMA=0 keeps probs_pass_mma). CPU twin:
// cpu::attention (kernels/cpu/cpu_attention.cpp), through the shared op cases.
// Measured (bench_cuda_attention, H100, 8B attention shape): 1.70 / 21.5 ms a layer at 8k / 32k
// against 2.49-2.52 / 24.8 for probs_pass_mma in the same call (bench/RESULTS.md, sixteenth run).
#include <cmath>
#include <cstdint>

#include "kernels/cuda/cuda_attention_bf16.cuh"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_device.cuh"
#include "kernels/cuda/cuda_wgmma.cuh"

namespace kvscope::cuda {
namespace {

using bf16 = __nv_bfloat16;
using namespace wgmma;  // NOLINT(google-build-using-namespace): the shared PTX helpers

// The statistics pass's block: 2 warpgroups over one 128-key tile of one KV head.
constexpr int kWarpgroups = 2;
constexpr int kThreads = 128 * kWarpgroups;
constexpr int kKeys = 128;
constexpr int kNb = kKeys / 8;                   // 8-key column blocks of S
constexpr uint32_t kTileBytes = kKeys * kD * 2;  // one K tile

// probs_pass_wgmma: what probs_pass_mma computes (column sums from the saved LSE, the last n_tail
// rows), with the logits formed exactly as flash_fwd_wgmma forms them (the same wgmma shape over
// the same operand layouts: Q rows x a 128-key K tile), so p = exp2(t - LSE log2 e) rows sum to
// 1 to fp32 rounding. A block keeps 128 keys of one KV head in shared memory; its 2 warpgroups
// walk 64-query steps of the block's HB heads (HB >= 2: warpgroup w takes heads w, w + 2, ...;
// HB = 1: both take the one head, steps of parity w), each step's Q rows, positions and LSEs
// double-buffered per warpgroup with cp.async. A lane sums its rows' p per column in registers in
// step order; at the end of a head the lanes of a column (xor 4, 8, 16), then the warps, in that
// fixed order (deterministic, no atomics).
constexpr int kStepQ = 64;                         // queries per step (one warpgroup's rows)
constexpr uint32_t kStepQBytes = kStepQ * kD * 2;  // 16 KB
constexpr uint32_t kStepBytes = kStepQBytes + kStepQ * 8 + kStepQ * 4;  // + positions, LSEs
constexpr uint32_t kStepStride = (kStepBytes + 1023u) & ~1023u;
constexpr uint32_t kPKOff = 0;              // the K tile (32 KB)
constexpr uint32_t kPStepOff = kTileBytes;  // [wg][2] step buffers
constexpr uint32_t kPKposOff = kPStepOff + 2 * kWarpgroups * kStepStride;
constexpr uint32_t kPRedOff = kPKposOff + kKeys * 8;  // [8 warps][128] partial sums
constexpr uint32_t kPSmemBytes = kPRedOff + 8 * kKeys * 4 + 1024;
constexpr int kQTile = 16;  // queries per qb entry (Bf16Scratch's tile_bounds)
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ void wg_barrier(int wg) {  // the 128 threads of warpgroup wg
    asm volatile("bar.sync %0, 128;\n" ::"r"(1 + wg) : "memory");
}

template <int HB>
__global__ void __launch_bounds__(kThreads, 1)
    probs_pass_wgmma_kernel(AttentionDev a, Bf16Ops b, float cl2, int64_t q_begin, float* colsum,
                            float* rows, int64_t n_tail) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int kRounds = HB >= 2 ? HB / 2 : 1;  // heads per warpgroup
    constexpr int kStride = HB >= 2 ? 1 : 2;       // step stride within a head
    extern __shared__ unsigned char smem_raw[];
    const uint32_t raw = smem_addr(smem_raw);
    const uint32_t pad = ((raw + 1023u) & ~1023u) - raw;
    unsigned char* smem = smem_raw + pad;
    const uint32_t sbase = raw + pad;
    int64_t* sKpos = reinterpret_cast<int64_t*>(smem + kPKposOff);
    float* sRed = reinterpret_cast<float*>(smem + kPRedOff);

    const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
    const int wg = warp >> 2, wt = tid & 127;  // warpgroup, thread within it
    const int g4 = lane >> 2, c2 = 2 * (lane & 3);
    const int rw = 16 * (warp & 3) + g4;  // this lane's first row within a step
    const int64_t n = a.n, H = a.H, ld = a.max_len;
    const int64_t h0 = static_cast<int64_t>(blockIdx.y) * HB;
    const int64_t g = h0 / (H / a.G);
    const int64_t kt = static_cast<int64_t>(blockIdx.x) * kKeys;
    const int64_t len = a.kv_len[g];
    if (kt >= len) return;  // whole block: this KV head holds fewer keys
    const int64_t tail0 = n - n_tail;
    const int64_t nq = n - q_begin;
    const int64_t nsteps = (nq + kStepQ - 1) / kStepQ;
    const int64_t nqt = (nq + kQTile - 1) / kQTile;  // qb entries

    for (int e = tid; e < kKeys * kChunks; e += kThreads) {
        const int r = e / kChunks, c = e % kChunks;
        const bool ok = kt + r < len;
        cp_async16(smem + kPKOff + swz(r, c, kKeys),
                   b.k + (g * ld + (ok ? kt + r : 0)) * kD + c * 8, ok);
    }
    cp_async_commit();
    for (int t = tid; t < kKeys; t += kThreads)
        sKpos[t] = kt + t < len ? a.kpos[a.kv_off[g] + kt + t] : kNoPos;
    cp_async_wait<0>();
    fence_async_smem();
    __syncthreads();
    long long kmin = kNoPos, kmax = kNoQuery;
    for (int t = 0; t < kKeys; ++t) {
        kmin = sKpos[t] < kmin ? sKpos[t] : kmin;
        kmax = sKpos[t] > kmax ? sKpos[t] : kmax;
    }
    // Step i's query-position bounds from its qb entries.
    auto step_hi = [&](int64_t i) {
        long long hi = kNoQuery;
        for (int64_t t = i * (kStepQ / kQTile); t < (i + 1) * (kStepQ / kQTile) && t < nqt; ++t)
            hi = b.qb[2 * t + 1] > hi ? b.qb[2 * t + 1] : hi;
        return hi;
    };
    auto step_lo = [&](int64_t i) {
        long long lo = kNoPos;
        for (int64_t t = i * (kStepQ / kQTile); t < (i + 1) * (kStepQ / kQTile) && t < nqt; ++t)
            lo = b.qb[2 * t] < lo ? b.qb[2 * t] : lo;
        return lo;
    };
    // The first step whose latest query sees the block's first key (the same for every head);
    // later steps are taken in order (under a causal mask every later step sees the block).
    int64_t first = nsteps;
    for (int64_t i0 = 0; i0 < nsteps; i0 += 32) {
        const int64_t i = i0 + lane;
        const unsigned m = __ballot_sync(0xffffffffu, i < nsteps && step_hi(i) >= kmin);
        if (m) {
            first = i0 + __ffs(static_cast<int>(m)) - 1;
            break;
        }
    }
    const uint32_t bufs = kPStepOff + static_cast<uint32_t>(wg) * 2 * kStepStride;

#pragma unroll 1
    for (int round = 0; round < kRounds; ++round) {
        const int64_t h = h0 + (HB >= 2 ? wg + 2 * round : 0);
        // Step i of head h: 64 Q rows, their positions and LSEs (rows past n zero-filled).
        auto load_step = [&](int64_t i, uint32_t buf) {
            const int64_t qs = q_begin + i * kStepQ;
            for (int e = wt; e < kStepQ * kChunks; e += 128) {
                const int r = e / kChunks, c = e % kChunks;
                const bool ok = qs + r < n;
                cp_async16(smem + buf + swz(r, c, kStepQ),
                           b.q + ((ok ? qs + r : 0) * H + h) * kD + c * 8, ok);
            }
            if (wt < kStepQ) {
                const bool ok = qs + wt < n;
                cp_async8(smem + buf + kStepQBytes + wt * 8, a.q_pos + (ok ? qs + wt : 0), ok);
                cp_async4(smem + buf + kStepQBytes + kStepQ * 8 + wt * 4,
                          a.lse + h * n + (ok ? qs + wt : 0), ok);
            }
        };
        float acc[kNb][2];
#pragma unroll
        for (int nb = 0; nb < kNb; ++nb) acc[nb][0] = acc[nb][1] = 0.0f;
        int64_t cur = first + (HB >= 2 ? 0 : wg);
        if (cur < nsteps) load_step(cur, bufs);
        cp_async_commit();
        int bi = 0;
        while (cur < nsteps) {
            const int64_t nxt = cur + kStride;
            if (nxt < nsteps) load_step(nxt, bufs + (bi ^ 1) * kStepStride);
            cp_async_commit();
            cp_async_wait<1>();  // step cur is in buffer bi
            fence_async_smem();
            wg_barrier(wg);
            const uint32_t buf = bufs + bi * kStepStride;
            const int64_t qs = q_begin + cur * kStepQ;
            const long long shi = step_hi(cur), slo = step_lo(cur);
            if (shi >= kmin) {  // some row of the step sees some key of the block
                const bool full = kmax <= slo;
                const int64_t* sqp = reinterpret_cast<const int64_t*>(smem + buf + kStepQBytes);
                const float* slse =
                    reinterpret_cast<const float*>(smem + buf + kStepQBytes + kStepQ * 8);
                const bool ok0 = qs + rw < n, ok1 = qs + rw + 8 < n;
                const long long qp0 = ok0 ? sqp[rw] : kNoQuery, qp1 = ok1 ? sqp[rw + 8] : kNoQuery;
                // LSE in log2 units; -inf for a row that sees no key (its p are 0).
                const float e0 = ok0 ? slse[rw] * kLog2e : -INFINITY;
                const float e1 = ok1 ? slse[rw + 8] * kLog2e : -INFINITY;
                const bool live0 = e0 != -INFINITY, live1 = e1 != -INFINITY;
                float sc[kNb][4];
#pragma unroll
                for (int nb = 0; nb < kNb; ++nb)
                    sc[nb][0] = sc[nb][1] = sc[nb][2] = sc[nb][3] = 0.0f;
                pin(sc);
                wgmma_fence();
#pragma unroll
                for (int k = 0; k < kD / 16; ++k)
                    wgmma_ss(sc, desc_k(sbase + buf, kStepQ, 0, k),
                             desc_k(sbase + kPKOff, kKeys, 0, k), k > 0);
                wgmma_commit();
                wgmma_wait_all();
                pin(sc);
                // p in place: every exp2 issued, then masked by a select.
#pragma unroll
                for (int nb = 0; nb < kNb; ++nb)
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        bool v0 = live0, v1 = live1;
                        if (!full) {
                            const long long kp = sKpos[nb * 8 + c2 + e];
                            v0 = v0 && kp <= qp0;
                            v1 = v1 && kp <= qp1;
                        }
                        const float t0 = exp2_ftz(__fmul_rn(sc[nb][e], cl2) - e0);
                        const float t1 = exp2_ftz(__fmul_rn(sc[nb][2 + e], cl2) - e1);
                        sc[nb][e] = v0 ? t0 : 0.0f;
                        sc[nb][2 + e] = v1 ? t1 : 0.0f;
                        acc[nb][e] += sc[nb][e];
                        acc[nb][e] += sc[nb][2 + e];
                    }
                if (rows && qs + kStepQ > tail0) {  // a row of the step is written out
                    const int64_t qa = qs + rw, qc = qa + 8;
                    float* ra =
                        qa >= tail0 && ok0 ? rows + (h * n_tail + qa - tail0) * ld : nullptr;
                    float* rc =
                        qc >= tail0 && ok1 ? rows + (h * n_tail + qc - tail0) * ld : nullptr;
#pragma unroll
                    for (int nb = 0; nb < kNb; ++nb)
#pragma unroll
                        for (int e = 0; e < 2; ++e) {
                            const int64_t j = kt + nb * 8 + c2 + e;
                            if (j >= len) continue;
                            if (ra) ra[j] = sc[nb][e];
                            if (rc) rc[j] = sc[nb][2 + e];
                        }
                }
            }
            wg_barrier(wg);  // buffer bi is refilled two steps on
            bi ^= 1;
            cur = nxt;
        }
        cp_async_wait<0>();

        // Column nb * 8 + c2 + e: the 8 row groups of a warp (lanes c, c + 4, ..., fixed order),
        // then the warps (HB >= 2: the warpgroup's 4; HB = 1: all 8), in warp order.
#pragma unroll
        for (int nb = 0; nb < kNb; ++nb)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                float v = acc[nb][e];
                v += __shfl_xor_sync(0xffffffffu, v, 4);
                v += __shfl_xor_sync(0xffffffffu, v, 8);
                v += __shfl_xor_sync(0xffffffffu, v, 16);
                if (g4 == 0) sRed[warp * kKeys + nb * 8 + c2 + e] = v;
            }
        __syncthreads();
        if (colsum) {
            if (HB >= 2) {  // warpgroup wg writes its head
                float* dst = colsum + h * ld + kt;
                for (int c = wt; c < kKeys; c += 128) {
                    float sum = 0.0f;
                    for (int w = 4 * wg; w < 4 * wg + 4; ++w) sum += sRed[w * kKeys + c];
                    if (kt + c < len) dst[c] = sum;
                }
            } else if (wg == 0) {
                float* dst = colsum + h * ld + kt;
                for (int c = wt; c < kKeys; c += 128) {
                    float sum = 0.0f;
                    for (int w = 0; w < 8; ++w) sum += sRed[w * kKeys + c];
                    if (kt + c < len) dst[c] = sum;
                }
            }
        }
        __syncthreads();  // sRed is reused by the next round
    }
#else
    __trap();  // built for sm_90a only (flash_fwd_wgmma_fits checks the device)
#endif
}

}  // namespace

void probs_pass_wgmma(const AttentionDev& a, const Bf16Ops& b, float cl2, int64_t q_begin,
                      float* colsum, float* rows, int64_t n_tail, int hb, cudaStream_t stream) {
    auto launch = [&](auto kernel) {
        KVS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(kPSmemBytes)));
        const dim3 grid(static_cast<unsigned int>((a.max_len + kKeys - 1) / kKeys),
                        static_cast<unsigned int>(a.H / hb));
        kernel<<<grid, kThreads, kPSmemBytes, stream>>>(a, b, cl2, q_begin, colsum, rows, n_tail);
        KVS_CUDA_CHECK_LAUNCH();
    };
    if (hb == 4)
        launch(probs_pass_wgmma_kernel<4>);
    else if (hb == 2)
        launch(probs_pass_wgmma_kernel<2>);
    else
        launch(probs_pass_wgmma_kernel<1>);
}

}  // namespace kvscope::cuda
