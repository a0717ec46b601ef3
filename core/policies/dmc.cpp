// DMC — Dynamic Memory Compression (decode-continuous, per token).
// Paper: P. Nawrot, A. Lancucki, M. Chochowski, D. Tarjan, E. M. Ponti, "Dynamic Memory
//        Compression: Retrofitting LLMs for Accelerated Inference", arXiv 2403.09636 (ICML 2024).
// Official code: github.com/NVIDIA/Megatron-LM, branch `dmc` (megatron/contrib/dmc/dmc.py,
//        triton.py, inference.py, arguments.py).
//
// mode = checkpoint (DMC proper; only meaningful for a DMC-retrofitted checkpoint), per layer,
// KV head and token t (not in the reference-agreement table: docs/policy_reference.md, "Limits"):
//   alpha_t = [k_t[d-1] - init_val > 0]             raw pre-RoPE key, last channel (merge?)
//   omega_t = sigmoid(mean_g q_t[d-1] + init_val) + eps   raw pre-RoPE queries of the group,
//                                                    eps = 2^-7 (bf16 epsilon, as the code)
//   channel d-1 of q and k is zeroed before and after RoPE (engine: PolicyNeeds::control_neuron).
//   alpha = 0 (or the first token): open a new slot.  alpha = 1: the token joins the last slot,
//   whose key/value become the omega-weighted mean of the LAST `window` (12) tokens of its group
//   (older contributions leave the ring buffer), key averaged pre-RoPE and rotated at the newest
//   token's position (the slot moves to that position).
//
// mode = proxy — NOT DMC: a training-free imitation for vanilla models (our proposal,
// not from the paper). omega = 1; alpha_t = 1 iff the open group has fewer than
// `window` tokens and cos(k_t, mean pre-RoPE key of the group) >= theta_h, where theta_h (per
// layer and KV head) tracks the target merge rate p* = 1 - 1/cr with a Robbins-Monro quantile
// update after every token: theta_h <- clamp(theta_h + theta_lr * (alpha_t - p*), -1, 1).
// Expect much larger quality loss than trained DMC: vanilla models never learned to read
// averaged keys.
//
// Defaults (arguments.py): init_val 5, window 12; cr 4 (the proxy's target, the code's default
// training target).
//
// Deviations / choices:
//  * Prompt: the reference runs the prompt token by token, each token attending to the
//    compressed cache. KVScope's prefill attends over the full prompt, then after_prefill replays
//    the same per-token decisions over the prompt and folds every group into its newest token
//    (cache merges with pre-RoPE keys; weights omega_i / Z inside the window, 0 for the older
//    members, so traces show every merged token).
//  * The prompt's last group is closed at the end of the prompt: the first generated token opens
//    a new slot (the values of the prompt tokens are not in the ScoreView, so their window
//    contributions cannot be carried over).
//  * alpha uses the fp32 rule k - init_val > 0 (the bf16 kernel tests k - 5 - 0.00785 >= 0).
//  * GQA: omega is the mean over the group's query heads (as the training path; the inference
//    kernel was written for g = 1).
//  * The ring buffer is recomputed from the stored contributions (no running-sum drift); the
//    cache accounts slots only (DMC's running sums are not counted, as a real DMC cache holds
//    K/V = sums / Z).
#include <algorithm>
#include <cmath>
#include <deque>
#include <stdexcept>
#include <string>

#include "core/error.h"
#include "core/policies/builtin_policies.h"
#include "core/policies/per_head_state.h"
#include "core/policies/selection.h"

namespace kvscope {

namespace {

constexpr double kOmegaEps = 0.0078125;  // torch.finfo(torch.bfloat16).eps

const PolicyInfo& dmc_info() {
    static const PolicyInfo info{
        .name = "dmc",
        .full_name = "DMC",
        .paper = "Dynamic Memory Compression: Retrofitting LLMs for Accelerated Inference",
        .arxiv = "2403.09636",
        .code = "github.com/NVIDIA/Megatron-LM (branch dmc)",
        .regime = Regime::kDecodeContinuous,
        .needs_budget = false,
        .venue = "ICML 2024",
        .rule =
            "learned per-head decisions either append each new token or average it into the last "
            "slot, "
            "so the cache grows slower than the sequence",
        .score_name = "",
        .picture = RulePicture::kMerge};
    return info;
}

ParamSchema dmc_schema() {
    return {
        ParamSpec{
            .name = "mode",
            .type = ParamType::kEnum,
            .default_value = std::string("checkpoint"),
            .choices = {"checkpoint", "proxy"},
            .help = "checkpoint: DMC proper, for DMC-retrofitted checkpoints (decisions read from "
                    "channel d-1 of q/k); proxy: NOT DMC, a training-free cosine-merge imitation "
                    "for vanilla models"},
        ParamSpec{.name = "init_val",
                  .type = ParamType::kFloat,
                  .default_value = 5.0,
                  .help =
                      "checkpoint: offset of the decision neurons (alpha: k - init_val > 0; omega: "
                      "sigmoid(q + init_val))"},
        ParamSpec{.name = "window",
                  .type = ParamType::kInt,
                  .default_value = int64_t{12},
                  .min = 1.0,
                  .max = 1024.0,
                  .help =
                      "a slot is the weighted mean of at most this many newest tokens of its group "
                      "(proxy: groups are capped at this size)"},
        ParamSpec{.name = "cr",
                  .type = ParamType::kFloat,
                  .default_value = 4.0,
                  .min = 1.0,
                  .max = 1024.0,
                  .help = "proxy (NOT DMC): target compression ratio; merge rate 1 - 1/cr"},
        ParamSpec{.name = "theta_init",
                  .type = ParamType::kFloat,
                  .default_value = 0.5,
                  .min = -1.0,
                  .max = 1.0,
                  .help = "proxy (NOT DMC): initial cosine threshold of every head"},
        ParamSpec{.name = "theta_lr",
                  .type = ParamType::kFloat,
                  .default_value = 0.02,
                  .min = 0.0,
                  .max = 1.0,
                  .help = "proxy (NOT DMC): step of the threshold's merge-rate tracking"},
    };
}

double cosine(const std::vector<double>& a, std::span<const float> b) {
    double ab = 0.0, aa = 0.0, bb = 0.0;
    for (size_t c = 0; c < a.size(); ++c) {
        ab += a[c] * b[c];
        aa += a[c] * a[c];
        bb += static_cast<double>(b[c]) * b[c];
    }
    if (aa == 0.0 || bb == 0.0) return 0.0;
    return ab / std::sqrt(aa * bb);
}

class DmcPolicy final : public Policy {
  public:
    explicit DmcPolicy(PolicyConfig c)
        : Policy(std::move(c)),
          checkpoint_(params().get_enum("mode") == "checkpoint"),
          init_val_(params().get_float("init_val")),
          window_(params().get_int("window")),
          target_rate_(1.0 - 1.0 / params().get_float("cr")),
          theta_init_(params().get_float("theta_init")),
          theta_lr_(params().get_float("theta_lr")) {}
    const PolicyInfo& info() const override { return dmc_info(); }
    PolicyNeeds needs() const override {
        return {.prerope_keys = true, .control_neuron = checkpoint_, .append_decisions = true};
    }
    void begin(const ModelDims& dims, int64_t prompt_len) override {
        Policy::begin(dims, prompt_len);
        HeadState init;
        init.theta = theta_init_;
        state_.reset(dims.n_layers, dims.n_kv_heads, init);
    }

    Plan after_prefill(const ScoreView& view) override {
        view.check();
        Plan plan;
        const int64_t d = view.head_dim;
        const int64_t g = view.group();
        for (const LayerScores& ls : view.layers) {
            int64_t tokens = 0, slots = 0;
            for (const HeadScores& hs : ls.heads) {
                const int64_t n = hs.n();
                if (hs.keys_prerope.empty())
                    throw std::invalid_argument("dmc: the view has no pre-RoPE keys");
                if (checkpoint_ && hs.control.size() != static_cast<size_t>(n * (1 + g)))
                    throw std::invalid_argument(
                        "dmc (mode checkpoint): the engine did not report the decision neuron "
                        "(HeadScores::control); use --param mode=proxy for a vanilla model");
                HeadState& st = state_.at(ls.layer, hs.kv_head);
                std::vector<std::vector<int64_t>> groups;
                std::vector<std::vector<double>> omegas;
                std::deque<Contribution> win;
                for (int64_t t = 0; t < n; ++t) {
                    const std::span<const float> k =
                        hs.keys_prerope.subspan(static_cast<size_t>(t * d), static_cast<size_t>(d));
                    Decision dec;
                    if (checkpoint_) {
                        dec = checkpoint_decision(hs.control.subspan(
                            static_cast<size_t>(t * (1 + g)), static_cast<size_t>(1 + g)));
                    } else {
                        dec = proxy_decision(st, win, k);
                    }
                    if (groups.empty()) dec.merge = false;  // first token: forced append
                    if (dec.merge) {
                        groups.back().push_back(t);
                        omegas.back().push_back(dec.omega);
                    } else {
                        groups.push_back({t});
                        omegas.push_back({dec.omega});
                        win.clear();
                    }
                    win.push_back(Contribution{dec.omega, masked(k), {}});
                    if (static_cast<int64_t>(win.size()) > window_) win.pop_front();
                }
                HeadPlan& hp = plan.at(ls.layer, hs.kv_head);
                for (size_t gi = 0; gi < groups.size(); ++gi) {
                    if (groups[gi].size() < 2) continue;
                    hp.merges.push_back(group_merge(groups[gi], omegas[gi]));
                }
                st.open_pos = -1;  // the prompt's last group is closed (see the header)
                st.win.clear();
                tokens += n;
                slots += static_cast<int64_t>(groups.size());
            }
            plan.notes.push_back(LayerNote{ls.layer, "dmc_cr",
                                           slots > 0 ? static_cast<double>(tokens) / slots : 1.0});
        }
        return plan;
    }

    AppendDecision on_append(const AppendContext& ctx) override {
        HeadState& st = state_.at(ctx.layer, ctx.kv_head);
        const int64_t d = static_cast<int64_t>(ctx.v.size());
        if (ctx.k_prerope.size() != static_cast<size_t>(d))
            throw std::invalid_argument("dmc: the decode token has no pre-RoPE key");
        // The open slot must still be the cache's last one (what-if replays may change it).
        int64_t last_slot = -1;
        if (ctx.cache) {
            const auto pos = ctx.cache->positions(ctx.layer, ctx.kv_head);
            if (!pos.empty() && pos.back() == st.open_pos)
                last_slot = static_cast<int64_t>(pos.size()) - 1;
        }
        if (last_slot < 0) {
            st.open_pos = -1;
            st.win.clear();
        }
        Decision dec;
        if (checkpoint_) {
            if (ctx.control.empty())
                throw std::invalid_argument(
                    "dmc (mode checkpoint): the engine did not report the decision neuron "
                    "(AppendContext::control); use --param mode=proxy for a vanilla model");
            dec = checkpoint_decision(ctx.control);
        } else {
            dec = proxy_decision(st, st.win, ctx.k_prerope);
        }
        Contribution add{dec.omega, masked(ctx.k_prerope),
                         std::vector<double>(ctx.v.begin(), ctx.v.end())};
        if (!dec.merge || last_slot < 0) {
            st.win.clear();
            st.win.push_back(std::move(add));
            st.open_pos = ctx.pos;
            return {};
        }
        double z_old = 0.0;
        for (const Contribution& c : st.win) z_old += c.omega;
        st.win.push_back(std::move(add));
        if (static_cast<int64_t>(st.win.size()) > window_) {
            z_old -= st.win.front().omega;
            st.win.pop_front();
        }
        double z = 0.0;
        std::vector<double> ks(static_cast<size_t>(d), 0.0), vs(static_cast<size_t>(d), 0.0);
        for (const Contribution& c : st.win) {
            z += c.omega;
            for (int64_t i = 0; i < d; ++i) {
                ks[static_cast<size_t>(i)] += c.omega * c.k[static_cast<size_t>(i)];
                vs[static_cast<size_t>(i)] += c.omega * c.v[static_cast<size_t>(i)];
            }
        }
        AppendDecision out;
        out.merge = true;
        out.spec.dst = last_slot;
        out.spec.dst_weight = static_cast<float>(z_old / z);
        out.spec.new_weight = static_cast<float>(dec.omega / z);
        out.spec.prerope = true;
        out.spec.take_position = true;
        out.spec.similarity = static_cast<float>(dec.similarity);
        out.spec.threshold = static_cast<float>(dec.threshold);
        out.result_k.resize(static_cast<size_t>(d));
        out.result_v.resize(static_cast<size_t>(d));
        for (int64_t i = 0; i < d; ++i) {
            out.result_k[static_cast<size_t>(i)] =
                static_cast<float>(ks[static_cast<size_t>(i)] / z);
            out.result_v[static_cast<size_t>(i)] =
                static_cast<float>(vs[static_cast<size_t>(i)] / z);
        }
        st.open_pos = ctx.pos;
        return out;
    }

  private:
    struct Contribution {
        double omega = 1.0;
        std::vector<double> k;  // [d] pre-RoPE key (decision channel zeroed in checkpoint mode)
        std::vector<double> v;  // [d] value (empty for prompt tokens: never needed)
    };
    struct HeadState {
        int64_t open_pos = -1;         // position of the open slot, -1 = next token appends
        std::deque<Contribution> win;  // last <= window tokens of the open group
        double theta = 0.5;            // proxy threshold
    };
    struct Decision {
        bool merge = false;
        double omega = 1.0;
        double similarity = CacheEvent::kNone;
        double threshold = CacheEvent::kNone;
    };

    std::vector<double> masked(std::span<const float> k) const {
        std::vector<double> out(k.begin(), k.end());
        if (checkpoint_ && !out.empty()) out.back() = 0.0;
        return out;
    }

    // control = [raw k[d-1], raw q_0[d-1], ..., raw q_{g-1}[d-1]].
    Decision checkpoint_decision(std::span<const float> control) const {
        Decision dec;
        dec.merge = static_cast<double>(control[0]) - init_val_ > 0.0;
        double qm = 0.0;
        for (size_t i = 1; i < control.size(); ++i) qm += control[i];
        if (control.size() > 1) qm /= static_cast<double>(control.size() - 1);
        dec.omega = 1.0 / (1.0 + std::exp(-(qm + init_val_))) + kOmegaEps;
        return dec;
    }

    // Cosine to the open group's mean key (omega = 1), capped group size, then the threshold
    // moves toward the target merge rate.
    Decision proxy_decision(HeadState& st, const std::deque<Contribution>& win,
                            std::span<const float> k) const {
        Decision dec;
        dec.threshold = st.theta;
        if (!win.empty() && static_cast<int64_t>(win.size()) < window_) {
            std::vector<double> mean(k.size(), 0.0);
            for (const Contribution& c : win)
                for (size_t i = 0; i < mean.size(); ++i) mean[i] += c.k[i];
            dec.similarity = cosine(mean, k);
            dec.merge = dec.similarity >= st.theta;
        }
        const double a = dec.merge ? 1.0 : 0.0;
        st.theta = std::clamp(st.theta + theta_lr_ * (a - target_rate_), -1.0, 1.0);
        return dec;
    }

    // One prompt group folded into its newest token: weights omega_i / Z over the last `window`
    // members, 0 for older ones.
    MergeOp group_merge(const std::vector<int64_t>& members,
                        const std::vector<double>& omega) const {
        const size_t m = members.size();
        const size_t first =
            m > static_cast<size_t>(window_) ? m - static_cast<size_t>(window_) : 0;
        double z = 0.0;
        for (size_t i = first; i < m; ++i) z += omega[i];
        MergeOp op;
        op.dst = members.back();
        op.dst_weight = static_cast<float>(omega.back() / z);
        op.prerope = true;
        for (size_t i = 0; i + 1 < m; ++i) {
            op.src.push_back(members[i]);
            op.src_weights.push_back(i >= first ? static_cast<float>(omega[i] / z) : 0.0f);
        }
        return op;
    }

    bool checkpoint_;
    double init_val_;
    int64_t window_;
    double target_rate_, theta_init_, theta_lr_;
    PerHeadState<HeadState> state_{"dmc"};
};

}  // namespace

PolicyEntry dmc_policy_entry() {
    return policy_entry<DmcPolicy>(dmc_info(), dmc_schema());
}

}  // namespace kvscope
