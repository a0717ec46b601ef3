// knorm — keep the keys with the LOWEST L2 norm.
// Paper: A. Devoto, Y. Zhao, S. Scardapane, P. Minervini, "A Simple and Effective L2 Norm-Based
//        Strategy for KV Cache Compression", arXiv 2406.11430 (EMNLP 2024).
// Official code: github.com/alessiodevoto/l2compress (cache.py l2_compress).
//
// Rule (P): after the prompt, per (layer, KV head) of every layer not in skip_layers, keep the
// C tokens with the smallest ||k||_2 (norms of the cached post-RoPE keys; RoPE is a rotation, so
// pre/post norms are equal). Skipped layers keep everything. Decode then appends.
//
// Deviations / choices:
//  * Budget: the reference keeps ceil(keep_ratio * n); --ratio R gives exactly that
//    (Budget::resolve), --budget N gives N tokens.
//  * Order: the reference returns the kept tokens sorted by norm; KVScope keeps positional order
//    (the set is the same; order is irrelevant with post-RoPE keys).
//  * Ties (equal norms) go to the lower position (the reference's torch.topk leaves them open).
//  * Only the prefill one-shot mode; the reference's repeated compression during token-by-token
//    perplexity evaluation ("prune_after") is not modelled.
//  * No GQA parameter: the score is a property of the KV head's own keys.
//  * skip_layers default {0, 1} (paper/README, KVCache-Factory L2NormCluster); kvpress KnormPress
//    skips none (use --param skip_layers= for that).
#include <algorithm>

#include "core/policies/builtin_policies.h"
#include "core/policies/selection.h"

namespace kvscope {

namespace {

const PolicyInfo& knorm_info() {
    static const PolicyInfo info{
        .name = "knorm",
        .full_name = "L2-norm (K-norm)",
        .paper = "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression",
        .arxiv = "2406.11430",
        .code = "github.com/alessiodevoto/l2compress",
        .regime = Regime::kPrefillOneshot,
        .venue = "EMNLP 2024",
        .rule =
            "once, after the prompt: keeps the tokens whose keys have the lowest L2 norm (low-norm "
            "keys tend to draw the most attention)",
        .score_name = "key L2 norm (lower is kept)",
        .picture = RulePicture::kLowKeyNorm};
    return info;
}

ParamSchema knorm_schema() {
    return {ParamSpec{
        .name = "skip_layers",
        .type = ParamType::kIntList,
        .default_value = std::vector<int64_t>{0, 1},
        .min = 0.0,
        .help = "layers never compressed (paper: 0,1; some scripts add 12); empty = none"}};
}

class KnormPolicy final : public Policy {
  public:
    explicit KnormPolicy(PolicyConfig c)
        : Policy(std::move(c)), skip_(params().get_int_list("skip_layers")) {}
    const PolicyInfo& info() const override { return knorm_info(); }
    PolicyNeeds needs() const override { return {.key_norms = true}; }
    Plan after_prefill(const ScoreView& view) override {
        view.check();
        Plan plan;
        const int64_t C = budget_tokens();
        for (const LayerScores& ls : view.layers) {
            const bool skip = std::find(skip_.begin(), skip_.end(), ls.layer) != skip_.end();
            for (const HeadScores& hs : ls.heads) {
                HeadPlan& hp = plan.at(ls.layer, hs.kv_head);
                hp.budget = skip ? -1 : C;
                if (skip || hs.n() <= C) continue;
                if (hs.key_norms.empty())
                    throw std::invalid_argument("knorm: the view has no key norms");
                hp.keep = bottom_k(to_scores(hs.key_norms), C);
                if (explaining()) {
                    Scores neg = to_scores(hs.key_norms);
                    for (double& x : neg) x = -x;
                    note_scores(ls.layer, hs.kv_head, -1, hs.positions, std::move(neg),
                                "minus the key's L2 norm (low-norm keys are kept)");
                }
            }
        }
        return plan;
    }

  private:
    std::vector<int64_t> skip_;
};

}  // namespace

PolicyEntry knorm_policy_entry() {
    return policy_entry<KnormPolicy>(knorm_info(), knorm_schema());
}

}  // namespace kvscope
