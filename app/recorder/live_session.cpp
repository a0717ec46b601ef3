#include "app/recorder/live_session.h"

#include <algorithm>
#include <chrono>
#include <sstream>

#include "core/cache/kv_cache.h"
#include "core/error.h"
#include "core/policies/registry.h"
#include "core/whatif/force_keep.h"
#include "traces/trace_writer.h"

namespace kvscope::record {
namespace {

using clock_type = std::chrono::steady_clock;

double ms_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

}  // namespace

std::string PolicyChoice::describe() const {
    std::ostringstream os;
    os << name;
    if (budget.given()) os << " " << budget.describe();
    for (const auto& p : params) os << " " << p;
    return os.str();
}

PolicyChoice policy_from_trace(const trace::RunMetadata& meta) {
    PolicyChoice c;
    c.name = meta.policy.empty() ? "full" : meta.policy;
    for (const auto& item : meta.policy_params.items())
        c.params.push_back(
            item.key() + "=" +
            (item.value().is_string() ? item.value().get<std::string>() : item.value().dump()));
    const PolicyEntry* e = PolicyRegistry::global().find(c.name);
    if (e && e->info.needs_budget) {
        if (meta.budget_ratio > 0)
            c.budget.ratio = meta.budget_ratio;
        else if (meta.budget_tokens > 0)
            c.budget.tokens = meta.budget_tokens;
    }
    return c;
}

SamplingOptions sampling_from_trace(const trace::RunMetadata& meta) {
    SamplingOptions so;
    so.max_new = meta.sampling.value("max_new_tokens", 32);
    so.temperature = meta.sampling.value("temperature", 0.0f);
    so.top_p = meta.sampling.value("top_p", 1.0f);
    // Absent from traces written before it was recorded: those runs stopped at EOS.
    so.ignore_eos = meta.sampling.value("ignore_eos", false);
    so.seed = meta.seed;
    return so;
}

LiveSession::LiveSession(const Model& model, const Tokenizer& tok, std::string model_path,
                         RunInput input, int threads, const std::string& device)
    : model_(model),
      tok_(tok),
      model_path_(std::move(model_path)),
      input_(std::move(input)),
      threads_(threads),
      backend_(make_backend(device, threads)) {
    if (input_.ids.empty()) throw InputError("the prompt is empty: nothing to prefill");
}

LiveSession::~LiveSession() = default;

void LiveSession::prefill() {
    if (state_) return;
    EngineOptions eo;
    eo.threads = threads_;
    eo.stats = snapshot_stats_request();
    engine_ = std::make_unique<Engine>(model_, *backend_, eo);
    const auto t0 = clock_type::now();
    std::vector<float> logits = engine_->prefill(input_.ids);
    prefill_ms_ = ms_since(t0);
    adopt_state(engine_->snapshot_prefill(std::move(logits)));
}

void LiveSession::adopt_state(std::shared_ptr<const PrefillState> state) {
    if (!state || state->prompt_ids != input_.ids)
        throw InputError("the saved prompt state is of another prompt than this session's");
    state_ = std::move(state);
    // Warm the previewer: its first copy of the prompt's K/V faults in the scratch pages, so the
    // first slider move costs what the next ones do.
    std::lock_guard<std::mutex> lock(preview_mu_);
    previewer_ = std::make_unique<whatif::Previewer>(*state_, model_.spec);
    auto full = make(PolicyChoice{});
    (void)previewer_->run(*full, spans());
}

const PrefillState& LiveSession::state() const {
    if (!state_) throw std::logic_error("LiveSession: prefill() first");
    return *state_;
}

std::vector<whatif::TokenSpan> LiveSession::spans() const {
    std::vector<whatif::TokenSpan> out;
    for (const auto& s : input_.spans) out.push_back({s.begin, s.end});
    return out;
}

std::unique_ptr<Policy> LiveSession::make(const PolicyChoice& choice) {
    return PolicyRegistry::global().create(choice.name, choice.budget, choice.params);
}

std::string LiveSession::blocker(const PolicyChoice& choice) const {
    const auto policy = make(choice);
    return Engine::resume_blocker(state(), policy.get());
}

whatif::Preview LiveSession::preview(const PolicyChoice& choice) const {
    const auto policy = make(choice);
    std::lock_guard<std::mutex> lock(preview_mu_);
    if (!previewer_) previewer_ = std::make_unique<whatif::Previewer>(state(), model_.spec);
    return previewer_->run(*policy, spans());
}

whatif::MemoryFit LiveSession::fit_memory(const PolicyChoice& choice, int64_t target_bytes) {
    prefill();
    whatif::check_fittable(choice.name, choice.params);
    EngineOptions eo;
    eo.threads = threads_;
    Engine engine(model_, *backend_, eo);
    const auto& lg = state_->last_logits;
    const int32_t first = static_cast<int32_t>(std::max_element(lg.begin(), lg.end()) - lg.begin());
    return whatif::fit_budget(choice.name, state_->prompt_len(), target_bytes, [&](int64_t tokens) {
        PolicyChoice c = choice;
        c.budget = Budget{};
        c.budget.tokens = tokens;
        auto policy = make(c);
        engine.set_policy(policy.get());
        (void)engine.resume(*state_);
        (void)engine.decode(first);
        const int64_t bytes = engine.cache().bytes_held();
        engine.set_policy(nullptr);
        return bytes;
    });
}

RerunResult LiveSession::rerun(const RerunRequest& req, const std::atomic<bool>* stop,
                               const std::function<void(int64_t, int64_t)>& progress) {
    prefill();
    const int64_t P = static_cast<int64_t>(input_.ids.size());
    std::unique_ptr<Policy> policy = make(req.policy);
    if (!req.force_keep_layers.empty())
        policy = std::make_unique<whatif::ForceKeepPolicy>(
            std::move(policy), req.force_keep_positions, req.force_keep_layers);
    if (req.wrap_policy) policy = req.wrap_policy(std::move(policy));
    RecorderOptions ro = req.recorder;
    EngineOptions eo;
    eo.threads = threads_;
    eo.stats = RunRecorder::stats_needed(ro, P);
    Engine engine(model_, *backend_, eo);
    engine.set_policy(policy.get());
    // Full prefill maps need every query row, which the saved state does not hold.
    const bool resumable = !req.own_prefill &&
                           Engine::resume_blocker(*state_, policy.get()).empty() && !ro.record_maps;

    trace::RunMetadata meta = make_run_metadata(model_, model_path_, tok_, policy.get(),
                                                req.policy.name, req.policy.budget.ratio, input_,
                                                req.sampling, backend_->name(), ro.top_k);
    meta.extra["prefill"] =
        resumable ? "resumed from a saved full-cache prompt state" : "own prefill";
    if (!req.force_keep_layers.empty())
        meta.extra["force_keep"] = {{"positions", req.force_keep_positions},
                                    {"layers", req.force_keep_layers}};
    trace::TraceWriter::Options wo;
    wo.record_attention_rows = ro.record_rows;
    wo.record_maps = ro.record_maps;
    wo.overwrite = req.overwrite;
    trace::TraceWriter writer(req.trace, wo);
    RunRecorder rec(engine, tok_, writer, ro);
    rec.begin(meta, input_.ids);

    RerunResult res;
    res.trace = req.trace;
    res.resumed = resumable;
    trace::RunEnd end;
    try {
        const auto t0 = clock_type::now();
        std::vector<float> logits = resumable ? engine.resume(*state_) : engine.prefill(input_.ids);
        res.resume_ms = ms_since(t0);
        rec.write_prefill();
        end.prefill_ms = resumable ? prefill_ms_ : res.resume_ms;
        const DecodeOutcome out =
            decode_and_record(engine, rec, std::move(logits), static_cast<float>(res.resume_ms),
                              req.sampling, stop, progress);
        end.decode_ms = out.decode_ms;
        end.complete = out.reason != "interrupted";
        end.reason = out.reason;
        res.reason = out.reason;
        res.decode_ms = out.decode_ms;
    } catch (const std::exception& e) {
        end.complete = false;
        end.reason = std::string("error: ") + e.what();
        rec.end(end);  // everything committed so far stays readable
        throw;
    }
    res.bytes_held_final = engine.cache().bytes_held();
    if (!input_.spans.empty()) {
        const trace::MarkedSpan* span = &input_.spans.front();
        for (const auto& sp : input_.spans)
            if (sp.label == "needle") span = &sp;
        const KVCache& c = engine.cache();
        double sum = 0, mn = 1;
        int64_t heads = 0;
        for (int64_t l = 0; l < c.n_layers(); ++l)
            for (int64_t g = 0; g < c.n_kv_heads(); ++g) {
                int64_t held = 0;
                for (int64_t p = span->begin; p < span->end; ++p)
                    held += c.find_position(l, g, p) >= 0;
                const double f = static_cast<double>(held) /
                                 static_cast<double>(std::max<int64_t>(1, span->end - span->begin));
                sum += f;
                mn = std::min(mn, f);
                ++heads;
            }
        res.needle_final_mean = sum / static_cast<double>(std::max<int64_t>(1, heads));
        res.needle_final_min = mn;
    }
    end.extra = {{"bytes_held_final", res.bytes_held_final}};
    rec.end(end);
    res.steps = rec.steps();
    res.text = rec.generated_text();
    res.answer_found = answer_verdict(res.text, input_.answer);
    return res;
}

}  // namespace kvscope::record
