// kvscope logits: next-token distribution at every prompt position (full cache, no policy).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "app/cli/cli_common.h"
#include "app/cli/command.h"
#include "core/engine/engine.h"
#include "core/engine/sampler.h"
#include "core/error.h"

namespace kvscope::cli {
namespace {

struct LogitsArgs {
    ModelArgs m;
    std::string prompt, token_ids, out;
    int top = 5;
    bool force = false;
    bool json = false;
};

std::function<int()> setup(CLI::App& sub) {
    auto a = std::make_shared<LogitsArgs>();
    add_model_options(sub, a->m);
    auto* p =
        sub.add_option("--prompt", a->prompt, "Prompt text (tokenized with the model's tokenizer)");
    auto* t = sub.add_option("--token-ids", a->token_ids, "Prompt as comma-separated token ids");
    p->excludes(t);
    sub.add_option("--top", a->top, "How many candidates to print per position")
        ->check(CLI::Range(1, 1000));
    sub.add_option("--out", a->out,
                   "Write JSON {token_ids, logits_last, top} to this file; '-': print it on "
                   "stdout as the only output");
    sub.add_flag("--json", a->json, "The same as --out -");
    sub.add_flag("--force", a->force, kForceHelp);
    return [a, p, t]() {
        if (p->count() == 0 && t->count() == 0)
            throw InputError("logits: pass --prompt or --token-ids");
        if (a->json) a->out = "-";
        const bool json_stdout = a->out == "-";
        if (p->count() > 0) check_prompt_text(a->prompt, "--prompt");
        if (!a->out.empty() && !json_stdout) check_output_path(a->out, a->force);
        // With --token-ids the tokenizer is only used to print pieces, so it may be absent.
        Loaded L = load_model_and_tokenizer(a->m, p->count() > 0);
        if (!L.tokenizer) {
            try {
                L.tokenizer = load_model_and_tokenizer(a->m, true).tokenizer;
            } catch (const InputError&) {
            }
        }
        auto piece = [&](int32_t id) {
            return L.tokenizer ? L.tokenizer->decode({id}, false) : std::string();
        };
        std::vector<int32_t> ids = p->count() > 0 ? encode_prompt(*L.tokenizer, a->prompt)
                                                  : parse_id_list(a->token_ids, "--token-ids");
        auto backend = make_backend(a->m.device, a->m.threads);
        EngineOptions opts;
        opts.threads = a->m.threads;
        opts.stats.all_logits = true;
        Engine engine(*L.model, *backend, opts);
        const std::vector<float> last = engine.prefill(ids);
        const int64_t V = engine.spec().vocab_size;
        const std::vector<float>& all = engine.all_logits();
        nlohmann::json top = nlohmann::json::array();
        for (size_t i = 0; i < ids.size(); ++i) {
            const auto lp = log_softmax(all.data() + static_cast<int64_t>(i) * V, V);
            const auto best = top_k(lp, a->top);
            if (!json_stdout) std::printf("[%zu] %-12s", i, ("\"" + piece(ids[i]) + "\"").c_str());
            nlohmann::json row = nlohmann::json::array();
            for (const auto& [id, logp] : best) {
                if (!json_stdout)
                    std::printf("  %d %s %.4f", id, piece(id).c_str(), std::exp(logp));
                row.push_back({id, logp});
            }
            if (!json_stdout) std::printf("\n");
            top.push_back(row);
        }
        if (!a->out.empty()) {
            nlohmann::json j;
            j["token_ids"] = ids;
            j["logits_last"] = last;
            j["top"] = top;
            if (json_stdout) {
                std::printf("%s\n", j.dump().c_str());
                return 0;
            }
            std::ofstream f(a->out);
            if (!f) throw InputError(a->out, "cannot open for writing");
            f << j.dump() << "\n";
            if (!f) throw InputError(a->out, "write failed");
        }
        return 0;
    };
}

KVSCOPE_COMMAND("logits", "Print the top-K next-token probabilities at every prompt position",
                setup);

}  // namespace
}  // namespace kvscope::cli
