#include "app/studio/live_worker.h"

#include <QMetaObject>
#include <QPointer>

#include <unistd.h>

#include <filesystem>
#include <memory>

#include "core/error.h"
#include "traces/trace_reader.h"

namespace kvscope::studio {

namespace fs = std::filesystem;

std::string resolve_trace_model_path(const std::string& trace, const std::string& model_path) {
    trace::RunMetadata meta;
    meta.model_path = model_path;
    return record::resolve_model_path(trace, meta);
}

std::shared_ptr<LiveContext> load_live_context(const LiveSetup& setup) {
    auto ctx = std::make_shared<LiveContext>();
    ctx->setup = setup;
    if (setup.model_dir.empty()) throw InputError("no model chosen: pick the model's folder");
    const fs::path m = setup.model_dir;
    if (!fs::exists(m)) throw InputError(m, "no such model file or folder");
    ctx->model = load_model(m);
    fs::path tok_path = m;
    if (ctx->model->format == ModelFormat::kLlama2c) {
        tok_path = m.parent_path() / "tokenizer.bin";
        if (!fs::exists(tok_path))
            throw InputError(m, "a llama2.c checkpoint carries no tokenizer (looked for " +
                                    tok_path.string() + ")");
    }
    ctx->tokenizer = load_tokenizer(tok_path);
    if (ctx->tokenizer->vocab_size() > ctx->model->spec.vocab_size)
        throw InputError(tok_path, "the tokenizer has more tokens than the model's vocabulary");
    record::RunInput input;
    if (!setup.scenario) {
        if (setup.trace.empty()) throw InputError("no trace open to take the prompt from");
        trace::TraceReader reader(setup.trace);
        input = record::input_from_trace(reader);
        if (reader.metadata().n_layers != ctx->model->spec.n_layers ||
            reader.metadata().n_heads != ctx->model->spec.n_kv_heads)
            throw InputError(setup.trace,
                             "was recorded from a model of another shape than " + setup.model_dir);
    } else {
        input = record::build_scenario_input(*ctx->tokenizer, setup.model_dir, setup.request);
    }
    ctx->session = std::make_unique<record::LiveSession>(*ctx->model, *ctx->tokenizer,
                                                         setup.model_dir, input, setup.threads);
    ctx->session->prefill();
    return ctx;
}

LiveWorker::LiveWorker() {
    thread_.setObjectName("kvscope-live-worker");
    runner_ = new QObject();
    runner_->moveToThread(&thread_);
    QObject::connect(&thread_, &QThread::finished, runner_, &QObject::deleteLater);
    thread_.start();
}

LiveWorker::~LiveWorker() {
    shutdown();
}

void LiveWorker::shutdown() {
    stop_ = true;
    thread_.quit();
    thread_.wait();
}

void LiveWorker::post(std::function<void()> job) {
    ++pending_;
    QMetaObject::invokeMethod(
        runner_,
        [this, job = std::move(job)] {
            job();
            --pending_;
        },
        Qt::QueuedConnection);
}

void LiveWorker::deliver(QObject* receiver, std::function<void()> fn) {
    QMetaObject::invokeMethod(receiver, std::move(fn), Qt::QueuedConnection);
}

// ---- Needle forensics ----------------------------------------------------------------------
views::NeedleDecision to_view_decision(const whatif::TokenDecision& d) {
    views::NeedleDecision v;
    v.step = d.step;
    v.layer = d.layer;
    v.kv_head = d.kv_head;
    v.position = d.position;
    v.action = d.action;
    v.into_position = d.into_position;
    v.weight = d.weight;
    v.bits = d.bits;
    v.score = d.score;
    v.rank = d.rank;
    v.candidates = d.candidates;
    v.cutoff = d.cutoff;
    v.budget = d.budget;
    v.score_name = d.score_name;
    v.took_its_place = d.took_its_place;
    return v;
}

std::pair<int64_t, int64_t> needle_of(const std::vector<trace::MarkedSpan>& spans) {
    for (const auto& s : spans)
        if (s.label == "needle") return {s.begin, s.end};
    if (!spans.empty()) return {spans.front().begin, spans.front().end};
    return {-1, -1};
}

views::NeedleExplanation explain_trace_needle(
    record::LiveSession& session, const std::string& trace, const std::string& view_path,
    const std::atomic<bool>* stop, const std::function<void(int64_t, int64_t)>& progress) {
    trace::TraceReader reader(trace);
    const trace::RunMetadata& meta = reader.metadata();
    const auto [begin, end] = needle_of(reader.spans());
    if (begin < 0 || end <= begin) throw InputError(trace, "has no marked needle to explain");
    std::vector<int64_t> followed;
    for (int64_t p = begin; p < end; ++p) followed.push_back(p);
    auto decided = std::make_shared<std::vector<whatif::TokenDecision>>();
    record::RerunRequest rr;
    rr.policy = record::policy_from_trace(meta);
    rr.sampling = record::sampling_from_trace(meta);
    // A scratch trace per process and call (the explanation needs no trace of its own).
    static std::atomic<int> serial{0};
    const fs::path scratch =
        fs::temp_directory_path() / ("kvscope-studio-explain-" + std::to_string(::getpid()) + "-" +
                                     std::to_string(serial++) + ".kvtrace.h5");
    rr.trace = scratch;
    rr.overwrite = true;
    rr.wrap_policy = [&](std::unique_ptr<Policy> p) {
        return std::unique_ptr<Policy>(
            std::make_unique<whatif::ExplainPolicy>(std::move(p), followed, decided));
    };
    record::RerunResult res;
    try {
        res = session.rerun(rr, stop, progress);
    } catch (...) {
        std::error_code ec;
        fs::remove(scratch, ec);
        throw;
    }
    std::error_code ec;
    fs::remove(scratch, ec);
    if (res.reason == "interrupted" || res.reason == "cancelled")
        throw InputError("explanation cancelled");

    views::NeedleExplanation e;
    e.trace = view_path;
    e.policy = rr.policy.describe();
    e.span_begin = begin;
    e.span_end = end;
    e.decisions.reserve(decided->size());
    for (const auto& d : *decided) {
        if (e.score_name.empty()) e.score_name = d.score_name;
        e.decisions.push_back(to_view_decision(d));
    }
    e.rerun_text = res.text;
    e.answer_found = res.answer_found;
    const std::vector<int32_t> gen = reader.token_ids(meta.n_prompt_tokens, reader.info().n_tokens);
    e.same_as_trace = res.text == session.tokenizer().decode(gen, true);
    return e;
}

}  // namespace kvscope::studio
