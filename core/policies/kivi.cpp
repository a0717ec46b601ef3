// KIVI — tuning-free asymmetric low-bit KV quantisation (decode-continuous, nothing evicted).
// Paper: Z. Liu, J. Yuan, H. Jin, S. Zhong, Z. Xu, V. Braverman, B. Chen, X. Hu, "KIVI: A
//        Tuning-Free Asymmetric 2bit Quantization for KV Cache", arXiv 2402.02750 (ICML 2024).
// Official code: github.com/jy-yuan/KIVI (models/llama_kivi.py, quant/new_pack.py).
//
// Rule, per layer and KV head (not reference-checked: docs/policy_reference.md, "Limits"), bits b,
// group G, residual R (R % G == 0):
//   keys:   per-channel quantisation in groups of G consecutive tokens. Full-precision keys form a
//           residual; when it holds R tokens they are quantised as one block and the residual
//           empties. After the prompt (N tokens) the first N - (N mod R) keys are quantised (one
//           block, as the reference's single prefill call), the last N mod R stay full precision.
//   values: per-token quantisation in groups of G channels. The last R values stay full
//           precision; each new token pushes the oldest full-precision value into quantisation.
//           After the prompt all but the last R values are quantised.
//   Quantiser: asymmetric round-to-nearest, zero = group min, scale = (max - min) / (2^b - 1)
//   (core/cache/quantizer.h; scale and zero are held as fp16, as in the reference).
// Order within a step as in the reference: the new token is attended at full precision, the
// flush / push happens after the attention (after_decode_layer).
//
// Defaults: k_bits = v_bits = 2, G = 32, R = 128 (the LongBench runs; example.py uses R = 32).
//
// Deviations / choices:
//  * GQA: the reference asserts MHA (num_key_value_groups == 1); KVScope quantises each KV
//    head's cache, which is what a GQA port of the same rule does.
//  * Bits 1..8 are accepted (the paper evaluates 2 and 4) for what-if sweeps.
//  * The quantised prefix is tracked by position, so the state survives what-if replays where
//    the cache was changed in between (it assumes, as KIVI does, that nothing is evicted).
//  * Attention over quantised slots is dequantise-then-attend (the cache holds the dequantised
//    values), numerically what the reference's fused kernels compute up to rounding order.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "core/error.h"
#include "core/policies/builtin_policies.h"
#include "core/policies/per_head_state.h"
#include "core/policies/selection.h"

namespace kvscope {

namespace {

const PolicyInfo& kivi_info() {
    static const PolicyInfo info{
        .name = "kivi",
        .full_name = "KIVI",
        .paper = "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache",
        .arxiv = "2402.02750",
        .code = "github.com/jy-yuan/KIVI",
        .regime = Regime::kDecodeContinuous,
        .needs_budget = false,
        .venue = "ICML 2024",
        .rule =
            "nothing is evicted: keys are quantised per channel and values per token to a few "
            "bits, "
            "the most recent tokens kept at full precision until a group fills",
        .score_name = "",
        .picture = RulePicture::kQuantizeAll};
    return info;
}

ParamSchema kivi_schema() {
    return {
        ParamSpec{.name = "k_bits",
                  .type = ParamType::kInt,
                  .default_value = int64_t{2},
                  .min = 1.0,
                  .max = 8.0,
                  .help = "bits of the quantised keys (paper: 2 or 4)"},
        ParamSpec{.name = "v_bits",
                  .type = ParamType::kInt,
                  .default_value = int64_t{2},
                  .min = 1.0,
                  .max = 8.0,
                  .help = "bits of the quantised values (paper: 2 or 4)"},
        ParamSpec{.name = "group",
                  .type = ParamType::kInt,
                  .default_value = int64_t{32},
                  .min = 1.0,
                  .help =
                      "group size G: tokens per key group (per channel), channels per value group "
                      "(per token)"},
        ParamSpec{.name = "residual",
                  .type = ParamType::kInt,
                  .default_value = int64_t{128},
                  .min = 1.0,
                  .help =
                      "residual R: full-precision keys flushed in blocks of R, last R values kept "
                      "full precision; must be a multiple of group"},
    };
}

class KiviPolicy final : public Policy {
  public:
    explicit KiviPolicy(PolicyConfig c)
        : Policy(std::move(c)),
          k_bits_(static_cast<int>(params().get_int("k_bits"))),
          v_bits_(static_cast<int>(params().get_int("v_bits"))),
          group_(params().get_int("group")),
          residual_(params().get_int("residual")) {
        if (residual_ % group_ != 0)
            throw InputError("policy 'kivi', parameter 'residual': must be a multiple of group (" +
                             std::to_string(group_) + "), got " + std::to_string(residual_));
    }
    const PolicyInfo& info() const override { return kivi_info(); }
    PolicyNeeds needs() const override { return {}; }

    void begin(const ModelDims& dims, int64_t prompt_len) override {
        Policy::begin(dims, prompt_len);
        state_.reset(dims.n_layers, dims.n_kv_heads);
    }

    Plan after_prefill(const ScoreView& view) override {
        view.check();
        Plan plan;
        for (const LayerScores& ls : view.layers) {
            for (const HeadScores& hs : ls.heads) {
                HeadState& st = state_.at(ls.layer, hs.kv_head);
                st = HeadState{};
                HeadPlan& hp = plan.at(ls.layer, hs.kv_head);
                const int64_t n = hs.n();
                const int64_t nk = n - n % residual_;
                if (nk > 0) quantize_keys(st, hs, hp, 0, nk);
                if (n > residual_) quantize_values(st, hs, hp, 0, n - residual_);
            }
        }
        return plan;
    }

    Plan after_decode_layer(const ScoreView& view) override {
        view.check();
        Plan plan;
        for (const LayerScores& ls : view.layers) {
            for (const HeadScores& hs : ls.heads) {
                HeadState& st = state_.at(ls.layer, hs.kv_head);
                const int64_t n = hs.n();
                const int64_t qk = count_upto(hs, st.k_done_pos);
                const int64_t qv = count_upto(hs, st.v_done_pos);
                HeadPlan* hp = nullptr;
                auto head_plan = [&]() -> HeadPlan& {
                    if (!hp) hp = &plan.at(ls.layer, hs.kv_head);
                    return *hp;
                };
                // Normally at most one block / one value per step; loops cover skipped steps.
                for (int64_t b = qk; n - b >= residual_; b += residual_)
                    quantize_keys(st, hs, head_plan(), b, b + residual_);
                if (n - qv > residual_) quantize_values(st, hs, head_plan(), qv, n - residual_);
            }
        }
        return plan;
    }

  private:
    struct HeadState {
        int64_t k_done_pos = -1;  // every slot at or before this position has quantised keys
        int64_t v_done_pos = -1;  // ... quantised values
    };

    static int64_t count_upto(const HeadScores& hs, int64_t pos) {
        return std::upper_bound(hs.positions.begin(), hs.positions.end(), pos) -
               hs.positions.begin();
    }

    void quantize_keys(HeadState& st, const HeadScores& hs, HeadPlan& hp, int64_t b,
                       int64_t e) const {
        QuantizeOp op;
        op.slots = index_range(b, e);
        op.spec =
            QuantSpec{k_bits_, static_cast<int>(group_), QuantAxis::kPerChannel, KVPart::kKeys};
        hp.quantize.push_back(std::move(op));
        st.k_done_pos = hs.positions[static_cast<size_t>(e - 1)];
    }

    void quantize_values(HeadState& st, const HeadScores& hs, HeadPlan& hp, int64_t b,
                         int64_t e) const {
        QuantizeOp op;
        op.slots = index_range(b, e);
        op.spec =
            QuantSpec{v_bits_, static_cast<int>(group_), QuantAxis::kPerToken, KVPart::kValues};
        hp.quantize.push_back(std::move(op));
        st.v_done_pos = hs.positions[static_cast<size_t>(e - 1)];
    }

    int k_bits_, v_bits_;
    int64_t group_, residual_;
    PerHeadState<HeadState> state_{"kivi"};
};

}  // namespace

PolicyEntry kivi_policy_entry() {
    return policy_entry<KiviPolicy>(kivi_info(), kivi_schema());
}

}  // namespace kvscope
