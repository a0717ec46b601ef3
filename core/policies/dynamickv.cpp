// DynamicKV — task-aware adaptive per-layer budgets (prefill one-shot).
// Paper: X. Zhou, W. Wang, M. Zeng, J. Guo, X. Liu, L. Shen, M. Zhang, L. Ding, "DynamicKV:
//        Task-Aware Adaptive KV Cache Compression for Long Context LLMs", arXiv 2412.14838
//        (EMNLP 2025).
// Official code: github.com/DreamMr/DynamicKV (kv_compression/token_drop/methods/dynamic_v11.py,
//        DynamicKVClusterV11; llama_model_impl/dynamickv_v11.py for the layer loop).
//
// Rule (P; not in the reference-agreement table, docs/policy_reference.md "Limits"). Prompt length
// N, window ws, budget wt = average tokens per layer and KV head incl. the window, base b = wt -
// ws, per-layer temporary budget bs = min(r_max * b, N - ws), update interval m:
//   for l = 0 .. L-1:
//     s^ = pool1d(sum of the last ws prompt rows over the keys j < N - ws)  (SnapKV votes)
//     list_l[h] = the bs best slots of head h in DESCENDING score order
//     if l % m == m - 1 (and, see below, at l = L - 1):
//       global top-k over the scores of layers 0..l, all heads, k = b * H' * (l + 1)
//       cnt_j = selected entries of layer j, integer-divided by (l + 1)     (as the code)
//       at l = L - 1, if sum(cnt) != H' * (N - ws): cnt_l += floor(k / L) - sum(cnt)  (code)
//       BL_j = int(bs * cnt_j / sum(cnt));  s = sum(BL) / (b * L);  BL_j = floor(BL_j / s);
//       BL_l += b * L - sum(BL)                                               (remainder)
//       list_j[h] = its first min(BL_j, N - ws, len(list_j)) entries, for every j <= l
//   kept(l, h) = list_l[h] + the window [N - ws, N).
// H' is the number of score rows competing per layer: KV heads (gqa mean / max) or query heads
// (gqa per_query_head, as the reference, which ranks every query head).
//
// Defaults from the code: ws = 8, kernel 7, avg pooling (Llama-3 / InternLM; the Mistral and Qwen2
// scripts use max), r_max = 10, m = 4.
//
// Deviations / choices:
//  * When L is not a multiple of m the reference never re-budgets the last L mod m layers (they
//    keep bs = r_max * b tokens). KVScope runs one more update at l = L - 1 so the average budget
//    is always wt, as the paper states.
//  * A new BL_j is clamped to the length of layer j's current list (the reference slices the
//    concatenation list+window and so can keep window tokens twice).
//  * Degenerate counts the code would divide by zero on (no entry selected, b = 0, all BL_j = 0)
//    give the whole b * L to the last processed layer / keep only the window.
//  * N <= wt keeps everything (the reference's arithmetic ends there too, by capping).
//    If ws >= wt the window is cut to wt tokens (b = 0).
//  * GQA: the reference repeats KV per query head. KVScope keeps a KV-head cache: gqa mean / max
//    rank by the group's combined score; per_query_head ranks by the round-robin union of the
//    query heads' rankings (selection.h) and lets every query head's scores compete globally.
//  * Ties go to the lower slot (per list) and to the earlier (layer, head, slot) globally.
//  * Prefill attention itself always uses the full prompt (as the reference); the kept sets are
//    committed after the last layer. The kept slots stay in positional order in the cache.
#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <string>

#include "core/policies/builtin_policies.h"
#include "core/policies/selection.h"
#include "core/policies/window_vote.h"

namespace kvscope {

namespace {

const PolicyInfo& dynamickv_info() {
    static const PolicyInfo info{
        .name = "dynamickv",
        .full_name = "DynamicKV",
        .paper = "DynamicKV: Task-Aware Adaptive KV Cache Compression for Long Context LLMs",
        .arxiv = "2412.14838",
        .code = "github.com/DreamMr/DynamicKV",
        .regime = Regime::kPrefillOneshot,
        .venue = "EMNLP 2025",
        .rule =
            "SnapKV's votes choose the tokens; every few layers the budgets are re-distributed "
            "across "
            "layers by where the top votes fall",
        .score_name = "observation-window votes",
        .picture = RulePicture::kLayerBudgets};
    return info;
}

ParamSchema dynamickv_schema() {
    return {
        window_param_spec(
            8, "observation window ws: the last ws prompt queries vote and are always kept"),
        kernel_param_spec(7, "pooling kernel size, odd"),
        pool_param_spec("avg",
                        "pooling of the votes (code: avg for Llama-3 / InternLM, max for Mistral "
                        "/ Qwen2)"),
        ParamSpec{
            .name = "r_max",
            .type = ParamType::kFloat,
            .default_value = 10.0,
            .min = 1.0,
            .help = "maximum per-layer expansion: a layer holds at most r_max * (budget - window) "
                    "selected tokens"},
        ParamSpec{
            .name = "interval",
            .type = ParamType::kInt,
            .default_value = int64_t{4},
            .min = 1.0,
            .help = "m: budgets are re-distributed after every m layers (and after the last)"},
        gqa_param_spec("mean"),
    };
}

// One selected-score row competing in the global top-k: scores over [0, N - ws).
struct Row {
    int64_t layer;
    Scores scores;
};

class DynamicKVPolicy final : public Policy {
  public:
    explicit DynamicKVPolicy(PolicyConfig c)
        : Policy(std::move(c)),
          vote_(window_vote_params("dynamickv", params())),
          r_max_(params().get_float("r_max")),
          interval_(params().get_int("interval")),
          gqa_(parse_gqa(params().get_enum("gqa"))) {}
    const PolicyInfo& info() const override { return dynamickv_info(); }
    PolicyNeeds needs() const override { return {.window = vote_.window}; }

    Plan after_prefill(const ScoreView& view) override {
        view.check();
        Plan plan;
        const int64_t wt = budget_tokens();
        const int64_t L = static_cast<int64_t>(view.layers.size());
        if (L == 0) return plan;
        const int64_t N = view.layers.front().heads.front().n();
        if (N <= wt) {
            for (const LayerScores& ls : view.layers)
                for (const HeadScores& hs : ls.heads) plan.at(ls.layer, hs.kv_head).budget = wt;
            return plan;
        }
        const int64_t w = std::min(vote_.window, wt);
        const int64_t b = wt - w;
        const int64_t cols = N - w;
        const int64_t bs = std::min<int64_t>(
            static_cast<int64_t>(std::floor(r_max_ * static_cast<double>(b) + 1e-9)), cols);

        // lists[l][h]: score-ordered kept candidates; rows: everything that competes globally.
        std::vector<std::vector<std::vector<int64_t>>> lists(static_cast<size_t>(L));
        std::vector<Row> rows;
        std::vector<int64_t> budget(static_cast<size_t>(L), bs);
        for (int64_t l = 0; l < L; ++l) {
            const LayerScores& ls = view.layers[static_cast<size_t>(l)];
            for (const HeadScores& hs : ls.heads) {
                if (hs.n() != N)
                    throw std::invalid_argument("dynamickv: every head must hold the prompt");
                std::vector<Scores> per_q;
                if (b > 0) per_q = window_vote_scores(hs, w, vote_.kernel, vote_.pool);
                lists[static_cast<size_t>(l)].push_back(b > 0 ? ranked_list(per_q, bs)
                                                              : std::vector<int64_t>{});
                if (gqa_ == GqaAgg::kPerQueryHead) {
                    for (Scores& s : per_q) rows.push_back(Row{l, std::move(s)});
                } else if (b > 0) {
                    rows.push_back(Row{l, aggregate(per_q, gqa_)});
                }
            }
            const bool last = l == L - 1;
            if (b > 0 && ((l % interval_) == interval_ - 1 || last)) {
                rebudget(rows, l, L, b, bs, cols, lists, budget, plan);
            }
        }
        for (int64_t l = 0; l < L; ++l) {
            const LayerScores& ls = view.layers[static_cast<size_t>(l)];
            plan.notes.push_back(
                LayerNote{ls.layer, "dynamickv_budget",
                          static_cast<double>(budget[static_cast<size_t>(l)] + w)});
            for (size_t h = 0; h < ls.heads.size(); ++h) {
                HeadPlan& hp = plan.at(ls.layer, ls.heads[h].kv_head);
                hp.budget = budget[static_cast<size_t>(l)] + w;
                std::vector<int64_t> keep = lists[static_cast<size_t>(l)][h];
                std::sort(keep.begin(), keep.end());
                hp.keep = sorted_union(std::move(keep), index_range(N - w, N));
                if (explaining() && b > 0)
                    note_scores(ls.layer, ls.heads[h].kv_head, -1, ls.heads[h].positions,
                                window_vote_explain(ls.heads[h], w, vote_.kernel, vote_.pool, gqa_),
                                "DynamicKV vote: attention from the last " + std::to_string(w) +
                                    " prompt queries, pooled, " + gqa_name(gqa_) +
                                    " over the group; layer budget " +
                                    std::to_string(budget[static_cast<size_t>(l)] + w) +
                                    " set by the global competition; window kept");
            }
        }
        return plan;
    }

  private:
    // The k best slots in descending order; per_query_head: round-robin union of the rankings.
    std::vector<int64_t> ranked_list(const std::vector<Scores>& per_q, int64_t k) const {
        std::vector<std::vector<int64_t>> ranks;
        if (gqa_ == GqaAgg::kPerQueryHead) {
            for (const Scores& s : per_q) ranks.push_back(descending(s));
        } else {
            ranks.push_back(descending(aggregate(per_q, gqa_)));
        }
        return round_robin_union(ranks, k, ranks.front().size());
    }

    static std::vector<int64_t> descending(const Scores& s) {
        std::vector<int64_t> idx(s.size());
        std::iota(idx.begin(), idx.end(), int64_t{0});
        std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t c) {
            return s[static_cast<size_t>(a)] > s[static_cast<size_t>(c)];
        });
        return idx;
    }

    // The progressive update after layer l (the "if l % m == m - 1" block of the header, with
    // the code's arithmetic).
    static void rebudget(const std::vector<Row>& rows, int64_t l, int64_t L, int64_t b, int64_t bs,
                         int64_t cols, std::vector<std::vector<std::vector<int64_t>>>& lists,
                         std::vector<int64_t>& budget, Plan& plan) {
        const int64_t rows_per_layer = static_cast<int64_t>(rows.size()) / (l + 1);
        const int64_t k = b * rows_per_layer * (l + 1);
        // Global top-k over (row, slot) entries, ties to the earlier entry: find the k-th
        // largest value (O(entries)), count what is above it, fill up with ties in entry order.
        const int64_t n_entries = static_cast<int64_t>(rows.size()) * cols;
        const int64_t take = std::min(k, n_entries);
        std::vector<int64_t> cnt(static_cast<size_t>(l + 1), 0);
        if (take > 0) {
            std::vector<double> vals;
            vals.reserve(static_cast<size_t>(n_entries));
            for (const Row& r : rows) vals.insert(vals.end(), r.scores.begin(), r.scores.end());
            auto kth = vals.begin() + (take - 1);
            std::nth_element(vals.begin(), kth, vals.end(), std::greater<double>());
            const double cut = *kth;
            int64_t above = 0;
            for (const Row& r : rows)
                for (double v : r.scores) above += v > cut ? 1 : 0;
            int64_t ties_left = take - above;
            for (const Row& r : rows) {
                for (double v : r.scores) {
                    if (v > cut || (v == cut && ties_left-- > 0))
                        ++cnt[static_cast<size_t>(r.layer)];
                }
            }
        }
        for (int64_t& c : cnt) c /= (l + 1);
        // The code's fix-up at the last layer, with its exact condition (sum != rows * cols).
        const int64_t sum_cnt = std::accumulate(cnt.begin(), cnt.end(), int64_t{0});
        if (l == L - 1 && sum_cnt != rows_per_layer * cols) cnt.back() += k / L - sum_cnt;
        const int64_t z = std::accumulate(cnt.begin(), cnt.end(), int64_t{0});

        const int64_t total = b * L;
        std::vector<int64_t> bl(cnt.size(), 0);
        if (z > 0)
            for (size_t j = 0; j < cnt.size(); ++j)
                bl[j] = static_cast<int64_t>(static_cast<double>(bs) * static_cast<double>(cnt[j]) /
                                             static_cast<double>(z));
        const int64_t sum0 = std::accumulate(bl.begin(), bl.end(), int64_t{0});
        if (sum0 > 0) {
            const double ss = static_cast<double>(sum0) / static_cast<double>(total);
            for (int64_t& x : bl) x = static_cast<int64_t>(std::floor(static_cast<double>(x) / ss));
        }
        bl.back() += total - std::accumulate(bl.begin(), bl.end(), int64_t{0});
        for (size_t j = 0; j < bl.size(); ++j) {
            int64_t nb = std::clamp<int64_t>(bl[j], 0, cols);
            for (auto& list : lists[j]) {
                nb = std::min<int64_t>(nb, static_cast<int64_t>(list.size()));
            }
            for (auto& list : lists[j]) list.resize(static_cast<size_t>(nb));
            budget[j] = nb;
        }
        plan.notes.push_back(LayerNote{l, "dynamickv_update", static_cast<double>(z)});
    }

    WindowVoteParams vote_;
    double r_max_;
    int64_t interval_;
    GqaAgg gqa_;
};

}  // namespace

PolicyEntry dynamickv_policy_entry() {
    return policy_entry<DynamicKVPolicy>(dynamickv_info(), dynamickv_schema());
}

}  // namespace kvscope
