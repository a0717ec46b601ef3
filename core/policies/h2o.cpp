// H2O — Heavy-Hitter Oracle: cumulative attention heavy hitters + recent window
// (decode-continuous). Paper: Z. Zhang, Y. Sheng, T. Zhou, T. Chen, L. Zheng, R. Cai, Z. Song, Y.
// Tian, C. Ré,
//        C. Barrett, Z. Wang, B. Chen, "H2O: Heavy-Hitter Oracle for Efficient Generative
//        Inference of Large Language Models", arXiv 2306.14048 (NeurIPS 2023).
// Official code: github.com/FMInference/H2O.
//
// Rule (D), per layer and KV head, budget C = HH + R with R = floor(C * recent_ratio):
//   S_j = attention slot j has received so far: the prompt column sums (seed), then every decode
//   step's attention row added (the new token enters with its own row value).
//   When n > C: keep the last R slots and the HH largest S among the others; evict the rest
//   (after the prompt this is one bulk eviction, then one token per step).
//
// Defaults: recent_ratio 0.5 (the paper's 10 % heavy + 10 % recent, i.e. equal halves).
//
// Deviations / choices:
//  * GQA: the paper is MHA. S is kept per query head; the group is combined at selection time
//    with --param gqa (mean default: the mean of the per-query-head cumulative sums; max; or
//    per_query_head = round-robin union of each query head's ranking, selection.h).
//  * Budget normalised: C counts heavy hitters and window (the paper gives both as fractions of
//    the sequence; use --ratio 0.2 for "20 %").
//  * Scores use the raw column sum (paper, KVCache-Factory), not kvpress's mean attention (column
//    sum / number of queries that see the token), which favours late tokens less.
//  * Ties go to the lower position.
//  * State is re-aligned by position on every call, so any change of the cache in between (e.g.
//    another policy's merge in what-if replay) keeps scores attached to the right tokens.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "core/policies/builtin_policies.h"
#include "core/policies/cumulative_scores.h"
#include "core/policies/per_head_state.h"
#include "core/policies/selection.h"

namespace kvscope {

namespace {

const PolicyInfo& h2o_info() {
    static const PolicyInfo info{
        .name = "h2o",
        .full_name = "H2O",
        .paper =
            "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large Language Models",
        .arxiv = "2306.14048",
        .code = "github.com/FMInference/H2O",
        .regime = Regime::kDecodeContinuous,
        .venue = "NeurIPS 2023",
        .rule =
            "keeps the heavy hitters, the tokens with the highest attention accumulated over all "
            "queries so far, plus a recent window; evicts the lowest-scoring token at every step",
        .score_name = "accumulated attention",
        .picture = RulePicture::kHittersRecent};
    return info;
}

ParamSchema h2o_schema() {
    return {
        ParamSpec{.name = "recent_ratio",
                  .type = ParamType::kFloat,
                  .default_value = 0.5,
                  .min = 0.0,
                  .max = 1.0,
                  .help = "share of the budget given to the most recent tokens; the rest are heavy "
                          "hitters (paper: 10 % + 10 % -> 0.5)"},
        gqa_param_spec("mean"),
    };
}

class H2OPolicy final : public Policy {
  public:
    explicit H2OPolicy(PolicyConfig c)
        : Policy(std::move(c)),
          recent_ratio_(params().get_float("recent_ratio")),
          gqa_(parse_gqa(params().get_enum("gqa"))) {}
    const PolicyInfo& info() const override { return h2o_info(); }
    PolicyNeeds needs() const override { return {.colsum = true, .step_rows = true}; }
    void begin(const ModelDims& dims, int64_t prompt_len) override {
        Policy::begin(dims, prompt_len);
        state_.reset(dims.n_layers, dims.n_kv_heads);
    }
    Plan after_prefill(const ScoreView& view) override {
        view.check();
        step_now_ = view.step;
        Plan plan;
        for (const LayerScores& ls : view.layers) {
            for (const HeadScores& hs : ls.heads) {
                if (hs.colsum.empty())
                    throw std::invalid_argument("h2o: the view has no prompt column sums");
                CumulativeScores& st = state_.at(ls.layer, hs.kv_head);
                st.seed(hs);
                compress(st, plan.at(ls.layer, hs.kv_head));
            }
        }
        return plan;
    }
    Plan after_decode_layer(const ScoreView& view) override {
        view.check();
        step_now_ = view.step;
        Plan plan;
        for (const LayerScores& ls : view.layers) {
            for (const HeadScores& hs : ls.heads) {
                if (hs.step_row.empty())
                    throw std::invalid_argument("h2o: the view has no decode attention rows");
                CumulativeScores& st = state_.at(ls.layer, hs.kv_head);
                st.realign(hs);
                st.add_step_rows(hs);
                compress(st, plan.at(ls.layer, hs.kv_head));
            }
        }
        return plan;
    }

  private:
    void compress(CumulativeScores& st, HeadPlan& hp) const {
        const int64_t C = budget_tokens();
        const int64_t n = static_cast<int64_t>(st.pos.size());
        hp.budget = C;
        if (n <= C) return;
        const int64_t R =
            static_cast<int64_t>(std::floor(static_cast<double>(C) * recent_ratio_ + 1e-9));
        const int64_t HH = C - R;
        const std::vector<int64_t> cand = index_range(0, n - R);
        std::vector<int64_t> keep =
            sorted_union(select_top_k(st.acc, gqa_, HH, cand), index_range(n - R, n));
        if (explaining()) {
            Scores sc = aggregate(st.acc, gqa_);
            for (int64_t j = n - R; j < n; ++j)
                sc[static_cast<size_t>(j)] = std::numeric_limits<double>::infinity();
            note_scores(hp.layer, hp.kv_head, step_now_, st.pos, std::move(sc),
                        std::string("H2O: attention received, accumulated over the prompt and "
                                    "every decode step, ") +
                            gqa_name(gqa_) + " over the group; the " + std::to_string(R) +
                            " most recent tokens kept");
        }
        st.keep_only(keep);
        hp.keep = std::move(keep);
    }

    double recent_ratio_;
    GqaAgg gqa_;
    PerHeadState<CumulativeScores> state_{"h2o"};
    int64_t step_now_ = -1;  // the view's step (explanations)
};

}  // namespace

PolicyEntry h2o_policy_entry() {
    return policy_entry<H2OPolicy>(h2o_info(), h2o_schema());
}

}  // namespace kvscope
