#pragma once
// Host work that runs in order on a background thread while the caller goes on. The engine fills
// a prompt's cache rows of layer l (KVCache::fill_pending_rows) there while the device runs layer
// l + 1, instead of the device waiting for the host's copy (page faults on fresh memory: 826 ms of
// a 2.5 s prefill of the 8B shape at 8k, bench/RESULTS.md, "Third run").
//
// Task i starts once task i - 1 has finished. wait(i) returns when task i has (and so every task
// before it) and rethrows its failure; a task after a failed one does not run and reports the
// same failure.
#include <cstdint>
#include <functional>
#include <future>
#include <vector>

namespace kvscope {

class OrderedTasks {
  public:
    OrderedTasks() = default;
    OrderedTasks(const OrderedTasks&) = delete;
    OrderedTasks& operator=(const OrderedTasks&) = delete;
    ~OrderedTasks() { wait_quietly(); }

    int64_t start(std::function<void()> job);  // its index: 0, 1, ... since the last clear()
    void wait(int64_t i);                      // i < 0 or past the last: nothing to wait for
    bool finished(int64_t i) const;            // task i has ended (or i is out of range): no wait
    void wait_all();                           // then clear()
    // For unwinding: waits for every task, drops failures, clears.
    void wait_quietly() noexcept;
    int64_t size() const { return static_cast<int64_t>(done_.size()); }

  private:
    std::vector<std::shared_future<void>> done_;
};

}  // namespace kvscope
