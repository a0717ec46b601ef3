// MiKV — importance-aware mixed-precision KV cache (decode-continuous, nothing evicted).
// Paper: J. Y. Yang, B. Kim, J. Bae, B. Kwon, G. Park, E. Yang, S. J. Kwon, D. Lee, "No Token
//        Left Behind: Reliable KV Cache Compression via Importance-Aware Mixed Precision
//        Quantization", arXiv 2402.18096 (2024).
// Official code: none published (this rule is built from the abstract and secondary sources; not
// reference-checked, docs/policy_reference.md "Limits").
//
// Rule (D), per layer and KV head, budget C = important tokens (HH heavy hitters + R recent):
//   S_j = H2O cumulative attention (prompt column sums, then every decode row added).
//   Important set I = the last R slots + the HH largest S among the other slots still held at
//   high precision — exactly the set H2O (h2o.cpp) would keep with the same budget/recent_ratio.
//   What H2O would evict is quantised to lo_bits instead (per token, asymmetric round-to-nearest,
//   groups of `group` channels); demotion is one-way, a demoted token never returns to I.
//   High precision is the model's dtype (hi_bits = 16) or INT8/INT4 (hi_bits = 8 / 4: every new
//   token is quantised at hi_bits when it arrives and later demoted to lo_bits).
//   Key channel balancing (balance = true): per layer/KV head, from the prompt,
//     beta_c = sqrt( max_t |q_{t,c}| / max_t |k_{t,c}| )     (post-RoPE; q over the group's heads)
//   keys are quantised as k * beta (outlier channels flattened) and attention uses q / beta; the
//   cache holds dequant(k * beta) / beta, which gives the same q.k (QuantSpec::channel_scale).
//
// Defaults: recent_ratio 0.5 (H2O's 10 % + 10 %), lo_bits 3 (the paper's line-retrieval
// headline: INT3 for the "evicted" half), hi_bits 16, group 128 (a whole Llama head), balancing on.
//
// Deviations / choices (no reference code exists, so these are our readings):
//  * The importance policy is H2O (the paper plugs MiKV into H2O); heavy hitters are chosen among
//    the tokens still at high precision, so the high-precision set is what H2O would hold.
//  * Group size is not given by the sources: default the whole head (128 for Llama-2); the
//    quantiser keeps scale and zero as fp16 (4 bytes per group, counted by the cache).
//  * beta uses max |.| over the prompt only and is fixed afterwards; a channel with max 0 on either
//    side gets beta = 1. beta itself (d fp16 per head) is not counted in the memory.
//  * The direction of the balancing (k * beta, q / beta) is our reading of the formula.
//  * GQA: cumulative scores per query head, combined with --param gqa (as h2o); beta per KV head
//    with the query maximum over the group's heads.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "core/error.h"
#include "core/policies/builtin_policies.h"
#include "core/policies/cumulative_scores.h"
#include "core/policies/per_head_state.h"
#include "core/policies/selection.h"

namespace kvscope {

namespace {

const PolicyInfo& mikv_info() {
    static const PolicyInfo info{.name = "mikv",
                                 .full_name = "MiKV",
                                 .paper =
                                     "No Token Left Behind: Reliable KV Cache Compression via "
                                     "Importance-Aware Mixed Precision Quantization",
                                 .arxiv = "2402.18096",
                                 .code = "none published",
                                 .regime = Regime::kDecodeContinuous,
                                 .venue = "preprint",
                                 .rule =
                                     "nothing is evicted: the tokens H2O would keep stay at high "
                                     "precision, the others are quantised to a few bits",
                                 .score_name = "accumulated attention",
                                 .picture = RulePicture::kMixedPrecision};
    return info;
}

ParamSchema mikv_schema() {
    return {
        ParamSpec{
            .name = "recent_ratio",
            .type = ParamType::kFloat,
            .default_value = 0.5,
            .min = 0.0,
            .max = 1.0,
            .help = "share of the high-precision budget given to the most recent tokens; the rest "
                    "are heavy hitters (H2O: 10 % + 10 % -> 0.5)"},
        ParamSpec{.name = "lo_bits",
                  .type = ParamType::kInt,
                  .default_value = int64_t{3},
                  .min = 1.0,
                  .max = 8.0,
                  .help = "bits of the less important tokens (paper: INT2-INT4)"},
        ParamSpec{.name = "hi_bits",
                  .type = ParamType::kInt,
                  .default_value = int64_t{16},
                  .min = 1.0,
                  .max = 16.0,
                  .help = "bits of the important tokens: 16 = model dtype, or 8 / 4 (INT8 / INT4)"},
        ParamSpec{.name = "group",
                  .type = ParamType::kInt,
                  .default_value = int64_t{128},
                  .min = 1.0,
                  .help = "quantisation group: channels per scale/zero within a token"},
        ParamSpec{.name = "balance",
                  .type = ParamType::kBool,
                  .default_value = true,
                  .help =
                      "key channel balancing: quantise k * beta with beta = sqrt(max|q| / max|k|) "
                      "per channel from the prompt"},
        gqa_param_spec("mean"),
    };
}

class MikvPolicy final : public Policy {
  public:
    explicit MikvPolicy(PolicyConfig c)
        : Policy(std::move(c)),
          recent_ratio_(params().get_float("recent_ratio")),
          lo_bits_(static_cast<int>(params().get_int("lo_bits"))),
          hi_bits_(static_cast<int>(params().get_int("hi_bits"))),
          group_(params().get_int("group")),
          balance_(params().get_bool("balance")),
          gqa_(parse_gqa(params().get_enum("gqa"))) {
        if (hi_bits_ != 16 && hi_bits_ > 8)
            throw InputError("policy 'mikv', parameter 'hi_bits': must be 16 or in 1..8, got " +
                             std::to_string(hi_bits_));
        if (hi_bits_ <= lo_bits_)
            throw InputError("policy 'mikv', parameter 'hi_bits' (" + std::to_string(hi_bits_) +
                             ") must exceed lo_bits (" + std::to_string(lo_bits_) + ")");
    }
    const PolicyInfo& info() const override { return mikv_info(); }
    PolicyNeeds needs() const override {
        return {.colsum = true, .keys = balance_, .step_rows = true, .query_absmax = balance_};
    }
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
                    throw std::invalid_argument("mikv: the view has no prompt column sums");
                HeadState& st = state_.at(ls.layer, hs.kv_head);
                st = HeadState{};
                st.scores.seed(hs);
                st.hi.assign(st.scores.pos.size(), 1);
                if (balance_) st.beta = balance_scale(hs, view.head_dim);
                HeadPlan& hp = plan.at(ls.layer, hs.kv_head);
                if (hi_bits_ < 16) quantize(hp, st, index_range(0, hs.n()), hi_bits_);
                compress(st, hp);
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
                    throw std::invalid_argument("mikv: the view has no decode attention rows");
                HeadState& st = state_.at(ls.layer, hs.kv_head);
                const std::vector<int64_t> fresh = realign(st, hs);
                st.scores.add_step_rows(hs);
                HeadPlan& hp = plan.at(ls.layer, hs.kv_head);
                if (hi_bits_ < 16 && !fresh.empty()) quantize(hp, st, fresh, hi_bits_);
                compress(st, hp);
            }
        }
        return plan;
    }

  private:
    struct HeadState {
        CumulativeScores scores;  // H2O's S per query head, by position
        std::vector<char> hi;     // [n] 1 = still high precision
        std::vector<float> beta;  // [d] key channel balance (empty = none)
    };

    static std::vector<float> balance_scale(const HeadScores& hs, int64_t d) {
        if (hs.query_absmax.empty() || hs.keys.empty())
            throw std::invalid_argument(
                "mikv: balance=true needs the prompt keys and the per-channel max |q| "
                "(HeadScores::query_absmax); use --param balance=false without them");
        std::vector<float> beta(static_cast<size_t>(d), 1.0f);
        const int64_t n = hs.n();
        for (int64_t c = 0; c < d; ++c) {
            double kmax = 0.0;
            for (int64_t t = 0; t < n; ++t)
                kmax = std::max(
                    kmax, std::fabs(static_cast<double>(hs.keys[static_cast<size_t>(t * d + c)])));
            const double qmax = hs.query_absmax[static_cast<size_t>(c)];
            if (kmax > 0.0 && qmax > 0.0)
                beta[static_cast<size_t>(c)] = static_cast<float>(std::sqrt(qmax / kmax));
        }
        return beta;
    }

    // State follows the view's positions; returns the slots that are new (decode tokens), which
    // start at high precision.
    static std::vector<int64_t> realign(HeadState& st, const HeadScores& hs) {
        const std::vector<int64_t> from = st.scores.realign(hs);
        std::vector<char> hi(from.size(), 1);
        std::vector<int64_t> fresh;
        for (size_t j = 0; j < from.size(); ++j) {
            if (from[j] >= 0)
                hi[j] = st.hi[static_cast<size_t>(from[j])];
            else
                fresh.push_back(static_cast<int64_t>(j));
        }
        st.hi = std::move(hi);
        return fresh;
    }

    void quantize(HeadPlan& hp, const HeadState& st, std::vector<int64_t> slots, int bits) const {
        QuantizeOp op;
        op.slots = std::move(slots);
        op.spec = QuantSpec{bits, static_cast<int>(group_), QuantAxis::kPerToken, KVPart::kBoth};
        op.spec.channel_scale = st.beta;
        hp.quantize.push_back(std::move(op));
    }

    // H2O's selection restricted to the high-precision slots; the losers go to lo_bits.
    void compress(HeadState& st, HeadPlan& hp) const {
        const int64_t C = budget_tokens();
        hp.budget = C;
        std::vector<int64_t> hi_slots;
        for (size_t j = 0; j < st.hi.size(); ++j)
            if (st.hi[j]) hi_slots.push_back(static_cast<int64_t>(j));
        const int64_t m = static_cast<int64_t>(hi_slots.size());
        if (m <= C) return;
        const int64_t R =
            static_cast<int64_t>(std::floor(static_cast<double>(C) * recent_ratio_ + 1e-9));
        const std::vector<int64_t> recent(hi_slots.end() - R, hi_slots.end());
        const std::vector<int64_t> cand(hi_slots.begin(), hi_slots.end() - R);
        const std::vector<int64_t> important =
            sorted_union(select_top_k(st.scores.acc, gqa_, C - R, cand), recent);
        if (explaining()) {
            // Over the slots still at high precision (the others were demoted earlier).
            const Scores all = aggregate(st.scores.acc, gqa_);
            std::vector<int64_t> pos;
            Scores sc;
            for (int64_t j : hi_slots) {
                pos.push_back(st.scores.pos[static_cast<size_t>(j)]);
                sc.push_back(std::binary_search(recent.begin(), recent.end(), j)
                                 ? std::numeric_limits<double>::infinity()
                                 : all[static_cast<size_t>(j)]);
            }
            note_scores(hp.layer, hp.kv_head, step_now_, pos, std::move(sc),
                        std::string("MiKV importance: attention received, accumulated, ") +
                            gqa_name(gqa_) + " over the group; below the cut a token is kept at " +
                            std::to_string(lo_bits_) + " bits instead of evicted");
        }
        std::vector<int64_t> demote;
        std::set_difference(hi_slots.begin(), hi_slots.end(), important.begin(), important.end(),
                            std::back_inserter(demote));
        for (int64_t s : demote) st.hi[static_cast<size_t>(s)] = 0;
        if (hi_bits_ == 16) {
            quantize(hp, st, demote, lo_bits_);
        } else {
            // Slots quantised at hi_bits by this same plan are demoted after it (plan order:
            // quantize, then demote).
            hp.demote.push_back(DemoteOp{demote, lo_bits_, KVPart::kBoth});
        }
    }

    double recent_ratio_;
    int lo_bits_, hi_bits_;
    int64_t group_;
    bool balance_;
    GqaAgg gqa_;
    PerHeadState<HeadState> state_{"mikv"};
    int64_t step_now_ = -1;  // the view's step (explanations)
};

}  // namespace

PolicyEntry mikv_policy_entry() {
    return policy_entry<MikvPolicy>(mikv_info(), mikv_schema());
}

}  // namespace kvscope
