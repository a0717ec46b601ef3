#pragma once
// TraceModel: the read-only questions the views ask of a trace. Views draw from this and a
// ViewState only (no Qt, no file I/O). ReaderTraceModel (views/reader_trace_model.h) answers them
// lazily from a .kvtrace.h5 file through traces/trace_reader.h.
//
// Axes as in traces/trace_schema.h: L layers, H cache heads per layer, P prompt tokens,
// T = P + S tokens, S steps (step 0 = prefill + its compression; step s >= 1 feeds generated
// token s-1 at position P+s-1). "After step s" is the state every view shows at step s.
//
// Heavy data (a HeadHistory per (layer, head)) is loaded on request: history(l, h, kNow) loads at
// once; kLater queues it and returns nullptr until load_pending() has run, so a view that needs
// every (layer, head) fills in over a few frames instead of blocking the UI.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "traces/trace_schema.h"
#include "views/head_history.h"
#include "views/head_states.h"

namespace kvscope::views {

struct TraceSummary {
    std::string path;
    std::string model_name;
    std::string architecture;
    std::string policy;
    std::string policy_params;  // compact "name=value" list
    std::string gqa_aggregation;
    std::string notice;  // non-empty for an incomplete / still-running trace
    trace::RunState state = trace::RunState::kRunning;
    bool live = false;  // opened while being written (SWMR); refresh() follows it
    int32_t n_layers = 0;
    int32_t n_heads = 0;
    int32_t head_dim = 0;
    int64_t n_prompt_tokens = 0;
    int64_t n_tokens = 0;
    int64_t n_steps = 0;
    int64_t budget_tokens = -1;
    double budget_ratio = -1.0;
};

struct StepInfo {
    int64_t step = 0;
    int32_t token_id = -1;
    std::string piece;
    float entropy = 0.0f;
    std::vector<int32_t> topk_ids;
    std::vector<float> topk_logprobs;
};

enum class Load { kNow, kLater };

// Counts of one (layer, head) cache after a step (HeadHistory's per-step counts).
struct HeadCounts {
    int64_t appended = 0;   // tokens that ever changed
    int64_t held = 0;       // tokens held (any precision)
    int64_t held_bits = 0;  // Σ bits over held tokens
    int64_t merged = 0;
    int64_t evicted = 0;
};

class TraceModel {
  public:
    virtual ~TraceModel() = default;

    virtual const TraceSummary& summary() const = 0;

    // ---- Tokens [0, n_tokens) ----
    virtual std::string_view token_text(int64_t token) const = 0;
    virtual trace::TokenRole token_role(int64_t token) const = 0;
    virtual int32_t token_id(int64_t token) const = 0;
    virtual StepInfo step_info(int64_t step) const = 0;

    // ---- Cache contents per (layer, head) ----
    virtual std::shared_ptr<const HeadHistory> history(int32_t layer, int32_t head,
                                                       Load load) const = 0;
    // Loads queued histories for at most `budget_ms`; returns true while some remain queued.
    virtual bool load_pending(double budget_ms) = 0;
    virtual bool has_pending() const = 0;
    // Counts of (layer, head) after `step` (clamped to the recorded steps), for views that show
    // every (layer, head) at once: nullopt while not loaded (kLater queues it like history()).
    // This default answers from the history; a model that has the counts without the history
    // (ReaderTraceModel over a trace with /summary) overrides it.
    virtual std::optional<HeadCounts> head_counts(int32_t layer, int32_t head, int64_t step,
                                                  Load load) const {
        const auto h = history(layer, head, load);
        if (!h) return std::nullopt;
        return HeadCounts{h->appended(step), h->held(step), h->held_bits(step), h->merged(step),
                          h->evicted(step)};
    }

    // Token states of (layer, head) from the trace's record-time summary (views/head_states.h):
    // the states and bits history() gives, without replaying the prefill. has_head_states() is
    // false for a trace without the summary (then use history()); head_states answers nullptr
    // then, and with kLater until load_pending() has read it (queued like history()).
    virtual bool has_head_states() const { return false; }
    virtual std::shared_ptr<const HeadStates> head_states(int32_t /*layer*/, int32_t /*head*/,
                                                          Load /*load*/) const {
        return nullptr;
    }

    // ---- Per-step tables ----
    virtual int32_t budget(int64_t step, int32_t layer, int32_t head) const = 0;  // -1 none
    virtual bool has_budgets() const = 0;
    virtual int64_t bytes_held(int64_t step, int32_t layer) const = 0;  // -1 not recorded

    // ---- Prefill statistics, vectors of P floats (NaN = not recorded) ----
    virtual std::shared_ptr<const std::vector<float>> key_norm(int32_t layer,
                                                               int32_t head) const = 0;
    virtual std::shared_ptr<const std::vector<float>> attn_received(int32_t layer,
                                                                    int32_t head) const = 0;
    // Observation-window votes: the attention the last prompt queries gave each prompt token,
    // summed (/prefill/window_scores, the score SnapKV-family policies rank by); empty when not
    // recorded. Read on request, not cached (guided stories read each head once).
    virtual std::vector<float> window_scores(int32_t /*layer*/, int32_t /*head*/) const {
        return {};
    }
    virtual float spearman(int32_t layer, int32_t head) const = 0;  // NaN when unknown
    virtual float density(int32_t layer, int32_t head) const = 0;
    virtual float density_layer(int32_t layer) const = 0;

    // ---- Marked spans (needles) ----
    virtual const std::vector<trace::MarkedSpan>& spans() const = 0;
    virtual int8_t answer_found(int32_t span) const = 0;  // 1 yes, 0 no, -1 unknown
    // Fraction of the span still held after `step` in (layer, head); NaN when not recorded.
    virtual float needle_survival(int32_t span, int64_t step, int32_t layer,
                                  int32_t head) const = 0;

    // ---- Live follow ----
    // Picks up steps committed since; true when the trace grew or ended.
    virtual bool refresh() = 0;

    // ---- Errors ----
    // Accessors never throw: a read that fails (a damaged dataset found late) answers "not
    // recorded" and leaves its message here. Returns the first such message and clears it.
    virtual std::string take_error() = 0;
};

}  // namespace kvscope::views
