#include "kernels/cpu/thread_pool.h"

#include <algorithm>

namespace kvscope::cpu {

ThreadPool::ThreadPool(int threads) {
    const int n = std::max(1, threads);
    for (int i = 1; i < n; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_work_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunks(const std::function<void(int64_t, int64_t)>& fn, int64_t n,
                            int64_t chunks) {
    for (;;) {
        const int64_t c = next_chunk_.fetch_add(1, std::memory_order_relaxed);
        if (c >= chunks) return;
        const int64_t begin = n * c / chunks;
        const int64_t end = n * (c + 1) / chunks;
        if (begin < end) fn(begin, end);
    }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    if (workers_.empty() || n == 1) {
        fn(0, n);
        return;
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        job_ = &fn;
        job_n_ = n;
        job_chunks_ = std::min<int64_t>(n, int64_t{4} * size());
        next_chunk_.store(0, std::memory_order_relaxed);
        pending_ = static_cast<int>(workers_.size());
        ++generation_;
    }
    cv_work_.notify_all();
    run_chunks(fn, n, job_chunks_);
    std::unique_lock<std::mutex> lock(mu_);
    cv_done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
}

void ThreadPool::parallel_for_work(int64_t n, int64_t work,
                                   const std::function<void(int64_t, int64_t)>& fn) {
    if (work >= kMinParallelWork || workers_.empty()) {
        parallel_for(n, fn);
        return;
    }
    const int64_t chunks = std::min<int64_t>(n, int64_t{4} * size());
    for (int64_t c = 0; c < chunks; ++c) {
        const int64_t begin = n * c / chunks, end = n * (c + 1) / chunks;
        if (begin < end) fn(begin, end);
    }
}

void ThreadPool::worker_loop() {
    uint64_t seen = 0;
    for (;;) {
        const std::function<void(int64_t, int64_t)>* job;
        int64_t n, chunks;
        {
            std::unique_lock<std::mutex> lock(mu_);
            cv_work_.wait(lock, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
            job = job_;
            n = job_n_;
            chunks = job_chunks_;
        }
        run_chunks(*job, n, chunks);
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (--pending_ == 0) cv_done_.notify_one();
        }
    }
}

}  // namespace kvscope::cpu
