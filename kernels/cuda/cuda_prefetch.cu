// Backend::prefetch on the device: a weight's bytes are asked of L2 with bulk prefetches
// (cp.async.bulk.prefetch.L2, sm_90) by kBlocks blocks on a side stream (cuda_backend.h), each
// issuing those of its slice.
// CPU twin: nothing (cpu_backend keeps the default no-op; a prefetch changes no value).
//
// Why: in a decode step of the 8B shape the attention (~19 us a layer at 1k context) reads 8 MB
// of K/V and leaves most of the memory bandwidth idle, and the o projection after it (32 MB,
// ~15 us, 2.2 TB/s against a 3.0 TB/s floor) starts cold (bench/RESULTS.md, eleventh run).
// Prefetched during the attention, its weights come from L2 (kLong). The norms before the
// gate/up and the next q/k/v projections (~6 us each) leave room for their first rows (kShort).
// An earlier prefetch kernel of
// session 16 loaded the bytes itself and waited for them: 1 ms a step on the critical path. Bulk
// prefetches need no registers and no shared memory. The first version issued them from one block
// in the chain of dependent launches: a block does not end before its bulk operations, one SM moved
// ~0.25 TB/s, and the next kernel waited ~130 us a layer (decode 7.4 -> 11.6 ms, RESULTS.md,
// fourteenth run). Hence a side stream, off the chain, and the slices spread over many SMs.
// Floor: bytes read from DRAM are those the next op would have read anyway.
#include <cstdint>

#include "kernels/cuda/cuda_common.h"

namespace kvscope::cuda {
namespace {

constexpr uint64_t kChunk = 64 * 1024;  // bytes per prefetch instruction
constexpr int kThreads = 32;
constexpr int kBlocks = 48;  // x ~0.25 TB/s a block: above the 3-4.8 TB/s of HBM3/HBM3e

// Bulk prefetches of [p, p + bytes) in kChunk pieces, the grid's threads taking turns; chunk i
// goes to block i % kBlocks, so a short span still spreads over every block's SM.
__device__ __forceinline__ void prefetch_span(const char* p, uint64_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const uint64_t first = (uint64_t{threadIdx.x} * kBlocks + blockIdx.x) * kChunk;
    for (uint64_t off = first; off < bytes; off += uint64_t{kBlocks} * kThreads * kChunk) {
        const uint64_t left = bytes - off;
        // A multiple of 16 bytes from a 16-byte aligned address (off is a multiple of kChunk).
        const auto size = static_cast<uint32_t>((left < kChunk ? left : kChunk) & ~uint64_t{15});
        if (size > 0)
            asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p + off), "r"(size)
                         : "memory");
    }
#else
    (void)p;
    (void)bytes;
#endif
}

__global__ void prefetch_l2_kernel(const char* p, uint64_t bytes, const char* p2, uint64_t bytes2) {
    prefetch_span(p, bytes);
    prefetch_span(p2, bytes2);
}

}  // namespace

void prefetch_l2(const void* p, uint64_t bytes, const void* p2, uint64_t bytes2,
                 cudaStream_t stream) {
    auto usable = [](const void* q, uint64_t n) {
        return q != nullptr && n >= 16 && (reinterpret_cast<uintptr_t>(q) & 15u) == 0;
    };
    if (!usable(p, bytes)) bytes = 0;
    if (!usable(p2, bytes2)) bytes2 = 0;
    if (bytes == 0 && bytes2 == 0) return;
    prefetch_l2_kernel<<<kBlocks, kThreads, 0, stream>>>(static_cast<const char*>(p), bytes,
                                                         static_cast<const char*>(p2), bytes2);
    KVS_CUDA_CHECK_LAUNCH();
}

}  // namespace kvscope::cuda
