#include "core/whatif/explain_policy.h"

#include <algorithm>
#include <limits>

namespace kvscope::whatif {

ExplainPolicy::ExplainPolicy(std::unique_ptr<Policy> inner, std::vector<int64_t> followed,
                             std::shared_ptr<std::vector<TokenDecision>> out)
    : Policy(inner->config()),
      inner_(std::move(inner)),
      followed_(std::move(followed)),
      decisions_(out ? std::move(out) : std::make_shared<std::vector<TokenDecision>>()) {
    std::sort(followed_.begin(), followed_.end());
    inner_->set_explaining(true);
}

void ExplainPolicy::begin(const ModelDims& dims, int64_t prompt_len) {
    Policy::begin(dims, prompt_len);
    inner_->begin(dims, prompt_len);
    decisions_->clear();
}

Plan ExplainPolicy::after_prefill(const ScoreView& view) {
    Plan plan = inner_->after_prefill(view);
    note(plan, view, true);
    return plan;
}

Plan ExplainPolicy::after_decode_layer(const ScoreView& view) {
    Plan plan = inner_->after_decode_layer(view);
    note(plan, view, false);
    return plan;
}

void ExplainPolicy::note(const Plan& plan, const ScoreView& view, bool prompt) {
    for (const LayerScores& ls : view.layers)
        for (const HeadScores& hs : ls.heads) {
            const HeadPlan* hp = plan.find(ls.layer, hs.kv_head);
            const SlotScores* sc = inner_->explained(ls.layer, hs.kv_head);
            // Scores recorded for this very decision (same step and slots), else none.
            if (sc &&
                (sc->step != view.step || sc->positions.size() != hs.positions.size() ||
                 !std::equal(sc->positions.begin(), sc->positions.end(), hs.positions.begin())))
                sc = nullptr;
            std::vector<char> kept(static_cast<size_t>(hs.n()), 1);
            if (hp && hp->keep) {
                std::fill(kept.begin(), kept.end(), 0);
                for (int64_t s : *hp->keep) kept[static_cast<size_t>(s)] = 1;
            }
            // Kept tokens by score, for the cut-off and "took its place".
            std::vector<std::pair<double, int64_t>> kept_scores;
            if (sc)
                for (int64_t j = 0; j < hs.n(); ++j)
                    if (kept[static_cast<size_t>(j)] &&
                        std::isfinite(sc->score[static_cast<size_t>(j)]))
                        kept_scores.push_back({sc->score[static_cast<size_t>(j)], j});
            std::sort(kept_scores.begin(), kept_scores.end());
            for (int64_t j = 0; j < hs.n(); ++j) {
                const int64_t pos = hs.positions[static_cast<size_t>(j)];
                if (!std::binary_search(followed_.begin(), followed_.end(), pos)) continue;
                TokenDecision d;
                d.step = prompt ? -1 : view.step;
                d.layer = ls.layer;
                d.kv_head = hs.kv_head;
                d.position = pos;
                d.budget = hp ? hp->budget : -1;
                d.action = kept[static_cast<size_t>(j)] ? "kept" : "evicted";
                if (hp) {
                    for (const MergeOp& m : hp->merges)
                        for (size_t i = 0; i < m.src.size(); ++i)
                            if (m.src[i] == j) {
                                d.action = "merged";
                                d.into_position = hs.positions[static_cast<size_t>(m.dst)];
                                if (i < m.src_weights.size()) d.weight = m.src_weights[i];
                            }
                    for (const QuantizeOp& q : hp->quantize)
                        if (std::find(q.slots.begin(), q.slots.end(), j) != q.slots.end() &&
                            d.action == "kept") {
                            d.action = "quantized";
                            d.bits = q.spec.bits;
                        }
                    for (const DemoteOp& q : hp->demote)
                        if (std::find(q.slots.begin(), q.slots.end(), j) != q.slots.end() &&
                            (d.action == "kept" || d.action == "quantized")) {
                            d.action = "demoted";
                            d.bits = q.bits;
                        }
                }
                if (!prompt && d.action == "kept") continue;  // decode: changes only
                if (sc) {
                    d.score_name = sc->name;
                    d.score = sc->score[static_cast<size_t>(j)];
                    d.candidates = hs.n();
                    int64_t better = 0;
                    for (int64_t k = 0; k < hs.n(); ++k) {
                        const double o = sc->score[static_cast<size_t>(k)];
                        better += o > d.score || (o == d.score && k < j);
                    }
                    d.rank = better + 1;
                    if (!kept_scores.empty()) d.cutoff = kept_scores.front().first;
                    if (d.action != "kept")
                        for (const auto& [v, k] : kept_scores) {
                            if (d.took_its_place.size() >= 5) break;
                            if (v >= d.score)
                                d.took_its_place.push_back(
                                    {hs.positions[static_cast<size_t>(k)], v});
                        }
                }
                decisions_->push_back(std::move(d));
            }
        }
}

}  // namespace kvscope::whatif
