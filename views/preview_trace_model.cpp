#include "views/preview_trace_model.h"

#include <chrono>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "traces/cache_event_record.h"
#include "traces/trace_reader.h"

namespace kvscope::views {

PreviewTraceModel::PreviewTraceModel(std::shared_ptr<TraceModel> base,
                                     std::shared_ptr<const whatif::Preview> preview,
                                     const PreviewLabel& label)
    : base_(std::move(base)), preview_(std::move(preview)) {
    if (!base_ || !preview_) throw std::invalid_argument("preview model: no base or no preview");
    const TraceSummary& b = base_->summary();
    if (b.n_layers != preview_->n_layers || b.n_heads != preview_->n_kv_heads) {
        std::ostringstream msg;
        msg << "the preview's model shape (" << preview_->n_layers << " layers x "
            << preview_->n_kv_heads << " heads) differs from the trace's (" << b.n_layers << " x "
            << b.n_heads << ")";
        throw std::invalid_argument(msg.str());
    }
    summary_ = b;
    summary_.path = b.path;
    summary_.policy = label.policy.empty() ? preview_->policy : label.policy;
    summary_.policy_params = label.policy_params;
    summary_.budget_tokens = label.budget_tokens;
    summary_.budget_ratio = label.budget_ratio;
    std::string what = summary_.policy;
    if (label.budget_ratio > 0) {
        std::ostringstream r;
        r << " ratio " << label.budget_ratio;
        what += r.str();
    } else if (label.budget_tokens > 0) {
        what += " " + std::to_string(label.budget_tokens) + " tokens";
    }
    summary_.notice =
        "what-if preview: " + what +
        (preview_->decode_time ? ", its prefill decision only (re-run to see decoding)"
                               : ", the prompt's compression (step 0)");
    summary_.state = trace::RunState::kComplete;
    summary_.live = false;
    summary_.n_tokens = b.n_prompt_tokens;
    summary_.n_steps = 1;

    const size_t LH = static_cast<size_t>(summary_.n_layers) * summary_.n_heads;
    head_events_.assign(LH, {});
    histories_.assign(LH, nullptr);
    for (size_t i = 0; i < preview_->events.size(); ++i) {
        const CacheEvent& e = preview_->events[i];
        // The prompt's appends are implied (added by with_prompt_appends below), as in a trace.
        if (e.op == CacheOp::kAppend && e.step < 0) continue;
        if (!valid_lh(e.layer, e.head)) continue;
        head_events_[static_cast<size_t>(lh_key(e.layer, e.head))].push_back(i);
    }
    for (const whatif::HeadOutcome& h : preview_->heads) has_budgets_ |= h.budget >= 0;
    // A preview replaces the views' model on every slider move: when every history is cheap to
    // build (the demo model's 2k prompt: 16 heads x 2k tokens, ~2 ms in all), build on request
    // instead of over several frames, so the views show the whole preview in their next frame.
    build_at_once_ = static_cast<int64_t>(LH) * summary_.n_prompt_tokens <= (int64_t{1} << 20);
}

std::string_view PreviewTraceModel::token_text(int64_t token) const {
    return token >= 0 && token < summary_.n_tokens ? base_->token_text(token) : std::string_view{};
}

trace::TokenRole PreviewTraceModel::token_role(int64_t token) const {
    return base_->token_role(token);
}

int32_t PreviewTraceModel::token_id(int64_t token) const {
    return token >= 0 && token < summary_.n_tokens ? base_->token_id(token) : -1;
}

StepInfo PreviewTraceModel::step_info(int64_t step) const {
    // Step 0 samples from the prefill's logits, which the compression does not change.
    return step == 0 ? base_->step_info(0) : StepInfo{};
}

std::vector<trace::EventRecord> PreviewTraceModel::step0_events(int32_t layer, int32_t head) const {
    std::vector<trace::EventRecord> ev;
    if (!valid_lh(layer, head)) return ev;
    const auto& idx = head_events_[static_cast<size_t>(lh_key(layer, head))];
    ev.reserve(idx.size());
    for (size_t i : idx)  // at step 0: the prompt's compression is committed with step 0
        ev.push_back(trace::event_record(preview_->events[i], 0));
    return trace::with_prompt_appends(ev, layer, head, summary_.n_prompt_tokens);
}

std::shared_ptr<HeadHistory> PreviewTraceModel::build_history(int32_t layer, int32_t head) const {
    auto h = std::make_shared<HeadHistory>(layer, head);
    h->apply_step(step0_events(layer, head));
    return h;
}

std::shared_ptr<const HeadHistory> PreviewTraceModel::history(int32_t layer, int32_t head,
                                                              Load load) const {
    if (!valid_lh(layer, head)) return nullptr;
    const int64_t key = lh_key(layer, head);
    auto& slot = histories_[static_cast<size_t>(key)];
    if (slot) return slot;
    if (load == Load::kLater && !build_at_once_) {
        queued_.insert(key);
        return nullptr;
    }
    queued_.erase(key);
    slot = build_history(layer, head);
    return slot;
}

bool PreviewTraceModel::load_pending(double budget_ms) {
    const auto start = std::chrono::steady_clock::now();
    while (!queued_.empty()) {
        const int64_t key = *queued_.begin();
        queued_.erase(queued_.begin());
        auto& slot = histories_[static_cast<size_t>(key)];
        if (!slot)
            slot = build_history(static_cast<int32_t>(key / summary_.n_heads),
                                 static_cast<int32_t>(key % summary_.n_heads));
        const std::chrono::duration<double, std::milli> spent =
            std::chrono::steady_clock::now() - start;
        if (spent.count() >= budget_ms) break;
    }
    return !queued_.empty();
}

int32_t PreviewTraceModel::budget(int64_t step, int32_t layer, int32_t head) const {
    if (step != 0 || !valid_lh(layer, head)) return -1;
    return static_cast<int32_t>(preview_->head(layer, head).budget);
}

int64_t PreviewTraceModel::bytes_held(int64_t step, int32_t layer) const {
    if (step != 0 || layer < 0 || layer >= static_cast<int32_t>(preview_->bytes_layer.size()))
        return -1;
    return preview_->bytes_layer[static_cast<size_t>(layer)];
}

float PreviewTraceModel::needle_survival(int32_t span, int64_t step, int32_t layer,
                                         int32_t head) const {
    if (step != 0 || !valid_lh(layer, head) || span < 0 ||
        span >= static_cast<int32_t>(preview_->survival.size()))
        return std::nanf("");
    const auto& s = preview_->survival[static_cast<size_t>(span)];
    const size_t i = static_cast<size_t>(lh_key(layer, head));
    return i < s.size() ? s[i] : std::nanf("");
}

}  // namespace kvscope::views
