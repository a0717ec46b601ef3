#pragma once
// A cache operation (core/cache/cache_event.h) as a trace's /events row (traces/trace_schema.h):
// the one conversion used by the recorder (app/recorder/run_recorder.cpp) and by the Studio's
// what-if preview (views/preview_trace_model.cpp), so a preview replays exactly like a recording.
#include <cstdint>

#include "core/cache/cache_event.h"
#include "traces/trace_schema.h"

namespace kvscope::trace {

// The stored op is the cache's enum value (trace_schema.h: "the stored value is the enum value");
// the two enums are separate because the trace format does not depend on core/. These checks
// stop a build where their values drift apart; the switch in trace_op (-Wswitch, warnings are
// errors) stops one where the cache gains an op the trace does not have.
static_assert(static_cast<int>(kvscope::CacheOp::kAppend) == static_cast<int>(CacheOp::kAppend));
static_assert(static_cast<int>(kvscope::CacheOp::kEvict) == static_cast<int>(CacheOp::kEvict));
static_assert(static_cast<int>(kvscope::CacheOp::kMerge) == static_cast<int>(CacheOp::kMerge));
static_assert(static_cast<int>(kvscope::CacheOp::kQuantize) ==
              static_cast<int>(CacheOp::kQuantize));
static_assert(static_cast<int>(kvscope::CacheOp::kDemote) == static_cast<int>(CacheOp::kDemote));
static_assert(static_cast<int>(CacheOp::kDemote) + 1 == kNumCacheOps);
// /events/part stores KVPart's value: 0 keys, 1 values, 2 both.
static_assert(static_cast<int>(kvscope::KVPart::kKeys) == 0 &&
              static_cast<int>(kvscope::KVPart::kValues) == 1 &&
              static_cast<int>(kvscope::KVPart::kBoth) == 2);

inline CacheOp trace_op(kvscope::CacheOp op) {
    switch (op) {
        case kvscope::CacheOp::kAppend:
            return CacheOp::kAppend;
        case kvscope::CacheOp::kEvict:
            return CacheOp::kEvict;
        case kvscope::CacheOp::kMerge:
            return CacheOp::kMerge;
        case kvscope::CacheOp::kQuantize:
            return CacheOp::kQuantize;
        case kvscope::CacheOp::kDemote:
            return CacheOp::kDemote;
    }
    return CacheOp::kAppend;
}

// The row for `e` (step: left to the writer, which stamps the step being committed; set it
// when the row is used outside a writer). destination (schema version 2) = the merge's
// destination slot after the op, the append's slot, else -1.
inline EventRecord event_record(const kvscope::CacheEvent& e, int32_t step = 0) {
    EventRecord r;
    r.step = step;
    r.layer = static_cast<decltype(r.layer)>(e.layer);
    r.head = static_cast<decltype(r.head)>(e.head);
    r.op = trace_op(e.op);
    r.position = static_cast<int32_t>(e.position);
    r.destination = static_cast<int32_t>(e.op == kvscope::CacheOp::kMerge    ? e.dst_slot
                                         : e.op == kvscope::CacheOp::kAppend ? e.slot
                                                                             : -1);
    r.weight = e.weight;
    r.similarity = e.similarity;
    r.threshold = e.threshold;
    r.bits = static_cast<int8_t>(e.bits);
    r.slot = static_cast<int32_t>(e.slot);
    r.dst_position = static_cast<int32_t>(e.dst_position);
    r.part = static_cast<uint8_t>(e.part);
    return r;
}

}  // namespace kvscope::trace
