// kvscope whatif: one full-cache prefill of a prompt, then what a policy keeps at many budgets
// (as tokens, ratios or equal memory), computed from the saved prompt state without running the
// model again; with --decode each budget is also decoded (from the saved state, no second
// prefill) and recorded, and the answer is checked.
//
//   kvscope whatif run.kvtrace.h5 --policy snapkv --ratio 0.1,0.25,0.5
//   kvscope whatif --model DIR --scenario niah --length 2048 --policy h2o --memory 0.25,0.5
//                  --decode --trace-dir out/
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "app/cli/cli_common.h"
#include "app/cli/command.h"
#include "app/cli/scenario_flags.h"
#include "app/recorder/live_session.h"
#include "app/recorder/prefill_state_file.h"
#include "core/error.h"
#include "core/policies/registry.h"
#include "traces/trace_reader.h"

namespace kvscope::cli {
namespace {

namespace fs = std::filesystem;

struct WhatifArgs {
    std::string trace;  // positional: take model, prompt and needles from a recorded trace
    ModelArgs m;
    std::string prompt, prompt_file, needle, answer;
    ScenarioFlags scen;  // --scenario and its flags
    std::string policy;
    std::vector<std::string> params;
    std::string budgets, ratios, memories;
    bool decode = false;
    std::string trace_dir = ".";
    int max_new = 16;
    std::string json_out;
    std::string state, save_state;  // a saved prompt state to use / to write
    bool force = false;
    bool quiet = false;
};

std::function<int()> setup(CLI::App& sub) {
    auto a = std::make_shared<WhatifArgs>();
    sub.add_option("trace", a->trace,
                   "A recorded trace: its model, prompt and needles are used (--model overrides "
                   "the model path)");
    sub.add_option("--model", a->m.model,
                   "Model: an HF directory or a llama2.c .bin (default: the trace's)");
    sub.add_option("--tokenizer", a->m.tokenizer, "Tokenizer stored apart from the weights");
    sub.add_option("--threads", a->m.threads, "CPU threads (0 = all cores)")
        ->check(CLI::NonNegativeNumber);
    sub.add_option("--device", a->m.device, "Where the model runs: cuda, cpu or auto")
        ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
        ->capture_default_str();
    auto* p = sub.add_option("--prompt", a->prompt, "Prompt text");
    auto* pf = sub.add_option("--prompt-file", a->prompt_file, "Read the prompt from a file");
    add_scenario_options(sub, a->scen);
    auto* sc = a->scen.scenario;
    sub.add_option("--needle", a->needle, "Mark this text of the prompt as the needle");
    sub.add_option("--answer", a->answer, "Expected answer (with --needle)");
    sub.add_option("--policy", a->policy, "Cache policy (kvscope policies lists them)")->required();
    sub.add_option("--param", a->params, "Policy parameter key=value (repeatable)");
    auto* b = sub.add_option("--budget", a->budgets, "Token budgets per (layer, KV head): 64,128");
    auto* r = sub.add_option("--ratio", a->ratios, "Budgets as fractions of the prompt: 0.1,0.25");
    auto* mm = sub.add_option("--memory", a->memories,
                              "Equal-memory targets, fractions of the full cache's bytes: "
                              "0.25,0.5 (the budget is fitted per target)");
    sub.add_flag("--decode", a->decode,
                 "Also decode each budget from the saved prompt state, record a trace per budget "
                 "into --trace-dir and check the answer");
    sub.add_option("--trace-dir", a->trace_dir, "--decode: folder for the traces")
        ->capture_default_str();
    sub.add_option("--max-new", a->max_new, "--decode: tokens to generate")
        ->check(CLI::Range(1, 1 << 16))
        ->capture_default_str();
    sub.add_option("--json", a->json_out,
                   "Also write the table as JSON to this file; '-': print it on stdout as the "
                   "only output (the table goes to stderr)");
    sub.add_flag("--quiet", a->quiet, "No progress on stderr");
    sub.add_option("--state", a->state,
                   "Use a prompt state saved by --save-state (.kvstate.h5) instead of a prefill");
    sub.add_option("--save-state", a->save_state,
                   "Save the prompt state (full cache + statistics) for later --state runs");
    sub.add_flag("--force", a->force,
                 "Replace existing --save-state / --json / --decode trace files");
    return [a, p, pf, sc, b, r, mm]() {
        const bool json_stdout = a->json_out == "-";
        FILE* txt = json_stdout ? stderr : stdout;  // stdout holds the JSON document alone
        // The prompt rule (cli_common.h), before the model loads.
        if (p->count() > 0) check_prompt_text(a->prompt, "--prompt");
        std::string prompt_text = a->prompt;
        if (pf->count() > 0) prompt_text = read_prompt_file(a->prompt_file);
        if (!a->needle.empty()) check_prompt_text(a->needle, "--needle");
        if (!a->answer.empty()) check_prompt_text(a->answer, "--answer");
        // Existing outputs are refused (exit 2) before the prefill, not after it.
        if (!a->json_out.empty() && !json_stdout) check_output_path(a->json_out, a->force);
        if (!a->save_state.empty()) check_output_path(a->save_state, a->force);
        const int lists = (b->count() > 0) + (r->count() > 0) + (mm->count() > 0);
        const auto* entry = PolicyRegistry::global().find(a->policy);
        const bool needs_budget = entry == nullptr || entry->info.needs_budget;
        if (lists > 1) throw InputError("pass one of --budget, --ratio, --memory");
        if (lists == 0 && needs_budget)
            throw InputError("pass budgets: --budget LIST, --ratio LIST or --memory LIST");
        const bool from_trace = !a->trace.empty(), from_state = !a->state.empty();
        const int sources =
            from_trace + from_state + (p->count() > 0) + (pf->count() > 0) + (sc->count() > 0);
        if (sources != 1)
            throw InputError(
                "whatif: give exactly one of TRACE, --state, --prompt, --prompt-file, --scenario");
        a->scen.check();
        if (!from_trace && !from_state && a->m.model.empty())
            throw InputError("whatif: --model is required");
        if (from_state && a->m.model.empty()) {
            a->m.model = record::saved_state_model_path(a->state);
            if (a->m.model.empty())
                throw InputError(a->state, "the saved state does not name its model: pass --model");
        }

        std::unique_ptr<trace::TraceReader> reader;
        if (from_trace) {
            reader = std::make_unique<trace::TraceReader>(a->trace);
            if (a->m.model.empty())
                a->m.model = record::resolve_model_path(a->trace, reader->metadata());
            if (a->m.model.empty())
                throw InputError(a->trace, "the trace does not name its model: pass --model");
        }
        Loaded L = load_model_and_tokenizer(a->m, true);
        record::RunInput input;
        if (reader) {
            input = record::input_from_trace(*reader);
            if (reader->metadata().n_layers != L.model->spec.n_layers ||
                reader->metadata().n_heads != L.model->spec.n_kv_heads)
                throw InputError(a->trace,
                                 "was recorded from a model of another shape than " + a->m.model);
        }
        std::shared_ptr<const PrefillState> saved;
        if (from_state) {
            record::SavedPrefill sp = record::load_prefill_state(a->state, L.model->spec);
            input = std::move(sp.input);
            saved = std::move(sp.state);
        } else if (reader) {
            // input came from the trace above
        } else if (sc->count() > 0) {
            input = record::build_scenario_input(*L.tokenizer, a->m.model, a->scen.req);
        } else {
            input = record::build_text_input(*L.tokenizer, prompt_text, a->needle, a->answer);
        }
        warn_past_trained_context(L.model->spec, input.ids.size(), a->decode ? a->max_new : 0);
        record::LiveSession session(*L.model, *L.tokenizer, a->m.model, input, a->m.threads,
                                    a->m.device);
        if (saved) {
            session.adopt_state(saved);
        } else {
            if (!a->quiet)
                std::fprintf(stderr, "[prefill] %zu tokens, full cache and statistics ...",
                             input.ids.size());
            session.prefill();
            if (!a->quiet) std::fprintf(stderr, " %.2f s\n", session.prefill_ms() / 1e3);
        }
        if (!a->save_state.empty()) {
            record::save_prefill_state(a->save_state, session.state(), L.model->spec, input,
                                       a->m.model, a->force);
            if (!a->quiet) std::fprintf(stderr, "[state] saved to %s\n", a->save_state.c_str());
        }

        // The budgets to evaluate, as policy choices.
        struct Row {
            record::PolicyChoice choice;
            std::string label;
        };
        std::vector<Row> rows;
        if (b->count() > 0)
            for (double v : parse_number_list(a->budgets, "--budget", 1, 1e9)) {
                Row row{{a->policy, {}, a->params}, std::to_string(static_cast<int64_t>(v))};
                row.choice.budget.tokens = static_cast<int64_t>(v);
                rows.push_back(row);
            }
        if (r->count() > 0)
            for (double v : parse_number_list(a->ratios, "--ratio", 1e-9, 1.0)) {
                Row row{{a->policy, {}, a->params}, "ratio " + std::to_string(v).substr(0, 6)};
                row.choice.budget.ratio = v;
                rows.push_back(row);
            }
        if (mm->count() > 0)
            for (double v : parse_number_list(a->memories, "--memory", 1e-9, 1.0)) {
                record::PolicyChoice c{a->policy, {}, a->params};
                const whatif::MemoryFit fit = session.fit_memory(c, session.bytes_for_fraction(v));
                c.budget.tokens = fit.budget_tokens;
                rows.push_back({c, "mem " + std::to_string(v).substr(0, 5) + " -> " +
                                       std::to_string(fit.budget_tokens)});
            }
        if (rows.empty()) rows.push_back({{a->policy, {}, a->params}, "-"});

        const bool has_needle = !input.spans.empty();
        std::fprintf(txt, "policy %s, prompt %zu tokens, full cache %lld bytes%s\n",
                     a->policy.c_str(), input.ids.size(),
                     static_cast<long long>(session.state().bytes_full()),
                     has_needle ? ", needle = span 0" : "");
        std::fprintf(txt, "%-22s %10s %12s %7s %9s %9s %9s%s\n", "budget", "tokens", "bytes",
                     "mem%", "needle", "needle", "preview", a->decode ? "  answer (trace)" : "");
        std::fprintf(txt, "%-22s %10s %12s %7s %9s %9s %9s\n", "", "held", "held", "", "mean",
                     "min", "ms");
        nlohmann::json out = nlohmann::json::array();
        if (a->decode) fs::create_directories(a->trace_dir);
        // One step per budget (a preview, and with --decode a whole re-run): count and ETA.
        Progress progress(a->decode ? "whatif: decode" : "whatif", a->quiet);
        int64_t done = 0;
        const auto total = static_cast<int64_t>(rows.size());
        for (const Row& row : rows) {
            progress.update(done, total, "budget " + row.label);
            const whatif::Preview pv = session.preview(row.choice);
            nlohmann::json j = {{"policy", a->policy},
                                {"budget", row.label},
                                {"budget_tokens", row.choice.budget.tokens},
                                {"budget_ratio", row.choice.budget.ratio},
                                {"tokens_held", pv.tokens_held},
                                {"bytes_held", pv.bytes_total},
                                {"bytes_full", pv.bytes_full},
                                {"decode_time_policy", pv.decode_time},
                                {"preview_ms", pv.elapsed_ms}};
            if (has_needle) {
                j["needle_survival_mean"] = pv.survival_mean(0);
                j["needle_survival_min"] = pv.survival_min(0);
            }
            std::string verdict;
            if (a->decode) {
                record::RerunRequest rr;
                rr.policy = row.choice;
                rr.sampling.max_new = a->max_new;
                std::string stem = a->policy + "-" + row.label;
                for (char& ch : stem)
                    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '-')
                        ch = '_';
                rr.trace = fs::path(a->trace_dir) / (stem + ".kvtrace.h5");
                rr.overwrite = a->force;
                const record::RerunResult res = session.rerun(rr);
                verdict = res.answer_found == 1 ? "FOUND" : res.answer_found == 0 ? "wrong" : "-";
                verdict += "  (" + res.trace.string() + ")";
                j["answer_found"] = res.answer_found;
                j["output"] = res.text;
                j["trace"] = res.trace.string();
                j["bytes_held_final"] = res.bytes_held_final;
            }
            progress.clear();
            std::fprintf(
                txt, "%-22s %10lld %12lld %6.1f%% %9s %9s %9.1f  %s\n", row.label.c_str(),
                static_cast<long long>(pv.tokens_held), static_cast<long long>(pv.bytes_total),
                100.0 * pv.memory_fraction(),
                has_needle ? std::to_string(pv.survival_mean(0)).substr(0, 5).c_str() : "-",
                has_needle ? std::to_string(pv.survival_min(0)).substr(0, 5).c_str() : "-",
                pv.elapsed_ms, verdict.c_str());
            out.push_back(j);
            progress.update(++done, total);
        }
        progress.finish();
        if (rows.front().choice.name != "full" && !rows.empty()) {
            const whatif::Preview pv = session.preview(rows.front().choice);
            if (pv.decode_time)
                std::fprintf(txt,
                             "note: %s keeps deciding while decoding; the preview is its decision "
                             "on the prompt (step 0); --decode shows the whole run\n",
                             a->policy.c_str());
        }
        if (json_stdout) {
            std::printf("%s\n",
                        out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        } else if (!a->json_out.empty()) {
            std::ofstream f(a->json_out);
            if (!f) throw InputError(a->json_out, "cannot write the JSON file");
            f << out.dump(2) << "\n";
        }
        return 0;
    };
}

KVSCOPE_COMMAND("whatif",
                "What a policy keeps at many budgets, from one prefill (no model re-run); "
                "--decode re-runs each from the saved prompt state",
                setup);

}  // namespace
}  // namespace kvscope::cli
