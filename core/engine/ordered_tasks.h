#pragma once
// Host work that runs in order on a background thread while the caller goes on. The engine fills
// a prompt's cache rows of layer l (KVCache::fill_pending_rows) there while the device runs layer
// l + 1, instead of the device waiting for the host's copy (page faults on fresh memory: 826 ms of
// a 2.5 s prefill of the 8B shape at 8k, bench/RESULTS.md, "Third run"); the recorder hands its
// decode steps to the trace writer through one.
//
// One worker thread (made on the first start()) runs the tasks one after another in start order.
// wait(i) returns when task i has ended (and so every task before it) and rethrows its failure;
// a task after a failed one does not run and reports the same failure. Queued tasks cost no
// thread each, so a caller may let many run behind it (the recorder bounds them by bytes).
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace kvscope {

class OrderedTasks {
  public:
    OrderedTasks() = default;
    OrderedTasks(const OrderedTasks&) = delete;
    OrderedTasks& operator=(const OrderedTasks&) = delete;
    ~OrderedTasks();

    int64_t start(std::function<void()> job);  // its index: 0, 1, ... since the last clear
    void wait(int64_t i);                      // i < 0 or past the last: nothing to wait for
    bool finished(int64_t i) const;            // task i has ended (or i is out of range): no wait
    void wait_all();                           // then the indices start over at 0
    // For unwinding: waits for every task, drops failures, starts the indices over.
    void wait_quietly() noexcept;
    int64_t size() const;  // tasks started since the last clear

  private:
    void work();
    mutable std::mutex mu_;
    std::condition_variable work_cv_, done_cv_;
    std::deque<std::function<void()>> queue_;
    int64_t started_ = 0, ended_ = 0;
    int64_t failed_at_ = -1;  // index of the first failed task, -1: none
    std::exception_ptr failure_;
    bool stop_ = false;
    std::thread worker_;
};

}  // namespace kvscope
