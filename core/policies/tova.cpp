// TOVA — Token Omission Via Attention (decode-continuous).
// Paper: M. Oren, M. Hassid, N. Yarden, Y. Adi, R. Schwartz, "Transformers are Multi-State RNNs",
//        arXiv 2401.06104 (EMNLP 2024).
// Official code: github.com/schwartz-lab-NLP/TOVA (src/tova_cache.py).
//
// Rule (D), per layer, fixed cache size C: when n > C, score every slot by the attention the
// LAST query gives it, averaged over all query heads of the layer, and keep the TopK(C) — the
// same token set for every head of the layer — in positional order. After the prompt the last
// prompt query's row is used (one bulk reduction), then each decode step's row. No explicit sinks
// or recency window.
//
// Deviations / choices:
//  * GQA (--param gqa): mean (paper: mean over all query heads, one set per layer), max (max over
//    all query heads, one set per layer), per_kv_head (each KV head keeps the top C of its own
//    group's mean; heads then hold different tokens — not in the paper).
//  * kvpress's TOVAPress protects the last token; the paper and the official cache do not, and
//    neither does KVScope.
//  * Ties go to the lower position.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "core/policies/builtin_policies.h"
#include "core/policies/selection.h"

namespace kvscope {

namespace {

const PolicyInfo& tova_info() {
    static const PolicyInfo info{
        .name = "tova",
        .full_name = "TOVA",
        .paper = "Transformers are Multi-State RNNs",
        .arxiv = "2401.06104",
        .code = "github.com/schwartz-lab-NLP/TOVA",
        .regime = Regime::kDecodeContinuous,
        .venue = "EMNLP 2024",
        .rule =
            "when the cache is full, drops the token the last query attends "
            "to least (averaged over the layer's heads)",
        .score_name = "last-query attention",
        .picture = RulePicture::kLastQuery};
    return info;
}

ParamSchema tova_schema() {
    return {ParamSpec{.name = "gqa",
                      .type = ParamType::kEnum,
                      .default_value = std::string("mean"),
                      .choices = {"mean", "max", "per_kv_head"},
                      .help =
                          "how the layer's query heads combine the last query's attention: mean "
                          "(paper) or max over all heads (one set per layer), or per_kv_head (each "
                          "KV head ranks by its own group's mean)"}};
}

class TOVAPolicy final : public Policy {
  public:
    explicit TOVAPolicy(PolicyConfig c) : Policy(std::move(c)), mode_(params().get_enum("gqa")) {}
    const PolicyInfo& info() const override { return tova_info(); }
    PolicyNeeds needs() const override {
        return {.window = 1, .last_row = true, .step_rows = true};
    }
    Plan after_prefill(const ScoreView& view) override { return compress(view, false); }
    Plan after_decode_layer(const ScoreView& view) override { return compress(view, true); }

  private:
    Plan compress(const ScoreView& view, bool decode) const {
        view.check();
        Plan plan;
        const int64_t C = budget_tokens();
        for (const LayerScores& ls : view.layers) {
            // rows[kv head][q]: the last query's attention over that head's slots.
            std::vector<std::vector<Scores>> rows;
            for (const HeadScores& hs : ls.heads) {
                std::vector<Scores> r;
                for (int64_t q = 0; q < view.group(); ++q) {
                    std::span<const float> row = decode
                                                     ? (static_cast<size_t>(q) < hs.step_row.size()
                                                            ? hs.step_row[static_cast<size_t>(q)]
                                                            : std::span<const float>{})
                                                     : hs.last_query_row(q);
                    if (row.empty())
                        throw std::invalid_argument("tova: layer " + std::to_string(ls.layer) +
                                                    " has no last-query attention row");
                    r.push_back(to_scores(row));
                }
                rows.push_back(std::move(r));
            }
            if (mode_ == "per_kv_head") {
                for (size_t h = 0; h < ls.heads.size(); ++h) {
                    HeadPlan& hp = plan.at(ls.layer, ls.heads[h].kv_head);
                    hp.budget = C;
                    if (ls.heads[h].n() > C) {
                        Scores agg = aggregate(rows[h], GqaAgg::kMean);
                        hp.keep = top_k(agg, C);
                        if (explaining())
                            note_scores(ls.layer, ls.heads[h].kv_head, view.step,
                                        ls.heads[h].positions, std::move(agg),
                                        "TOVA: the newest query's attention, mean over the group");
                    }
                }
                continue;
            }
            // One set for the layer: all heads must hold the same positions.
            for (const HeadScores& hs : ls.heads)
                if (!std::equal(hs.positions.begin(), hs.positions.end(),
                                ls.heads[0].positions.begin(), ls.heads[0].positions.end()))
                    throw std::invalid_argument("tova: KV heads of layer " +
                                                std::to_string(ls.layer) +
                                                " hold different tokens; use gqa=per_kv_head");
            std::vector<Scores> all;
            for (auto& r : rows)
                for (auto& s : r) all.push_back(std::move(s));
            const int64_t n = ls.heads[0].n();
            std::vector<int64_t> keep;
            if (n > C) {
                Scores agg = aggregate(all, mode_ == "max" ? GqaAgg::kMax : GqaAgg::kMean);
                keep = top_k(agg, C);
                if (explaining())
                    for (const HeadScores& hs : ls.heads)
                        note_scores(ls.layer, hs.kv_head, view.step, hs.positions, agg,
                                    std::string("TOVA: the newest query's attention, ") +
                                        (mode_ == "max" ? "max" : "mean") +
                                        " over every query head of the layer");
            }
            for (const HeadScores& hs : ls.heads) {
                HeadPlan& hp = plan.at(ls.layer, hs.kv_head);
                hp.budget = C;
                if (n > C) hp.keep = keep;
            }
        }
        return plan;
    }

    std::string mode_;
};

}  // namespace

PolicyEntry tova_policy_entry() {
    return policy_entry<TOVAPolicy>(tova_info(), tova_schema());
}

}  // namespace kvscope
