// kvscope run: generate under a policy and record everything into a trace (.kvtrace.h5).
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "app/cli/cli_common.h"
#include "app/cli/command.h"
#include "app/cli/policy_flags.h"
#include "app/cli/run_recorder.h"
#include "core/cache/kv_cache.h"
#include "core/engine/engine.h"
#include "core/engine/sampler.h"
#include "core/model/error.h"
#include "core/policies/registry.h"
#include "core/scenarios/haystack.h"
#include "core/scenarios/scenario.h"
#include "kvscope_version.h"

namespace kvscope::cli {
namespace {

std::atomic<bool> g_interrupted{false};
extern "C" void on_sigint(int) {
    g_interrupted = true;
}

struct RunArgs {
    ModelArgs m;
    PolicyArgs policy;
    std::string prompt, prompt_file, trace, needle, answer, record_attention;
    int max_new = 32;
    float temperature = 0.0f, top_p = 1.0f;
    uint64_t seed = 0;
    int top_k = 5;
    bool record_maps = false, quiet = false, ignore_eos = false;
    // --scenario: the prompt is built by core/scenarios (the format the demo model was trained on)
    std::string scenario, haystack;
    int64_t length = 1024;
    double depth = 0.5;
    uint64_t scenario_seed = 1;
    int needles = 1;
};

// Token span [begin, end) of the first occurrence of `needle` in the prompt, found in the text the
// token pieces spell (special tokens spell nothing). Throws InputError when absent.
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
            {"rope_scaling", s.rope.scaling == RopeScaling::none     ? "none"
                             : s.rope.scaling == RopeScaling::linear ? "linear"
                                                                     : "llama3"},
            {"rope_factor", s.rope.factor},
            {"attention_bias", s.attention_bias},
            {"qk_norm", s.qk_norm},
            {"tied_embeddings", s.tied_embeddings},
            {"weight_dtype", dtype_name(s.weight_dtype)}};
}

std::function<int()> setup(CLI::App& sub) {
    auto a = std::make_shared<RunArgs>();
    add_model_options(sub, a->m);
    auto* p = sub.add_option("--prompt", a->prompt, "Prompt text");
    auto* pf = sub.add_option("--prompt-file", a->prompt_file, "Read the prompt from a file");
    p->excludes(pf);
    auto* sc = sub.add_option("--scenario", a->scenario,
                              "Build the prompt instead: a passkey or needle-in-a-haystack test "
                              "(the needle is marked and its answer checked)")
                   ->check(CLI::IsMember({"passkey", "niah"}));
    sc->excludes(p);
    sc->excludes(pf);
    sub.add_option("--length", a->length, "--scenario: prompt length in tokens, BOS included")
        ->check(CLI::Range(int64_t{16}, int64_t{1} << 22))
        ->capture_default_str();
    sub.add_option("--depth", a->depth, "--scenario: needle depth, 0 = start, 1 = end")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
    sub.add_option("--scenario-seed", a->scenario_seed,
                   "--scenario: seed of the haystack and the needle's digits")
        ->capture_default_str();
    sub.add_option("--needles", a->needles,
                   "--scenario niah: needles in the haystack (one is asked for)")
        ->check(CLI::Range(1, 64));
    sub.add_option("--haystack", a->haystack,
                   "--scenario niah: haystack folder (default: resources/haystacks)");
    sub.add_option("--trace", a->trace, "Output trace file (.kvtrace.h5)")->required();
    sub.add_option("--max-new", a->max_new, "Tokens to generate")->check(CLI::Range(0, 1 << 20));
    sub.add_option("--needle", a->needle, "Mark this text of the prompt as a needle to follow");
    sub.add_option("--answer", a->answer,
                   "Expected answer: the trace records whether the output has it");
    sub.add_option("--record-attention", a->record_attention,
                   "'rows': record every decode attention row")
        ->check(CLI::IsMember({"rows", "none"}));
    sub.add_flag("--record-maps", a->record_maps,
                 "Record full prefill attention maps (prompts <= 2048 tokens)");
    sub.add_option("--top-k", a->top_k, "Logprobs kept per step")->check(CLI::Range(1, 100));
    sub.add_option("--temperature", a->temperature, "Sampling temperature; 0 = greedy")
        ->check(CLI::Range(0.0f, 100.0f));
    sub.add_option("--top-p", a->top_p, "Nucleus sampling mass")->check(CLI::Range(0.0f, 1.0f));
    sub.add_option("--seed", a->seed, "Random seed for sampling");
    sub.add_flag("--quiet", a->quiet, "No progress on stderr");
    sub.add_flag("--ignore-eos", a->ignore_eos, "Keep generating after an end-of-sequence token");
    add_policy_options(sub, a->policy);
    return [a, p, pf, sc]() {
        using clock = std::chrono::steady_clock;
        const bool scenario = sc->count() > 0;
        if (p->count() == 0 && pf->count() == 0 && !scenario)
            throw InputError("run: pass --prompt, --prompt-file or --scenario");
        if (scenario && (!a->needle.empty() || !a->answer.empty()))
            throw InputError("--scenario marks its own needle and answer; drop --needle/--answer");
        if (!scenario && (a->needles != 1 || !a->haystack.empty()))
            throw InputError("--needles and --haystack apply to --scenario only");
        if (scenario && a->scenario == "passkey" && (a->needles != 1 || !a->haystack.empty()))
            throw InputError("--needles and --haystack apply to --scenario niah only");
        if (!a->answer.empty() && a->needle.empty()) throw InputError("--answer needs --needle");
        std::string prompt = a->prompt;
        if (pf->count() > 0) {
            std::ifstream f(a->prompt_file, std::ios::binary);
            if (!f) throw InputError(a->prompt_file, "cannot open the prompt file");
            std::stringstream ss;
            ss << f.rdbuf();
            prompt = ss.str();
            if (prompt.empty()) throw InputError(a->prompt_file, "the prompt file is empty");
        }
        const auto t_load = clock::now();
        Loaded L = load_model_and_tokenizer(a->m, true);
        const ModelSpec& sp = L.model->spec;
        std::vector<int32_t> ids;
        std::vector<trace::MarkedSpan> spans;
        std::string answer = a->answer;
        if (scenario) {
            const ScenarioKind kind = parse_scenario_kind(a->scenario);
            Haystack hay;
            if (kind == ScenarioKind::niah) {
                std::filesystem::path dir = a->haystack;
                if (dir.empty()) dir = find_default_haystack_dir(a->m.model);
                if (dir.empty())
                    throw InputError("--scenario niah needs haystack texts: pass --haystack DIR");
                hay = load_haystack(dir);
            }
            ScenarioBuilder builder(*L.tokenizer, kind == ScenarioKind::niah ? &hay : nullptr);
            ScenarioOptions so;
            so.kind = kind;
            so.length = a->length;
            so.depth = a->depth;
            so.seed = a->scenario_seed;
            so.num_needles = a->needles;
            Scenario built = builder.build(so);
            prompt = built.text;
            ids = std::move(built.ids);
            answer = built.answer;
            // The queried needle is "needle" (the Studio's needle panel follows it); the others
            // are distractors "needle_2", "needle_3", ... in prompt order.
            int other = 1;
            for (const Needle& n : built.needles)
                spans.push_back(
                    {n.token_begin, n.token_end,
                     n.queried ? std::string("needle") : "needle_" + std::to_string(++other),
                     n.queried ? built.answer : std::string()});
        } else {
            ids = encode_prompt(*L.tokenizer, prompt);
            if (!a->needle.empty()) {
                const auto [b, e] = find_span(*L.tokenizer, ids, a->needle);
                spans.push_back({b, e, "needle", a->answer});
            }
        }
        auto policy = make_policy_from_args(a->policy, sp, static_cast<int64_t>(ids.size()), true);

        RecorderOptions ro;
        ro.top_k = a->top_k;
        ro.record_rows = a->record_attention == "rows";
        ro.record_maps = a->record_maps;
        if (a->record_maps && static_cast<int64_t>(ids.size()) > trace::kMaxMapTokens)
            throw InputError("--record-maps: the prompt has " + std::to_string(ids.size()) +
                             " tokens; maps are recorded up to " +
                             std::to_string(trace::kMaxMapTokens));
        EngineOptions eo;
        eo.threads = a->m.threads;
        eo.stats = RunRecorder::stats_needed(ro, static_cast<int64_t>(ids.size()));
        auto backend = make_cpu_backend(a->m.threads);
        Engine engine(*L.model, *backend, eo);
        engine.set_policy(policy.get());

        trace::RunMetadata meta;
        meta.n_layers = static_cast<int32_t>(sp.n_layers);
        meta.n_heads = static_cast<int32_t>(sp.n_kv_heads);
        meta.n_prompt_tokens = static_cast<int64_t>(ids.size());
        meta.top_k = a->top_k;
        meta.spans = spans;
        meta.model_name = std::filesystem::path(a->m.model).filename().string();
        meta.model_path = a->m.model;
        meta.architecture = sp.arch_name;
        meta.model_dtype = dtype_name(sp.weight_dtype);
        meta.n_query_heads = static_cast<int32_t>(sp.n_heads);
        meta.n_kv_heads = static_cast<int32_t>(sp.n_kv_heads);
        meta.head_dim = static_cast<int32_t>(sp.head_dim);
        meta.model_spec = spec_json(sp);
        meta.tokenizer = L.tokenizer->kind();
        meta.policy = a->policy.name;
        for (const auto& [k, v] : policy->params().all())
            meta.policy_params[k] = param_value_to_string(v);
        meta.gqa_aggregation = policy->params().has("gqa")
                                   ? param_value_to_string(policy->params().all().at("gqa"))
                                   : "mean";
        meta.budget_tokens = policy->budget().given()
                                 ? policy->budget().resolve(static_cast<int64_t>(ids.size()))
                                 : -1;
        meta.budget_ratio = a->policy.ratio;
        if (policy->params().has("window")) meta.window = policy->params().get_int("window");
        if (policy->params().has("sinks")) meta.sinks = policy->params().get_int("sinks");
        meta.prompt = prompt;
        meta.seed = a->seed;
        meta.sampling = {
            {"temperature", a->temperature}, {"top_p", a->top_p}, {"max_new_tokens", a->max_new}};
        meta.device = "cpu";
        meta.backend = backend->name();
        meta.extra = {
            {"prefill_appends_recorded", false},
            {"attention_aggregation_to_kv_heads", "mean over the query heads of the group"},
            {"spearman_attention", "prefill column sums"}};
        if (scenario)
            meta.extra["scenario"] = {{"kind", a->scenario},   {"length", a->length},
                                      {"depth", a->depth},     {"seed", a->scenario_seed},
                                      {"needles", a->needles}, {"answer", answer}};

        trace::TraceWriter::Options wo;
        wo.record_attention_rows = ro.record_rows;
        wo.record_maps = ro.record_maps;
        trace::TraceWriter writer(a->trace, wo);
        RunRecorder rec(engine, *L.tokenizer, writer, ro);
        rec.begin(meta, ids);

        g_interrupted = false;
        auto old_handler = std::signal(SIGINT, on_sigint);
        Sampler sampler({a->temperature, a->top_p, a->seed});
        const double load_ms =
            std::chrono::duration<double, std::milli>(clock::now() - t_load).count();
        trace::RunEnd end;
        end.load_ms = load_ms;
        std::string reason = "max_new_tokens";
        try {
            if (!a->quiet)
                std::fprintf(stderr, "[prefill] %zu tokens, %lld layers ...", ids.size(),
                             static_cast<long long>(sp.n_layers));
            auto t0 = clock::now();
            std::vector<float> logits = engine.prefill(ids);
            rec.write_prefill();
            auto t1 = clock::now();
            end.prefill_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
            if (!a->quiet)
                std::fprintf(stderr, " %.2f s (%.0f tok/s)\n", end.prefill_ms / 1e3,
                             ids.size() / std::max(1e-9, end.prefill_ms / 1e3));
            const auto& eos = sp.eos_ids;
            auto t_step = t1;
            int32_t last = -1;
            for (int s = 0; s < a->max_new; ++s) {
                if (g_interrupted) {
                    reason = "interrupted";
                    break;
                }
                if (s > 0) logits = engine.decode(last);
                const int32_t next = sampler.sample(logits.data(), sp.vocab_size);
                last = next;
                const auto now = clock::now();
                rec.commit_step(
                    next, logits,
                    s == 0 ? static_cast<float>(end.prefill_ms)
                           : std::chrono::duration<float, std::milli>(now - t_step).count());
                t_step = now;
                if (!a->quiet) {
                    const double dec = std::chrono::duration<double>(now - t1).count();
                    std::fprintf(stderr, "\r[decode] step %d/%d  %.1f tok/s  cache %.1f KiB   ",
                                 s + 1, a->max_new, s / std::max(dec, 1e-9),
                                 engine.cache().bytes_held() / 1024.0);
                }
                const bool is_eos = std::find(eos.begin(), eos.end(), next) != eos.end();
                if (is_eos && !a->ignore_eos) {
                    reason = "eos";
                    break;
                }
            }
            end.decode_ms = std::chrono::duration<double, std::milli>(clock::now() - t1).count();
        } catch (const std::exception& e) {
            std::signal(SIGINT, old_handler);
            end.complete = false;
            end.reason = std::string("error: ") + e.what();
            rec.end(end);  // everything committed so far stays readable
            throw;
        }
        std::signal(SIGINT, old_handler);
        end.complete = reason != "interrupted";
        end.reason = reason;
        end.extra = {{"bytes_held_final", engine.cache().bytes_held()}};
        rec.end(end);
        if (!a->quiet) std::fprintf(stderr, "\n");
        std::printf("trace    %s\n", a->trace.c_str());
        std::printf("policy   %s  (%s)\n", a->policy.name.c_str(),
                    policy->info().full_name.c_str());
        std::printf("prompt   %zu tokens, prefill %.2f s\n", ids.size(), end.prefill_ms / 1e3);
        std::printf("decode   %lld steps in %.2f s, stop: %s\n",
                    static_cast<long long>(rec.steps()), end.decode_ms / 1e3, reason.c_str());
        std::printf("cache    %lld bytes held at the end\n",
                    static_cast<long long>(engine.cache().bytes_held()));
        std::printf("output   %s\n", rec.generated_text().c_str());
        if (!answer.empty())
            std::printf(
                "answer   '%s' %s\n", answer.c_str(),
                rec.generated_text().find(answer) != std::string::npos ? "FOUND" : "not found");
        return reason == "interrupted" ? 130 : 0;
    };
}

KVSCOPE_COMMAND("run", "Generate under a cache policy and record everything into a trace", setup);

}  // namespace
}  // namespace kvscope::cli
