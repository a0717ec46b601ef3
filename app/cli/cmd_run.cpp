// kvscope run: generate under a policy and record everything into a trace (.kvtrace.h5).
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "app/cli/cli_common.h"
#include "app/cli/command.h"
#include "app/cli/policy_flags.h"
#include "app/cli/scenario_flags.h"
#include "app/recorder/live_session.h"
#include "app/recorder/prefill_state_file.h"
#include "app/recorder/run_recorder.h"
#include "app/recorder/run_setup.h"
#include "core/cache/kv_cache.h"
#include "core/engine/engine.h"
#include "core/engine/sampler.h"
#include "core/error.h"
#include "core/policies/registry.h"
#include "traces/trace_output.h"

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
    bool record_maps = false, quiet = false, ignore_eos = false, force = false, json = false;
    // --scenario: the prompt is built by core/scenarios (the format the demo model was trained on)
    ScenarioFlags scen;
    // Equal memory: the budget is fitted so that the bytes held after the prompt match
    double memory = -1.0;
    int64_t budget_bytes = -1;
    std::string state;  // a prompt state saved by `kvscope whatif --save-state`
};

std::function<int()> setup(CLI::App& sub) {
    auto a = std::make_shared<RunArgs>();
    add_model_options(sub, a->m);
    auto* p = sub.add_option("--prompt", a->prompt, "Prompt text");
    auto* pf = sub.add_option("--prompt-file", a->prompt_file, "Read the prompt from a file");
    p->excludes(pf);
    add_scenario_options(sub, a->scen);
    auto* sc = a->scen.scenario;
    sc->excludes(p);
    sc->excludes(pf);
    sub.add_option("--trace", a->trace,
                   "Output trace file (.kvtrace.h5); recorded into <trace>.part, renamed at the "
                   "end")
        ->required();
    sub.add_flag("--force", a->force, kForceHelp);
    sub.add_option("--max-new", a->max_new, "Tokens to generate")->check(CLI::Range(0, 1 << 20));
    sub.add_option("--needle", a->needle, "Mark this text of the prompt as a needle to follow");
    sub.add_option("--answer", a->answer,
                   "Expected answer: the trace records whether the output has it");
    sub.add_option("--record-attention", a->record_attention,
                   "'rows': record every decode attention row")
        ->check(CLI::IsMember({"rows", "none"}));
    sub.add_flag("--record-maps", a->record_maps,
                 "Record full prefill attention maps (prompts <= 2048 tokens). Costs grow with "
                 "the prompt squared: on the demo model (8 layers x 2 KV heads) 2048 tokens add "
                 "~119 MB to the trace, ~230 MB of peak memory (one layer's maps at a time, "
                 "written while the next layer runs) and ~2.5x the run's CPU time (deflate); "
                 "1024 tokens ~30 MB, ~60 MB, ~1.7x (bench/RESULTS.md)");
    sub.add_option("--top-k", a->top_k, "Logprobs kept per step")->check(CLI::Range(1, 100));
    sub.add_option("--temperature", a->temperature, "Sampling temperature; 0 = greedy")
        ->check(CLI::Range(0.0f, 100.0f));
    sub.add_option("--top-p", a->top_p, "Nucleus sampling mass")->check(CLI::Range(0.0f, 1.0f));
    sub.add_option("--seed", a->seed, "Random seed for sampling");
    sub.add_flag("--quiet", a->quiet, "No progress on stderr");
    sub.add_flag("--json", a->json,
                 "Print the summary as one JSON document on stdout (instead of the text)");
    sub.add_flag("--ignore-eos", a->ignore_eos, "Keep generating after an end-of-sequence token");
    add_policy_options(sub, a->policy);
    auto* mem = sub.add_option("--memory", a->memory,
                               "Equal-memory budget: fit the policy's token budget so that its "
                               "bytes held after the prompt are at most this fraction of the "
                               "full cache's (one full-cache prefill, then the run decodes from "
                               "it)")
                    ->check(CLI::Range(1e-6, 1.0));
    auto* bb = sub.add_option("--budget-bytes", a->budget_bytes,
                              "Like --memory, with the target in bytes held (all layers, heads)")
                   ->check(CLI::Range(int64_t{1}, int64_t{1} << 50));
    mem->excludes(bb);
    auto* st = sub.add_option("--state", a->state,
                              "Decode from a prompt state saved by `kvscope whatif --save-state` "
                              "(its prompt and needles; no prefill)");
    st->excludes(p);
    st->excludes(pf);
    st->excludes(sc);
    return [a, p, pf, sc, mem, bb, st]() {
        using clock = std::chrono::steady_clock;
        const bool scenario = sc->count() > 0;
        const bool from_state = st->count() > 0;
        if (p->count() == 0 && pf->count() == 0 && !scenario && !from_state)
            throw InputError("run: pass --prompt, --prompt-file, --scenario or --state");
        if (from_state && (!a->needle.empty() || !a->answer.empty()))
            throw InputError("--state carries its own needle and answer; drop --needle/--answer");
        if (scenario && (!a->needle.empty() || !a->answer.empty()))
            throw InputError("--scenario marks its own needle and answer; drop --needle/--answer");
        a->scen.check();
        if (!a->answer.empty() && a->needle.empty()) throw InputError("--answer needs --needle");
        // Before the model loads and before any output file exists: the prompt text (one rule
        // for flag and file, cli_common.h), then an existing --trace (or a stale .part).
        std::string prompt = a->prompt;
        if (pf->count() > 0)
            prompt = read_prompt_file(a->prompt_file);
        else if (p->count() > 0)
            check_prompt_text(prompt, "--prompt");
        if (!a->needle.empty()) check_prompt_text(a->needle, "--needle");
        if (!a->answer.empty()) check_prompt_text(a->answer, "--answer");
        check_trace_output_path(a->trace, a->force);
        const bool fit_memory = mem->count() > 0 || bb->count() > 0;
        if (fit_memory && (a->policy.budget > 0 || a->policy.ratio > 0))
            throw InputError("--memory / --budget-bytes set the budget: drop --budget/--ratio");
        const auto t_load = clock::now();
        Loaded L = load_model_and_tokenizer(a->m, true);
        const ModelSpec& sp = L.model->spec;
        record::RunInput input;
        std::shared_ptr<const PrefillState> saved;
        if (from_state) {
            record::SavedPrefill loaded = record::load_prefill_state(a->state, sp);
            input = std::move(loaded.input);
            saved = std::move(loaded.state);
        } else if (scenario) {
            input = record::build_scenario_input(*L.tokenizer, a->m.model, a->scen.req);
        } else {
            input = record::build_text_input(*L.tokenizer, prompt, a->needle, a->answer);
        }
        const std::vector<int32_t>& ids = input.ids;
        const std::string answer = input.answer;
        record::RecorderOptions ro;
        ro.top_k = a->top_k;
        ro.record_rows = a->record_attention == "rows";
        ro.record_maps = a->record_maps;
        if (a->record_maps && static_cast<int64_t>(ids.size()) > trace::kMaxMapTokens)
            throw InputError("--record-maps: the prompt has " + std::to_string(ids.size()) +
                             " tokens; maps are recorded up to " +
                             std::to_string(trace::kMaxMapTokens));
        record::SamplingOptions so;
        so.max_new = a->max_new;
        so.temperature = a->temperature;
        so.top_p = a->top_p;
        so.seed = a->seed;
        so.ignore_eos = a->ignore_eos;
        warn_past_trained_context(sp, ids.size(), so.max_new);
        const double load_ms =
            std::chrono::duration<double, std::milli>(clock::now() - t_load).count();

        g_interrupted = false;
        auto old_handler = std::signal(SIGINT, on_sigint);
        struct RestoreSignal {
            void (*h)(int);
            ~RestoreSignal() { std::signal(SIGINT, h); }
        } restore{old_handler};
        // Redrawn on a terminal, plain lines in a log (cli_common.h).
        Progress progress("decode", a->quiet);
        auto show_progress = [&](int64_t done, int64_t total) { progress.update(done, total); };

        std::string policy_name = a->policy.name, policy_full, output, reason;
        int64_t steps = 0, bytes_final = 0;
        double prefill_ms = 0, decode_ms = 0;
        if (fit_memory || from_state) {
            // One full-cache prefill (or a saved one); the budget may be fitted on it, then
            // decoding resumes from it.
            record::LiveSession session(*L.model, *L.tokenizer, a->m.model, input, a->m.threads,
                                        a->m.device);
            if (saved) {
                session.adopt_state(saved);
            } else {
                if (!a->quiet)
                    std::fprintf(stderr, "[prefill] %zu tokens (full cache) ...", ids.size());
                session.prefill();
                if (!a->quiet) std::fprintf(stderr, " %.2f s\n", session.prefill_ms() / 1e3);
            }
            record::PolicyChoice choice{a->policy.name, {}, a->policy.params};
            choice.budget.tokens = a->policy.budget;
            choice.budget.ratio = a->policy.ratio;
            if (!fit_memory)
                (void)record::LiveSession::make(choice);  // validates name, budget, parameters
            else {
                const int64_t target =
                    mem->count() > 0 ? session.bytes_for_fraction(a->memory) : a->budget_bytes;
                const whatif::MemoryFit fit = session.fit_memory(choice, target);
                choice.budget = Budget{};
                choice.budget.tokens = fit.budget_tokens;
                std::fprintf(a->json ? stderr : stdout,
                             "memory   target %lld bytes (full prompt cache %lld): budget %lld "
                             "tokens per head holds %lld bytes after the first decoded token\n",
                             static_cast<long long>(target),
                             static_cast<long long>(session.state().bytes_full()),
                             static_cast<long long>(fit.budget_tokens),
                             static_cast<long long>(fit.bytes));
            }
            record::RerunRequest rr;
            rr.policy = choice;
            rr.sampling = so;
            rr.recorder = ro;
            rr.trace = a->trace;
            rr.overwrite = a->force;  // the old trace is replaced by the rename at the end
            const record::RerunResult r = session.rerun(rr, &g_interrupted, show_progress);
            policy_full = record::LiveSession::make(choice)->info().full_name;
            output = r.text;
            reason = r.reason;
            steps = r.steps;
            bytes_final = r.bytes_held_final;
            prefill_ms = session.prefill_ms();
            decode_ms = r.decode_ms;
        } else {
            auto policy =
                make_policy_from_args(a->policy, sp, static_cast<int64_t>(ids.size()), true);
            policy_full = policy->info().full_name;
            EngineOptions eo;
            eo.threads = a->m.threads;
            eo.stats = record::RunRecorder::stats_needed(ro, static_cast<int64_t>(ids.size()));
            auto backend = make_backend(a->m.device, a->m.threads);
            Engine engine(*L.model, *backend, eo);
            engine.set_policy(policy.get());
            trace::RunMetadata meta = record::make_run_metadata(
                *L.model, a->m.model, *L.tokenizer, policy.get(), a->policy.name, a->policy.ratio,
                input, so, backend->name(), a->top_k);
            trace::TraceWriter::Options wo;
            wo.record_attention_rows = ro.record_rows;
            wo.record_maps = ro.record_maps;
            wo.overwrite = a->force;  // the old trace is replaced by the rename at the end
            trace::TraceWriter writer(a->trace, wo);
            record::RunRecorder rec(engine, *L.tokenizer, writer, ro);
            rec.begin(meta, ids);
            trace::RunEnd end;
            end.load_ms = load_ms;
            try {
                if (!a->quiet)
                    std::fprintf(stderr, "[prefill] %zu tokens, %lld layers ...", ids.size(),
                                 static_cast<long long>(sp.n_layers));
                auto t0 = clock::now();
                std::vector<float> logits = engine.prefill(ids);
                rec.write_prefill();
                end.prefill_ms =
                    std::chrono::duration<double, std::milli>(clock::now() - t0).count();
                if (!a->quiet)
                    std::fprintf(stderr, " %.2f s (%.0f tok/s)\n", end.prefill_ms / 1e3,
                                 ids.size() / std::max(1e-9, end.prefill_ms / 1e3));
                const record::DecodeOutcome out = record::decode_and_record(
                    engine, rec, std::move(logits), static_cast<float>(end.prefill_ms), so,
                    &g_interrupted, show_progress);
                end.decode_ms = out.decode_ms;
                reason = out.reason;
            } catch (const std::exception& e) {
                end.complete = false;
                end.reason = std::string("error: ") + e.what();
                rec.end(end);  // everything committed so far stays readable
                throw;
            }
            end.complete = reason != "interrupted";
            end.reason = reason;
            bytes_final = engine.cache().bytes_held();
            end.extra = {{"bytes_held_final", bytes_final}};
            rec.end(end);
            output = rec.generated_text();
            steps = rec.steps();
            prefill_ms = end.prefill_ms;
            decode_ms = end.decode_ms;
        }
        progress.finish();
        const int rc = reason == "interrupted" ? 130 : 0;
        if (a->json) {
            nlohmann::json j = {
                {"trace", a->trace},
                {"policy", policy_name},
                {"policy_full_name", policy_full},
                {"prompt_tokens", ids.size()},
                {"prefill_ms", prefill_ms},
                {"decode_steps", steps},
                {"decode_ms", decode_ms},
                {"stop_reason", reason},
                {"bytes_held_final", bytes_final},
                {"output", output},
                {"answer", answer.empty() ? nlohmann::json(nullptr) : nlohmann::json(answer)},
                {"answer_found", answer.empty()
                                     ? nlohmann::json(nullptr)
                                     : nlohmann::json(output.find(answer) != std::string::npos)}};
            // Replace invalid UTF-8 (a token split mid-character) instead of throwing.
            std::printf("%s\n",
                        j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
            return rc;
        }
        std::printf("trace    %s\n", a->trace.c_str());
        std::printf("policy   %s  (%s)\n", policy_name.c_str(), policy_full.c_str());
        std::printf("prompt   %zu tokens, prefill %.2f s\n", ids.size(), prefill_ms / 1e3);
        std::printf("decode   %lld steps in %.2f s, stop: %s\n", static_cast<long long>(steps),
                    decode_ms / 1e3, reason.c_str());
        std::printf("cache    %lld bytes held at the end\n", static_cast<long long>(bytes_final));
        std::printf("output   %s\n", output.c_str());
        if (!answer.empty())
            std::printf("answer   '%s' %s\n", answer.c_str(),
                        output.find(answer) != std::string::npos ? "FOUND" : "not found");
        return rc;
    };
}

KVSCOPE_COMMAND("run", "Generate under a cache policy and record everything into a trace", setup);

}  // namespace
}  // namespace kvscope::cli
