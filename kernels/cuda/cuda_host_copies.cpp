#include "kernels/cuda/cuda_host_copies.h"

#include <algorithm>

#include <cstring>

#include "kernels/cpu/thread_pool.h"
#include "kernels/cuda/cuda_common.h"

namespace kvscope::cuda {
namespace {

constexpr size_t kAlign = 256;
constexpr size_t kMinChunk = size_t{8} << 20;
constexpr size_t kCopyPiece = size_t{4} << 20;  // below two pieces one thread copies

}  // namespace

void copy_on(cpu::ThreadPool* pool, void* dst, const void* src, size_t bytes) {
    if (!pool || bytes < 2 * kCopyPiece) {
        if (bytes > 0) std::memcpy(dst, src, bytes);
        return;
    }
    const auto pieces = static_cast<int64_t>((bytes + kCopyPiece - 1) / kCopyPiece);
    pool->parallel_for(pieces, [&](int64_t b, int64_t e) {
        const size_t from = static_cast<size_t>(b) * kCopyPiece;
        const size_t to = std::min(bytes, static_cast<size_t>(e) * kCopyPiece);
        std::memcpy(static_cast<char*>(dst) + from, static_cast<const char*>(src) + from,
                    to - from);
    });
}

HostCopies::~HostCopies() {
    if (side_) (void)cudaStreamSynchronize(side_);  // nothing may still write the chunks
    for (Chunk& c : chunks_) (void)cudaFreeHost(c.p);
    if (snap_) (void)cudaFree(snap_);
    for (cudaEvent_t e : {copied_, snap_ready_, side_done_})
        if (e) (void)cudaEventDestroy(e);
    if (side_) (void)cudaStreamDestroy(side_);
}

void* HostCopies::snapshot_room(size_t bytes) {
    const size_t need = (bytes + kAlign - 1) / kAlign * kAlign;
    if (snap_used_ + need > snap_cap_) {
        // A larger buffer, once per longer prompt: delivery frees it after every layer, so a
        // layer's copies (keys, values, statistics) must fit together. The copies still
        // reading the old one end first (cudaFree also waits for the queued snapshots).
        if (side_ && cudaStreamSynchronize(side_) != cudaSuccess) return nullptr;
        if (snap_) {
            (void)cudaFree(snap_);
            if (count_) count_(-static_cast<int64_t>(snap_cap_));
            snap_ = nullptr;
            snap_cap_ = 0;
        }
        const size_t cap = (snap_used_ + need) + (snap_used_ + need) / 4;
        snap_used_ = 0;
        if (cudaMalloc(&snap_, cap) != cudaSuccess) {
            (void)cudaGetLastError();  // out of memory: the copies stay on the compute stream
            snap_ = nullptr;
            return nullptr;
        }
        snap_cap_ = cap;
        if (count_) count_(static_cast<int64_t>(cap));
    }
    void* p = static_cast<char*>(snap_) + snap_used_;
    snap_used_ += need;
    return p;
}

size_t HostCopies::pinned_bytes() const {
    size_t b = 0;
    for (const Chunk& c : chunks_) b += c.cap;
    return b;
}

void* HostCopies::reserve(size_t bytes) {
    const size_t need = (bytes + kAlign - 1) / kAlign * kAlign;
    // The current chunk, else the next one that fits (chunks stay in order, all reused after
    // deliver()), else a new one.
    for (; current_ < chunks_.size(); ++current_) {
        Chunk& c = chunks_[current_];
        if (c.cap - c.used >= need) {
            void* p = static_cast<char*>(c.p) + c.used;
            c.used += need;
            return p;
        }
    }
    Chunk c;
    c.cap = std::max(need, kMinChunk);
    KVS_CUDA_CHECK(cudaHostAlloc(&c.p, c.cap, cudaHostAllocDefault));
    c.used = need;
    chunks_.push_back(c);
    current_ = chunks_.size() - 1;
    return c.p;
}

void HostCopies::enqueue(const void* src, size_t bytes, cudaStream_t stream, Unpack unpack) {
    void* host = reserve(std::max<size_t>(bytes, 1));
    if (side_on_ && bytes >= kSideMin) {
        if (!side_) {
            KVS_CUDA_CHECK(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking));
            KVS_CUDA_CHECK(cudaEventCreateWithFlags(&snap_ready_, cudaEventDisableTiming));
            KVS_CUDA_CHECK(cudaEventCreateWithFlags(&side_done_, cudaEventDisableTiming));
        }
        if (void* snap = snapshot_room(bytes)) {
            KVS_CUDA_CHECK(cudaMemcpyAsync(snap, src, bytes, cudaMemcpyDeviceToDevice, stream));
            KVS_CUDA_CHECK(cudaEventRecord(snap_ready_, stream));
            KVS_CUDA_CHECK(cudaStreamWaitEvent(side_, snap_ready_, 0));
            KVS_CUDA_CHECK(cudaMemcpyAsync(host, snap, bytes, cudaMemcpyDeviceToHost, side_));
            KVS_CUDA_CHECK(cudaEventRecord(side_done_, side_));
            on_side_ = true;
            jobs_.push_back(Job{host, std::move(unpack)});
            return;
        }
    }
    if (bytes > 0)
        KVS_CUDA_CHECK(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, stream));
    if (!copied_) KVS_CUDA_CHECK(cudaEventCreateWithFlags(&copied_, cudaEventDisableTiming));
    KVS_CUDA_CHECK(cudaEventRecord(copied_, stream));
    on_stream_ = true;
    jobs_.push_back(Job{host, std::move(unpack)});
}

cudaError_t HostCopies::wait_copied() {
    if (on_stream_) {
        const cudaError_t e = cudaEventSynchronize(copied_);
        if (e != cudaSuccess) return e;
        on_stream_ = false;
    }
    if (on_side_) {
        const cudaError_t e = cudaEventSynchronize(side_done_);
        if (e != cudaSuccess) return e;
        on_side_ = false;
    }
    return cudaSuccess;
}

void HostCopies::deliver() {
    std::vector<Job> jobs;
    jobs.swap(jobs_);
    drop();  // memory reusable whatever the unpacks do
    for (Job& j : jobs) j.unpack(j.host);
}

void HostCopies::drop() noexcept {
    jobs_.clear();
    for (Chunk& c : chunks_) c.used = 0;
    current_ = 0;
    // Every copy that read the snapshot is done (deliver() and drop() come after the waits), or
    // failed: the buffer is free again.
    snap_used_ = 0;
}

}  // namespace kvscope::cuda
