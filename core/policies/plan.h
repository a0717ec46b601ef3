#pragma once
// STATUS: stable (additions only from here on)
// Plan: what a policy wants done to the cache, as data (so it can be recorded, replayed, diffed).
//
// All slot indices in a HeadPlan refer to the cache of that (layer, KV head) as it was when the
// policy saw it (the ScoreView's positions), i.e. BEFORE any operation of the plan. apply()
// translates them to positions first, then performs, per head, in this order:
//   1. merges   (each MergeOp: sources folded into dst, sources removed)
//   2. keep     (if set: exactly these slots survive; merge destinations must be in it, merge
//                sources must not; everything else is evicted)
//   3. quantize (in list order)
//   4. demote   (in list order)
// Heads are processed in the order of Plan::heads.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/cache/kv_cache.h"

namespace kvscope {

struct MergeOp {
    std::vector<int64_t> src;
    int64_t dst = -1;
    float dst_weight = 1.0f;
    std::vector<float> src_weights;  // [src.size()]
    std::vector<float> similarity;   // optional [src.size()]
    float threshold = CacheEvent::kNone;
    bool prerope = false;
};

struct QuantizeOp {
    std::vector<int64_t> slots;
    QuantSpec spec;
};

struct DemoteOp {
    std::vector<int64_t> slots;
    int bits = 2;
    KVPart part = KVPart::kBoth;
};

struct HeadPlan {
    int64_t layer = 0;
    int64_t kv_head = 0;
    std::optional<std::vector<int64_t>> keep;  // unset = keep everything not merged away
    std::vector<MergeOp> merges;
    std::vector<QuantizeOp> quantize;
    std::vector<DemoteOp> demote;
    int64_t budget = -1;  // tokens this head may hold (trace); -1 = unbounded
};

// A per-layer scalar for the trace (D2O's F_l, r_l, tau_l; DynamicKV's shares...).
struct LayerNote {
    int64_t layer = 0;
    std::string key;
    double value = 0.0;
};

struct Plan {
    std::vector<HeadPlan> heads;  // only heads with something to do or a budget to record
    std::vector<LayerNote> notes;

    bool empty() const { return heads.empty() && notes.empty(); }
    // The HeadPlan for (layer, kv_head), created (empty) if absent.
    HeadPlan& at(int64_t layer, int64_t kv_head);
    const HeadPlan* find(int64_t layer, int64_t kv_head) const;
};

// Performs the plan on the cache (see the order above). Throws std::invalid_argument on an
// inconsistent plan (index out of range, merge source kept, duplicate...).
void apply(const Plan& plan, KVCache& cache);

// The decision for a decode token before it enters the cache of one (layer, KV head): append it
// (default), or merge it into an existing slot (DMC).
struct AppendDecision {
    bool merge = false;
    IncomingMerge spec;           // when merge; result_k/result_v are ignored here...
    std::vector<float> result_k;  // ...use these (empty = weighted sum) [d]
    std::vector<float> result_v;  // [d]
};

// Appends the token or merges it as decided; returns the slot index it ended in.
int64_t apply_append(const AppendDecision& d, KVCache& cache, int64_t layer, int64_t kv_head,
                     const float* k, const float* v, int64_t pos, const float* k_prerope);

}  // namespace kvscope
