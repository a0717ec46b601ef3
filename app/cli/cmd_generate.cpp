// kvscope generate: stream a continuation of a prompt, optionally under a cache policy.
#include <chrono>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "app/cli/cli_common.h"
#include "app/cli/command.h"
#include "app/cli/policy_flags.h"
#include "core/cache/kv_cache.h"
#include "core/engine/engine.h"
#include "core/engine/sampler.h"
#include "core/error.h"

namespace kvscope::cli {
namespace {

struct GenerateArgs {
    ModelArgs m;
    PolicyArgs policy;
    std::string prompt;
    int max_new = 64;
    float temperature = 0.0f;
    float top_p = 1.0f;
    uint64_t seed = 0;
    bool stats = false;
    bool ignore_eos = false;
    bool json = false;
};

std::function<int()> setup(CLI::App& sub) {
    auto a = std::make_shared<GenerateArgs>();
    add_model_options(sub, a->m);
    sub.add_option("--prompt", a->prompt, "Prompt text")->required();
    sub.add_option("--max-new", a->max_new, "Tokens to generate")->check(CLI::Range(0, 1 << 20));
    sub.add_option("--temperature", a->temperature, "Sampling temperature; 0 = greedy")
        ->check(CLI::Range(0.0f, 100.0f));
    sub.add_option("--top-p", a->top_p, "Nucleus sampling mass")->check(CLI::Range(0.0f, 1.0f));
    sub.add_option("--seed", a->seed, "Random seed for sampling");
    sub.add_flag("--stats", a->stats, "Print timing and cache size to stderr at the end");
    sub.add_flag("--ignore-eos", a->ignore_eos, "Keep generating after an end-of-sequence token");
    sub.add_flag("--json", a->json,
                 "Print one JSON document on stdout at the end (prompt, output, counts, timings) "
                 "instead of streaming the text");
    add_policy_options(sub, a->policy);
    return [a]() {
        check_prompt_text(a->prompt, "--prompt");  // before the model loads
        Loaded L = load_model_and_tokenizer(a->m, true);
        const std::vector<int32_t> ids = encode_prompt(*L.tokenizer, a->prompt);
        warn_past_trained_context(L.model->spec, ids.size(), a->max_new);
        auto backend = make_backend(a->m.device, a->m.threads);
        EngineOptions opts;
        opts.threads = a->m.threads;
        Engine engine(*L.model, *backend, opts);
        auto policy =
            make_policy_from_args(a->policy, L.model->spec, static_cast<int64_t>(ids.size()));
        engine.set_policy(policy.get());
        Sampler sampler({a->temperature, a->top_p, a->seed});
        StreamDecoder stream(*L.tokenizer, ids);
        std::string text;  // the continuation, kept for --json
        auto emit = [&](const std::string& piece) {
            if (a->json) {
                text += piece;
                return;
            }
            std::fputs(piece.c_str(), stdout);
            std::fflush(stdout);
        };
        emit(a->prompt);
        text.clear();

        const auto t0 = std::chrono::steady_clock::now();
        std::vector<float> logits = engine.prefill(ids);
        const auto t1 = std::chrono::steady_clock::now();
        const auto& eos = L.model->spec.eos_ids;
        int produced = 0;
        for (int i = 0; i < a->max_new; ++i) {
            const int32_t next = sampler.sample(logits.data(), engine.spec().vocab_size);
            const bool is_eos = std::find(eos.begin(), eos.end(), next) != eos.end() ||
                                next == L.tokenizer->eos_id();
            if (is_eos && !a->ignore_eos) break;
            emit(stream.push(next));
            ++produced;
            if (i + 1 < a->max_new) logits = engine.decode(next);
        }
        emit(stream.flush());
        const auto t2 = std::chrono::steady_clock::now();
        if (a->json) {
            const nlohmann::json j = {{"prompt", a->prompt},
                                      {"output", text},
                                      {"prompt_tokens", ids.size()},
                                      {"generated_tokens", produced},
                                      {"prefill_s", std::chrono::duration<double>(t1 - t0).count()},
                                      {"decode_s", std::chrono::duration<double>(t2 - t1).count()},
                                      {"bytes_held", engine.cache().bytes_held()}};
            std::printf("%s\n",
                        j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        } else {
            std::fputs("\n", stdout);  // the output ends with a newline, like any text command
        }
        if (a->stats) {
            const double pre = std::chrono::duration<double>(t1 - t0).count();
            const double dec = std::chrono::duration<double>(t2 - t1).count();
            std::fprintf(stderr,
                         "prompt %zu tokens in %.3f s (%.1f tok/s); generated %d tokens in %.3f s "
                         "(%.1f tok/s); cache %lld bytes\n",
                         ids.size(), pre, static_cast<double>(ids.size()) / std::max(pre, 1e-9),
                         produced, dec, produced / std::max(dec, 1e-9),
                         static_cast<long long>(engine.cache().bytes_held()));
        }
        return 0;
    };
}

KVSCOPE_COMMAND("generate",
                "Generate text from a prompt, streaming it, optionally under a cache policy",
                setup);

}  // namespace
}  // namespace kvscope::cli
