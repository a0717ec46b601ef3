#pragma once
// Where a step's time goes, per op (issue 9): with KVSCOPE_PROFILE=1 the engine and the backends
// add the wall time of each op to a named bucket ("decode.matmul 4096x4096", "decode.host.cache"),
// and the totals are printed to stderr when the program exits: calls, total ms, ms per call and
// ms per step of the phase. The CUDA backend waits for its stream before and after each op while
// profiling, so an op's bucket holds its device time (plus one synchronisation, ~10 us, which
// the report measures and prints as "sync (empty)"), and host buckets hold host work alone.
// KVSCOPE_PROFILE=host measures the same buckets without waiting around each op: an op's bucket
// then holds the host's cost of enqueueing it, and the CUDA backend's waits for the device
// appear as "sync.wait". A step whose buckets other than the waits add up to its wall time is
// bound by the host (launches, bookkeeping), not by the device.
// Off (the default), every call here is one branch on a cached flag: nothing is measured.
#include <chrono>
#include <string>

namespace kvscope::prof {

bool enabled();    // KVSCOPE_PROFILE=1 or host, read once
bool fences_on();  // KVSCOPE_PROFILE=1: Scope calls its fence (host mode: it does not)

// The phase prefixed to every bucket until the next call: "prefill" or "decode" (the engine
// sets it). Counts a step of the phase for the per-step column.
void begin_phase(const char* phase);

void add(const std::string& bucket, double seconds);  // under the current phase

using Clock = std::chrono::steady_clock;

// Adds the time from construction to destruction to `bucket` (when enabled). `fence` (may be
// null) is called at both ends: the CUDA backend passes its stream synchronisation.
class Scope {
  public:
    using Fence = void (*)(void*);
    explicit Scope(const char* bucket, Fence fence = nullptr, void* ctx = nullptr);
    Scope(std::string bucket, Fence fence, void* ctx);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    // Ends this bucket and starts `next` (sub-steps of one op).
    void next(const char* bucket);

  private:
    void start();
    std::string bucket_;
    Fence fence_;
    void* ctx_;
    bool on_;
    Clock::time_point t0_;
};

}  // namespace kvscope::prof
