// Prefill forward on Hopper's warpgroup MMA (wgmma, sm_90a): out and LSE of causal-by-position
// softmax attention, what flash_fwd_mma (cuda_attention_mma.cu) computes with mma.sync. Opt-in
// (KVSCOPE_CUDA_FWD_WGMMA=1) until its op cases pass on a GPU; head_dim 128 only, other head dims
// and devices other than compute capability 9.0 keep flash_fwd_mma. CPU twin: cpu::attention
// (kernels/cpu/cpu_attention.cpp), through the shared op cases (tests/kernels/backend_ops_*).
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
// Shared memory: every operand tile is stored the way a 128-byte-swizzled wgmma descriptor reads
// it: the 128 dims of a row cut into two panels of 64 (128 bytes); a panel holds the tile's rows
// one after the other; within each group of 8 rows the 16-byte chunk c of row r sits at chunk
// c ^ (r % 8). K and V tiles have the same layout: K is read K-major (rows = keys = N of Q K^T,
// leading byte offset unused, 1,024 bytes between groups of 8 rows), V MN-major (N = dims: the
// leading byte offset is the panel stride, 16 KB; 1,024 bytes between groups of 8 keys).
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

namespace kvscope::cuda {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kD = 128;  // head_dim this kernel takes
// The statistics pass's block (the forward's shapes are Fwd below): 2 warpgroups over one
// 128-key tile.
constexpr int kWarpgroups = 2;
constexpr int kThreads = 128 * kWarpgroups;
constexpr int kKeys = 128;
constexpr int kNb = kKeys / 8;                   // 8-key column blocks of S
constexpr int kChunks = kD / 8;                  // 16-byte chunks per row
constexpr int kNd = kD / 8;                      // 8-dim column blocks of O
constexpr uint32_t kPanel = 128;                 // bytes of a swizzle panel's row
constexpr uint32_t kTileBytes = kKeys * kD * 2;  // one K tile
constexpr int64_t kNoPos = INT64_MAX;            // slot past a head's length: visible to no query
constexpr int64_t kNoQuery = INT64_MIN;          // row past n: sees no key
constexpr float kLn2 = 0.6931471805599453f;

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

// Byte offset of 16-byte chunk c (0 .. 15) of row r in a swizzled tile of `rows` rows.
__device__ __forceinline__ uint32_t swz(int r, int c, int rows) {
    return static_cast<uint32_t>((c >> 3) * rows) * kPanel + static_cast<uint32_t>(r) * kPanel +
           (static_cast<uint32_t>((c & 7) ^ (r & 7)) << 4);
}
// A shared-memory matrix descriptor, 128-byte swizzle: start address, leading and stride byte
// offsets (all in 16-byte units).
__device__ __forceinline__ uint64_t desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
    return static_cast<uint64_t>((addr & 0x3FFFFu) >> 4) | (static_cast<uint64_t>(lbo >> 4) << 16) |
           (static_cast<uint64_t>(sbo >> 4) << 32) | (uint64_t{1} << 62);
}
// K-major operand (Q rows, K keys), k step s (dims 16 s .. 16 s + 15) of a tile of `rows` rows
// starting `row0` rows in.
__device__ __forceinline__ uint64_t desc_k(uint32_t tile, int rows, int row0, int s) {
    const uint32_t a = tile + static_cast<uint32_t>((s >> 2) * rows) * kPanel +
                       static_cast<uint32_t>(row0) * kPanel + static_cast<uint32_t>(s & 3) * 32u;
    return desc(a, 16, 8 * kPanel);
}
// MN-major operand (V: keys x dims) of a tile of `keys` keys, k step s (keys 16 s .. 16 s + 15).
// vswap (KVSCOPE_CUDA_WGMMA_VSWAP=1, a diagnostic until the op cases have passed on a GPU):
// the two offsets exchanged, the other reading of the PTX ISA's MN-major canonical layout.
__device__ __forceinline__ uint64_t desc_v(uint32_t tile, int keys, int s, bool vswap) {
    const uint32_t panel = static_cast<uint32_t>(keys) * kPanel, group = 8 * kPanel;
    return desc(tile + static_cast<uint32_t>(s) * 16u * kPanel, vswap ? group : panel,
                vswap ? panel : group);
}

__device__ __forceinline__ void wgmma_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_wait_all() {
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
// Makes this thread's completed shared-memory writes (cp.async included) visible to the async
// proxy that wgmma reads operands through.
__device__ __forceinline__ void fence_async_smem() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// d[64 x 128] (+)= A[64 x 16] B[16 x 128]: A (the warpgroup's rows) and B through descriptors,
// both K-major. scale_d = 0 starts from zero.
__device__ __forceinline__ void wgmma_ss(float (&d)[16][4], uint64_t da, uint64_t db, int scale_d) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "
        "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, "
        "%37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, "
        "%55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]),
          "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
          "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]),
          "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
          "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]),
          "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]),
          "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]),
          "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]),
          "+f"(d[11][2]), "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]),
          "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]),
          "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]),
          "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
        : "l"(da), "l"(db), "r"(scale_d));
}
// The same for a 64-key tile: d[64 x 64].
__device__ __forceinline__ void wgmma_ss(float (&d)[8][4], uint64_t da, uint64_t db, int scale_d) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "
        "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, "
        "0;\n}\n"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]),
          "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
          "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]),
          "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
          "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]),
          "+f"(d[7][2]), "+f"(d[7][3])
        : "l"(da), "l"(db), "r"(scale_d));
}
// d[64 x 128] += A[64 x 16] B[16 x 128]: A from registers (the m16n8k16 A layout per warp), B
// through a descriptor, MN-major (transposed: V's rows are keys, its columns the output dims).
__device__ __forceinline__ void wgmma_rs(float (&d)[16][4], const uint32_t (&a)[4], uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "
        "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, "
        "%37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, "
        "%55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]),
          "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),
          "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]),
          "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
          "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]),
          "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]),
          "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]),
          "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]),
          "+f"(d[11][2]), "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]),
          "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]),
          "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]),
          "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}
// Pins an accumulator's registers at this point of the program: the compiler must not move
// their reads or writes across a wgmma's issue and the wait for it (it does not know the
// instruction is asynchronous).
template <int N>
__device__ __forceinline__ void pin(float (&x)[N][4]) {
#pragma unroll
    for (int j = 0; j < N; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(x[j][e])::"memory");
}

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
        const int64_t q = q0 + r % QB, h = h0 + r / QB;
        const float li = quad_sum(l[i]);
        const float inv = li > 0.0f ? 1.0f / li : 0.0f;
        if (q >= n) continue;
        if ((lane & 3) == 0) a.lse[h * n + q] = li > 0.0f ? (m[i] + log2f(li)) * kLn2 : -INFINITY;
        float* dst = a.out + (q * H + h) * kD + c2;
#pragma unroll
        for (int f = 0; f < kNd; ++f)
            *reinterpret_cast<float2*>(dst + f * 8) =
                make_float2(o[f][2 * i] * inv, o[f][2 * i + 1] * inv);
    }
#else
    __trap();  // built for sm_90a only (flash_fwd_wgmma_fits checks the device)
#endif
}

// ---- exact statistics pass (parallel over key tiles) -------------------------------------------
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
    // KVSCOPE_CUDA_FWD_WGMMA=2: two independent 64-row blocks per SM over 64-key tiles.
    static const bool small = [] {
        const char* e = std::getenv("KVSCOPE_CUDA_FWD_WGMMA");
        return e && std::string(e) == "2";
    }();
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
