#pragma once
// ExplainPolicy: records why a policy dropped the tokens one follows (a needle), in the policy's
// own terms. It wraps any policy, switches its explanations on (Policy::set_explaining), and after
// every decision (the prompt's compression, then each decode step and layer) notes, for every
// followed token the (layer, KV head) still held: what the plan does to it (kept, evicted, merged
// into which token with which weight, quantised or demoted to how many bits), the policy's own
// score for it, its rank, the cut-off (the lowest score the policy kept), the budget, and the kept
// tokens nearest above the cut-off (the ones that took its place by that score). Decisions are
// unchanged: the plans pass through untouched.
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/policies/policy.h"

namespace kvscope::whatif {

struct TokenDecision {
    int64_t step = -1;  // -1 = the prompt's compression (trace step 0), s = decode step (trace s+1)
    int64_t layer = 0, kv_head = 0, position = 0;
    std::string action;          // "kept" | "evicted" | "merged" | "quantized" | "demoted"
    int64_t into_position = -1;  // merged: the token it was merged into
    float weight = std::nanf("");
    int bits = 16;                // quantized / demoted: the new precision
    double score = std::nan("");  // the policy's own score (NaN when it does not rank by one)
    int64_t rank = -1;            // 1 = best of `candidates`
    int64_t candidates = 0;
    double cutoff = std::nan("");  // lowest finite score among the tokens the policy kept
    int64_t budget = -1;
    std::string score_name;
    std::vector<std::pair<int64_t, double>> took_its_place;  // (position, score), lowest first
};

class ExplainPolicy final : public Policy {
  public:
    // `followed`: the positions to explain (sorted or not). Only decisions on them are noted, into
    // `out` (shared, so it outlives the policy object, which the engine's caller owns);
    // "kept" is noted for the prompt's compression only (decode steps note changes).
    ExplainPolicy(std::unique_ptr<Policy> inner, std::vector<int64_t> followed,
                  std::shared_ptr<std::vector<TokenDecision>> out);

    const PolicyInfo& info() const override { return inner_->info(); }
    PolicyNeeds needs() const override { return inner_->needs(); }
    void begin(const ModelDims& dims, int64_t prompt_len) override;
    Plan after_prefill(const ScoreView& view) override;
    AppendDecision on_append(const AppendContext& ctx) override { return inner_->on_append(ctx); }
    Plan after_decode_layer(const ScoreView& view) override;

    const std::vector<TokenDecision>& decisions() const { return *decisions_; }

  private:
    void note(const Plan& plan, const ScoreView& view, bool prompt);

    std::unique_ptr<Policy> inner_;
    std::vector<int64_t> followed_;  // sorted
    std::shared_ptr<std::vector<TokenDecision>> decisions_;
};

}  // namespace kvscope::whatif
