// KVSCOPE_PROFILE=1 accounting (see op_profile.h): buckets in a process-wide table, printed at
// exit, sorted by total time within each phase.
#include "kernels/op_profile.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

namespace kvscope::prof {
namespace {

struct Bucket {
    int64_t calls = 0;
    double seconds = 0;
};

struct Table {
    std::mutex mu;
    std::string phase = "other";
    std::map<std::string, std::map<std::string, Bucket>> by_phase;
    std::map<std::string, int64_t> steps;
    ~Table() { print(); }
    void print() {
        if (by_phase.empty()) return;
        std::fprintf(stderr, "%s",
                     fences_on() ? "\n[profile] KVSCOPE_PROFILE=1: wall time per op (device ops "
                                   "waited for before and after)\n"
                                 : "\n[profile] KVSCOPE_PROFILE=host: host time per op (no waits "
                                   "added; the device's own waits in sync.wait)\n");
        for (const auto& [ph, buckets] : by_phase) {
            const int64_t steps_n = std::max<int64_t>(1, steps[ph]);
            double total = 0;
            std::vector<std::pair<std::string, Bucket>> rows(buckets.begin(), buckets.end());
            for (const auto& r : rows) total += r.second.seconds;
            std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
                return a.second.seconds > b.second.seconds;
            });
            std::fprintf(stderr, "[profile] %s: %lld steps, %.1f ms in buckets (%.3f ms/step)\n",
                         ph.c_str(), static_cast<long long>(steps_n), total * 1e3,
                         total * 1e3 / static_cast<double>(steps_n));
            std::fprintf(stderr, "[profile]   %-40s %9s %11s %10s %10s %6s\n", "bucket", "calls",
                         "total ms", "us/call", "ms/step", "%");
            for (const auto& [name, b] : rows)
                std::fprintf(stderr, "[profile]   %-40s %9lld %11.2f %10.2f %10.3f %5.1f%%\n",
                             name.c_str(), static_cast<long long>(b.calls), b.seconds * 1e3,
                             b.seconds * 1e6 / static_cast<double>(std::max<int64_t>(1, b.calls)),
                             b.seconds * 1e3 / static_cast<double>(steps_n),
                             total > 0 ? 100.0 * b.seconds / total : 0.0);
        }
    }
};

Table& table() {
    static Table t;
    return t;
}

}  // namespace

namespace {
std::string mode() {
    const char* e = std::getenv("KVSCOPE_PROFILE");
    return e ? std::string(e) : std::string();
}
}  // namespace

bool enabled() {
    static const bool on = [] { return mode() == "1" || mode() == "host"; }();
    return on;
}

bool fences_on() {
    static const bool on = mode() == "1";
    return on;
}

void begin_phase(const char* phase) {
    if (!enabled()) return;
    Table& t = table();
    std::lock_guard<std::mutex> lock(t.mu);
    t.phase = phase;
    ++t.steps[t.phase];
}

void add(const std::string& bucket, double seconds) {
    if (!enabled()) return;
    Table& t = table();
    std::lock_guard<std::mutex> lock(t.mu);
    Bucket& b = t.by_phase[t.phase][bucket];
    ++b.calls;
    b.seconds += seconds;
}

Scope::Scope(const char* bucket, Fence fence, void* ctx)
    : fence_(fence), ctx_(ctx), on_(enabled()) {
    if (!on_) return;
    bucket_ = bucket;
    start();
}

Scope::Scope(std::string bucket, Fence fence, void* ctx)
    : bucket_(std::move(bucket)), fence_(fence), ctx_(ctx), on_(enabled()) {
    if (on_) start();
}

void Scope::start() {
    if (fence_ && fences_on()) fence_(ctx_);
    t0_ = Clock::now();
}

void Scope::next(const char* bucket) {
    if (!on_) return;
    if (fence_ && fences_on()) fence_(ctx_);
    const Clock::time_point t1 = Clock::now();
    add(bucket_, std::chrono::duration<double>(t1 - t0_).count());
    bucket_ = bucket;
    t0_ = t1;
}

Scope::~Scope() {
    if (!on_) return;
    try {
        if (fence_ && fences_on()) fence_(ctx_);
        add(bucket_, std::chrono::duration<double>(Clock::now() - t0_).count());
    } catch (...) {  // a destructor must not throw; a failed fence leaves this bucket out
    }
}

}  // namespace kvscope::prof
