#pragma once
// Helpers shared by the trace tests: scratch paths, NaN-aware float comparison, and the events
// of a sample step in the order the writer stores them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "traces/trace_schema.h"

namespace kvscope::trace::testing {

// A fresh scratch folder per test (removed at the end of the test).
class ScratchDir {
  public:
    ScratchDir() {
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        path_ = std::filesystem::temp_directory_path() /
                ("kvscope_tr_" + std::to_string(::getpid()) + "_" +
                 (info ? std::string(info->test_suite_name()) + "_" + info->name() : "x"));
        std::filesystem::remove_all(path_);
        std::filesystem::create_directories(path_);
    }
    ~ScratchDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
    const std::filesystem::path& path() const { return path_; }

  private:
    std::filesystem::path path_;
};

// Values are stored as float32, so a round trip is exact: equality, with NaN == NaN.
inline bool same_float(float a, float b) {
    return (std::isnan(a) && std::isnan(b)) || a == b;
}
inline void expect_same_floats(const std::vector<float>& got, const std::vector<float>& want,
                               const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t i = 0; i < got.size(); ++i)
        ASSERT_TRUE(same_float(got[i], want[i]))
            << what << "[" << i << "] = " << got[i] << ", want " << want[i];
}

inline bool same_event(const EventRecord& a, const EventRecord& b) {
    return a.step == b.step && a.layer == b.layer && a.head == b.head && a.op == b.op &&
           a.position == b.position && a.destination == b.destination &&
           same_float(a.weight, b.weight) && same_float(a.similarity, b.similarity) &&
           same_float(a.threshold, b.threshold) && a.bits == b.bits && a.slot == b.slot &&
           a.dst_position == b.dst_position && a.part == b.part;
}

// The writer's storage order: stable-sorted by (layer, head) within the step.
inline std::vector<EventRecord> stored_order(std::vector<EventRecord> ev) {
    std::stable_sort(ev.begin(), ev.end(), [](const EventRecord& a, const EventRecord& b) {
        return a.layer != b.layer ? a.layer < b.layer : a.head < b.head;
    });
    return ev;
}

inline void expect_same_events(const std::vector<EventRecord>& got,
                               const std::vector<EventRecord>& want, const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    for (size_t i = 0; i < got.size(); ++i)
        ASSERT_TRUE(same_event(got[i], want[i]))
            << what << ": event " << i << " differs (step " << got[i].step << " vs " << want[i].step
            << ", pos " << got[i].position << " vs " << want[i].position << ")";
}

}  // namespace kvscope::trace::testing
