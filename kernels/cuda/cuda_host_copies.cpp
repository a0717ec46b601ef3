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
    for (Chunk& c : chunks_) (void)cudaFreeHost(c.p);
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
    if (bytes > 0)
        KVS_CUDA_CHECK(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, stream));
    jobs_.push_back(Job{host, std::move(unpack)});
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
}

}  // namespace kvscope::cuda
