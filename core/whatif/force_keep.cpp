#include "core/whatif/force_keep.h"

#include <algorithm>

namespace kvscope::whatif {

ForceKeepPolicy::ForceKeepPolicy(std::unique_ptr<Policy> inner, std::vector<int64_t> positions,
                                 std::set<int64_t> layers)
    : Policy(inner->config()),
      inner_(std::move(inner)),
      positions_(std::move(positions)),
      layers_(std::move(layers)) {
    std::sort(positions_.begin(), positions_.end());
}

void ForceKeepPolicy::begin(const ModelDims& dims, int64_t prompt_len) {
    Policy::begin(dims, prompt_len);
    inner_->begin(dims, prompt_len);
}

Plan ForceKeepPolicy::after_prefill(const ScoreView& view) {
    Plan plan = inner_->after_prefill(view);
    patch(plan, view);
    return plan;
}

Plan ForceKeepPolicy::after_decode_layer(const ScoreView& view) {
    Plan plan = inner_->after_decode_layer(view);
    patch(plan, view);
    return plan;
}

namespace {

// Takes `slot` out of the head's merges (as a source), quantisations and demotions.
void release_slot(HeadPlan& hp, int64_t slot) {
    for (MergeOp& m : hp.merges)
        for (size_t i = m.src.size(); i-- > 0;)
            if (m.src[i] == slot) {
                m.src.erase(m.src.begin() + static_cast<std::ptrdiff_t>(i));
                if (i < m.src_weights.size())
                    m.src_weights.erase(m.src_weights.begin() + static_cast<std::ptrdiff_t>(i));
                if (i < m.similarity.size())
                    m.similarity.erase(m.similarity.begin() + static_cast<std::ptrdiff_t>(i));
            }
    hp.merges.erase(std::remove_if(hp.merges.begin(), hp.merges.end(),
                                   [](const MergeOp& m) { return m.src.empty(); }),
                    hp.merges.end());
    for (QuantizeOp& q : hp.quantize) std::erase(q.slots, slot);
    hp.quantize.erase(std::remove_if(hp.quantize.begin(), hp.quantize.end(),
                                     [](const QuantizeOp& q) { return q.slots.empty(); }),
                      hp.quantize.end());
    for (DemoteOp& d : hp.demote) std::erase(d.slots, slot);
    hp.demote.erase(std::remove_if(hp.demote.begin(), hp.demote.end(),
                                   [](const DemoteOp& d) { return d.slots.empty(); }),
                    hp.demote.end());
}

bool kept(const HeadPlan& hp, int64_t slot) {
    return !hp.keep || std::binary_search(hp.keep->begin(), hp.keep->end(), slot);
}

}  // namespace

void ForceKeepPolicy::patch(Plan& plan, const ScoreView& view) const {
    for (int64_t layer : layers_) {
        std::vector<HeadPlan*> heads;
        for (HeadPlan& hp : plan.heads)
            if (hp.layer == layer) heads.push_back(&hp);
        if (heads.empty()) continue;
        // Policies that keep the same count in every head of a layer (D2O) must still do so.
        bool equal = true;
        for (const HeadPlan* hp : heads)
            equal = equal && hp->keep && heads.front()->keep &&
                    hp->keep->size() == heads.front()->keep->size();
        std::vector<int64_t> added(heads.size(), 0);
        for (size_t i = 0; i < heads.size(); ++i) {
            HeadPlan& hp = *heads[i];
            const auto pos =
                view.layer(hp.layer).heads.at(static_cast<size_t>(hp.kv_head)).positions;
            for (size_t j = 0; j < pos.size(); ++j) {
                if (!std::binary_search(positions_.begin(), positions_.end(), pos[j])) continue;
                const auto s = static_cast<int64_t>(j);
                release_slot(hp, s);
                if (!kept(hp, s)) {
                    hp.keep->insert(std::lower_bound(hp.keep->begin(), hp.keep->end(), s), s);
                    ++added[i];
                }
            }
        }
        if (!equal) continue;
        // Pad the other heads with their most recent dropped slots to the same count.
        const int64_t most = *std::max_element(added.begin(), added.end());
        for (size_t i = 0; i < heads.size(); ++i) {
            HeadPlan& hp = *heads[i];
            const int64_t n = view.layer(hp.layer).heads.at(static_cast<size_t>(hp.kv_head)).n();
            for (int64_t s = n - 1; s >= 0 && added[i] < most; --s) {
                if (kept(hp, s)) continue;
                release_slot(hp, s);
                hp.keep->insert(std::lower_bound(hp.keep->begin(), hp.keep->end(), s), s);
                ++added[i];
            }
        }
    }
}

}  // namespace kvscope::whatif
