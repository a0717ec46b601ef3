// TraceReader: events by step range or by (layer, head), and per-token cache state
// reconstructed from events.
//
// Events are stored step-major and grouped by (layer, head) within a step; /events/lh_begin and
// /events/lh_count [S,L,H] give each group's rows, so the events of one (layer, head) over a step
// range are a list of row ranges read in one HDF5 call per column.
#include <algorithm>
#include <limits>
#include <stdexcept>

#include "traces/trace_reader_internal.h"

namespace kvscope::trace {

const char* token_cache_state_name(TokenCacheState s) {
    switch (s) {
        case TokenCacheState::kAbsent:
            return "absent";
        case TokenCacheState::kHeld:
            return "held";
        case TokenCacheState::kQuantized:
            return "quantized";
        case TokenCacheState::kDemoted:
            return "demoted";
        case TokenCacheState::kMerged:
            return "merged";
        case TokenCacheState::kEvicted:
            return "evicted";
    }
    return "unknown";
}

std::vector<EventRecord> with_prompt_appends(std::span<const EventRecord> step0, int32_t layer,
                                             int32_t head, int64_t n_prompt) {
    std::vector<uint8_t> recorded(static_cast<size_t>(std::max<int64_t>(n_prompt, 0)), 0);
    for (const EventRecord& e : step0)
        if (e.op == CacheOp::kAppend && e.position >= 0 && e.position < n_prompt)
            recorded[static_cast<size_t>(e.position)] = 1;
    std::vector<EventRecord> out;
    out.reserve(recorded.size() + step0.size());
    for (int64_t p = 0; p < n_prompt; ++p) {
        if (recorded[static_cast<size_t>(p)]) continue;
        EventRecord a;
        a.step = 0;
        a.layer = layer;
        a.head = head;
        a.op = CacheOp::kAppend;
        a.position = static_cast<int32_t>(p);
        a.destination = a.slot = static_cast<int32_t>(p);
        a.weight = a.similarity = a.threshold = std::numeric_limits<float>::quiet_NaN();
        a.bits = 16;
        out.push_back(a);
    }
    out.insert(out.end(), step0.begin(), step0.end());
    return out;
}

void apply_events(const std::vector<EventRecord>& events, int64_t up_to_step,
                  std::vector<TokenState>& states) {
    const auto n = static_cast<int64_t>(states.size());
    auto held = [](const TokenState& t) {
        return t.state == TokenCacheState::kHeld || t.state == TokenCacheState::kQuantized ||
               t.state == TokenCacheState::kDemoted;
    };
    for (const EventRecord& e : events) {
        if (e.step > up_to_step) continue;
        if (e.position < 0 || e.position >= n) continue;
        TokenState& t = states[static_cast<size_t>(e.position)];
        // Evict, quantize and demote act on an entry the cache holds; on a token that is absent,
        // merged or evicted they change nothing (SCHEMA.md, Events: the rule /summary and the
        // Studio's HeadHistory follow too).
        const bool needs_held =
            e.op == CacheOp::kEvict || e.op == CacheOp::kQuantize || e.op == CacheOp::kDemote;
        if (needs_held && !held(t)) continue;
        t.changed_step = e.step;
        switch (e.op) {
            case CacheOp::kAppend:
                t.state = TokenCacheState::kHeld;
                t.bits = e.bits > 0 ? e.bits : int8_t{16};
                t.destination = e.destination;
                t.weight = 0.0f;
                break;
            case CacheOp::kEvict:
                t.state = TokenCacheState::kEvicted;
                t.bits = 0;
                break;
            case CacheOp::kMerge:
                t.state = TokenCacheState::kMerged;
                t.bits = 0;
                t.destination = e.destination;
                t.weight = e.weight;
                t.merged_into = e.dst_position;
                break;
            case CacheOp::kQuantize:
            case CacheOp::kDemote:
                t.state = e.op == CacheOp::kQuantize ? TokenCacheState::kQuantized
                                                     : TokenCacheState::kDemoted;
                if (e.bits > 0) t.bits = e.bits;
                break;
        }
    }
}

namespace {
template <typename T>
std::vector<T> read_column(const TraceReader::Impl& m, const char* name,
                           const std::vector<hsize_t>& begins, const std::vector<hsize_t>& counts,
                           size_t total) {
    std::vector<T> out(total);
    if (begins.size() == 1)
        h5::read_slab(m.d(name), h5::native_type<T>(), {begins[0]}, {counts[0]}, out.data());
    else
        h5::read_ranges(m.d(name), h5::native_type<T>(), begins, counts, out.data());
    return out;
}
}  // namespace

std::vector<EventRecord> TraceReader::Impl::read_events(const std::vector<hsize_t>& begins,
                                                        const std::vector<hsize_t>& counts,
                                                        int32_t layer, int32_t head,
                                                        bool scores) const {
    size_t total = 0;
    for (size_t i = 0; i < begins.size(); ++i) {
        if (begins[i] + counts[i] > static_cast<hsize_t>(n_events))
            fail("/events/lh_begin or /steps/event_begin points past the recorded events");
        total += counts[i];
    }
    std::vector<EventRecord> out(total);
    if (total == 0) return out;
    // Every chunk a range touches is decompressed whole, so columns not needed are skipped.
    const bool known_lh = layer >= 0;
    auto step = read_column<int32_t>(*this, ds::kEvStep, begins, counts, total);
    auto layers = known_lh ? std::vector<int16_t>(total, static_cast<int16_t>(layer))
                           : read_column<int16_t>(*this, ds::kEvLayer, begins, counts, total);
    auto heads = known_lh ? std::vector<int16_t>(total, static_cast<int16_t>(head))
                          : read_column<int16_t>(*this, ds::kEvHead, begins, counts, total);
    auto op = read_column<uint8_t>(*this, ds::kEvOp, begins, counts, total);
    auto pos = read_column<int32_t>(*this, ds::kEvPosition, begins, counts, total);
    auto dest = read_column<int32_t>(*this, ds::kEvDestination, begins, counts, total);
    auto weight = read_column<float>(*this, ds::kEvWeight, begins, counts, total);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    auto sim = scores ? read_column<float>(*this, ds::kEvSimilarity, begins, counts, total)
                      : std::vector<float>(total, nan);
    auto thr = scores ? read_column<float>(*this, ds::kEvThreshold, begins, counts, total)
                      : std::vector<float>(total, nan);
    auto bits = read_column<int8_t>(*this, ds::kEvBits, begins, counts, total);
    auto dst_pos = read_column<int32_t>(*this, ds::kEvDstPosition, begins, counts, total);
    auto slot = scores ? read_column<int32_t>(*this, ds::kEvSlot, begins, counts, total)
                       : std::vector<int32_t>(total, -1);
    auto part = scores ? read_column<uint8_t>(*this, ds::kEvPart, begins, counts, total)
                       : std::vector<uint8_t>(total, 2);
    // Version 1 stored the slot in destination on every row; version 2 keeps it for append and
    // merge only (trace_schema.h).
    const bool v1_destination = schema_version < 2;
    for (size_t i = 0; i < total; ++i) {
        if (op[i] >= kNumCacheOps)
            fail("/events/op holds " + std::to_string(op[i]) + ", not a cache op");
        if (v1_destination && op[i] != static_cast<uint8_t>(CacheOp::kAppend) &&
            op[i] != static_cast<uint8_t>(CacheOp::kMerge))
            dest[i] = -1;
        out[i] = {step[i], layers[i], heads[i],  static_cast<CacheOp>(op[i]),
                  pos[i],  dest[i],   weight[i], sim[i],
                  thr[i],  bits[i],   slot[i],   dst_pos[i],
                  part[i]};
    }
    return out;
}

std::vector<EventRecord> TraceReader::Impl::lh_events(int32_t layer, int32_t head,
                                                      int64_t step_begin, int64_t step_end,
                                                      bool scores) const {
    if (step_end <= step_begin) return {};
    h5::Dims start{static_cast<hsize_t>(step_begin), static_cast<hsize_t>(layer),
                   static_cast<hsize_t>(head)};
    h5::Dims count{static_cast<hsize_t>(step_end - step_begin), 1, 1};
    auto b = read<int64_t>(ds::kEvLhBegin, start, count);
    auto c = read<int32_t>(ds::kEvLhCount, start, count);
    std::vector<hsize_t> begins, counts;
    for (size_t i = 0; i < b.size(); ++i) {
        if (c[i] <= 0) continue;
        if (b[i] < 0) fail("/events/lh_begin holds a negative row");
        auto row = static_cast<hsize_t>(b[i]);
        if (!begins.empty() && begins.back() + counts.back() == row)
            counts.back() += static_cast<hsize_t>(c[i]);  // adjacent groups: one range
        else {
            begins.push_back(row);
            counts.push_back(static_cast<hsize_t>(c[i]));
        }
    }
    return read_events(begins, counts, layer, head, scores);
}

std::vector<EventRecord> TraceReader::events(int64_t step_begin, int64_t step_end) const {
    return guarded(*impl_, [&] {
        const Impl& m = *impl_;
        m.check_steps(step_begin, step_end);
        if (step_end == step_begin) return std::vector<EventRecord>{};
        auto first = m.read_one<int64_t>(ds::kStepEventBegin, {static_cast<hsize_t>(step_begin)});
        auto last_b =
            m.read_one<int64_t>(ds::kStepEventBegin, {static_cast<hsize_t>(step_end - 1)});
        auto last_c =
            m.read_one<int64_t>(ds::kStepEventCount, {static_cast<hsize_t>(step_end - 1)});
        if (first < 0 || last_b + last_c < first) m.fail("/steps/event_begin is not increasing");
        return m.read_events({static_cast<hsize_t>(first)},
                             {static_cast<hsize_t>(last_b + last_c - first)});
    });
}

std::vector<EventRecord> TraceReader::event_rows(int64_t row_begin, int64_t row_end) const {
    return guarded(*impl_, [&] {
        if (row_begin < 0 || row_end < row_begin || row_end > impl_->n_events)
            throw std::out_of_range("trace event rows [" + std::to_string(row_begin) + ", " +
                                    std::to_string(row_end) + ") out of range");
        return impl_->read_events({static_cast<hsize_t>(row_begin)},
                                  {static_cast<hsize_t>(row_end - row_begin)});
    });
}

std::vector<EventRecord> TraceReader::events(int32_t layer, int32_t head, int64_t step_begin,
                                             int64_t step_end) const {
    return guarded(*impl_, [&] {
        impl_->check_layer_head(layer, head);
        impl_->check_steps(step_begin, step_end);
        return impl_->lh_events(layer, head, step_begin, step_end);
    });
}

std::vector<TokenState> TraceReader::token_states(int32_t layer, int32_t head, int64_t step) const {
    return guarded(*impl_, [&] {
        Impl& m = *impl_;
        m.check_layer_head(layer, head);
        m.check_steps(step, step + 1);
        const int64_t key = static_cast<int64_t>(layer) * m.sizes.H + head;
        auto it = std::find_if(m.lh_cache.begin(), m.lh_cache.end(),
                               [&](const auto& e) { return e.first == key; });
        if (it == m.lh_cache.end()) {
            m.lh_cache.emplace_front(key, Impl::LhEvents{});
            if (m.lh_cache.size() > Impl::kLhCacheSize) m.lh_cache.pop_back();
        } else {
            m.lh_cache.splice(m.lh_cache.begin(), m.lh_cache, it);
        }
        Impl::LhEvents& cached = m.lh_cache.front().second;
        if (cached.steps_covered < m.n_steps) {
            // Live traces grow: read only the steps not cached yet.
            auto more = m.lh_events(layer, head, cached.steps_covered, m.n_steps, /*scores=*/false);
            cached.events.insert(cached.events.end(), more.begin(), more.end());
            cached.steps_covered = m.n_steps;
        }
        std::vector<TokenState> states(static_cast<size_t>(m.sizes.P + step));
        // The prompt is held before step 0's events (see with_prompt_appends).
        for (int64_t p = 0; p < m.sizes.P; ++p)
            states[static_cast<size_t>(p)] = {
                TokenCacheState::kHeld, 16, static_cast<int32_t>(p), 0.0f, 0, -1};
        apply_events(cached.events, step, states);
        return states;
    });
}

}  // namespace kvscope::trace
