#include "views/head_history.h"

#include <algorithm>
#include <bit>

namespace kvscope::views {

namespace {

using trace::CacheOp;

int8_t held_bits_of(const CacheChange& c) {
    return is_held(c.state) ? c.bits : int8_t{0};
}

}  // namespace

void HeadHistory::ensure_token(int64_t token) {
    if (token < tokens()) return;
    const size_t n = static_cast<size_t>(token) + 1;
    first_.resize(n, -1);
    last_.resize(n, -1);
    const int64_t capacity = std::ssize(fenwick_) - 1;
    if (token < capacity) return;
    // Grow the Fenwick tree (doubling) and rebuild it from the held flags.
    const int64_t new_capacity = std::max<int64_t>(std::bit_ceil(static_cast<uint64_t>(n)), 1024);
    fenwick_.assign(static_cast<size_t>(new_capacity) + 1, 0);
    for (int64_t p = 0; p < tokens(); ++p) {
        const int32_t li = last_[static_cast<size_t>(p)];
        if (li >= 0 && is_held(changes_[static_cast<size_t>(li)].state)) {
            for (int64_t i = p + 1; i <= new_capacity; i += i & -i)
                ++fenwick_[static_cast<size_t>(i)];
        }
    }
}

void HeadHistory::slot_add(int64_t position, int delta) {
    const int64_t capacity = std::ssize(fenwick_) - 1;
    for (int64_t i = position + 1; i <= capacity; i += i & -i) {
        fenwick_[static_cast<size_t>(i)] += delta;
    }
    slots_held_ += delta;
}

int64_t HeadHistory::slot_position(int64_t slot) const {
    if (slot < 0 || slot >= slots_held_) return -1;
    const int64_t capacity = std::ssize(fenwick_) - 1;
    // Descend the tree for the smallest position whose prefix count is slot + 1.
    int64_t pos = 0;
    int64_t remaining = slot + 1;
    for (int64_t step = std::bit_floor(static_cast<uint64_t>(capacity)); step > 0; step >>= 1) {
        const int64_t next = pos + step;
        if (next <= capacity && fenwick_[static_cast<size_t>(next)] < remaining) {
            pos = next;
            remaining -= fenwick_[static_cast<size_t>(next)];
        }
    }
    return pos;  // 1-based index pos + 1 holds it, i.e. position pos
}

void HeadHistory::push_change(int64_t token, const CacheChange& c) {
    const int32_t index = static_cast<int32_t>(changes_.size());
    changes_.push_back(c);
    changes_.back().next = -1;
    changes_.back().token = static_cast<int32_t>(token);
    const size_t t = static_cast<size_t>(token);
    if (last_[t] >= 0) {
        changes_[static_cast<size_t>(last_[t])].next = index;
    } else {
        first_[t] = index;
        ++cur_appended_;
    }
    last_[t] = index;
}

void HeadHistory::apply_step(std::span<const trace::EventRecord> events, int64_t implicit_prompt) {
    const int32_t step = static_cast<int32_t>(steps());
    step_begin_.push_back(static_cast<int32_t>(changes_.size()));
    // Size once for the whole step (the prefill's is ~2 changes per prompt token): growing per
    // change cost more in page faults and copies than the replay itself (perf, 128k tokens).
    int64_t max_position = -1;
    for (const trace::EventRecord& e : events)
        max_position = std::max<int64_t>(max_position, e.position);
    max_position = std::max(max_position, implicit_prompt - 1);
    if (max_position >= 0) ensure_token(max_position);
    const size_t more = events.size() + static_cast<size_t>(std::max<int64_t>(implicit_prompt, 0));
    if (changes_.capacity() < changes_.size() + more)
        changes_.reserve(std::max(changes_.size() + more, changes_.capacity() * 3 / 2));
    auto current = [&](int64_t token) -> CacheChange {
        const int32_t li = last_[static_cast<size_t>(token)];
        return li >= 0 ? changes_[static_cast<size_t>(li)] : CacheChange{};
    };
    auto drop = [&](int64_t token, const CacheChange& before) {
        if (!is_held(before.state)) return;
        slot_add(token, -1);
        --cur_held_;
        cur_bits_ -= held_bits_of(before);
    };

    if (implicit_prompt > 0) {
        std::vector<uint8_t> recorded(static_cast<size_t>(implicit_prompt), 0);
        for (const trace::EventRecord& e : events)
            if (e.op == CacheOp::kAppend && e.position >= 0 && e.position < implicit_prompt)
                recorded[static_cast<size_t>(e.position)] = 1;
        for (int64_t p = 0; p < implicit_prompt; ++p) {
            if (recorded[static_cast<size_t>(p)]) continue;
            // The append branch below, for an event (append, p, 16 bits).
            CacheChange c;
            c.step = step;
            c.state = TokenCacheState::kHeld;
            c.bits = 16;
            drop(p, current(p));
            slot_add(p, +1);
            ++cur_held_;
            cur_bits_ += c.bits;
            push_change(p, c);
        }
    }
    for (size_t i = 0; i < events.size();) {
        const trace::EventRecord& ev = events[i];
        if (ev.position < 0) {
            ++i;
            continue;
        }
        if (ev.op == CacheOp::kMerge) {
            // A run of merges: remove every source first, then resolve destination slots.
            size_t j = i;
            while (j < events.size() && events[j].op == CacheOp::kMerge) ++j;
            std::vector<CacheChange> pending;
            for (size_t k = i; k < j; ++k) {
                if (events[k].position < 0) continue;
                ensure_token(events[k].position);
                const CacheChange before = current(events[k].position);
                drop(events[k].position, before);
                ++cur_merged_;
            }
            for (size_t k = i; k < j; ++k) {
                if (events[k].position < 0) continue;
                CacheChange c;
                c.step = step;
                c.state = TokenCacheState::kMerged;
                c.weight = events[k].weight;
                // Prefer the recorded destination position; older traces only have the slot.
                const int64_t into = events[k].dst_position >= 0
                                         ? events[k].dst_position
                                         : slot_position(events[k].destination);
                c.into = into >= 0 && into != events[k].position ? static_cast<int32_t>(into) : -1;
                push_change(events[k].position, c);
            }
            i = j;
            continue;
        }
        ensure_token(ev.position);
        const CacheChange before = current(ev.position);
        CacheChange c;
        c.step = step;
        switch (ev.op) {
            case CacheOp::kAppend:
                c.state = TokenCacheState::kHeld;
                c.bits = ev.bits > 0 ? ev.bits : int8_t{16};
                drop(ev.position, before);
                slot_add(ev.position, +1);
                ++cur_held_;
                cur_bits_ += c.bits;
                break;
            case CacheOp::kEvict:
                if (!is_held(before.state)) {
                    ++i;
                    continue;
                }
                c.state = TokenCacheState::kEvicted;
                drop(ev.position, before);
                ++cur_evicted_;
                break;
            case CacheOp::kQuantize:
            case CacheOp::kDemote:
                if (!is_held(before.state)) {
                    ++i;
                    continue;
                }
                c.state = ev.op == CacheOp::kQuantize ? TokenCacheState::kQuantized
                                                      : TokenCacheState::kDemoted;
                c.bits = ev.bits > 0 ? ev.bits : before.bits;
                cur_bits_ += c.bits - before.bits;
                break;
            default:
                ++i;
                continue;
        }
        push_change(ev.position, c);
        ++i;
    }
    appended_.push_back(cur_appended_);
    held_.push_back(cur_held_);
    held_bits_.push_back(cur_bits_);
    merged_.push_back(cur_merged_);
    evicted_.push_back(cur_evicted_);
}

CacheChange HeadHistory::state_at(int64_t token, int64_t step) const {
    CacheChange result;
    for (int32_t i = first_change(token); i >= 0;) {
        const CacheChange& c = changes_[static_cast<size_t>(i)];
        if (c.step > step) break;
        result = c;
        i = c.next;
    }
    result.next = -1;
    return result;
}

std::vector<CacheChange> HeadHistory::changes(int64_t token) const {
    std::vector<CacheChange> out;
    for (int32_t i = first_change(token); i >= 0; i = changes_[static_cast<size_t>(i)].next) {
        out.push_back(changes_[static_cast<size_t>(i)]);
    }
    return out;
}

void HeadHistory::shrink_to_fit() {
    // Each shrink is a copy into fresh pages: only worth it for real slack.
    auto shrink = [](auto& v) {
        if (v.capacity() > v.size() + v.size() / 4) v.shrink_to_fit();
    };
    shrink(changes_);
    shrink(first_);
    shrink(last_);
}

size_t HeadHistory::memory_bytes() const {
    return sizeof(*this) + changes_.capacity() * sizeof(CacheChange) +
           (first_.capacity() + last_.capacity() + fenwick_.capacity() + step_begin_.capacity()) *
               sizeof(int32_t) +
           (appended_.capacity() + held_.capacity() + held_bits_.capacity() + merged_.capacity() +
            evicted_.capacity()) *
               sizeof(int64_t);
}

}  // namespace kvscope::views
