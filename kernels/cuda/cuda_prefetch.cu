// L2 prefetch of weights a decode step reads soon (Backend::prefetch). CPU twin: none is needed,
// a prefetch changes no result (Backend's default does nothing); the op test list checks that
// GEMVs after a prefetch give the same bits as without (tests/kernels/op_cases_prefetch.cpp).
//
// Why: a decode step is bound by reading the weights, but between the q/k/v and the o projection
// (RoPE, the row moves, attention: ~25 us a layer on the 8B shape at 1k keys) and at each norm
// the memory sits nearly idle, while the GEMVs that follow pay their ramp-up to full bandwidth
// (the o projection ran at 2.22 TB/s where the 1 GB lm_head reached 3.11; ncu, bench/RESULTS.md,
// ninth run). Bytes fetched into L2 while memory is idle are read from L2 by the GEMV.
//
// Layout: up to kMaxPrefetchRanges ranges, each `rows` pieces of `bytes_per_row` bytes, `stride`
// bytes apart (the start of every row of a weight, or one contiguous piece). The pieces are cut
// into requests of at most kChunk bytes, numbered across all ranges; request c is issued by
// thread c of the grid (grid-stride) as one cp.async.bulk.prefetch.L2 (sm_90: a fire-and-forget
// request to the SM's TMA unit; no registers or shared memory held). One block per SM spreads the
// requests over every TMA unit. The kernel waits for the kernel before it (launched as a
// dependent, cuda_device.cuh) so that the prefetch streams after the queued work instead of
// competing with it, and exits once its requests are out.
#include <cstdint>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/cuda_device.cuh"

namespace kvscope::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int64_t kChunk = 16 * 1024;  // bytes per bulk request (a multiple of 16)

struct Ranges {
    L2Range r[kMaxPrefetchRanges];
    int64_t first[kMaxPrefetchRanges + 1];  // request number of each range's first piece
    int64_t per_row[kMaxPrefetchRanges];    // requests per piece
    int count;
};

__global__ void __launch_bounds__(kThreads) l2_prefetch_kernel(const __grid_constant__ Ranges rs) {
    grid_wait();
    grid_release();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const int64_t total = rs.first[rs.count];
    const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
    int i = 0;
    for (int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; c < total;
         c += stride) {
        while (c >= rs.first[i + 1]) ++i;
        const L2Range& r = rs.r[i];
        const int64_t local = c - rs.first[i];
        const int64_t row = local / rs.per_row[i], piece = local % rs.per_row[i];
        const int64_t off = piece * kChunk;
        const int64_t left = r.bytes_per_row - off;
        const auto size = static_cast<uint32_t>(left < kChunk ? left : kChunk);
        const char* a = static_cast<const char*>(r.p) + row * r.stride + off;
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(a), "r"(size) : "memory");
    }
#else
    (void)rs;
#endif
}

}  // namespace

void l2_prefetch(const L2Range* ranges, int count, int blocks, cudaStream_t stream) {
    Ranges rs{};
    rs.first[0] = 0;
    for (int i = 0; i < count && i < kMaxPrefetchRanges; ++i) {
        L2Range r = ranges[i];
        // A bulk request needs a 16-byte aligned address and a size in whole 16-byte units; the
        // few bytes outside that are left to the reader (a hint, not a copy).
        if (r.p == nullptr || r.rows < 1 || reinterpret_cast<uintptr_t>(r.p) % 16 != 0 ||
            r.stride % 16 != 0)
            continue;
        r.bytes_per_row &= ~static_cast<int64_t>(15);
        if (r.bytes_per_row <= 0) continue;
        const int j = rs.count++;
        rs.r[j] = r;
        rs.per_row[j] = (r.bytes_per_row + kChunk - 1) / kChunk;
        rs.first[j + 1] = rs.first[j] + r.rows * rs.per_row[j];
    }
    if (rs.count == 0 || blocks < 1) return;
    launch_dependent(l2_prefetch_kernel, dim3(static_cast<unsigned int>(blocks)), kThreads, 0,
                     stream, rs);
}

}  // namespace kvscope::cuda
