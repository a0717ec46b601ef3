#include "core/policies/plan.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace kvscope {

HeadPlan& Plan::at(int64_t layer, int64_t kv_head) {
    for (HeadPlan& h : heads)
        if (h.layer == layer && h.kv_head == kv_head) return h;
    HeadPlan h;
    h.layer = layer;
    h.kv_head = kv_head;
    heads.push_back(std::move(h));
    return heads.back();
}

const HeadPlan* Plan::find(int64_t layer, int64_t kv_head) const {
    for (const HeadPlan& h : heads)
        if (h.layer == layer && h.kv_head == kv_head) return &h;
    return nullptr;
}

namespace {

[[noreturn]] void fail(const HeadPlan& hp, const std::string& what) {
    throw std::invalid_argument("plan for layer " + std::to_string(hp.layer) + " head " +
                                std::to_string(hp.kv_head) + ": " + what);
}

}  // namespace

void apply(const Plan& plan, KVCache& cache) {
    for (const HeadPlan& hp : plan.heads) {
        const int64_t l = hp.layer, h = hp.kv_head;
        // Slot indices of the plan -> positions (stable across the operations below).
        const std::vector<int64_t> pos0(cache.positions(l, h).begin(), cache.positions(l, h).end());
        const int64_t n0 = static_cast<int64_t>(pos0.size());
        auto to_pos = [&](int64_t s) {
            if (s < 0 || s >= n0)
                fail(hp,
                     "slot " + std::to_string(s) + " out of range [0, " + std::to_string(n0) + ")");
            return pos0[static_cast<size_t>(s)];
        };
        auto to_slot = [&](int64_t p) {
            const int64_t s = cache.find_position(l, h, p);
            if (s < 0) fail(hp, "position " + std::to_string(p) + " is no longer cached");
            return s;
        };
        std::vector<char> merged_away(static_cast<size_t>(n0), 0);
        for (const MergeOp& m : hp.merges) {
            MergeSpec spec;
            const int64_t dst_pos = to_pos(m.dst);
            std::vector<int64_t> src_pos;
            for (int64_t s : m.src) {
                src_pos.push_back(to_pos(s));
                merged_away[static_cast<size_t>(s)] = 1;
            }
            spec.dst = to_slot(dst_pos);
            for (int64_t p : src_pos) spec.src.push_back(to_slot(p));
            spec.dst_weight = m.dst_weight;
            spec.src_weights = m.src_weights;
            spec.similarity = m.similarity;
            spec.threshold = m.threshold;
            spec.prerope = m.prerope;
            cache.merge(l, h, spec);
        }
        if (hp.keep) {
            std::vector<int64_t> now;
            now.reserve(hp.keep->size());
            for (int64_t s : *hp.keep) {
                const int64_t p = to_pos(s);
                if (merged_away[static_cast<size_t>(s)])
                    fail(hp, "slot " + std::to_string(s) + " is both kept and merged away");
                now.push_back(to_slot(p));
            }
            cache.keep(l, h, now);
        }
        for (const QuantizeOp& q : hp.quantize) {
            std::vector<int64_t> now;
            for (int64_t s : q.slots) now.push_back(to_slot(to_pos(s)));
            cache.quantize(l, h, now, q.spec);
        }
        for (const DemoteOp& d : hp.demote) {
            std::vector<int64_t> now;
            for (int64_t s : d.slots) now.push_back(to_slot(to_pos(s)));
            cache.demote(l, h, now, d.bits, d.part);
        }
    }
}

int64_t apply_append(const AppendDecision& d, KVCache& cache, int64_t layer, int64_t kv_head,
                     const float* k, const float* v, int64_t pos, const float* k_prerope) {
    if (!d.merge) return cache.append(layer, kv_head, k, v, pos, k_prerope);
    const size_t hd = static_cast<size_t>(cache.head_dim());
    IncomingMerge m = d.spec;
    if (!d.result_k.empty() && d.result_k.size() != hd)
        throw std::invalid_argument("AppendDecision: result_k must have head_dim entries");
    if (!d.result_v.empty() && d.result_v.size() != hd)
        throw std::invalid_argument("AppendDecision: result_v must have head_dim entries");
    m.result_k = d.result_k.empty() ? nullptr : d.result_k.data();
    m.result_v = d.result_v.empty() ? nullptr : d.result_v.data();
    return cache.merge_incoming(layer, kv_head, m, k, v, pos, k_prerope);
}

}  // namespace kvscope
