#pragma once
// PreviewTraceModel: a what-if preview (core/whatif/preview.h) shown by the unchanged views as a
// one-step trace. It wraps the trace model of a run on the same prompt (the "base": tokens,
// prefill statistics and spans do not depend on the policy) and answers step 0 from the Preview:
// histories (the prompt held at full precision, then the preview's evict / merge / quantize
// events, as a recorded run's step 0 reads back), budgets, bytes held and needle survival.
// Only the prompt is shown: n_tokens = P, n_steps = 1; the answer is unknown (-1) until a re-run.
//
// Only plain fields of the Preview are read (no core/ code is linked into kvscope_views).
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/whatif/preview.h"
#include "views/trace_model.h"

namespace kvscope::views {

struct PreviewLabel {
    std::string policy;         // "snapkv"
    std::string policy_params;  // "window=32 pooling=max"
    int64_t budget_tokens = -1;
    double budget_ratio = -1.0;
};

class PreviewTraceModel final : public TraceModel {
  public:
    // `base` must show the same prompt and model shape (its first n_prompt_tokens tokens are the
    // preview's prompt; its layers x heads are the preview's n_layers x n_kv_heads). Throws
    // std::invalid_argument when the shapes differ.
    PreviewTraceModel(std::shared_ptr<TraceModel> base,
                      std::shared_ptr<const whatif::Preview> preview, const PreviewLabel& label);

    const TraceSummary& summary() const override { return summary_; }
    const whatif::Preview& preview() const { return *preview_; }
    const std::shared_ptr<TraceModel>& base() const { return base_; }

    std::string_view token_text(int64_t token) const override;
    trace::TokenRole token_role(int64_t token) const override;
    int32_t token_id(int64_t token) const override;
    StepInfo step_info(int64_t step) const override;

    std::shared_ptr<const HeadHistory> history(int32_t layer, int32_t head,
                                               Load load) const override;
    bool load_pending(double budget_ms) override;
    bool has_pending() const override { return !queued_.empty(); }

    int32_t budget(int64_t step, int32_t layer, int32_t head) const override;
    bool has_budgets() const override { return has_budgets_; }
    int64_t bytes_held(int64_t step, int32_t layer) const override;

    std::shared_ptr<const std::vector<float>> key_norm(int32_t layer, int32_t head) const override {
        return base_->key_norm(layer, head);
    }
    std::shared_ptr<const std::vector<float>> attn_received(int32_t layer,
                                                            int32_t head) const override {
        return base_->attn_received(layer, head);
    }
    float spearman(int32_t layer, int32_t head) const override {
        return base_->spearman(layer, head);
    }
    float density(int32_t layer, int32_t head) const override {
        return base_->density(layer, head);
    }
    float density_layer(int32_t layer) const override { return base_->density_layer(layer); }

    const std::vector<trace::MarkedSpan>& spans() const override { return base_->spans(); }
    int8_t answer_found(int32_t) const override { return -1; }
    float needle_survival(int32_t span, int64_t step, int32_t layer, int32_t head) const override;

    bool refresh() override { return false; }
    std::string take_error() override { return base_->take_error(); }

    // The events of (layer, head) as a recorded trace's step 0 holds them (prompt appends
    // included), in order. Exposed for tests.
    std::vector<trace::EventRecord> step0_events(int32_t layer, int32_t head) const;

  private:
    bool valid_lh(int32_t layer, int32_t head) const {
        return layer >= 0 && layer < summary_.n_layers && head >= 0 && head < summary_.n_heads;
    }
    int64_t lh_key(int32_t layer, int32_t head) const {
        return static_cast<int64_t>(layer) * summary_.n_heads + head;
    }
    std::shared_ptr<HeadHistory> build_history(int32_t layer, int32_t head) const;

    std::shared_ptr<TraceModel> base_;
    std::shared_ptr<const whatif::Preview> preview_;
    TraceSummary summary_;
    bool has_budgets_ = false;
    bool build_at_once_ = false;  // kLater builds at once (small prompts)
    // [L*H] indices into preview_->events of each (layer, head)'s events, in order.
    std::vector<std::vector<size_t>> head_events_;
    mutable std::vector<std::shared_ptr<HeadHistory>> histories_;  // [L*H], built on demand
    mutable std::set<int64_t> queued_;
};

}  // namespace kvscope::views
