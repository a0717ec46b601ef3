// HeadCounter: the per-step head counts of /summary/* (see head_counts.h for the rules).
#include "traces/head_counts.h"

#include <algorithm>

namespace kvscope::trace {

HeadCounter::HeadCounter(int32_t n_layers, int32_t n_heads, int64_t n_prompt)
    : L_(std::max(n_layers, 0)), H_(std::max(n_heads, 0)), P_(std::max<int64_t>(n_prompt, 0)) {
    const size_t lh = static_cast<size_t>(L_) * static_cast<size_t>(H_);
    heads_.resize(lh);
    row_.appended.assign(lh, 0);
    row_.held.assign(lh, 0);
    row_.held_bits.assign(lh, 0);
    row_.merged.assign(lh, 0);
    row_.evicted.assign(lh, 0);
}

void HeadCounter::hold(size_t lh, int64_t position, int8_t bits) {
    std::vector<int8_t>& tok = heads_[lh].token;
    int8_t& t = tok[static_cast<size_t>(position)];
    if (t > 0) {
        --row_.held[lh];
        row_.held_bits[lh] -= t;
    } else if (t == 0) {
        ++row_.appended[lh];
    }
    t = bits;
    ++row_.held[lh];
    row_.held_bits[lh] += bits;
}

void HeadCounter::apply_head(size_t lh, std::span<const EventRecord> events, int64_t limit) {
    std::vector<int8_t>& tok = heads_[lh].token;
    auto valid = [&](int32_t p) { return p >= 0 && p < limit; };
    auto ensure = [&](int64_t p) {
        if (p >= std::ssize(tok)) tok.resize(static_cast<size_t>(p) + 1, 0);
    };
    for (size_t i = 0; i < events.size();) {
        const EventRecord& ev = events[i];
        if (!valid(ev.position)) {
            ++i;
            continue;
        }
        if (ev.op == CacheOp::kMerge) {
            // A run of merges: every source leaves as it was held before the run (a source named
            // twice is dropped twice, as in HeadHistory), then each becomes "merged".
            size_t j = i;
            while (j < events.size() && events[j].op == CacheOp::kMerge) ++j;
            for (size_t k = i; k < j; ++k) {
                if (!valid(events[k].position)) continue;
                ensure(events[k].position);
                const int8_t t = tok[static_cast<size_t>(events[k].position)];
                if (t > 0) {
                    --row_.held[lh];
                    row_.held_bits[lh] -= t;
                }
                ++row_.merged[lh];
            }
            for (size_t k = i; k < j; ++k) {
                if (!valid(events[k].position)) continue;
                int8_t& t = tok[static_cast<size_t>(events[k].position)];
                if (t == 0) ++row_.appended[lh];
                t = -1;
            }
            i = j;
            continue;
        }
        ensure(ev.position);
        int8_t& t = tok[static_cast<size_t>(ev.position)];
        switch (ev.op) {
            case CacheOp::kAppend:
                hold(lh, ev.position, ev.bits > 0 ? ev.bits : int8_t{16});
                break;
            case CacheOp::kEvict:
                if (t > 0) {
                    --row_.held[lh];
                    row_.held_bits[lh] -= t;
                    ++row_.evicted[lh];
                    t = -1;
                }
                break;
            case CacheOp::kQuantize:
            case CacheOp::kDemote:
                if (t > 0) {
                    const int8_t bits = ev.bits > 0 ? ev.bits : t;
                    row_.held_bits[lh] += bits - t;
                    t = bits;
                }
                break;
            default:
                break;
        }
        ++i;
    }
}

void HeadCounter::apply_step(std::span<const EventRecord> events) {
    const int64_t limit = P_ + steps_ + 1;
    const size_t n_lh = heads_.size();
    // Group boundaries: the writer hands the step's events sorted by (layer, head).
    std::vector<std::span<const EventRecord>> groups(n_lh);
    for (size_t i = 0; i < events.size();) {
        size_t j = i;
        while (j < events.size() && events[j].layer == events[i].layer &&
               events[j].head == events[i].head)
            ++j;
        const EventRecord& e = events[i];
        if (e.layer >= 0 && e.layer < L_ && e.head >= 0 && e.head < H_) {
            const size_t lh = static_cast<size_t>(e.layer) * static_cast<size_t>(H_) +
                              static_cast<size_t>(e.head);
            if (!groups[lh].empty()) {
                // Not grouped (the writer always groups): group a copy, keeping recorded order.
                std::vector<EventRecord> sorted(events.begin(), events.end());
                std::stable_sort(
                    sorted.begin(), sorted.end(), [](const EventRecord& a, const EventRecord& b) {
                        return a.layer != b.layer ? a.layer < b.layer : a.head < b.head;
                    });
                apply_step(sorted);
                return;
            }
            groups[lh] = events.subspan(i, j - i);
        }
        i = j;
    }
    for (size_t lh = 0; lh < n_lh; ++lh) {
        if (steps_ == 0) {
            // The prompt is in the cache before step 0's events unless they append it themselves.
            std::vector<int8_t>& tok = heads_[lh].token;
            tok.assign(static_cast<size_t>(P_), 0);
            std::vector<uint8_t> recorded(static_cast<size_t>(P_), 0);
            for (const EventRecord& e : groups[lh])
                if (e.op == CacheOp::kAppend && e.position >= 0 && e.position < P_)
                    recorded[static_cast<size_t>(e.position)] = 1;
            for (int64_t p = 0; p < P_; ++p)
                if (!recorded[static_cast<size_t>(p)]) hold(lh, p, 16);
        }
        apply_head(lh, groups[lh], limit);
    }
    ++steps_;
}

}  // namespace kvscope::trace
