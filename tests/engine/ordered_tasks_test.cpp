// OrderedTasks (core/engine/ordered_tasks.h): the background thread that fills a prompt's cache
// rows behind the device. Tasks run one after another in start order, wait(i) covers task i and
// those before it, and a failure reaches the caller (and stops the tasks after it).
#include "core/engine/ordered_tasks.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace kvscope {
namespace {

TEST(OrderedTasks, RunInStartOrderAndWaitCoversEarlierTasks) {
    OrderedTasks t;
    std::mutex mu;
    std::vector<int> order;
    std::atomic<int> running{0}, most{0};
    for (int i = 0; i < 5; ++i)
        EXPECT_EQ(t.start([&, i] {
            most = std::max(most.load(), ++running);
            // Later tasks sleep less: only the ordering keeps them in start order.
            std::this_thread::sleep_for(std::chrono::milliseconds(10 * (5 - i)));
            {
                const std::lock_guard<std::mutex> lock(mu);
                order.push_back(i);
            }
            --running;
        }),
                  i);
    t.wait(2);
    {
        const std::lock_guard<std::mutex> lock(mu);
        ASSERT_GE(order.size(), 3u);
        EXPECT_EQ(order[0], 0);
        EXPECT_EQ(order[2], 2);
    }
    t.wait(-1);  // nothing
    t.wait(99);  // nothing
    t.wait_all();
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
    EXPECT_EQ(most.load(), 1);  // never two at once
    EXPECT_EQ(t.size(), 0);
}

TEST(OrderedTasks, AFailureReachesTheCallerAndStopsLaterTasks) {
    OrderedTasks t;
    std::atomic<bool> later_ran{false};
    t.start([] {});
    t.start([] { throw std::runtime_error("disk full"); });
    t.start([&] { later_ran = true; });
    EXPECT_NO_THROW(t.wait(0));
    EXPECT_THROW(t.wait(1), std::runtime_error);
    EXPECT_THROW(t.wait(2), std::runtime_error);  // the same failure
    EXPECT_THROW(t.wait_all(), std::runtime_error);
    EXPECT_FALSE(later_ran.load());
    EXPECT_EQ(t.size(), 0);
    // Usable again; wait_quietly() drops a failure (for unwinding).
    t.start([] { throw std::runtime_error("again"); });
    t.wait_quietly();
    EXPECT_EQ(t.size(), 0);
    EXPECT_NO_THROW(t.wait_all());
}

// finished(i) never waits: false while task i runs, true once it ended (failed too) and for
// indices out of range. The recorder polls it to let the trace writer run several steps behind.
TEST(OrderedTasks, FinishedDoesNotWait) {
    OrderedTasks t;
    std::atomic<bool> release{false};
    t.start([&] {
        while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
    t.start([] { throw std::runtime_error("late"); });
    EXPECT_FALSE(t.finished(0));
    EXPECT_FALSE(t.finished(1));
    EXPECT_TRUE(t.finished(-1));
    EXPECT_TRUE(t.finished(2));
    release = true;
    // Up to 5 s for the tasks to end (they take microseconds once released).
    for (int i = 0; i < 5000 && !t.finished(1); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_TRUE(t.finished(0));
    EXPECT_TRUE(t.finished(1));
    EXPECT_NO_THROW(t.wait(0));
    EXPECT_THROW(t.wait(1), std::runtime_error);
    t.wait_quietly();
}

}  // namespace
}  // namespace kvscope
