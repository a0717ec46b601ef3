#include "views/head_states.h"

#include <algorithm>
#include <limits>

namespace kvscope::views {

namespace {

CacheChange as_change(trace::TokenStateCode code) {
    CacheChange c;  // step, into and weight stay unknown: the colour needs state and bits only
    c.state = trace::code_state(code);
    c.bits = trace::code_bits(code);
    return c;
}

}  // namespace

HeadStates::HeadStates(int32_t layer, int32_t head, int64_t n_prompt)
    : layer_(layer),
      head_(head),
      n_prompt_(std::max<int64_t>(n_prompt, 0)),
      base_(
          std::make_unique_for_overwrite<trace::TokenStateCode[]>(static_cast<size_t>(n_prompt_))) {
}

HeadStates::HeadStates(int32_t layer, int32_t head,
                       std::span<const trace::TokenStateCode> prompt_codes)
    : HeadStates(layer, head, std::ssize(prompt_codes)) {
    std::copy(prompt_codes.begin(), prompt_codes.end(), base_.get());
}

int32_t HeadStates::first_change(int64_t token) const {
    const size_t word = static_cast<size_t>(token) / 64;
    if (token < 0 || word >= touched_.size() ||
        !((touched_[word] >> (static_cast<uint64_t>(token) % 64)) & 1))
        return -1;
    const auto it = chain_.find(static_cast<int32_t>(token));
    return it == chain_.end() ? -1 : it->second.first;
}

trace::TokenStateCode HeadStates::code_at(int64_t token, int64_t step) const {
    trace::TokenStateCode code = token >= 0 && token < n_prompt_
                                     ? base_[static_cast<size_t>(token)]
                                     : trace::token_state_code(TokenCacheState::kAbsent, 0);
    for (int32_t i = first_change(token); i >= 0;) {
        const Change& c = changes_[static_cast<size_t>(i)];
        if (c.step > step) break;
        code = c.code;
        i = c.next;
    }
    return code;
}

void HeadStates::apply_step(std::span<const trace::EventRecord> events) {
    const int32_t step = static_cast<int32_t>(steps());
    step_begin_.push_back(static_cast<int32_t>(changes_.size()));
    for (const trace::EventRecord& ev : events) {
        if (ev.position < 0) continue;
        const trace::TokenStateCode before =
            code_at(ev.position, std::numeric_limits<int64_t>::max());
        const trace::TokenStateCode after = trace::next_state_code(before, ev);
        if (after == before) continue;  // nothing to redraw
        const int32_t index = static_cast<int32_t>(changes_.size());
        changes_.push_back(Change{step, ev.position, -1, after});
        const size_t word = static_cast<size_t>(ev.position) / 64;
        if (word >= touched_.size()) touched_.resize(word + 1, 0);
        touched_[word] |= uint64_t{1} << (static_cast<uint64_t>(ev.position) % 64);
        auto [it, fresh] = chain_.try_emplace(ev.position, index, index);
        if (!fresh) {
            changes_[static_cast<size_t>(it->second.second)].next = index;
            it->second.second = index;
        }
    }
}

CacheChange HeadStates::state_at(int64_t token, int64_t step) const {
    if (step < 0) return CacheChange{};
    return as_change(code_at(token, step));
}

std::pair<int32_t, int32_t> HeadStates::step_changes(int64_t step) const {
    if (step < 1 || step >= steps()) return {0, 0};
    const size_t s = static_cast<size_t>(step - 1);
    return {step_begin_[s], s + 1 < step_begin_.size() ? step_begin_[s + 1]
                                                       : static_cast<int32_t>(changes_.size())};
}

size_t HeadStates::memory_bytes() const {
    return sizeof(*this) + static_cast<size_t>(n_prompt_) + changes_.capacity() * sizeof(Change) +
           step_begin_.capacity() * sizeof(int32_t) + touched_.capacity() * sizeof(uint64_t) +
           chain_.size() * (sizeof(int32_t) * 3 + 2 * sizeof(void*));
}

}  // namespace kvscope::views
