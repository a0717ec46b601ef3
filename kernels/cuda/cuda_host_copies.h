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
//
// Large copies (>= kSideMin) leave the compute stream: a device-to-device snapshot there (in
// stream order, so later kernels may overwrite the source at once), then the DMA to the host on a
// copy stream of its own, overlapping the next kernels. Why: a recorded 32k prompt layer of the
// 8B shape brings back ~400 MB (keys, values, window rows), ~8 ms of PCIe per layer during which
// the compute stream did nothing. The snapshot buffer is reused once the copies that read it are
// delivered (deliver() comes after the waits for them; a larger one is made when a layer's copies
// do not fit).
// set_side_copies(false) (KVSCOPE_CUDA_SIDE_COPIES=0) keeps every copy on the compute stream.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
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

    // Enqueues `bytes` from device memory `src` after the work queued on `stream`; deliver()
    // later calls unpack(pointer to those bytes in pinned memory).
    void enqueue(const void* src, size_t bytes, cudaStream_t stream, Unpack unpack);
    static constexpr size_t kSideMin = size_t{8} << 20;
    void set_side_copies(bool on) { side_on_ = on; }
    // Device bytes of the snapshot buffer changed by `delta` (the backend's memory accounting).
    void set_device_counter(std::function<void(int64_t delta)> f) { count_ = std::move(f); }
    // Only after the stream has been synchronised, or wait_copied() returned cudaSuccess: runs
    // the unpacks in enqueue order, then reuses the pinned memory. If an unpack throws, the rest
    // are dropped (the copies are done; their buffers are the callers').
    void deliver();
    // Waits for the copies enqueued so far (an event recorded after the last one), not for the
    // work queued on the stream after them.
    cudaError_t wait_copied();
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
    // The snapshot's place for `bytes` in snap_, or nullptr (then the copy stays on `stream`).
    void* snapshot_room(size_t bytes);
    std::vector<Job> jobs_;
    cudaEvent_t copied_ = nullptr;  // recorded after the last copy on the compute stream
    bool on_stream_ = false;        // copied_ is pending (a copy went on the compute stream)
    // Copies through a snapshot (see the file comment).
    bool side_on_ = true;
    cudaStream_t side_ = nullptr;
    cudaEvent_t snap_ready_ = nullptr;  // the snapshot is taken (compute stream)
    cudaEvent_t side_done_ = nullptr;   // recorded after the last copy on side_
    bool on_side_ = false;              // side_done_ is pending
    void* snap_ = nullptr;
    size_t snap_cap_ = 0, snap_used_ = 0;
    std::function<void(int64_t)> count_;
};

}  // namespace kvscope::cuda
