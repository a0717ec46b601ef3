#include "app/cli/cli_common.h"

#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include "core/model/error.h"
#include "traces/trace_output.h"

namespace kvscope::cli {

namespace fs = std::filesystem;

void add_model_options(CLI::App& sub, ModelArgs& args) {
    sub.add_option("--model", args.model,
                   "Model: an HF directory (config.json + safetensors) or a llama2.c .bin")
        ->required();
    sub.add_option("--tokenizer", args.tokenizer,
                   "Tokenizer file or directory, when stored apart from the weights "
                   "(tokenizer.json, tokenizer.model or llama2.c tokenizer.bin)");
    sub.add_option("--threads", args.threads, "CPU threads (0 = all cores)")
        ->check(CLI::NonNegativeNumber);
    sub.add_option("--device", args.device,
                   "Where the model runs: cuda, cpu, or auto (CUDA when this build has it and a "
                   "GPU of compute capability 9.0+ is present, else the CPU)")
        ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
        ->capture_default_str();
}

Loaded load_model_and_tokenizer(const ModelArgs& args, bool need_tokenizer) {
    if (args.device == "cuda") {  // before any long work
        const DeviceProbe p = probe_cuda();
        if (!p.available) (void)make_backend("cuda", args.threads);  // throws the full message
    }
    Loaded out;
    out.model = load_model(args.model);
    if (!need_tokenizer) return out;
    fs::path tok_path = args.tokenizer;
    if (tok_path.empty()) {
        const fs::path m = args.model;
        if (out.model->format == ModelFormat::llama2c) {
            tok_path = m.parent_path() / "tokenizer.bin";
            if (!fs::exists(tok_path))
                throw InputError(m,
                                 "a llama2.c checkpoint carries no tokenizer: pass --tokenizer "
                                 "(looked for " +
                                     tok_path.string() + ")");
        } else {
            tok_path = m;
        }
    }
    out.tokenizer = load_tokenizer(tok_path);
    if (out.tokenizer->vocab_size() > out.model->spec.vocab_size)
        throw InputError(tok_path, "tokenizer has " + std::to_string(out.tokenizer->vocab_size()) +
                                       " tokens but the model's vocabulary has only " +
                                       std::to_string(out.model->spec.vocab_size));
    return out;
}

std::vector<int32_t> parse_id_list(const std::string& text, const std::string& flag) {
    std::vector<int32_t> ids;
    size_t i = 0;
    while (i <= text.size()) {
        size_t j = text.find(',', i);
        if (j == std::string::npos) j = text.size();
        std::string item = text.substr(i, j - i);
        while (!item.empty() && item.front() == ' ') item.erase(item.begin());
        while (!item.empty() && item.back() == ' ') item.pop_back();
        if (item.empty()) throw InputError(flag + ": empty item in id list '" + text + "'");
        errno = 0;
        char* end = nullptr;
        const long v = std::strtol(item.c_str(), &end, 10);
        if (*end != '\0' || errno != 0 || v < 0 || v > INT32_MAX)
            throw InputError(flag + ": '" + item + "' is not a token id (a non-negative integer)");
        ids.push_back(static_cast<int32_t>(v));
        i = j + 1;
    }
    return ids;
}

const char* const kForceHelp =
    "Replace an existing output file (a trace only once the new one is complete)";

void check_output_path(const std::string& path, bool force) {
    trace::refuse_existing_output(path, force, "pass --force to replace it");
}

void check_trace_output_path(const std::string& path, bool force) {
    check_output_path(path, force);
    const fs::path part = trace::recording_path_for(path);
    std::error_code ec;
    if (!fs::exists(fs::symlink_status(part, ec))) return;
    if (trace::recording_in_progress(part))
        throw InputError(part, "another recording into " + path +
                                   " is in progress; pick another output path or wait for it");
    if (!force)
        throw InputError(part,
                         "left over from a recording that did not finish (killed?); its "
                         "committed steps are readable (kvscope inspect " +
                             part.string() + "). Move it away, or pass --force to discard it");
}

std::vector<double> parse_number_list(const std::string& text, const std::string& flag, double lo,
                                      double hi) {
    std::vector<double> out;
    size_t i = 0;
    while (i <= text.size()) {
        size_t j = text.find(',', i);
        if (j == std::string::npos) j = text.size();
        const std::string item = text.substr(i, j - i);
        char* end = nullptr;
        const double v = std::strtod(item.c_str(), &end);
        if (item.empty() || *end != '\0' || !(v >= lo && v <= hi))
            throw InputError(flag + ": '" + item + "' is not a number in [" + std::to_string(lo) +
                             ", " + std::to_string(hi) + "]");
        out.push_back(v);
        i = j + 1;
    }
    return out;
}

std::vector<int32_t> encode_prompt(const Tokenizer& tok, const std::string& text) {
    // Exactly what the reference tokenizer does with add_special_tokens=True (BOS templates).
    return tok.encode(text, /*add_special=*/true);
}

}  // namespace kvscope::cli
