// Decode matmul without cuBLAS: out[n, m] = x[n, k] @ w[m, k]^T (+ bias[m]) for n <= kGemvMaxRows
// (decode rows), x in fp32 and w in its stored dtype (bf16 / f16 / f32), fp32 accumulation.
// CPU twin: cpu::matmul (kernels/cpu/cpu_matmul.cpp), which also multiplies fp32 x by the
// widened weights, so this path is closer to the CPU than cuBLAS's (x rounded to bf16 there).
//
// Why: a decode step is bound by reading the weights once (8B model: 16 GB per token). Through
// cuBLAS each of the 7 projections per layer cost a cast kernel (x -> bf16) plus a GEMM launch
// whose n = 1 kernels reached 30-60 % of the bandwidth floor on the small projections (H100,
// KVSCOPE_PROFILE=1: 4096x4096 at 38 us vs 11 us of bytes; bench/RESULTS.md).
//
// Layout: one warp per output row m (8 warps, 8 rows per block). Lane l reads 16-byte vectors of
// the row, vector v = l, l + 32, ... (coalesced: a warp reads 512 contiguous bytes per step), with
// kUnroll vectors in flight per lane; x is read through the read-only cache (every warp of the
// block reads the same x). Each of the n rows' partial sums is reduced across the warp at the end.
// Floor: bytes m*k*sizeof(w) (+ n*k*4 for x, cached); FLOPs 2*n*m*k. Launched as dependents
// (cuda_device.cuh): each lane's first weight loads are issued before grid_wait().
// Needs k a multiple of the vector width and 16-byte aligned w and x rows (gemv_fits()); the
// caller falls back to cuBLAS otherwise.
//
// Not here on purpose: the RMSNorm before a projection and the residual add after one. Folded in
// three ways (a pre-norm in shared memory, a last-block norm tail, and r * ((x * g) @ w^T) with
// the squares summed beside the products), each was slower than the small launches it removed:
// the 8B decode step went from 7.02-7.07 to 7.47-7.53 ms with the last (bench/RESULTS.md,
// "Thirteenth run"; its code is commit 66900d4).
// Nor an L2 prefetch of the next weights (cp.async.bulk.prefetch.L2). In the chain of launches
// (one block, commit 51699b1) each hint's transfer sat on the critical path: 7.4 -> 11.6 ms a
// token; from 48 blocks on a low-priority side stream (304c48d) it still slowed the step, 7.29 ->
// 7.49 ms (o before the attention) and 7.66 ms (also gate/up and the next q/k/v): the hints'
// DRAM reads compete with the kernels' own (bench/RESULTS.md, "Fifteenth run").
#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_device.cuh"

namespace kvscope::cuda {
namespace {

// Warps per block (a row each) and 16-byte loads in flight per lane. 8 x 4 unless
// KVSCOPE_CUDA_GEMV_SHAPE picks another for the one-row (decode) kernels: the o and down
// projections of the 8B shape ran at 2.2-2.4 TB/s where the 1 GB lm_head reached 3.1 (ncu,
// bench/RESULTS.md, ninth run), which points at the start and the end of each launch and at how
// evenly the 4,096 rows spread over the SMs.
template <int WARPS, int UNROLL>
struct Shape {
    static constexpr int kWarps = WARPS;
    static constexpr int kUnroll = UNROLL;
};
using DefaultShape = Shape<8, 4>;
constexpr int kMinWarps = 4;  // of the shapes below: bounds the rows one launch takes

template <class W>
struct Vec;  // 16 bytes of weights widened to floats
template <>
struct Vec<__nv_bfloat16> {
    static constexpr int kN = 8;
    static __device__ __forceinline__ void widen(const uint4& r, float* f) {
        const auto* h = reinterpret_cast<const __nv_bfloat162*>(&r);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 p = __bfloat1622float2(h[i]);
            f[2 * i] = p.x;
            f[2 * i + 1] = p.y;
        }
    }
};
template <>
struct Vec<__half> {
    static constexpr int kN = 8;
    static __device__ __forceinline__ void widen(const uint4& r, float* f) {
        const auto* h = reinterpret_cast<const __half2*>(&r);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 p = __half22float2(h[i]);
            f[2 * i] = p.x;
            f[2 * i + 1] = p.y;
        }
    }
};
template <>
struct Vec<float> {
    static constexpr int kN = 4;
    static __device__ __forceinline__ void widen(const uint4& r, float* f) {
        const auto* p = reinterpret_cast<const float*>(&r);
#pragma unroll
        for (int i = 0; i < 4; ++i) f[i] = p[i];
    }
};

// The first kUnroll 16-byte vectors of a lane's share of a weight row (vector v = lane + 32 * u).
// Loaded before grid_wait(): the weights are never written, so they stream in while the kernel
// before this one drains.
template <class W, int kUnroll>
__device__ __forceinline__ void first_loads(bool has_row, const W* __restrict__ w_row, int64_t k,
                                            int lane, uint4 (&raw)[kUnroll]) {
    const int64_t nv = has_row ? k / Vec<W>::kN : 0;
    const uint4* wr = reinterpret_cast<const uint4*>(w_row);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
        const int64_t v = lane + 32 * u;
        raw[u] = v < nv ? __ldg(wr + v) : make_uint4(0, 0, 0, 0);
    }
}

// acc[i] += x[i] . (the kUnroll weight vectors raw, at vectors v0 + 32 * u of the row).
template <class W, int N, int kUnroll>
__device__ __forceinline__ void dot_batch(const float* __restrict__ x, int64_t k, int64_t nv,
                                          const uint4 (&raw)[kUnroll], int64_t v0,
                                          float (&acc)[N]) {
    constexpr int VN = Vec<W>::kN;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
        const int64_t v = v0 + 32 * u;
        if (v >= nv) break;
        float wf[VN];
        Vec<W>::widen(raw[u], wf);
#pragma unroll
        for (int i = 0; i < N; ++i) {
            const float4* xr = reinterpret_cast<const float4*>(x + i * k + v * VN);
#pragma unroll
            for (int q = 0; q < VN / 4; ++q) {
                const float4 xv = __ldg(xr + q);
                acc[i] += wf[4 * q] * xv.x + wf[4 * q + 1] * xv.y + wf[4 * q + 2] * xv.z +
                          wf[4 * q + 3] * xv.w;
            }
        }
    }
}

// One warp's dot products of weight row `w_row` with the n = N rows of x: acc[i] = x[i] . w_row,
// reduced across the warp (every lane holds the sums). `first` holds first_loads() of the row.
template <class W, int N, int kUnroll>
__device__ __forceinline__ void row_dots(const float* __restrict__ x, int64_t k,
                                         const W* __restrict__ w_row, int lane,
                                         const uint4 (&first)[kUnroll], float (&acc)[N]) {
    const int64_t nv = k / Vec<W>::kN;  // vectors per row
    const uint4* wr = reinterpret_cast<const uint4*>(w_row);
#pragma unroll
    for (int i = 0; i < N; ++i) acc[i] = 0.0f;
    dot_batch<W, N, kUnroll>(x, k, nv, first, lane, acc);
    for (int64_t v0 = lane + 32 * kUnroll; v0 < nv; v0 += 32 * kUnroll) {
        uint4 raw[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {  // the loads first: kUnroll in flight
            const int64_t v = v0 + 32 * u;
            raw[u] = v < nv ? __ldg(wr + v) : make_uint4(0, 0, 0, 0);
        }
        dot_batch<W, N, kUnroll>(x, k, nv, raw, v0, acc);
    }
#pragma unroll
    for (int i = 0; i < N; ++i) acc[i] = warp_sum(acc[i]);
}

template <class W, int N, class SH>
__global__ void __launch_bounds__(SH::kWarps * 32)
    gemv_kernel(const float* __restrict__ x, int64_t k, const W* __restrict__ w, int64_t m,
                const void* bias, DType bdt, float* __restrict__ out) {
    const int lane = static_cast<int>(threadIdx.x) & 31;
    const int64_t row = static_cast<int64_t>(blockIdx.x) * SH::kWarps + (threadIdx.x >> 5);
    uint4 first[SH::kUnroll];
    first_loads(row < m, w + row * k, k, lane, first);
    grid_wait();  // x is the kernel before's output; out may be what it read
    grid_release();
    if (row >= m) return;
    float acc[N];
    row_dots<W, N, SH::kUnroll>(x, k, w + row * k, lane, first, acc);
    if (lane != 0) return;
#pragma unroll
    for (int i = 0; i < N; ++i)
        out[i * m + row] = acc[i] + (bias ? load_f32(bias, bdt, row) : 0.0f);
}

// Up to kMaxGemvParts matrices sharing x, their rows one after another in the grid: warp row r
// belongs to the first part p with r < end[p]. Why: the 8B shape's k and v projections (1024 x
// 4096) are 128 blocks each, under one wave of the GPU, and q/k/v took three launches a layer.
template <class W>
struct GemvParts {
    const W* w[kMaxGemvParts];
    const void* bias[kMaxGemvParts];
    DType bdt[kMaxGemvParts];
    float* out[kMaxGemvParts];
    int64_t m[kMaxGemvParts];
    int64_t end[kMaxGemvParts];  // prefix sums of m
    int count;
};

template <class W, int N, class SH>
__global__ void __launch_bounds__(SH::kWarps * 32)
    gemv_parts_kernel(const float* __restrict__ x, int64_t k, const GemvParts<W> parts) {
    const int lane = static_cast<int>(threadIdx.x) & 31;
    int64_t row = static_cast<int64_t>(blockIdx.x) * SH::kWarps + (threadIdx.x >> 5);
    int p = 0;
    while (p < parts.count && row >= parts.end[p]) ++p;
    const bool has_row = p < parts.count;
    if (has_row) row -= parts.end[p] - parts.m[p];
    uint4 first[SH::kUnroll];
    first_loads(has_row, has_row ? parts.w[p] + row * k : nullptr, k, lane, first);
    grid_wait();
    grid_release();
    if (!has_row) return;
    const int64_t m = parts.m[p];
    float acc[N];
    row_dots<W, N, SH::kUnroll>(x, k, parts.w[p] + row * k, lane, first, acc);
    if (lane != 0) return;
    const void* bias = parts.bias[p];
#pragma unroll
    for (int i = 0; i < N; ++i)
        parts.out[p][i * m + row] = acc[i] + (bias ? load_f32(bias, parts.bdt[p], row) : 0.0f);
}

// SwiGLU's first half, one warp per row r of both matrices: gate[r], up[r] and
// out[r] = silu(gate[r]) * up[r] (silu as cuda_elementwise.cu computes it). Replaces two GEMV
// launches and the silu_mul kernel.
template <class W, int N, class SH>
__global__ void __launch_bounds__(SH::kWarps * 32)
    gemv_swiglu_kernel(const float* __restrict__ x, int64_t k, const W* __restrict__ wg,
                       const W* __restrict__ wu, int64_t m, float* __restrict__ gate,
                       float* __restrict__ up, float* __restrict__ out) {
    const int lane = static_cast<int>(threadIdx.x) & 31;
    const int64_t row = static_cast<int64_t>(blockIdx.x) * SH::kWarps + (threadIdx.x >> 5);
    uint4 first_g[SH::kUnroll], first_u[SH::kUnroll];
    first_loads(row < m, wg + row * k, k, lane, first_g);
    first_loads(row < m, wu + row * k, k, lane, first_u);
    grid_wait();
    grid_release();
    if (row >= m) return;
    float g[N], u[N];
    row_dots<W, N, SH::kUnroll>(x, k, wg + row * k, lane, first_g, g);
    row_dots<W, N, SH::kUnroll>(x, k, wu + row * k, lane, first_u, u);
    if (lane != 0) return;
#pragma unroll
    for (int i = 0; i < N; ++i) {
        gate[i * m + row] = g[i];
        up[i * m + row] = u[i];
        out[i * m + row] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
}

template <class SH>
dim3 grid_for(int64_t rows) {
    return dim3(static_cast<unsigned int>((rows + SH::kWarps - 1) / SH::kWarps));
}

// KVSCOPE_CUDA_GEMV_SHAPE: "8x4" (the default), "4x8", "4x4" or "8x8" (warps x loads in flight).
int gemv_shape() {
    static const int shape = [] {
        const char* e = std::getenv("KVSCOPE_CUDA_GEMV_SHAPE");
        const std::string v = e ? e : "";
        return v == "4x8" ? 1 : v == "4x4" ? 2 : v == "8x8" ? 3 : 0;
    }();
    return shape;
}

// Calls f(shape) with the Shape the kernels of one launch take: another than the default only for
// one row of bf16 weights (the decode step of a real checkpoint), to keep the instantiations few.
template <class W, int N, class F>
void by_shape(F&& f) {
    if constexpr (N == 1 && std::is_same_v<W, __nv_bfloat16>) {
        switch (gemv_shape()) {
            case 1:
                return f(Shape<4, 8>{});
            case 2:
                return f(Shape<4, 4>{});
            case 3:
                return f(Shape<8, 8>{});
            default:
                break;
        }
    }
    f(DefaultShape{});
}

template <int N>
struct Rows {
    static constexpr int kN = N;
};

// Calls f(Rows<n>{}) for n in 1..kGemvMaxRows: the kernels take the row count as a template
// argument (their accumulators are registers).
template <class F>
void by_rows(int64_t n, F&& f) {
    switch (n) {
        case 1:
            return f(Rows<1>{});
        case 2:
            return f(Rows<2>{});
        case 3:
            return f(Rows<3>{});
        case 4:
            return f(Rows<4>{});
        case 5:
            return f(Rows<5>{});
        case 6:
            return f(Rows<6>{});
        case 7:
            return f(Rows<7>{});
        case 8:
            return f(Rows<8>{});
        default:
            return;
    }
}

template <class W>
void launch(const float* x, int64_t n, int64_t k, const W* w, int64_t m, const void* bias,
            DType bdt, float* out, cudaStream_t stream) {
    by_rows(n, [&](auto rows) {
        constexpr int N = decltype(rows)::kN;
        by_shape<W, N>([&](auto sh) {
            using SH = decltype(sh);
            launch_dependent(gemv_kernel<W, N, SH>, grid_for<SH>(m), SH::kWarps * 32, 0, stream, x,
                             k, w, m, bias, bdt, out);
        });
    });
}

template <class W>
void launch_parts(const float* x, int64_t n, int64_t k, const GemvPart* in, int count,
                  cudaStream_t stream) {
    GemvParts<W> p{};
    p.count = count;
    int64_t rows_total = 0;
    for (int i = 0; i < count; ++i) {
        p.w[i] = static_cast<const W*>(in[i].w);
        p.bias[i] = in[i].bias;
        p.bdt[i] = in[i].bdt;
        p.out[i] = in[i].out;
        p.m[i] = in[i].m;
        rows_total += in[i].m;
        p.end[i] = rows_total;
    }
    by_rows(n, [&](auto rows) {
        constexpr int N = decltype(rows)::kN;
        by_shape<W, N>([&](auto sh) {
            using SH = decltype(sh);
            launch_dependent(gemv_parts_kernel<W, N, SH>, grid_for<SH>(rows_total), SH::kWarps * 32,
                             0, stream, x, k, p);
        });
    });
}

template <class W>
void launch_swiglu(const float* x, int64_t n, int64_t k, const W* wg, const W* wu, int64_t m,
                   float* gate, float* up, float* out, cudaStream_t stream) {
    by_rows(n, [&](auto rows) {
        constexpr int N = decltype(rows)::kN;
        by_shape<W, N>([&](auto sh) {
            using SH = decltype(sh);
            launch_dependent(gemv_swiglu_kernel<W, N, SH>, grid_for<SH>(m), SH::kWarps * 32, 0,
                             stream, x, k, wg, wu, m, gate, up, out);
        });
    });
}

}  // namespace

bool gemv_fits(const float* x, int64_t n, int64_t k, const void* w, DType wdt, int64_t m) {
    if (n < 1 || n > kGemvMaxRows || m < 1 || m > 65535LL * kMinWarps) return false;
    const int vn = wdt == DType::kF32 ? 4 : (wdt == DType::kBf16 || wdt == DType::kF16 ? 8 : 0);
    if (vn == 0 || k % vn != 0 || k % 4 != 0) return false;  // x rows as float4 too
    const auto a16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
    return a16(x) && a16(w);
}

void gemv(const float* x, int64_t n, int64_t k, const void* w, DType wdt, int64_t m,
          const void* bias, DType bdt, float* out, cudaStream_t stream) {
    switch (wdt) {
        case DType::kBf16:
            return launch(x, n, k, static_cast<const __nv_bfloat16*>(w), m, bias, bdt, out, stream);
        case DType::kF16:
            return launch(x, n, k, static_cast<const __half*>(w), m, bias, bdt, out, stream);
        case DType::kF32:
            return launch(x, n, k, static_cast<const float*>(w), m, bias, bdt, out, stream);
        default:
            return;
    }
}

void gemv_parts(const float* x, int64_t n, int64_t k, DType wdt, const GemvPart* parts, int count,
                cudaStream_t stream) {
    switch (wdt) {
        case DType::kBf16:
            return launch_parts<__nv_bfloat16>(x, n, k, parts, count, stream);
        case DType::kF16:
            return launch_parts<__half>(x, n, k, parts, count, stream);
        case DType::kF32:
            return launch_parts<float>(x, n, k, parts, count, stream);
        default:
            return;
    }
}

void gemv_swiglu(const float* x, int64_t n, int64_t k, const void* w_gate, const void* w_up,
                 DType wdt, int64_t m, float* gate, float* up, float* out, cudaStream_t stream) {
    switch (wdt) {
        case DType::kBf16:
            return launch_swiglu(x, n, k, static_cast<const __nv_bfloat16*>(w_gate),
                                 static_cast<const __nv_bfloat16*>(w_up), m, gate, up, out, stream);
        case DType::kF16:
            return launch_swiglu(x, n, k, static_cast<const __half*>(w_gate),
                                 static_cast<const __half*>(w_up), m, gate, up, out, stream);
        case DType::kF32:
            return launch_swiglu(x, n, k, static_cast<const float*>(w_gate),
                                 static_cast<const float*>(w_up), m, gate, up, out, stream);
        default:
            return;
    }
}

}  // namespace kvscope::cuda
