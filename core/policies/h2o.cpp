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
#include "core/policies/selection.h"

namespace kvscope {

namespace {

const PolicyInfo& h2o_info() {
    static const PolicyInfo info{
        "h2o",
        "H2O",
        "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large Language Models",
        "2306.14048",
        "github.com/FMInference/H2O",
        Regime::kDecodeContinuous,
        true,
        "NeurIPS 2023",
        "keeps the heavy hitters, the tokens with the highest attention accumulated over all "
        "queries so far, plus a recent window; evicts the lowest-scoring token at every step",
        "accumulated attention",
        RulePicture::kHittersRecent};
    return info;
}

ParamSchema h2o_schema() {
    return {
        ParamSpec{"recent_ratio",
                  ParamType::kFloat,
                  0.5,
                  0.0,
                  1.0,
                  {},
                  "share of the budget given to the most recent tokens; the rest are heavy "
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
    PolicyNeeds needs() const override {
        PolicyNeeds n;
        n.colsum = true;
        n.step_rows = true;
        return n;
    }
    void begin(const ModelDims& dims, int64_t prompt_len) override {
        Policy::begin(dims, prompt_len);
        state_.assign(static_cast<size_t>(dims.n_layers * dims.n_kv_heads), HeadState{});
    }
    Plan after_prefill(const ScoreView& view) override {
        view.check();
        step_now_ = view.step;
        Plan plan;
        for (const LayerScores& ls : view.layers) {
            for (const HeadScores& hs : ls.heads) {
                if (hs.colsum.empty())
                    throw std::invalid_argument("h2o: the view has no prompt column sums");
                HeadState& st = state(ls.layer, hs.kv_head);
                st.pos.assign(hs.positions.begin(), hs.positions.end());
                st.acc.clear();
                for (const auto& c : hs.colsum) st.acc.push_back(to_scores(c));
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
                HeadState& st = state(ls.layer, hs.kv_head);
                realign(st, hs);
                for (size_t q = 0; q < hs.step_row.size(); ++q)
                    for (size_t j = 0; j < st.pos.size(); ++j)
                        st.acc[q][j] += static_cast<double>(hs.step_row[q][j]);
                compress(st, plan.at(ls.layer, hs.kv_head));
            }
        }
        return plan;
    }

  private:
    struct HeadState {
        std::vector<int64_t> pos;  // [n] positions the scores belong to
        std::vector<Scores> acc;   // [g][n] cumulative attention per query head
    };

    HeadState& state(int64_t layer, int64_t head) {
        const size_t i = static_cast<size_t>(layer * dims().n_kv_heads + head);
        if (i >= state_.size()) throw std::logic_error("h2o: begin() was not called");
        return state_[i];
    }

    // Scores follow the view's positions; unseen positions (new tokens) start at 0.
    static void realign(HeadState& st, const HeadScores& hs) {
        const size_t g = std::max(hs.step_row.size(), st.acc.size());
        std::vector<Scores> acc(g, Scores(hs.positions.size(), 0.0));
        size_t i = 0;
        for (size_t j = 0; j < hs.positions.size(); ++j) {
            while (i < st.pos.size() && st.pos[i] < hs.positions[j]) ++i;
            if (i < st.pos.size() && st.pos[i] == hs.positions[j])
                for (size_t q = 0; q < st.acc.size(); ++q) acc[q][j] = st.acc[q][i];
        }
        st.pos.assign(hs.positions.begin(), hs.positions.end());
        st.acc = std::move(acc);
    }

    void compress(HeadState& st, HeadPlan& hp) const {
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
        HeadState kept;
        for (int64_t s : keep) kept.pos.push_back(st.pos[static_cast<size_t>(s)]);
        for (const Scores& a : st.acc) {
            Scores k2;
            for (int64_t s : keep) k2.push_back(a[static_cast<size_t>(s)]);
            kept.acc.push_back(std::move(k2));
        }
        st = std::move(kept);
        hp.keep = std::move(keep);
    }

    double recent_ratio_;
    GqaAgg gqa_;
    std::vector<HeadState> state_;  // [layer * n_kv_heads + head]
    int64_t step_now_ = -1;         // the view's step (explanations)
};

}  // namespace

PolicyEntry h2o_policy_entry() {
    return PolicyEntry{h2o_info(), h2o_schema(),
                       [](const PolicyConfig& c) { return std::make_unique<H2OPolicy>(c); }};
}

}  // namespace kvscope
