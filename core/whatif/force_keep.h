#pragma once
// ForceKeep: a counterfactual wrapper around any policy — "what if the needle had been kept in
// these layers?". Every plan the inner policy returns is patched, in the chosen layers only, so
// that the given positions stay in the cache at full precision: added to the keep set (on top of
// the budget: the counterfactual costs a few slots), taken out of merges as sources (a merge left
// without sources is dropped) and out of quantisations and demotions. Everything else the policy
// decides is unchanged — except that for a policy that keeps the same number of tokens in every
// head of a layer (D2O), the other heads of the layer are padded with their most recent dropped
// slots to the same count. Used by needle rescue (app/recorder/rescue.h).
#include <memory>
#include <set>
#include <vector>

#include "core/policies/policy.h"

namespace kvscope::whatif {

class ForceKeepPolicy final : public Policy {
  public:
    ForceKeepPolicy(std::unique_ptr<Policy> inner, std::vector<int64_t> positions,
                    std::set<int64_t> layers);

    const PolicyInfo& info() const override { return inner_->info(); }
    PolicyNeeds needs() const override { return inner_->needs(); }
    void begin(const ModelDims& dims, int64_t prompt_len) override;
    Plan after_prefill(const ScoreView& view) override;
    AppendDecision on_append(const AppendContext& ctx) override { return inner_->on_append(ctx); }
    Plan after_decode_layer(const ScoreView& view) override;

    const Policy& inner() const { return *inner_; }

  private:
    void patch(Plan& plan, const ScoreView& view) const;

    std::unique_ptr<Policy> inner_;
    std::vector<int64_t> positions_;  // sorted
    std::set<int64_t> layers_;
};

}  // namespace kvscope::whatif
