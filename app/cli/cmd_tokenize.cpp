// kvscope tokenize: text -> ids (--text) or ids -> text (--decode).
#include <cstdio>

#include <nlohmann/json.hpp>

#include "app/cli/cli_common.h"
#include "app/cli/command.h"
#include "core/error.h"

namespace kvscope::cli {
namespace {

struct TokenizeArgs {
    std::string model, tokenizer, text, decode;
    bool no_special = false;
    bool pieces = false;
    bool json = false;
};

std::function<int()> setup(CLI::App& sub) {
    auto a = std::make_shared<TokenizeArgs>();
    sub.add_option("--model", a->model, "Model directory (its tokenizer is used) or llama2.c .bin");
    sub.add_option("--tokenizer", a->tokenizer, "Tokenizer file or directory (overrides --model)");
    auto* text = sub.add_option("--text", a->text, "Text to encode");
    auto* dec = sub.add_option("--decode", a->decode, "Comma-separated ids to decode, e.g. 1,2,3");
    text->excludes(dec);
    sub.add_flag("--no-special", a->no_special, "Do not add BOS/EOS template tokens when encoding");
    sub.add_flag("--pieces", a->pieces, "Also print each token's text");
    sub.add_flag("--json", a->json,
                 "Print one JSON document on stdout: {ids, pieces} or {ids, text} for --decode");
    return [a, text, dec]() {
        if (text->count() == 0 && dec->count() == 0)
            throw InputError("tokenize: pass --text or --decode");
        if (a->model.empty() && a->tokenizer.empty())
            throw InputError("tokenize: pass --model or --tokenizer");
        if (text->count() > 0) check_prompt_text(a->text, "--text");  // the prompt rule
        std::unique_ptr<Tokenizer> tok;
        if (!a->tokenizer.empty()) {
            tok = load_tokenizer(a->tokenizer);
        } else {
            ModelArgs ma;
            ma.model = a->model;
            tok = load_model_and_tokenizer(ma, true).tokenizer;
        }
        if (dec->count() > 0) {
            const auto ids = parse_id_list(a->decode, "--decode");
            for (int32_t id : ids)
                if (id >= tok->vocab_size())
                    throw InputError("--decode: id " + std::to_string(id) +
                                     " is outside the vocabulary (" +
                                     std::to_string(tok->vocab_size()) + " tokens)");
            const std::string out = tok->decode(ids, false);
            if (a->json) {
                const nlohmann::json j = {{"ids", ids}, {"text", out}};
                std::printf(
                    "%s\n",
                    j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
                return 0;
            }
            std::printf("%s\n", out.c_str());
            return 0;
        }
        const auto ids = tok->encode(a->text, !a->no_special);
        if (a->json) {
            nlohmann::json pieces = nlohmann::json::array();
            for (int32_t id : ids) pieces.push_back(tok->decode({id}, false));
            const nlohmann::json j = {{"ids", ids}, {"pieces", pieces}};
            std::printf("%s\n",
                        j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
            return 0;
        }
        for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? ",%d" : "%d", ids[i]);
        std::printf("\n");
        if (a->pieces)
            for (int32_t id : ids) std::printf("%6d  %s\n", id, tok->decode({id}, false).c_str());
        return 0;
    };
}

KVSCOPE_COMMAND("tokenize", "Encode text to token ids, or decode ids to text", setup);

}  // namespace
}  // namespace kvscope::cli
