// SnapKV — observation-window voting + pooling (prefill one-shot).
// Paper: Y. Li, Y. Huang, B. Yang, B. Venkitesh, A. Locatelli, H. Ye, T. Cai, P. Lewis, D. Chen,
//        "SnapKV: LLM Knows What You Are Looking for Before Generation", arXiv 2404.14469
//        (NeurIPS 2024).
// Official code: github.com/FasterDecoding/SnapKV (snapkv/monkeypatch/snapkv_utils.py).
//
// Rule (P), per layer and KV head, prompt length N, budget C (window included):
//   s_j = sum_{i in last w prompt queries} P_ij for j < N - w;  s^ = pool1d(s, kernel, stride 1,
//   padding kernel/2);  keep TopK(s^, C - w) plus the window. Nothing happens when N <= C.
//
// Defaults follow the official LongBench configs: w = 32, kernel = 7, max pooling
// (the class defaults in the code are w = 32, kernel = 5, avg; kvpress uses 64 / 5 / avg;
// KVCache-Factory's runner 8 / 7 / max).
//
// Deviations / choices:
//  * GQA: the reference repeats KV to the query heads (a cache per query head). KVScope keeps a
//    KV-head cache and aggregates the group's pooled scores with --param gqa (default mean, as
//    kvpress; per_query_head = round-robin union, see selection.h).
//  * Pooling is applied per query head before aggregation (kvpress order); for avg pooling and
//    mean aggregation the order does not matter.
//  * avg pooling divides by the kernel size at the edges (zero padding counted, avg_pool1d's
//    default), max pooling ignores the padding.
//  * If C <= w the window is cut to the last C tokens (the reference assumes C > w).
//  * Ties go to the lower position (torch.topk leaves them open; max pooling makes plateaus).
//  * The kept tokens stay in positional order (the reference gathers them in top-k order).
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "core/policies/builtin_policies.h"
#include "core/policies/head_tasks.h"
#include "core/policies/window_vote.h"

namespace kvscope {

namespace {

const PolicyInfo& snapkv_info() {
    static const PolicyInfo info{
        .name = "snapkv",
        .full_name = "SnapKV",
        .paper = "SnapKV: LLM Knows What You Are Looking for Before Generation",
        .arxiv = "2404.14469",
        .code = "github.com/FasterDecoding/SnapKV",
        .regime = Regime::kPrefillOneshot,
        .venue = "NeurIPS 2024",
        .rule =
            "once, after the prompt: the last w prompt queries (the "
            "observation window) vote with their attention, the votes are "
            "pooled, and each head keeps the top-voted tokens plus the window",
        .score_name = "observation-window votes",
        .picture = RulePicture::kWindowVotes};
    return info;
}

ParamSchema snapkv_schema() {
    return {
        window_param_spec(32,
                          "observation window w: the last w prompt queries vote (LongBench "
                          "configs: 32)"),
        kernel_param_spec(7, "pooling kernel size, odd (LongBench configs: 7)"),
        pool_param_spec("max", "pooling of the votes (LongBench configs: max)"),
        gqa_param_spec("mean"),
    };
}

class SnapKVPolicy final : public Policy {
  public:
    explicit SnapKVPolicy(PolicyConfig c)
        : Policy(std::move(c)),
          vote_(window_vote_params("snapkv", params())),
          gqa_(parse_gqa(params().get_enum("gqa"))) {}
    const PolicyInfo& info() const override { return snapkv_info(); }
    PolicyNeeds needs() const override { return {.window = vote_.window}; }
    Plan after_prefill(const ScoreView& view) override {
        view.check();
        Plan plan;
        const int64_t C = budget_tokens();
        const int64_t w = std::min(vote_.window, C);
        // The votes and top-k of every head on the host pool (independent per head), then the
        // plan in head order.
        std::vector<const HeadScores*> heads;
        for (const LayerScores& ls : view.layers)
            for (const HeadScores& hs : ls.heads) heads.push_back(&hs);
        std::vector<std::vector<int64_t>> keep(heads.size());
        const int64_t work = heads.empty() ? 0 : heads.front()->n() * (w + vote_.kernel);
        for_each_head_task(static_cast<int64_t>(heads.size()), work, [&](int64_t i) {
            const HeadScores& hs = *heads[static_cast<size_t>(i)];
            if (hs.n() > C)
                keep[static_cast<size_t>(i)] =
                    window_vote_keep(hs, w, vote_.kernel, vote_.pool, gqa_, C - w);
        });
        size_t i = 0;
        for (const LayerScores& ls : view.layers) {
            for (const HeadScores& hs : ls.heads) {
                HeadPlan& hp = plan.at(ls.layer, hs.kv_head);
                hp.budget = C;
                std::vector<int64_t>& kept = keep[i++];
                if (hs.n() <= C) continue;
                hp.keep = std::move(kept);
                if (explaining())
                    note_scores(ls.layer, hs.kv_head, -1, hs.positions,
                                window_vote_explain(hs, w, vote_.kernel, vote_.pool, gqa_),
                                "SnapKV vote: attention from the last " + std::to_string(w) +
                                    " prompt queries, pooled (kernel " +
                                    std::to_string(vote_.kernel) + "), " + gqa_name(gqa_) +
                                    " over the group; window kept");
            }
        }
        return plan;
    }

  private:
    WindowVoteParams vote_;
    GqaAgg gqa_;
};

}  // namespace

PolicyEntry snapkv_policy_entry() {
    return policy_entry<SnapKVPolicy>(snapkv_info(), snapkv_schema());
}

}  // namespace kvscope
