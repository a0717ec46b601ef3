#pragma once
// STATUS: stable (additions only from here on)
// What the KV cache reports to its observers (trace recorder, probes, tests). One event per token
// and operation: a merge of 3 sources into one slot is 3 merge events; a keep() that drops 5 slots
// is 5 evict events. Events are emitted synchronously, after the operation has been applied.
#include <cstdint>
#include <functional>
#include <limits>

namespace kvscope {

enum class CacheOp : uint8_t { kAppend, kEvict, kMerge, kQuantize, kDemote };

const char* cache_op_name(CacheOp op);

// Which of the two cached tensors an operation touches (quantize / demote; KIVI quantises keys
// and values at different split points).
enum class KVPart : uint8_t { kKeys, kValues, kBoth };

struct CacheEvent {
    static constexpr float kNone = std::numeric_limits<float>::quiet_NaN();

    int64_t step = -1;  // KVCache::step() at the time: -1 = prefill, 0.. = decode step
    int32_t layer = 0;
    int32_t head = 0;  // KV head
    CacheOp op = CacheOp::kAppend;
    int64_t position = -1;        // original token position of the slot the event is about
                                  // (merge: the source token)
    int64_t slot = -1;            // its slot index before the operation (append: the new index)
    int64_t dst_position = -1;    // merge: position of the destination slot after the merge
    int64_t dst_slot = -1;        // merge: destination slot index after the operation
    float weight = kNone;         // merge: the source's weight
    float similarity = kNone;     // merge: similarity the policy attached (D2O cosine), else NaN
    float threshold = kNone;      // merge: threshold the policy compared against, else NaN
    int bits = 16;                // quantize / demote: new bits; others: the slot's key bits
    KVPart part = KVPart::kBoth;  // quantize / demote: which tensor
};

using CacheObserver = std::function<void(const CacheEvent&)>;

}  // namespace kvscope
