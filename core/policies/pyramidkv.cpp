// PyramidKV — pyramidal per-layer budgets, SnapKV selection inside each layer (prefill one-shot).
// Paper: Z. Cai, Y. Zhang, B. Gao, Y. Liu, T. Liu, K. Lu, W. Xiong, Y. Dong, B. Chang, J. Hu,
//        W. Xiao, "PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information
//        Funneling", arXiv 2406.02069 (COLM 2025).
// Official code: github.com/Zefan-Cai/KVCache-Factory (pyramidkv/pyramidkv_utils.py,
//                PyramidKVCluster).
//
// Budget rule (KVCache-Factory, integer arithmetic; C = average per-layer budget incl. window w,
// N = prompt length, L = layers):
//   k_top = (C - w) // beta ; k_bottom = 2 (C - w) - k_top
//   if k_bottom >= N - w:  k_bottom = N - w ; k_top = 2 (C - w) - k_bottom
//   steps = (k_bottom - k_top) // (L - 1) ;  k_l = k_bottom - l * steps
//   N < C:            no compression
//   N < 2 (C - w):    every layer keeps C - w (uniform SnapKV)
//   otherwise:        layer l keeps TopK(pooled window votes, k_l) + the window.
// Defaults: beta = 20, w = 8, kernel 7, max pooling (KVCache-Factory runner; kvpress: 20 / 64 /
// kernel 5 / avg).
//
// Deviations / choices:
//  * Integer division as in KVCache-Factory; hence sum_l k_l can fall short of L (C - w) by up to
//    L - 2 tokens (kvpress uses float arithmetic). The paper's formula is the same pyramid without
//    rounding.
//  * L = 1: the single layer keeps C - w.
//  * GQA: the reference repeats KV per query head (or, with --kv_cache_granularity kv_head,
//    aggregates with mean/max/sum); KVScope aggregates per KV head with --param gqa (mean default).
//  * Ties go to the lower position; kept tokens stay in positional order; pooling per query head
//    before aggregation (see snapkv.cpp for the shared scoring, window_vote.cpp).
//  * If C <= w, every layer keeps the last C tokens (the reference asserts C > w).
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "core/policies/builtin_policies.h"
#include "core/policies/head_tasks.h"
#include "core/policies/pyramid_budget.h"
#include "core/policies/window_vote.h"

namespace kvscope {

std::vector<int64_t> pyramid_layer_budgets(int64_t C, int64_t w, int64_t N, int64_t L,
                                           int64_t beta) {
    std::vector<int64_t> k(static_cast<size_t>(L), C - w);
    if (N < 2 * (C - w) || L <= 1) return k;
    int64_t k_top = (C - w) / beta;
    int64_t k_bottom = 2 * (C - w) - k_top;
    if (k_bottom >= N - w) {
        k_bottom = N - w;
        k_top = 2 * (C - w) - k_bottom;
    }
    const int64_t steps = (k_bottom - k_top) / (L - 1);
    for (int64_t l = 0; l < L; ++l)
        k[static_cast<size_t>(l)] = std::max<int64_t>(0, k_bottom - l * steps);
    return k;
}

namespace {

const PolicyInfo& pyramidkv_info() {
    static const PolicyInfo info{
        .name = "pyramidkv",
        .full_name = "PyramidKV",
        .paper = "PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information Funneling",
        .arxiv = "2406.02069",
        .code = "github.com/Zefan-Cai/KVCache-Factory",
        .regime = Regime::kPrefillOneshot,
        .venue = "COLM 2025",
        .rule =
            "SnapKV's selection with per-layer budgets that shrink linearly from the first layer "
            "to "
            "the last (a pyramid), the mean budget unchanged",
        .score_name = "observation-window votes",
        .picture = RulePicture::kLayerBudgets};
    return info;
}

ParamSchema pyramidkv_schema() {
    return {
        ParamSpec{
            .name = "beta",
            .type = ParamType::kInt,
            .default_value = int64_t{20},
            .min = 1.0,
            .help = "pyramid steepness: the top layer keeps (C - w) / beta (paper, runner: 20)"},
        window_param_spec(8, "observation window w (KVCache-Factory runner: 8)"),
        kernel_param_spec(7, "pooling kernel size, odd (runner: 7)"),
        pool_param_spec("max", "pooling of the votes (runner: max)"),
        gqa_param_spec("mean"),
    };
}

class PyramidKVPolicy final : public Policy {
  public:
    explicit PyramidKVPolicy(PolicyConfig c)
        : Policy(std::move(c)),
          beta_(params().get_int("beta")),
          vote_(window_vote_params("pyramidkv", params())),
          gqa_(parse_gqa(params().get_enum("gqa"))) {}
    const PolicyInfo& info() const override { return pyramidkv_info(); }
    PolicyNeeds needs() const override { return {.window = vote_.window}; }
    Plan after_prefill(const ScoreView& view) override {
        view.check();
        Plan plan;
        const int64_t C = budget_tokens();
        const int64_t N = view.prompt_len;
        const int64_t w = std::min(vote_.window, C);
        const std::vector<int64_t> k = pyramid_layer_budgets(C, w, N, view.n_layers, beta_);
        // The votes and top-k of every head on the host pool (independent per head), then the
        // plan in head order.
        std::vector<std::pair<const HeadScores*, int64_t>> heads;  // (head, its layer's budget)
        for (const LayerScores& ls : view.layers)
            for (const HeadScores& hs : ls.heads)
                heads.emplace_back(&hs, k[static_cast<size_t>(ls.layer)]);
        std::vector<std::vector<int64_t>> keep(heads.size());
        const int64_t work = heads.empty() ? 0 : heads.front().first->n() * (w + vote_.kernel);
        for_each_head_task(static_cast<int64_t>(heads.size()), work, [&](int64_t i) {
            const auto& [hs, kl] = heads[static_cast<size_t>(i)];
            if (N >= C && hs->n() > kl + w)
                keep[static_cast<size_t>(i)] =
                    window_vote_keep(*hs, w, vote_.kernel, vote_.pool, gqa_, kl);
        });
        size_t i = 0;
        for (const LayerScores& ls : view.layers) {
            const int64_t kl = k[static_cast<size_t>(ls.layer)];
            for (const HeadScores& hs : ls.heads) {
                HeadPlan& hp = plan.at(ls.layer, hs.kv_head);
                hp.budget = N < C ? C : kl + w;
                std::vector<int64_t>& kept = keep[i++];
                if (N < C || hs.n() <= kl + w) continue;
                hp.keep = std::move(kept);
                if (explaining())
                    note_scores(ls.layer, hs.kv_head, -1, hs.positions,
                                window_vote_explain(hs, w, vote_.kernel, vote_.pool, gqa_),
                                "PyramidKV vote (layer budget " + std::to_string(kl + w) +
                                    "): attention from the last " + std::to_string(w) +
                                    " prompt queries, pooled, " + gqa_name(gqa_) +
                                    " over the group; window kept");
            }
            plan.notes.push_back(
                LayerNote{ls.layer, "pyramid_budget", static_cast<double>(kl + w)});
        }
        return plan;
    }

  private:
    int64_t beta_;
    WindowVoteParams vote_;
    GqaAgg gqa_;
};

}  // namespace

PolicyEntry pyramidkv_policy_entry() {
    return policy_entry<PyramidKVPolicy>(pyramidkv_info(), pyramidkv_schema());
}

}  // namespace kvscope
