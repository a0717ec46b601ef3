#include "app/cli/trace_rerun.h"

#include "core/error.h"

namespace kvscope::cli {

void add_trace_model_options(CLI::App& sub, ModelArgs& args) {
    sub.add_option("--model", args.model, "Model (default: the one the trace was recorded with)");
    sub.add_option("--tokenizer", args.tokenizer, "Tokenizer stored apart from the weights");
    sub.add_option("--threads", args.threads, "CPU threads (0 = all cores)")
        ->check(CLI::NonNegativeNumber);
    sub.add_option("--device", args.device, "auto | cpu | cuda")
        ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
        ->capture_default_str();
}

TraceRun load_trace_run(const std::string& trace, ModelArgs& args, bool need_needle) {
    TraceRun r;
    r.reader = std::make_unique<trace::TraceReader>(trace);
    const trace::RunMetadata& meta = r.reader->metadata();
    if (args.model.empty()) args.model = record::resolve_model_path(trace, meta);
    if (args.model.empty())
        throw InputError(trace, "the trace does not name its model: pass --model");
    r.loaded = load_model_and_tokenizer(args, true);
    const ModelSpec& sp = r.loaded.model->spec;
    if (meta.n_layers != sp.n_layers || meta.n_heads != sp.n_kv_heads)
        throw InputError(trace, "was recorded from a model of another shape than " + args.model);
    r.input = record::input_from_trace(*r.reader);
    for (const auto& s : r.input.spans)
        if (s.label == "needle") r.needle = &s;
    if (!r.needle && !r.input.spans.empty()) r.needle = &r.input.spans.front();
    if (need_needle && !r.needle) throw InputError(trace, "has no marked needle");
    return r;
}

}  // namespace kvscope::cli
