#pragma once
// Independent per-head work of a policy's after_prefill on a shared host thread pool. SnapKV's
// window votes and top-k over a 32k prompt cost ~8 ms per KV head on one thread, 256 heads for
// the Llama-3 8B shape: ~3.4 s after the prompt's forward (bench/RESULTS.md, seventh run). Each
// task writes only its own result slot, so the plan is the same whatever the schedule; the serial
// parts (plan entries, notes, explanations) stay with the caller.
#include <cstdint>
#include <functional>

namespace kvscope {

// Calls f(i) for every i in [0, n), in parallel when n * work_per_task (multiply-adds, roughly)
// is large, inline otherwise. Rethrows the exception of the lowest failing i after all have run.
void for_each_head_task(int64_t n, int64_t work_per_task, const std::function<void(int64_t)>& f);

}  // namespace kvscope
