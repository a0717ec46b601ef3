#include "core/policies/head_tasks.h"

#include <algorithm>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "kernels/cpu/thread_pool.h"

namespace kvscope {
namespace {

// Below this much work a pool's wake-up costs more than it saves (cpu::ThreadPool's own bound).
constexpr int64_t kMinParallelWork = cpu::ThreadPool::kMinParallelWork;

// One pool for every policy, made on first use; a ThreadPool takes one caller at a time, so
// concurrent callers (what-if previews beside a run) take turns.
std::mutex& pool_mutex() {
    static std::mutex mu;
    return mu;
}
cpu::ThreadPool& pool() {
    static const std::unique_ptr<cpu::ThreadPool> p = [] {
        const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
        return std::make_unique<cpu::ThreadPool>(std::min(hw, 16));
    }();
    return *p;
}

}  // namespace

void for_each_head_task(int64_t n, int64_t work_per_task, const std::function<void(int64_t)>& f) {
    if (n <= 0) return;
    if (n == 1 || n * std::max<int64_t>(work_per_task, 1) < kMinParallelWork) {
        for (int64_t i = 0; i < n; ++i) f(i);
        return;
    }
    std::vector<std::exception_ptr> failed(static_cast<size_t>(n));
    {
        std::lock_guard<std::mutex> lock(pool_mutex());
        pool().parallel_for(n, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) {
                try {
                    f(i);
                } catch (...) {
                    failed[static_cast<size_t>(i)] = std::current_exception();
                }
            }
        });
    }
    for (const std::exception_ptr& e : failed)
        if (e) std::rethrow_exception(e);
}

}  // namespace kvscope
