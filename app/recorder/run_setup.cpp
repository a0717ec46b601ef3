#include "app/recorder/run_setup.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "core/engine/sampler.h"
#include "core/error.h"
#include "core/policies/param_schema.h"
#include "core/scenarios/haystack.h"
#include "core/scenarios/needle_templates.h"
#include "core/scenarios/scenario.h"

namespace kvscope::record {
namespace {

// Token span [begin, end) of the first occurrence of `needle` in the text the token pieces spell
// (special tokens spell nothing). Throws InputError when absent.
std::pair<int64_t, int64_t> find_span(const Tokenizer& tok, const std::vector<int32_t>& ids,
                                      const std::string& needle) {
    std::string joined;
    std::vector<size_t> start(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
        start[i] = joined.size();
        if (!tok.is_special(ids[i])) joined += tok.token_bytes(ids[i]);
    }
    const size_t at = joined.find(needle);
    if (at == std::string::npos)
        throw InputError("--needle: the text '" + needle + "' does not occur in the prompt");
    const size_t stop = at + needle.size();
    int64_t b = -1, e = -1;
    for (size_t i = 0; i < ids.size(); ++i) {
        const size_t s = start[i], t = i + 1 < ids.size() ? start[i + 1] : joined.size();
        if (t > at && s < stop) {
            if (b < 0) b = static_cast<int64_t>(i);
            e = static_cast<int64_t>(i) + 1;
        }
    }
    return {b, e};
}

nlohmann::json spec_json(const ModelSpec& s) {
    return {{"architecture", s.arch_name},
            {"vocab_size", s.vocab_size},
            {"hidden", s.hidden},
            {"intermediate", s.intermediate},
            {"n_layers", s.n_layers},
            {"n_heads", s.n_heads},
            {"n_kv_heads", s.n_kv_heads},
            {"head_dim", s.head_dim},
            {"max_position", s.max_position},
            {"norm_eps", s.norm_eps},
            {"rope_theta", s.rope.theta},
            {"rope_scaling", s.rope.scaling == RopeScaling::kNone     ? "none"
                             : s.rope.scaling == RopeScaling::kLinear ? "linear"
                                                                      : "llama3"},
            {"rope_factor", s.rope.factor},
            {"attention_bias", s.attention_bias},
            {"qk_norm", s.qk_norm},
            {"tied_embeddings", s.tied_embeddings},
            {"weight_dtype", dtype_name(s.weight_dtype)}};
}

}  // namespace

RunInput build_scenario_input(const Tokenizer& tok, const std::string& model_path,
                              const ScenarioRequest& req) {
    const ScenarioKind kind = parse_scenario_kind(req.kind);
    Haystack hay;
    NeedleTemplateSet templates;
    std::filesystem::path templates_file;
    const TemplateSplit split = parse_template_split(req.split);
    if (kind == ScenarioKind::kNeedles) {
        templates_file = req.templates;
        if (templates_file.empty()) templates_file = find_default_templates_file(model_path);
        if (templates_file.empty())
            throw InputError(
                "--scenario needles needs a template set: pass --templates FILE "
                "(resources/needles/templates.json)");
        templates = load_needle_templates(templates_file);
        hay = load_haystack(req.haystack.empty() ? templates.haystack_dir(split)
                                                 : std::filesystem::path(req.haystack));
    } else if (kind == ScenarioKind::kNiah) {
        std::filesystem::path dir = req.haystack;
        if (dir.empty()) dir = find_default_haystack_dir(model_path);
        if (dir.empty())
            throw InputError("--scenario niah needs haystack texts: pass --haystack DIR");
        hay = load_haystack(dir);
    }
    ScenarioBuilder builder(tok, kind == ScenarioKind::kPasskey ? nullptr : &hay);
    ScenarioOptions so;
    so.kind = kind;
    so.length = req.length;
    so.depth = req.depth;
    so.seed = req.seed;
    so.num_needles = req.needles;
    if (kind == ScenarioKind::kNeedles) {
        so.templates = &templates;
        so.split = split;
        so.distractors = req.distractors;
    }
    Scenario built = builder.build(so);
    RunInput in;
    in.prompt = built.text;
    in.ids = std::move(built.ids);
    in.answer = built.answer;
    // The queried needle is "needle" (the Studio's needle panel follows it); the others are
    // distractors "needle_2", "needle_3", ... in prompt order.
    int other = 1;
    for (const Needle& n : built.needles)
        in.spans.push_back({n.token_begin, n.token_end,
                            n.queried ? std::string("needle") : "needle_" + std::to_string(++other),
                            n.queried ? built.answer : std::string()});
    in.scenario = {{"kind", req.kind}, {"length", req.length},   {"depth", req.depth},
                   {"seed", req.seed}, {"needles", req.needles}, {"answer", built.answer}};
    if (kind == ScenarioKind::kNeedles) {
        in.scenario["templates"] = templates_file.string();
        in.scenario["split"] = req.split;
        in.scenario["distractors"] = req.distractors;
        in.scenario["template"] = built.template_id;
    }
    return in;
}

RunInput input_from_trace(const trace::TraceReader& r) {
    const trace::RunMetadata& meta = r.metadata();
    RunInput in;
    in.prompt = meta.prompt;
    in.ids = r.token_ids(0, meta.n_prompt_tokens);
    in.spans = r.spans();
    for (const auto& s : in.spans)
        if (s.label == "needle") in.answer = s.expected_answer;
    if (meta.extra.contains("scenario")) in.scenario = meta.extra["scenario"];
    return in;
}

std::string resolve_model_path(const std::filesystem::path& trace, const trace::RunMetadata& meta) {
    namespace fs = std::filesystem;
    const fs::path m = meta.model_path;
    if (m.empty() || m.is_absolute() || fs::exists(m)) return m.string();
    for (fs::path dir = fs::absolute(trace).parent_path(); !dir.empty(); dir = dir.parent_path()) {
        if (fs::exists(dir / m)) return (dir / m).string();
        if (dir == dir.root_path()) break;
    }
    return m.string();
}

RunInput build_text_input(const Tokenizer& tok, const std::string& prompt,
                          const std::string& needle, const std::string& answer) {
    if (!answer.empty() && needle.empty()) throw InputError("--answer needs --needle");
    RunInput in;
    in.prompt = prompt;
    // Exactly what the reference tokenizer does with add_special_tokens=True (BOS templates).
    in.ids = tok.encode(prompt, /*add_special=*/true);
    if (!needle.empty()) {
        const auto [b, e] = find_span(tok, in.ids, needle);
        in.spans.push_back({b, e, "needle", answer});
        in.answer = answer;
    }
    return in;
}

trace::RunMetadata make_run_metadata(const Model& model, const std::string& model_path,
                                     const Tokenizer& tok, const Policy* policy,
                                     const std::string& policy_name, double ratio,
                                     const RunInput& input, const SamplingOptions& sampling,
                                     const std::string& backend, int top_k) {
    const ModelSpec& sp = model.spec;
    const int64_t P = static_cast<int64_t>(input.ids.size());
    trace::RunMetadata meta;
    meta.n_layers = static_cast<int32_t>(sp.n_layers);
    meta.n_heads = static_cast<int32_t>(sp.n_kv_heads);
    meta.n_prompt_tokens = P;
    meta.top_k = top_k;
    meta.spans = input.spans;
    meta.model_name = std::filesystem::path(model_path).filename().string();
    if (meta.model_name.empty())
        meta.model_name = std::filesystem::path(model_path).parent_path().filename().string();
    meta.model_path = model_path;
    meta.architecture = sp.arch_name;
    meta.model_dtype = dtype_name(sp.weight_dtype);
    meta.n_query_heads = static_cast<int32_t>(sp.n_heads);
    meta.n_kv_heads = static_cast<int32_t>(sp.n_kv_heads);
    meta.head_dim = static_cast<int32_t>(sp.head_dim);
    meta.model_spec = spec_json(sp);
    meta.tokenizer = tok.kind();
    meta.policy = policy_name;
    meta.gqa_aggregation = "mean";
    if (policy) {
        for (const auto& [k, v] : policy->params().all())
            meta.policy_params[k] = param_value_to_string(v);
        if (policy->params().has("gqa"))
            meta.gqa_aggregation = param_value_to_string(policy->params().all().at("gqa"));
        meta.budget_tokens = policy->budget().given() ? policy->budget().resolve(P) : -1;
        if (policy->params().has("window")) meta.window = policy->params().get_int("window");
        if (policy->params().has("sinks")) meta.sinks = policy->params().get_int("sinks");
    }
    meta.budget_ratio = ratio;
    meta.prompt = input.prompt;
    meta.seed = sampling.seed;
    meta.sampling = {{"temperature", sampling.temperature},
                     {"top_p", sampling.top_p},
                     {"max_new_tokens", sampling.max_new},
                     {"ignore_eos", sampling.ignore_eos}};
    meta.device = describe_device(backend);
    meta.backend = backend;
    meta.extra = {{"prefill_appends_recorded", false},
                  {"attention_aggregation_to_kv_heads", "mean over the query heads of the group"},
                  {"spearman_attention", "prefill column sums"}};
    if (!input.scenario.is_null()) meta.extra["scenario"] = input.scenario;
    return meta;
}

DecodeOutcome decode_and_record(Engine& engine, RunRecorder& rec, std::vector<float> logits,
                                float prefill_ms, const SamplingOptions& opt,
                                const std::atomic<bool>* stop,
                                const std::function<void(int64_t, int64_t)>& progress) {
    using clock = std::chrono::steady_clock;
    const ModelSpec& sp = engine.spec();
    Sampler sampler({opt.temperature, opt.top_p, opt.seed});
    DecodeOutcome out;
    const auto t1 = clock::now();
    auto t_step = t1;
    int32_t last = -1;
    for (int s = 0; s < opt.max_new; ++s) {
        if (stop && stop->load()) {
            out.reason = "interrupted";
            break;
        }
        if (s > 0) logits = engine.decode(last);
        const int32_t next = sampler.sample(logits.data(), sp.vocab_size);
        last = next;
        const auto now = clock::now();
        rec.commit_step(
            next, logits,
            s == 0 ? prefill_ms : std::chrono::duration<float, std::milli>(now - t_step).count());
        t_step = now;
        if (progress) progress(s + 1, opt.max_new);
        const bool is_eos =
            std::find(sp.eos_ids.begin(), sp.eos_ids.end(), next) != sp.eos_ids.end();
        if (is_eos && !opt.ignore_eos) {
            out.reason = "eos";
            break;
        }
    }
    out.decode_ms = std::chrono::duration<double, std::milli>(clock::now() - t1).count();
    return out;
}

int8_t answer_verdict(const std::string& text, const std::string& answer) {
    if (answer.empty()) return -1;
    return answer_found(text, answer) ? 1 : 0;  // whole-word match, see scenario.cpp
}

}  // namespace kvscope::record
