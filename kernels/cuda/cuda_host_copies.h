#pragma once
// Device -> host copies that the CUDA backend delivers at its next synchronisation instead of
// waiting for them (Backend::to_host_later, AttentionStats::deferred). Each copy lands in pinned
// host memory (an asynchronous DMA needs it) and, once the stream has been waited for, an unpack
// step moves the bytes to the caller's buffers in enqueue order. A decode step of the 8B shape
// waited for the device 2-3 times per layer before (bench/RESULTS.md, "Third run"); with these it
// waits once per layer for the new values, and the attention rows ride along.
//
// The pinned memory is a list of chunks reused from step to step (allocated on first need: a
// step's rows are H * keys floats per layer, e.g. 32 x 32k x 4 B = 4 MB for the 8B shape).
#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <vector>

namespace kvscope::cpu {
class ThreadPool;
}

namespace kvscope::cuda {

// memcpy of a large block in pieces on `pool` (one thread when `pool` is null or the block is
// small). Why: a 32k prompt's layer brings back 134 MB each of keys, values and window rows to
// unpack, and one thread's memcpy (~10 GB/s) kept the device waiting (bench/RESULTS.md, fifth run).
void copy_on(cpu::ThreadPool* pool, void* dst, const void* src, size_t bytes);

class HostCopies {
  public:
    using Unpack = std::function<void(const void* host_bytes)>;
    HostCopies() = default;
    HostCopies(const HostCopies&) = delete;
    HostCopies& operator=(const HostCopies&) = delete;
    ~HostCopies();

    // Enqueues `bytes` from device memory `src` on `stream`; deliver() later calls
    // unpack(pointer to those bytes in pinned memory).
    void enqueue(const void* src, size_t bytes, cudaStream_t stream, Unpack unpack);
    // Only after the stream has been synchronised: runs the unpacks in enqueue order, then
    // reuses the pinned memory. If an unpack throws, the rest are dropped (the copies are done;
    // their buffers are the callers').
    void deliver();
    // Only after the stream has been synchronised (or when it failed): forgets pending copies.
    void drop() noexcept;
    bool pending() const { return !jobs_.empty(); }
    size_t pinned_bytes() const;

  private:
    struct Chunk {
        void* p = nullptr;
        size_t cap = 0, used = 0;
    };
    struct Job {
        const void* host;
        Unpack unpack;
    };
    void* reserve(size_t bytes);
    std::vector<Chunk> chunks_;
    size_t current_ = 0;  // chunk being filled
    std::vector<Job> jobs_;
};

}  // namespace kvscope::cuda
