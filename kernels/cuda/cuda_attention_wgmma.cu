// Prefill attention on Hopper's warpgroup MMA (wgmma, sm_90a): the forward (out and LSE of
// causal-by-position softmax attention) and the exact statistics pass, what flash_fwd_mma and
// probs_pass_mma (cuda_attention_mma.cu) compute with mma.sync. The default where they fit (head
// dim 128, compute capability 9.0) since their op cases passed on an H100 (bench/RESULTS.md,
// sixteenth run); KVSCOPE_CUDA_FWD_WGMMA=0 / KVSCOPE_CUDA_PROBS_WGMMA=0 keep the mma.sync ones.
// CPU twin: cpu::attention (kernels/cpu/cpu_attention.cpp), through the shared op cases
// (tests/kernels/backend_ops_*).
//
// Measured (bench_cuda_attention, H100, 8B attention shape, ms a layer, against mma.sync in the
// same call): forward 2.14 / 29.9 at 8k / 32k (2.27 / 32.5-32.9), statistics 1.70 / 21.5
// (2.49-2.52 / 24.8); the recorded 32k prefill of the 8B shape 3,410 ms (3,625).
//
// Why: flash_fwd_mma runs at ~270 TFLOP/s on an H100 (32.5 ms a layer at 32k on the 8B shape)
// where cuDNN's wgmma kernel takes 14.0 ms (bench/RESULTS.md, seventh run). mma.sync is issued
// per warp with operands through registers (ldmatrix); wgmma reads both operands of Q.K^T from
// shared memory and multiplies a 64 x 128 x 16 step per warpgroup instruction.
//
// Block: 2 warpgroups (256 threads), 128 (query, head) rows: HB heads of one KV head x 128 / HB
// consecutive queries, so each warp's 16 rows are one head's consecutive queries (as in
// flash_fwd_mma). Per 128-key tile, each warpgroup: S = Q K^T (8 wgmma m64n128k16, Q and K from
// shared memory), mask and online softmax on S's fragments in the log2 domain, P (bf16, in
// registers: the accumulator layout of two 8-key blocks is the A layout of one 16-key step), then
// O += P V (8 wgmma with A from registers and V through a transposed descriptor). The two
// warpgroups work through the same tiles; while one runs its softmax the other's MMAs run.
// K/V tiles are double-buffered with cp.async (tile j + 1 lands while tile j is computed); tiles
// no query of the block sees are skipped from the 64-key position bounds (kb).
// Numerics as flash_fwd_mma: bf16 operands, fp32 accumulation, t = acc * (scale log2 e) rounded
// once (__fmul_rn), exp2 by ex2.approx.ftz, P rounded to bf16 before P V.
//
// Shared memory: the operand tiles are laid out as cuda_wgmma.cuh says (128-byte swizzle).
// Bytes: Q 32 KB + 2 stages x (K 32 KB + V 32 KB) + query positions = 161 KB, one block per SM.
// Floor: 4 n L d FLOPs per query head on tensor cores (about half of it under a causal mask).
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "kernels/cuda/cuda_attention_bf16.cuh"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_device.cuh"
#include "kernels/cuda/cuda_wgmma.cuh"

namespace kvscope::cuda {
namespace {

using bf16 = __nv_bfloat16;

using namespace wgmma;  // NOLINT(google-build-using-namespace): the shared PTX helpers

// The forward's shapes: WG warpgroups (64 rows each) share KEYS-key tiles. <2, 128> (=1): one
// block per SM; <1, 64> (=2): two independent blocks per SM, which drift apart so that one's
// softmax overlaps the other's MMAs.
template <int WG, int KEYS>
struct Fwd {
    static constexpr int kThreads = 128 * WG;
    static constexpr int kRows = 64 * WG;
    static constexpr int kKeys = KEYS;
    static constexpr int kNb = KEYS / 8;
    static constexpr int kMinBlocks = WG == 1 ? 2 : 1;
    static constexpr uint32_t kQBytes = kRows * kD * 2;
    static constexpr uint32_t kTileBytes = KEYS * kD * 2;
    static constexpr uint32_t kStageBytes = 2 * kTileBytes;
    static constexpr uint32_t kPosOff = kQBytes + 2 * kStageBytes;
    static constexpr uint32_t kSmemBytes = kPosOff + kRows * 8 + 1024;  // + alignment slack
    static_assert(KEYS % kBoundTile == 0, "a tile is whole kb entries");
    static_assert(kMinBlocks * (kSmemBytes + 1024) <= 228 * 1024, "the blocks fit one SM");
};

// grid (ceil(n / QB), H / HB), QB = F::kRows / HB, latest query blocks first (most keys under a
// causal mask). A lane's rows: r0 = 64 wg + 16 (warp % 4) + lane / 4 and r0 + 8 (fragment
// elements {0, 1} and {2, 3} of each 8-column block).
template <int HB, int WG, int KEYS>
__global__ void __launch_bounds__(Fwd<WG, KEYS>::kThreads, Fwd<WG, KEYS>::kMinBlocks)
    flash_fwd_wgmma_kernel(AttentionDev a, Bf16Ops b, float cl2, bool vswap) {
    using F = Fwd<WG, KEYS>;
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int QB = F::kRows / HB;
    extern __shared__ unsigned char smem_raw[];
    const uint32_t raw = smem_addr(smem_raw);
    const uint32_t pad = ((raw + 1023u) & ~1023u) - raw;  // tiles at 1,024-byte boundaries
    unsigned char* smem = smem_raw + pad;
    const uint32_t sbase = raw + pad;
    int64_t* sQpos = reinterpret_cast<int64_t*>(smem + F::kPosOff);

    const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
    const int wg = warp >> 2;
    const int g4 = lane >> 2, c2 = 2 * (lane & 3);
    const int64_t n = a.n, H = a.H;
    const int64_t nqb = (n + QB - 1) / QB;
    const int64_t q0 = (nqb - 1 - static_cast<int64_t>(blockIdx.x)) * QB;
    const int64_t h0 = static_cast<int64_t>(blockIdx.y) * HB;
    const int64_t g = h0 / (H / a.G);
    const int64_t len = a.kv_len[g];
    const int64_t nkb = (a.max_len + kBoundTile - 1) / kBoundTile;  // kb entries of this head
    const int64_t ntl = (a.max_len + F::kKeys - 1) / F::kKeys;
    const int64_t* kb = b.kb + g * nkb * 2;
    const bf16* K = b.k + g * a.max_len * kD;
    const bf16* V = b.v + g * a.max_len * kD;
    const int64_t* kpos = a.kpos + a.kv_off[g];

    // Q: block row r is query q0 + r % QB of head h0 + r / QB.
    for (int e = tid; e < F::kRows * kChunks; e += F::kThreads) {
        const int r = e / kChunks, c = e % kChunks;
        const int64_t q = q0 + r % QB;
        const bool ok = q < n;
        cp_async16(smem + swz(r, c, F::kRows), b.q + ((ok ? q : 0) * H + h0 + r / QB) * kD + c * 8,
                   ok);
    }
    cp_async_commit();
    if (tid < F::kRows) {
        const int64_t q = q0 + tid % QB;
        sQpos[tid] = q < n ? a.q_pos[q] : kNoQuery;
    }
    __syncthreads();
    long long bqmax = kNoQuery, gqmin = kNoPos, gqmax = kNoQuery;  // block; this warpgroup
    for (int r = 0; r < F::kRows; ++r) {
        const long long p = sQpos[r];
        bqmax = p > bqmax ? p : bqmax;
        if (r / 64 == wg) {
            gqmin = p < gqmin ? p : gqmin;
            gqmax = p > gqmax ? p : gqmax;
        }
    }
    const int r0 = 64 * wg + 16 * (warp & 3) + g4;
    const long long qp[2] = {sQpos[r0], sQpos[r0 + 8]};

    // Tile t's key-position bounds (its KEYS / 64 kb entries; a missing one holds no key).
    constexpr int kE = KEYS / kBoundTile;
    auto tile_lo = [&](int64_t t) {
        long long lo = kNoPos;
#pragma unroll
        for (int e = 0; e < kE; ++e)
            if (kE * t + e < nkb) lo = kb[2 * (kE * t + e)] < lo ? kb[2 * (kE * t + e)] : lo;
        return lo;
    };
    auto tile_hi = [&](int64_t t) {
        long long hi = kNoQuery;
#pragma unroll
        for (int e = 0; e < kE; ++e) {
            const long long x = kE * t + e < nkb ? kb[2 * (kE * t + e) + 1] : kNoPos;
            hi = x > hi ? x : hi;
        }
        return hi;
    };
    // First tile at or after j that some query of the block sees (32 tiles per ballot).
    int64_t win = -32;
    unsigned wmask = 0;
    auto next_tile = [&](int64_t j) -> int64_t {
        while (j < ntl) {
            const int64_t w0 = j & ~int64_t{31};
            if (w0 != win) {
                win = w0;
                const int64_t t = w0 + lane;
                wmask = __ballot_sync(0xffffffffu, t < ntl && tile_lo(t) <= bqmax);
            }
            const unsigned m = wmask & (0xffffffffu << static_cast<int>(j - w0));
            if (m) return w0 + __ffs(static_cast<int>(m)) - 1;
            j = w0 + 32;
        }
        return ntl;
    };
    auto load_tile = [&](int64_t t, uint32_t stage) {
        const int64_t k0 = t * F::kKeys;
        for (int e = tid; e < F::kKeys * kChunks; e += F::kThreads) {
            const int r = e / kChunks, c = e % kChunks;
            const bool ok = k0 + r < len;
            const int64_t off = (ok ? k0 + r : 0) * kD + c * 8;
            const uint32_t o = swz(r, c, F::kKeys);
            cp_async16(smem + stage + o, K + off, ok);
            cp_async16(smem + stage + F::kTileBytes + o, V + off, ok);
        }
    };

    int64_t cur = next_tile(0);
    if (cur < ntl) load_tile(cur, F::kQBytes);
    cp_async_commit();

    float o[kNd][4];
#pragma unroll
    for (int f = 0; f < kNd; ++f) o[f][0] = o[f][1] = o[f][2] = o[f][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    int st = 0;
    while (cur < ntl) {
        // Tile cur is in stage st; every warpgroup is done with the other stage.
        cp_async_wait<0>();
        fence_async_smem();
        __syncthreads();
        const int64_t nxt = next_tile(cur + 1);
        if (nxt < ntl) load_tile(nxt, F::kQBytes + (st ^ 1) * F::kStageBytes);
        cp_async_commit();
        const uint32_t sK = sbase + F::kQBytes + st * F::kStageBytes, sV = sK + F::kTileBytes;
        const int64_t k0 = cur * F::kKeys;
        const long long kmin = tile_lo(cur), kmax = tile_hi(cur);
        st ^= 1;
        cur = nxt;
        if (kmin > gqmax) continue;       // no row of this warpgroup sees the tile
        const bool full = kmax <= gqmin;  // every key visible to every row of the warpgroup

        float s[F::kNb][4];
#pragma unroll
        for (int nb = 0; nb < F::kNb; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;
        pin(s);
        wgmma_fence();
#pragma unroll
        for (int k = 0; k < kD / 16; ++k)
            wgmma_ss(s, desc_k(sbase, F::kRows, 64 * wg, k), desc_k(sK, F::kKeys, 0, k), k > 0);
        wgmma_commit();
        wgmma_wait_all();
        pin(s);

        // t = acc * scale * log2 e, -inf where masked.
#pragma unroll
        for (int nb = 0; nb < F::kNb; ++nb)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                long long kp = kNoQuery;
                if (!full) {
                    const int64_t j = k0 + nb * 8 + c2 + e;
                    kp = j < len ? kpos[j] : kNoPos;
                }
#pragma unroll
                for (int i = 0; i < 2; ++i) {
                    float& x = s[nb][2 * i + e];
                    x = kp > qp[i] ? -INFINITY : __fmul_rn(x, cl2);
                }
            }
        float corr[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float mx = m[i];
#pragma unroll
            for (int nb = 0; nb < F::kNb; ++nb)
                mx = fmaxf(mx, fmaxf(s[nb][2 * i], s[nb][2 * i + 1]));
            mx = quad_max(mx);
            const float base = mx == -INFINITY ? 0.0f : mx;  // nothing visible yet: p = 0
            corr[i] = exp2_ftz(m[i] - base);
            m[i] = mx;
            float r = 0.0f;
#pragma unroll
            for (int nb = 0; nb < F::kNb; ++nb) {
                s[nb][2 * i] = exp2_ftz(s[nb][2 * i] - base);
                s[nb][2 * i + 1] = exp2_ftz(s[nb][2 * i + 1] - base);
                r += s[nb][2 * i] + s[nb][2 * i + 1];
            }
            l[i] = l[i] * corr[i] + r;
        }
#pragma unroll
        for (int f = 0; f < kNd; ++f) {
            o[f][0] *= corr[0];
            o[f][1] *= corr[0];
            o[f][2] *= corr[1];
            o[f][3] *= corr[1];
        }
        // O += P V: P's A fragment for keys 16 kk .. 16 kk + 15 is blocks 2 kk, 2 kk + 1 of s.
        uint32_t pa[F::kKeys / 16][4];
#pragma unroll
        for (int kk = 0; kk < F::kKeys / 16; ++kk) {
            pa[kk][0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
            pa[kk][1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
            pa[kk][2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[kk][3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
        }
        pin(o);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < F::kKeys / 16; ++kk)
            wgmma_rs(o, pa[kk], desc_v(sV, F::kKeys, kk, vswap));
        wgmma_commit();
        wgmma_wait_all();
        pin(o);
    }
    cp_async_wait<0>();

    // Normalise; the LSE (natural log) and the output.
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int r = r0 + 8 * i;
        write_forward_row(a, o, i, m[i], l[i], q0 + r % QB, h0 + r / QB, lane);
    }
#else
    __trap();  // built for sm_90a only (flash_fwd_wgmma_fits checks the device)
#endif
}

// flash_fwd_wgmma_pipe (KVSCOPE_CUDA_FWD_WGMMA=3): one warpgroup, 64 rows, 64-key tiles in 3
// stages, two blocks per SM, Q's A fragments in registers, and the softmax of tile t + 1
// overlapping the P V product of tile t on the tensor cores (issue S' = Q K_{t+1}^T, issue
// O += P_t V_t, wait for S' only, softmax, wait for P V, rescale O). Why: flash_fwd_wgmma's
// warpgroups wait for each product before the softmax (ncu: WARPGROUP.DEPBAR 14 % of stall
// samples, tensor pipe ~29 % active at 8k; bench/RESULTS.md, sixteenth run).
constexpr int kPipeKeys = 64;
constexpr int kPipeStages = 3;
constexpr uint32_t kPipeTile = kPipeKeys * kD * 2;  // K or V, 16 KB
constexpr uint32_t kPipeStage = 2 * kPipeTile;
constexpr uint32_t kPipePos = kPipeStages * kPipeStage;
constexpr uint32_t kPipeSmem = kPipePos + 64 * 8 + 1024;
static_assert(2 * (kPipeSmem + 1024) <= 228 * 1024, "two blocks fit one SM");

template <int HB>
__global__ void __launch_bounds__(128, 2)
    flash_fwd_wgmma_pipe(AttentionDev a, Bf16Ops b, float cl2) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int QB = 64 / HB;
    extern __shared__ unsigned char smem_raw[];
    const uint32_t raw = smem_addr(smem_raw);
    const uint32_t pad = ((raw + 1023u) & ~1023u) - raw;
    unsigned char* smem = smem_raw + pad;
    const uint32_t sbase = raw + pad;
    int64_t* sQpos = reinterpret_cast<int64_t*>(smem + kPipePos);

    const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = tid >> 5;
    const int g4 = lane >> 2, c2 = 2 * (lane & 3);
    const int64_t n = a.n, H = a.H;
    const int64_t nqb = (n + QB - 1) / QB;
    const int64_t q0 = (nqb - 1 - static_cast<int64_t>(blockIdx.x)) * QB;
    const int64_t h0 = static_cast<int64_t>(blockIdx.y) * HB;
    const int64_t g = h0 / (H / a.G);
    const int64_t len = a.kv_len[g];
    const int64_t ntl = (a.max_len + kPipeKeys - 1) / kPipeKeys;  // one kb entry per tile
    const int64_t* kb = b.kb + g * ntl * 2;
    const bf16* K = b.k + g * a.max_len * kD;
    const bf16* V = b.v + g * a.max_len * kD;
    const int64_t* kpos = a.kpos + a.kv_off[g];

    // Rows r0 = 16 warp + g4 and r0 + 8: query q0 + r % QB of head h0 + r / QB.
    const int r0 = 16 * warp + g4;
    int64_t qrow[2], qhead[2];
    for (int i = 0; i < 2; ++i) {
        qrow[i] = q0 + (r0 + 8 * i) % QB;
        qhead[i] = h0 + (r0 + 8 * i) / QB;
    }
    // Q's A fragments, k step s: (row r0, dims 16 s + c2 ..), (r0 + 8, ..), (r0, 16 s + 8 + c2 ..),
    // (r0 + 8, ..), two bf16 each.
    uint32_t qa[kD / 16][4];
    {
        const uint32_t* q32[2];
        for (int i = 0; i < 2; ++i)
            q32[i] =
                qrow[i] < n
                    ? reinterpret_cast<const uint32_t*>(b.q + (qrow[i] * H + qhead[i]) * kD + c2)
                    : nullptr;
#pragma unroll
        for (int k = 0; k < kD / 16; ++k) {
            qa[k][0] = q32[0] ? q32[0][8 * k] : 0u;
            qa[k][1] = q32[1] ? q32[1][8 * k] : 0u;
            qa[k][2] = q32[0] ? q32[0][8 * k + 4] : 0u;
            qa[k][3] = q32[1] ? q32[1][8 * k + 4] : 0u;
        }
    }
    if (tid < 64) {
        const int64_t q = q0 + tid % QB;
        sQpos[tid] = q < n ? a.q_pos[q] : kNoQuery;
    }
    __syncthreads();
    long long bqmax = kNoQuery, bqmin = kNoPos;
    for (int r = 0; r < 64; ++r) {
        const long long p = sQpos[r];
        bqmax = p > bqmax ? p : bqmax;
        bqmin = p < bqmin ? p : bqmin;
    }
    const long long qp[2] = {sQpos[r0], sQpos[r0 + 8]};

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
    auto load_tile = [&](int64_t t, int idx) {  // into stage idx % 3; nothing past the last
        if (t >= ntl) return;
        const uint32_t stage = static_cast<uint32_t>(idx % kPipeStages) * kPipeStage;
        const int64_t k0 = t * kPipeKeys;
        for (int e = tid; e < kPipeKeys * kChunks; e += 128) {
            const int r = e / kChunks, c = e % kChunks;
            const bool ok = k0 + r < len;
            const int64_t off = (ok ? k0 + r : 0) * kD + c * 8;
            const uint32_t o = swz(r, c, kPipeKeys);
            cp_async16(smem + stage + o, K + off, ok);
            cp_async16(smem + stage + kPipeTile + o, V + off, ok);
        }
    };
    // S (raw logits of tile t, in f) -> t = acc * scale * log2 e, -inf where masked.
    auto mask = [&](float(&f)[8][4], int64_t t) {
        const bool full = kb[2 * t + 1] <= bqmin;
#pragma unroll
        for (int nb = 0; nb < 8; ++nb)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                long long kp = kNoQuery;
                if (!full) {
                    const int64_t j = t * kPipeKeys + nb * 8 + c2 + e;
                    kp = j < len ? kpos[j] : kNoPos;
                }
#pragma unroll
                for (int i = 0; i < 2; ++i) {
                    float& x = f[nb][2 * i + e];
                    x = kp > qp[i] ? -INFINITY : __fmul_rn(x, cl2);
                }
            }
    };
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    // The softmax of a masked tile against the running max: P (bf16 A fragments), corr.
    auto softmax = [&](float(&f)[8][4], uint32_t(&pa)[4][4], float(&corr)[2]) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float mx = m[i];
#pragma unroll
            for (int nb = 0; nb < 8; ++nb) mx = fmaxf(mx, fmaxf(f[nb][2 * i], f[nb][2 * i + 1]));
            mx = quad_max(mx);
            const float base = mx == -INFINITY ? 0.0f : mx;
            corr[i] = exp2_ftz(m[i] - base);
            m[i] = mx;
            float r = 0.0f;
#pragma unroll
            for (int nb = 0; nb < 8; ++nb) {
                f[nb][2 * i] = exp2_ftz(f[nb][2 * i] - base);
                f[nb][2 * i + 1] = exp2_ftz(f[nb][2 * i + 1] - base);
                r += f[nb][2 * i] + f[nb][2 * i + 1];
            }
            l[i] = l[i] * corr[i] + r;
        }
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            pa[kk][0] = pack_bf16(f[2 * kk][0], f[2 * kk][1]);
            pa[kk][1] = pack_bf16(f[2 * kk][2], f[2 * kk][3]);
            pa[kk][2] = pack_bf16(f[2 * kk + 1][0], f[2 * kk + 1][1]);
            pa[kk][3] = pack_bf16(f[2 * kk + 1][2], f[2 * kk + 1][3]);
        }
    };
    auto issue_s = [&](float(&f)[8][4], int idx) {
        const uint32_t sK = sbase + static_cast<uint32_t>(idx % kPipeStages) * kPipeStage;
#pragma unroll
        for (int nb = 0; nb < 8; ++nb) f[nb][0] = f[nb][1] = f[nb][2] = f[nb][3] = 0.0f;
        pin(f);
        wgmma_fence();
#pragma unroll
        for (int k = 0; k < kD / 16; ++k) wgmma_rs(f, qa[k], desc_k(sK, kPipeKeys, 0, k), k > 0);
        wgmma_commit();
    };

    // Tiles in visiting order: cur (index idx), then nx1, nx2 (already loading).
    int64_t cur = next_tile(0);
    int64_t nx1 = cur < ntl ? next_tile(cur + 1) : ntl;
    int64_t nx2 = nx1 < ntl ? next_tile(nx1 + 1) : ntl;
    load_tile(cur, 0);
    cp_async_commit();
    load_tile(nx1, 1);
    cp_async_commit();
    load_tile(nx2, 2);
    cp_async_commit();

    float o[kNd][4];
#pragma unroll
    for (int f = 0; f < kNd; ++f) o[f][0] = o[f][1] = o[f][2] = o[f][3] = 0.0f;
    uint32_t pa[4][4];
    int idx = 0;
    if (cur < ntl) {
        cp_async_wait<2>();  // group 0: tile cur
        fence_async_smem();
        __syncthreads();
        float s[8][4];
        issue_s(s, 0);
        wgmma_wait_all();
        pin(s);
        mask(s, cur);
        float corr[2];
        softmax(s, pa, corr);
    }
    while (cur < ntl) {
        // Committed groups: 0 .. idx + 2; tile nx1 is group idx + 1.
        float s[8][4], corr[2] = {1.0f, 1.0f};
        uint32_t pn[4][4];  // P of tile nx1 (set when there is one; copied to pa below)
        // S' is issued even past the last tile (on a stale stage, its result unused): with the
        // product and its waits conditional, ptxas serialises every wgmma (C7514).
        cp_async_wait<1>();
        fence_async_smem();
        __syncthreads();
        issue_s(s, idx + 1);
        const uint32_t sV =
            sbase + static_cast<uint32_t>(idx % kPipeStages) * kPipeStage + kPipeTile;
        pin(o);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) wgmma_rs(o, pa[kk], desc_v(sV, kPipeKeys, kk, false));
        wgmma_commit();
        wgmma_wait_one();  // S' is done; P V may still run
        pin(s);
        if (nx1 < ntl) {
            mask(s, nx1);
            softmax(s, pn, corr);
        }
        wgmma_wait_all();
        pin(o);
#pragma unroll
        for (int f = 0; f < kNd; ++f) {
            o[f][0] *= corr[0];
            o[f][1] *= corr[0];
            o[f][2] *= corr[1];
            o[f][3] *= corr[1];
        }
        // Tile cur's stage is free once every warp's P V is done: the tile after nx2 goes there.
        __syncthreads();
        const int64_t nx3 = nx2 < ntl ? next_tile(nx2 + 1) : ntl;
        load_tile(nx3, idx + 3);
        cp_async_commit();
#pragma unroll
        for (int kk = 0; kk < 4; ++kk)
#pragma unroll
            for (int e = 0; e < 4; ++e) pa[kk][e] = pn[kk][e];
        cur = nx1;
        nx1 = nx2;
        nx2 = nx3;
        ++idx;
    }
    cp_async_wait<0>();

#pragma unroll
    for (int i = 0; i < 2; ++i) write_forward_row(a, o, i, m[i], l[i], qrow[i], qhead[i], lane);
#else
    __trap();  // built for sm_90a only (flash_fwd_wgmma_fits checks the device)
#endif
}

}  // namespace

bool flash_fwd_wgmma_fits(const AttentionDev& a) {
    static const bool hopper = [] {
        int dev = 0, major = 0, minor = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
            (void)cudaGetLastError();
            return false;
        }
        return major == 9 && minor == 0;
    }();
    return hopper && a.d == kD;
}

void flash_fwd_wgmma(const AttentionDev& a, const Bf16Ops& b, float cl2, int hb,
                     cudaStream_t stream) {
    // KVSCOPE_CUDA_FWD_WGMMA=2: two independent 64-row blocks per SM over 64-key tiles; =3: the
    // same with the softmax overlapping the P V product (flash_fwd_wgmma_pipe).
    static const int variant = [] {
        const char* e = std::getenv("KVSCOPE_CUDA_FWD_WGMMA");
        return e && std::string(e) == "2" ? 2 : e && std::string(e) == "3" ? 3 : 1;
    }();
    const bool small = variant == 2;
    if (variant == 3) {
        auto pipe = [&](auto kernel) {
            KVS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                static_cast<int>(kPipeSmem)));
            const int qb = 64 / hb;
            const dim3 grid(static_cast<unsigned int>((a.n + qb - 1) / qb),
                            static_cast<unsigned int>(a.H / hb));
            kernel<<<grid, 128, kPipeSmem, stream>>>(a, b, cl2);
            KVS_CUDA_CHECK_LAUNCH();
        };
        if (hb == 4)
            pipe(flash_fwd_wgmma_pipe<4>);
        else if (hb == 2)
            pipe(flash_fwd_wgmma_pipe<2>);
        else
            pipe(flash_fwd_wgmma_pipe<1>);
        return;
    }
    static const bool vswap = [] {
        const char* e = std::getenv("KVSCOPE_CUDA_WGMMA_VSWAP");
        return e && std::string(e) == "1";
    }();
    auto launch = [&](auto kernel, int rows, uint32_t bytes, int threads) {
        KVS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(bytes)));
        const int qb = rows / hb;
        const dim3 grid(static_cast<unsigned int>((a.n + qb - 1) / qb),
                        static_cast<unsigned int>(a.H / hb));
        kernel<<<grid, threads, bytes, stream>>>(a, b, cl2, vswap);
        KVS_CUDA_CHECK_LAUNCH();
    };
    auto shape = [&](auto wg, auto keys) {
        constexpr int WG = decltype(wg)::value, KEYS = decltype(keys)::value;
        using F = Fwd<WG, KEYS>;
        if (hb == 4)
            launch(flash_fwd_wgmma_kernel<4, WG, KEYS>, F::kRows, F::kSmemBytes, F::kThreads);
        else if (hb == 2)
            launch(flash_fwd_wgmma_kernel<2, WG, KEYS>, F::kRows, F::kSmemBytes, F::kThreads);
        else
            launch(flash_fwd_wgmma_kernel<1, WG, KEYS>, F::kRows, F::kSmemBytes, F::kThreads);
    };
    if (small)
        shape(std::integral_constant<int, 1>{}, std::integral_constant<int, 64>{});
    else
        shape(std::integral_constant<int, 2>{}, std::integral_constant<int, 128>{});
}

}  // namespace kvscope::cuda
