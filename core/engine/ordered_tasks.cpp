#include "core/engine/ordered_tasks.h"

#include <utility>

namespace kvscope {

OrderedTasks::~OrderedTasks() {
    wait_quietly();
    {
        const std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    work_cv_.notify_all();
    if (worker_.joinable()) worker_.join();
}

void OrderedTasks::work() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
        work_cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stop_, nothing left
        std::function<void()> job = std::move(queue_.front());
        queue_.pop_front();
        const int64_t index = ended_;
        if (!failure_) {
            lock.unlock();
            std::exception_ptr failed;
            try {
                job();
            } catch (...) {
                failed = std::current_exception();
            }
            job = nullptr;  // what it captured goes before the task counts as ended
            lock.lock();
            if (failed && !failure_) {
                failure_ = failed;
                failed_at_ = index;
            }
        }
        ++ended_;
        done_cv_.notify_all();
    }
}

int64_t OrderedTasks::start(std::function<void()> job) {
    const std::lock_guard<std::mutex> lock(mu_);
    if (!worker_.joinable()) worker_ = std::thread([this] { work(); });
    queue_.push_back(std::move(job));
    work_cv_.notify_one();
    return started_++;
}

void OrderedTasks::wait(int64_t i) {
    std::unique_lock<std::mutex> lock(mu_);
    if (i < 0 || i >= started_) return;
    done_cv_.wait(lock, [&] { return ended_ > i; });
    if (failure_ && failed_at_ <= i) std::rethrow_exception(failure_);
}

bool OrderedTasks::finished(int64_t i) const {
    const std::lock_guard<std::mutex> lock(mu_);
    return i < 0 || i >= started_ || ended_ > i;
}

int64_t OrderedTasks::size() const {
    const std::lock_guard<std::mutex> lock(mu_);
    return started_;
}

void OrderedTasks::wait_all() {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [this] { return ended_ == started_; });
    const std::exception_ptr failed = failure_;
    started_ = ended_ = 0;
    failed_at_ = -1;
    failure_ = nullptr;
    if (failed) std::rethrow_exception(failed);
}

void OrderedTasks::wait_quietly() noexcept {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [this] { return ended_ == started_; });
    started_ = ended_ = 0;
    failed_at_ = -1;
    failure_ = nullptr;
}

}  // namespace kvscope
