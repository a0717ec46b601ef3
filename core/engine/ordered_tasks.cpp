#include "core/engine/ordered_tasks.h"

#include <chrono>
#include <utility>

namespace kvscope {

int64_t OrderedTasks::start(std::function<void()> job) {
    std::shared_future<void> before = done_.empty() ? std::shared_future<void>{} : done_.back();
    done_.push_back(
        std::async(std::launch::async, [before = std::move(before), job = std::move(job)] {
            if (before.valid()) before.get();  // rethrows its failure
            job();
        }).share());
    return static_cast<int64_t>(done_.size()) - 1;
}

void OrderedTasks::wait(int64_t i) {
    if (i < 0 || i >= size()) return;
    done_[static_cast<size_t>(i)].get();
}

bool OrderedTasks::finished(int64_t i) const {
    if (i < 0 || i >= size()) return true;
    return done_[static_cast<size_t>(i)].wait_for(std::chrono::seconds(0)) ==
           std::future_status::ready;
}

void OrderedTasks::wait_all() {
    if (!done_.empty()) {
        const std::shared_future<void> last = done_.back();
        try {
            last.get();
        } catch (...) {
            done_.clear();
            throw;
        }
    }
    done_.clear();
}

void OrderedTasks::wait_quietly() noexcept {
    for (const std::shared_future<void>& f : done_) f.wait();
    done_.clear();
}

}  // namespace kvscope
