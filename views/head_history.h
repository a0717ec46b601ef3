#pragma once
// HeadHistory: the life of every token position in one (layer, head) cache over a whole run,
// rebuilt from the trace's cache events (traces/trace_schema.h, /events) one step at a time, so
// a trace that is still being written can be extended without re-reading what came before.
//
// Layout (tokens T, changes C, steps S):
//   changes_ [C]   every state change, in event order; per token a singly linked list
//                  (first_[t] -> next -> ...), in step order because steps are applied in order;
//                  the changes of step s are the range [step_begin_[s], step_begin_[s+1])
//   first_/last_   [T] index of the token's first / last change, -1 when none yet
//   per-step       [S] counts after each step: appended, held, Σ bits held, merged, evicted
// A token has ~2 changes (append, then evict / merge / quantise), so memory is ~50 bytes/token.
//
// Merge destinations: the event's dst_position when recorded; otherwise (traces without it) the
// destination *slot* is resolved to a position assuming slots are ordered by position (append at
// the end, removals keep the order), after the sources of a run of consecutive merge events are
// removed. Anything that does not resolve is left unknown (-1).
#include <cmath>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "traces/trace_reader.h"
#include "traces/trace_schema.h"

namespace kvscope::views {

using trace::TokenCacheState;

// One state change of one token (also the "state at a step" answer).
struct CacheChange {
    int32_t step = -1;             // step whose events made the change
    int32_t next = -1;             // next change of the same token, -1 = last
    int32_t into = -1;             // kMerged: position merged into, -1 unknown
    int32_t token = -1;            // the token that changed
    float weight = std::nanf("");  // kMerged: weight of the source
    TokenCacheState state = TokenCacheState::kAbsent;
    int8_t bits = 0;  // precision while held, 0 when not held
};

// True for the states in which the token still occupies a slot.
inline bool is_held(TokenCacheState s) {
    return s == TokenCacheState::kHeld || s == TokenCacheState::kQuantized ||
           s == TokenCacheState::kDemoted;
}

class HeadHistory {
  public:
    HeadHistory(int32_t layer, int32_t head) : layer_(layer), head_(head) {}

    // Applies the events of step `steps()` (all of them for this (layer, head), recorded order).
    // implicit_prompt > 0 (step 0 of a trace whose prefill appends are not recorded): first
    // appends, at 16 bits, every position below it that `events` do not append themselves, as
    // apply_step(trace::with_prompt_appends(events, ..., implicit_prompt)) does, without
    // building those events.
    void apply_step(std::span<const trace::EventRecord> events, int64_t implicit_prompt = 0);

    int32_t layer() const { return layer_; }
    int32_t head() const { return head_; }
    int64_t steps() const { return static_cast<int64_t>(held_.size()); }
    int64_t tokens() const { return static_cast<int64_t>(first_.size()); }

    // State of `token` after `step`; kAbsent before its append (or for an unknown token).
    // `step` beyond the last applied step answers for the last one.
    CacheChange state_at(int64_t token, int64_t step) const;
    // The token's changes in step order (empty for an unknown token).
    std::vector<CacheChange> changes(int64_t token) const;
    // Index-walk form for hot loops: first change index (-1 none), then changes()[i].next.
    int32_t first_change(int64_t token) const {
        return token >= 0 && token < tokens() ? first_[static_cast<size_t>(token)] : -1;
    }
    const CacheChange& change(int32_t index) const { return changes_[static_cast<size_t>(index)]; }
    // Indices [first, second) into change() of the changes made by `step` (empty out of range):
    // what a view showing step a must redraw to show step b.
    std::pair<int32_t, int32_t> step_changes(int64_t step) const {
        if (step < 0 || step >= steps()) return {0, 0};
        const size_t s = static_cast<size_t>(step);
        return {step_begin_[s], s + 1 < step_begin_.size() ? step_begin_[s + 1]
                                                           : static_cast<int32_t>(changes_.size())};
    }

    // Counts after `step` (clamped to the applied range; 0 before any step).
    int64_t appended(int64_t step) const { return at(appended_, step); }
    int64_t held(int64_t step) const { return at(held_, step); }
    int64_t held_bits(int64_t step) const { return at(held_bits_, step); }
    int64_t merged(int64_t step) const { return at(merged_, step); }
    int64_t evicted(int64_t step) const { return at(evicted_, step); }

    size_t memory_bytes() const;
    // Room for `changes` more changes (e.g. every event of the steps about to be applied plus
    // the implicit prompt appends), so that applying them allocates once.
    void reserve_changes(size_t changes) { changes_.reserve(changes_.size() + changes); }
    // Drops spare capacity above a quarter of what is used (a history that will not grow soon).
    void shrink_to_fit();

  private:
    template <typename T>
    static int64_t at(const std::vector<T>& v, int64_t step) {
        if (v.empty() || step < 0) return 0;
        const size_t i = static_cast<size_t>(std::min<int64_t>(step, std::ssize(v) - 1));
        return static_cast<int64_t>(v[i]);
    }
    void ensure_token(int64_t token);
    void push_change(int64_t token, const CacheChange& c);
    // Held-slot index over positions (Fenwick tree of 0/1), for slot -> position.
    void slot_add(int64_t position, int delta);
    int64_t slot_position(int64_t slot) const;  // -1 when out of range

    int32_t layer_ = 0;
    int32_t head_ = 0;
    std::vector<int32_t> first_;
    std::vector<int32_t> last_;
    std::vector<CacheChange> changes_;
    std::vector<int32_t> step_begin_;  // [S] first change of each step
    std::vector<int32_t> fenwick_;     // 1-based, size = capacity + 1
    int64_t slots_held_ = 0;

    int64_t cur_appended_ = 0;
    int64_t cur_held_ = 0;
    int64_t cur_bits_ = 0;
    int64_t cur_merged_ = 0;
    int64_t cur_evicted_ = 0;
    std::vector<int64_t> appended_;
    std::vector<int64_t> held_;
    std::vector<int64_t> held_bits_;
    std::vector<int64_t> merged_;
    std::vector<int64_t> evicted_;
};

}  // namespace kvscope::views
