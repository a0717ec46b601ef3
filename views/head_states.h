#pragma once
// HeadStates: the state and precision of every token of one (layer, head) cache after each step,
// from the trace's record-time summary instead of a replay of every event: /summary/prompt_state
// (each prompt token after step 0, traces/token_state_code.h) plus the events of steps >= 1 (a
// decode step has a few per head). The precision view draws from it; a 128k-token head costs one
// 128 KB row read instead of replaying ~P prefill events into a HeadHistory. It answers state_at
// and step_changes as HeadHistory does, for state and bits only (no merge destinations, weights
// or per-step counts: those stay with HeadHistory and /summary's counts).
//
// Layout (prompt P, tokens T, changes C of steps >= 1):
//   base_     [P] state code after step 0
//   changes_  [C] in step order, event order within a step; per token a singly linked list
//             (first / last change in chain_, then `next`); step s's changes are the range
//             [step_begin_[s-1], step_begin_[s])
//   touched_  [T] bits: the token has a change after step 0 (most lookups stop here)
// Memory ~P bytes + 16 bytes per decode change.
#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "traces/token_state_code.h"
#include "views/head_history.h"

namespace kvscope::views {

class HeadStates {
  public:
    // prompt_codes: /summary/prompt_state[layer, head, :] (the state of the P prompt tokens after
    // step 0). The result covers step 0; apply_step adds steps 1, 2, ...
    HeadStates(int32_t layer, int32_t head, std::span<const trace::TokenStateCode> prompt_codes);
    // Room for the P codes, not initialised: fill prompt_codes() before anything else (the reader
    // writes them in place instead of into a zero-filled vector: perf showed memset ~14% of an
    // 80-layer picture; the wall time did not move beyond this machine's noise, bench/RESULTS.md).
    HeadStates(int32_t layer, int32_t head, int64_t n_prompt);
    std::span<trace::TokenStateCode> prompt_codes() {
        return {base_.get(), static_cast<size_t>(n_prompt_)};
    }

    // Applies the events of step `steps()` (>= 1) for this (layer, head), in recorded order.
    void apply_step(std::span<const trace::EventRecord> events);

    int32_t layer() const { return layer_; }
    int32_t head() const { return head_; }
    int64_t steps() const { return static_cast<int64_t>(step_begin_.size()) + 1; }

    // State and bits of `token` after `step` (HeadHistory::state_at's answer, without into /
    // weight); kAbsent before step 0 and for a generated token before its append.
    CacheChange state_at(int64_t token, int64_t step) const;
    // Indices [first, second) of the changes made by `step` (empty for step 0 and out of range).
    std::pair<int32_t, int32_t> step_changes(int64_t step) const;
    int64_t change_token(int32_t index) const { return changes_[static_cast<size_t>(index)].token; }

    size_t memory_bytes() const;

  private:
    struct Change {
        int32_t step = 0;
        int32_t token = 0;
        int32_t next = -1;
        trace::TokenStateCode code = 0;
    };
    int32_t first_change(int64_t token) const;  // -1 when the token has no change after step 0
    trace::TokenStateCode code_at(int64_t token, int64_t step) const;

    int32_t layer_ = 0;
    int32_t head_ = 0;
    int64_t n_prompt_ = 0;
    std::unique_ptr<trace::TokenStateCode[]> base_;  // [n_prompt_]
    std::vector<Change> changes_;
    std::vector<int32_t> step_begin_;  // [S-1] first change of steps 1..S-1
    std::unordered_map<int32_t, std::pair<int32_t, int32_t>> chain_;  // token -> first, last
    std::vector<uint64_t> touched_;                                   // bitset over tokens
};

}  // namespace kvscope::views
