// StreamingLLM — attention sinks + recent window.
// Paper: G. Xiao, Y. Tian, B. Chen, S. Han, M. Lewis, "Efficient Streaming Language Models with
//        Attention Sinks", arXiv 2309.17453 (ICLR 2024).
// Official code: github.com/mit-han-lab/streaming-llm (StartRecentKVCache; run scripts 4 + 2000).
//
// Rule (D): per (layer, KV head) keep the first `sinks` slots and the most recent
// budget - sinks slots; evict the oldest non-sink token when the cache exceeds the budget.
// Applied once after prefill (like KVCache-Factory's StreamingLLMKVCluster with w = C - 4) and
// then after every decode step.
//
// Deviations:
//  * Positions: the original caches pre-RoPE keys and re-applies RoPE with the in-cache index each
//    step, so query-key distances never exceed the window. KVScope keeps every token's ORIGINAL
//    position (post-RoPE keys, like kvpress's StreamingLLMPress without KeyRerotationPress). The
//    kept sets are identical; attention differs for distant sinks.
//  * Budget: the paper sizes the window directly ("recent"); here the normalised budget C counts
//    sinks and window, recent = C - sinks. If C <= sinks, only the first C tokens are kept.
//  * The sinks are the first slots of the cache, i.e. positions 0..sinks-1 (never evicted).
#include <algorithm>
#include <limits>

#include "core/policies/builtin_policies.h"
#include "core/policies/selection.h"

namespace kvscope {

namespace {

const PolicyInfo& streaming_info() {
    static const PolicyInfo info{
        .name = "streaming_llm",
        .full_name = "StreamingLLM",
        .paper = "Efficient Streaming Language Models with Attention Sinks",
        .arxiv = "2309.17453",
        .code = "github.com/mit-han-lab/streaming-llm",
        .regime = Regime::kDecodeContinuous,
        .venue = "ICLR 2024",
        .rule =
            "keeps the first tokens (attention sinks) and a window of the most recent tokens; "
            "everything in between is evicted as the window slides",
        .score_name = "position",
        .picture = RulePicture::kSinksWindow};
    return info;
}

ParamSchema streaming_schema() {
    return {ParamSpec{
        .name = "sinks",
        .type = ParamType::kInt,
        .default_value = int64_t{4},
        .min = 0.0,
        .help = "number of initial tokens always kept (attention sinks); official scripts: 4"}};
}

class StreamingLLMPolicy final : public Policy {
  public:
    explicit StreamingLLMPolicy(PolicyConfig c)
        : Policy(std::move(c)), sinks_(params().get_int("sinks")) {}
    const PolicyInfo& info() const override { return streaming_info(); }
    PolicyNeeds needs() const override { return {}; }
    Plan after_prefill(const ScoreView& view) override { return compress(view); }
    Plan after_decode_layer(const ScoreView& view) override { return compress(view); }

  private:
    Plan compress(const ScoreView& view) const {
        view.check();
        Plan plan;
        const int64_t C = budget_tokens();
        for (const LayerScores& ls : view.layers) {
            for (const HeadScores& hs : ls.heads) {
                HeadPlan& hp = plan.at(ls.layer, hs.kv_head);
                hp.budget = C;
                const int64_t n = hs.n();
                if (n <= C) continue;
                const int64_t s = std::min(sinks_, C);
                hp.keep = sorted_union(index_range(0, s), index_range(n - (C - s), n));
                if (explaining()) {
                    Scores sc(static_cast<size_t>(n));
                    for (int64_t j = 0; j < n; ++j)
                        sc[static_cast<size_t>(j)] =
                            j < s ? std::numeric_limits<double>::infinity()
                                  : static_cast<double>(hs.positions[static_cast<size_t>(j)]);
                    note_scores(ls.layer, hs.kv_head, view.step, hs.positions, std::move(sc),
                                "recency: the token's position (the " + std::to_string(s) +
                                    " attention sinks are kept)");
                }
            }
        }
        return plan;
    }

    int64_t sinks_;
};

}  // namespace

PolicyEntry streaming_llm_policy_entry() {
    return policy_entry<StreamingLLMPolicy>(streaming_info(), streaming_schema());
}

}  // namespace kvscope
