#pragma once
// STATUS: stable (additions only from here on)
// Policy: host logic over score arrays that decides what the KV cache keeps, merges or quantises.
// No I/O, no kernels: the same code runs live (on scores the engine computed) and in what-if
// replay (on scores read from a trace).
//
// Engine flow (one sequence):
//   p->begin(dims, prompt_len);                       // resets per-sequence state
//   prefill all layers (full attention, statistics p->needs() asked for)
//   plan = p->after_prefill(view of ALL layers);  apply(plan, cache);
//   per decode step t, per layer l:
//       for each KV head: d = p->on_append(ctx);  apply_append(d, cache, ...)   // before attention
//       attention over the cache (this step's rows if needs().step_rows)
//       plan = p->after_decode_layer(view of layer l);  apply(plan, cache);
// A policy keeps its own per-slot state (H2O cumulative scores...) and re-aligns it to the
// positions the next view shows, so it stays right whatever the cache did in between.
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/cache/kv_cache.h"
#include "core/policies/budget.h"
#include "core/policies/param_schema.h"
#include "core/policies/plan.h"
#include "core/policies/score_view.h"

namespace kvscope {

// P: compress once after the prompt, the cache then grows by one per step.
// D: evict / merge / quantise at every decode step, the cache stays bounded.
enum class Regime : uint8_t { kPrefillOneshot, kDecodeContinuous };

inline const char* regime_code(Regime r) {
    return r == Regime::kPrefillOneshot ? "P" : "D";
}

// The shape of a policy's rule, for a one-picture explanation (app/studio/policy_card.cpp).
enum class RulePicture : uint8_t {
    kNone,            // full cache
    kSinksWindow,     // first tokens + recent window
    kHittersRecent,   // highest accumulated attention + recent window
    kWindowVotes,     // observation window votes, top-k + window
    kLastQuery,       // the last query's attention, top-k
    kLowKeyNorm,      // lowest key L2 norm
    kLayerBudgets,    // budgets that differ per layer, window-vote selection inside
    kMerge,           // evicted tokens merged into a kept token
    kMixedPrecision,  // important tokens at high precision, the rest at low precision
    kQuantizeAll,     // every token quantised, a recent residual at full precision
};

struct PolicyInfo {
    std::string name;       // CLI name: "snapkv"
    std::string full_name;  // "SnapKV"
    std::string paper;      // paper title
    std::string arxiv;      // "2404.14469" (empty for `full`)
    std::string code;       // official code: "github.com/FasterDecoding/SnapKV"
    Regime regime = Regime::kPrefillOneshot;
    bool needs_budget = true;  // false: --budget/--ratio are optional (full, kivi)
    // For explainer cards (Studio) and guided stories (views/story.h): where the paper appeared,
    // the rule in one line (our words), the name of the score the policy ranks tokens by ("" when
    // it ranks by none) and which picture draws the rule.
    std::string venue;  // "NeurIPS 2024"; "preprint" when none
    std::string rule;
    std::string score_name;
    RulePicture picture = RulePicture::kNone;
};

// The statistics a policy needs: what the policy decides from, in ScoreView / AppendContext terms.
// The engine's StatsRequest (core/engine/engine.h) is derived from it and never the other way:
// StatsRequest::add(needs) ORs the statistics fields in (colsum, window_rows(), key_norms,
// step_rows, query_absmax); a caller adds its own (all_logits, maps, more window rows). The
// fields without a StatsRequest twin are not statistics but ways the engine feeds the policy
// (keys / prerope_keys / queries views, the control neuron); the engine reads them from here.
struct PolicyNeeds {
    bool colsum = false;        // prompt attention column sums, per query head
    int64_t window = 0;         // last `window` prompt query rows, per query head
    bool last_row = false;      // the last prompt query's row (a window of >= 1 row suffices)
    bool key_norms = false;     // ||k|| of the cached keys, per KV head
    bool keys = false;          // cached post-RoPE key vectors (cosine similarities)
    bool step_rows = false;     // each decode step's attention row, per query head
    bool prerope_keys = false;  // cache stores pre-RoPE keys (DMC)
    bool queries = false;       // the decode token's pre-RoPE queries in on_append (DMC)
    // DMC checkpoints: the last channel (d-1) of the pre-RoPE q and k carries the decisions. When
    // set, the engine reports its RAW values (AppendContext::control, HeadScores::control) and
    // zeroes that channel in q and k before RoPE and again after RoPE (also in the rotate
    // function it gives the cache), as the reference's rotary kernel does.
    bool control_neuron = false;
    bool query_absmax = false;  // per-channel max |q| over the prompt (HeadScores; MiKV)
    // on_append decides about each decode token (append or merge: DMC). Without it the engine
    // appends a step's tokens itself, a layer at a time, and on_append is not called; a device
    // backend may then keep the new rows and take them from its own memory.
    bool append_decisions = false;

    // Prompt attention rows the policy reads: `window`, or 1 for the last row alone.
    int64_t window_rows() const { return std::max<int64_t>(window, last_row ? 1 : 0); }
};

struct ModelDims {
    int64_t n_layers = 0;
    int64_t n_heads = 0;
    int64_t n_kv_heads = 0;
    int64_t head_dim = 0;

    int64_t group() const { return n_kv_heads > 0 ? n_heads / n_kv_heads : 1; }
};

// What a policy is constructed from: a validated budget and a complete parameter set.
struct PolicyConfig {
    Budget budget;
    ParamValues params;
};

// The decode token of one (layer, KV head), before it enters the cache.
struct AppendContext {
    int64_t layer = 0;
    int64_t kv_head = 0;
    int64_t pos = 0;
    int64_t step = 0;
    std::span<const float> k;          // [d] post-RoPE
    std::span<const float> v;          // [d]
    std::span<const float> k_prerope;  // [d] when needs().prerope_keys
    std::span<const float> queries;    // [g * d] pre-RoPE, when needs().queries
    std::span<const float> control;    // [1 + g] when needs().control_neuron: raw channel d-1
                                       // of the token's pre-RoPE key, then of its g queries
    const KVCache* cache = nullptr;    // the cache as it is now
};

// The per-slot score behind one decision of a ranking policy on one (layer, KV head): higher =
// kept first; +inf for the slots the policy protects whatever their score (sinks, observation
// window, recent tokens). `name` says what the score is, in the policy's own terms.
struct SlotScores {
    std::string name;
    int64_t step = -1;               // -1 = the prompt's compression, else the decode step
    std::vector<int64_t> positions;  // the slots decided on
    std::vector<double> score;       // [positions]
};

class Policy {
  public:
    explicit Policy(PolicyConfig cfg) : cfg_(std::move(cfg)) {}
    virtual ~Policy() = default;
    Policy(const Policy&) = delete;
    Policy& operator=(const Policy&) = delete;

    virtual const PolicyInfo& info() const = 0;
    virtual PolicyNeeds needs() const = 0;

    const PolicyConfig& config() const { return cfg_; }
    const ParamValues& params() const { return cfg_.params; }
    const Budget& budget() const { return cfg_.budget; }

    // Starts a sequence: stores dims and prompt length, resolves the budget (budget_tokens(),
    // -1 when none was given) and resets per-sequence state. Overrides must call Policy::begin.
    virtual void begin(const ModelDims& dims, int64_t prompt_len);

    // After the whole prompt: a plan for all layers (view.layers holds every layer).
    virtual Plan after_prefill(const ScoreView& view) = 0;

    // Decode token entering the cache of (layer, KV head): append (default) or merge (DMC).
    // Called only when needs().append_decisions is set.
    virtual AppendDecision on_append(const AppendContext& ctx);

    // After this step's attention in one layer (view.layers holds that layer only).
    virtual Plan after_decode_layer(const ScoreView& view);

    // Explanations (kvscope explain): while on, a ranking policy records the scores of each
    // decision (note_scores) so that a caller can say why a token was dropped by the policy's own
    // measure. Off by default: no cost. Policies that do not rank (kivi, dmc, full) record none.
    void set_explaining(bool on) {
        explaining_ = on;
        explained_.clear();
    }
    bool explaining() const { return explaining_; }
    // The scores of the last decision on (layer, kv_head); nullptr when none was recorded.
    const SlotScores* explained(int64_t layer, int64_t kv_head) const {
        const auto it = explained_.find({layer, kv_head});
        return it == explained_.end() ? nullptr : &it->second;
    }

  protected:
    void note_scores(int64_t layer, int64_t kv_head, int64_t step,
                     std::span<const int64_t> positions, std::vector<double> score,
                     std::string name) const {
        if (!explaining_) return;
        explained_[{layer, kv_head}] = SlotScores{
            std::move(name), step, {positions.begin(), positions.end()}, std::move(score)};
    }
    const ModelDims& dims() const { return dims_; }
    int64_t prompt_len() const { return prompt_len_; }
    int64_t budget_tokens() const { return budget_tokens_; }

  private:
    PolicyConfig cfg_;
    ModelDims dims_;
    int64_t prompt_len_ = 0;
    int64_t budget_tokens_ = -1;
    bool explaining_ = false;
    // A side channel for explanations, not decision state: const deciders may record into it.
    mutable std::map<std::pair<int64_t, int64_t>, SlotScores> explained_;
};

}  // namespace kvscope
