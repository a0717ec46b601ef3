#pragma once
// HeadCounter: per (step, layer, head) counts of a cache head — tokens ever appended, tokens held,
// Σ bits over held tokens, merges, evictions — exactly as the views' HeadHistory
// (views/head_history.h) rebuilds them from /events, but kept as one byte of state per token and
// head, without the history. The writer stores the counts of every step as /summary/* [S,L,H]
// (traces/SCHEMA.md), so an overview of every (layer, head) reads L*H numbers per step instead of
// replaying every event of the trace (E ~ 2*P*L*H rows: 67 M at 32 layers x 8 heads x 128k).
//
// Rules (those of HeadHistory::apply_step): an append holds the token (bits, 16 when the event
// says 0 or less) and replaces whatever it held before; evict, quantize and demote apply only to a
// held token; a merge drops its source when held and always counts as a merge; within a run of
// consecutive merges every source is dropped first (as held before the run). "Appended" counts
// tokens that ever had a change. At step 0 every prompt position that the step's events do not
// append is appended first at 16 bits (trace::with_prompt_appends: `kvscope run` does not record
// the prefill's appends). Positions < 0 or >= P + step + 1 (outside the context of the step; the
// validator reports them) are ignored.
#include <cstdint>
#include <span>
#include <vector>

#include "traces/trace_schema.h"

namespace kvscope::trace {

// Counts of every (layer, head) after one step, [L*H] row-major (layer, head).
struct HeadCountRow {
    std::vector<int32_t> appended;
    std::vector<int32_t> held;
    std::vector<int64_t> held_bits;
    std::vector<int32_t> merged;
    std::vector<int32_t> evicted;
};

class HeadCounter {
  public:
    HeadCounter() = default;
    HeadCounter(int32_t n_layers, int32_t n_heads, int64_t n_prompt);

    // Applies the events of step `steps()`: all of that step's events, grouped by (layer, head)
    // in any group order, recorded order within a group (what the writer stores).
    void apply_step(std::span<const EventRecord> events);
    int64_t steps() const { return steps_; }
    // Counts after the last applied step.
    const HeadCountRow& row() const { return row_; }

  private:
    struct Head {
        // Per position: 0 never changed, -1 changed but not held, > 0 held at that many bits.
        std::vector<int8_t> token;
    };
    void apply_head(size_t lh, std::span<const EventRecord> events, int64_t limit);
    void hold(size_t lh, int64_t position, int8_t bits);

    int32_t L_ = 0;
    int32_t H_ = 0;
    int64_t P_ = 0;
    int64_t steps_ = 0;
    std::vector<Head> heads_;
    HeadCountRow row_;
};

}  // namespace kvscope::trace
