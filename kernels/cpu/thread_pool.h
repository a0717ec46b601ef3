#pragma once
// A small persistent thread pool for the CPU backend: parallel_for over [0, n) in contiguous
// chunks. The calling thread takes part, so threads = 1 runs inline with no synchronisation.
// Chunks (up to 4 per thread) are claimed from a shared counter, not assigned one per thread: on a
// loaded 2-core machine a statically assigned half waited for a descheduled thread, so the second
// thread gained nothing (issue 15); claimed chunks go to whichever thread is running. The chunk
// boundaries depend on n and the thread count only, never on which thread ran them.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kvscope::cpu {

class ThreadPool {
  public:
    explicit ThreadPool(int threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return static_cast<int>(workers_.size()) + 1; }
    // Calls fn(begin, end) on disjoint chunks covering [0, n); returns when all are done.
    void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);
    // The same, on the calling thread alone when the job is smaller than kMinParallelWork
    // multiply-adds: waking a worker costs ~10 us idle and milliseconds on a loaded machine
    // (decode on the demo model ran 3x slower on 2 threads than on 1). The chunk boundaries are
    // those of parallel_for, so the results are the same.
    static constexpr int64_t kMinParallelWork = int64_t{1} << 20;
    void parallel_for_work(int64_t n, int64_t work,
                           const std::function<void(int64_t, int64_t)>& fn);

  private:
    void worker_loop();
    void run_chunks(const std::function<void(int64_t, int64_t)>& fn, int64_t n, int64_t chunks);

    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable cv_work_, cv_done_;
    const std::function<void(int64_t, int64_t)>* job_ = nullptr;
    int64_t job_n_ = 0;
    int64_t job_chunks_ = 0;
    std::atomic<int64_t> next_chunk_{0};
    uint64_t generation_ = 0;
    int pending_ = 0;
    bool stop_ = false;
};

}  // namespace kvscope::cpu
