// full — the uncompressed baseline: keeps every token. Not a paper; the reference every policy is
// compared against. No deviations to list. Plans only record the (unbounded) budget per head.
#include "core/policies/builtin_policies.h"

namespace kvscope {

namespace {

const PolicyInfo& full_info() {
    static const PolicyInfo info{
        .name = "full",
        .full_name = "Full cache",
        .paper = "(baseline: no compression)",
        .arxiv = "",
        .code = "",
        .regime = Regime::kPrefillOneshot,
        .needs_budget = false,
        .venue = "",
        .rule = "keeps every token at full precision: the baseline the others are measured against",
        .score_name = "",
        .picture = RulePicture::kNone};
    return info;
}

class FullPolicy final : public Policy {
  public:
    using Policy::Policy;
    const PolicyInfo& info() const override { return full_info(); }
    PolicyNeeds needs() const override { return {}; }
    Plan after_prefill(const ScoreView& view) override {
        view.check();
        Plan plan;
        for (const LayerScores& ls : view.layers)
            for (const HeadScores& hs : ls.heads) plan.at(ls.layer, hs.kv_head).budget = -1;
        return plan;
    }
};

}  // namespace

PolicyEntry full_policy_entry() {
    return policy_entry<FullPolicy>(full_info(), {});
}

}  // namespace kvscope
