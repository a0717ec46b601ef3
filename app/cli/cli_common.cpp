#include "app/cli/cli_common.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
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
    // A file where a model directory is expected (e.g. --model DIR/config.json) would otherwise
    // be parsed as a llama2.c checkpoint and fail with an unrelated message.
    const fs::path mp = args.model;
    std::error_code ec;
    if (fs::is_regular_file(mp, ec) && mp.extension() != ".bin")
        throw InputError(
            mp,
            "is a file, but --model takes a model directory (config.json + "
            "*.safetensors) or a llama2.c .bin checkpoint" +
                (mp.filename() == "config.json"
                     ? "; pass its folder: --model " +
                           (mp.has_parent_path() ? mp.parent_path().string() : std::string("."))
                     : std::string()));
    Loaded out;
    out.model = load_model(args.model);
    if (!need_tokenizer) return out;
    fs::path tok_path = args.tokenizer;
    if (tok_path.empty()) {
        const fs::path m = args.model;
        if (out.model->format == ModelFormat::kLlama2c) {
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
    // An existing output is a usage error (exit 2): the fix is a flag (--force) or another path.
    try {
        trace::refuse_existing_output(path, force, "pass --force to replace it");
    } catch (const UsageError&) {
        throw;
    } catch (const InputError& e) {
        throw UsageError(e.file(), e.problem());
    }
}

void check_trace_output_path(const std::string& path, bool force) {
    check_output_path(path, force);
    const fs::path part = trace::recording_path_for(path);
    std::error_code ec;
    if (!fs::exists(fs::symlink_status(part, ec))) return;
    if (trace::recording_in_progress(part))
        throw UsageError(part, "another recording into " + path +
                                   " is in progress; pick another output path or wait for it");
    if (!force)
        throw UsageError(part,
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

int64_t first_invalid_utf8(const std::string& text) {
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    const size_t n = text.size();
    size_t i = 0;
    while (i < n) {
        const unsigned char c = s[i];
        size_t len = 0;
        uint32_t cp = 0;
        if (c < 0x80) {
            ++i;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2, cp = c & 0x1Fu;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3, cp = c & 0x0Fu;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4, cp = c & 0x07u;
        } else {
            return static_cast<int64_t>(i);  // a continuation byte, C0/C1 or F5..FF lead
        }
        for (size_t k = 1; k < len; ++k) {
            if (i + k >= n || (s[i + k] & 0xC0u) != 0x80u) return static_cast<int64_t>(i);
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        // Overlong 3/4-byte forms, UTF-16 surrogates and code points past U+10FFFF.
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return static_cast<int64_t>(i);
        i += len;
    }
    return -1;
}

void check_prompt_text(const std::string& text, const std::string& source) {
    // Rejected rather than run from a lone BOS: no command needs an empty prompt, and an empty
    // --prompt "" and an empty file get the same message.
    if (text.empty())
        throw UsageError(source + ": the prompt is empty (give at least one character)");
    const int64_t bad = first_invalid_utf8(text);
    if (bad >= 0) {
        char hex[8];
        std::snprintf(
            hex, sizeof hex, "0x%02X",
            static_cast<unsigned>(static_cast<unsigned char>(text[static_cast<size_t>(bad)])));
        throw UsageError(source + ": the prompt is not valid UTF-8: first bad byte " + hex +
                         " at byte offset " + std::to_string(bad));
    }
}

std::string read_prompt_file(const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) throw UsageError(path, "is a directory, not a file");
    std::ifstream f(path, std::ios::binary);
    if (!f)
        throw InputError(
            path, fs::exists(path, ec) ? "cannot read the prompt file" : "no such prompt file");
    std::stringstream ss;
    ss << f.rdbuf();
    std::string text = ss.str();
    check_prompt_text(text, "--prompt-file " + path);
    return text;
}

bool Progress::stderr_is_tty() {
    return ::isatty(STDERR_FILENO) == 1;
}

Progress::Progress(std::string label, bool quiet, double plain_every_s)
    : label_(std::move(label)),
      quiet_(quiet),
      tty_(stderr_is_tty()),
      plain_every_s_(plain_every_s),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

void Progress::update(int64_t done, int64_t total, const std::string& note) {
    if (quiet_) return;
    const auto now = std::chrono::steady_clock::now();
    const double since = std::chrono::duration<double>(now - last_).count();
    const bool last = total > 0 && done >= total;
    // Rate-limited: ten redraws a second on a terminal, a line every few seconds in a log.
    if (shown_any_ && !last && since < (tty_ ? 0.1 : plain_every_s_)) return;
    last_ = now;
    shown_any_ = true;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    char eta[48] = "ETA -";
    if (done > 0 && total > 0)
        std::snprintf(eta, sizeof eta, "ETA %.0f s",
                      elapsed / static_cast<double>(done) * static_cast<double>(total - done));
    char line[256];
    std::snprintf(line, sizeof line, "[%s] %lld/%lld  elapsed %.1f s, %s%s%s", label_.c_str(),
                  static_cast<long long>(done), static_cast<long long>(total), elapsed, eta,
                  note.empty() ? "" : "  ", note.c_str());
    if (tty_) {
        std::fprintf(stderr, "\r%s\033[K", line);  // \033[K: clear what a longer line left
        open_ = true;
    } else {
        std::fprintf(stderr, "%s\n", line);
    }
    std::fflush(stderr);
}

void Progress::clear() {
    if (open_) std::fprintf(stderr, "\r\033[K");
    open_ = false;
    std::fflush(stderr);
}

void Progress::finish() {
    if (open_) std::fprintf(stderr, "\n");
    open_ = false;
}

std::vector<int32_t> encode_prompt(const Tokenizer& tok, const std::string& text) {
    // Exactly what the reference tokenizer does with add_special_tokens=True (BOS templates).
    return tok.encode(text, /*add_special=*/true);
}

bool warn_past_trained_context(const ModelSpec& spec, int64_t positions, const std::string& what) {
    if (spec.max_position <= 0 || positions <= spec.max_position) return false;
    std::fprintf(stderr,
                 "warning: %s reaches %lld token positions, beyond the model's "
                 "max_position_embeddings (%lld, config.json): it was not trained there\n",
                 what.c_str(), static_cast<long long>(positions),
                 static_cast<long long>(spec.max_position));
    return true;
}

bool warn_past_trained_context(const ModelSpec& spec, size_t prompt_tokens, int64_t new_tokens) {
    std::string what = "the prompt (" + std::to_string(prompt_tokens) + " tokens)";
    if (new_tokens > 0) what += " + " + std::to_string(new_tokens) + " new tokens";
    return warn_past_trained_context(spec, static_cast<int64_t>(prompt_tokens) + new_tokens, what);
}

}  // namespace kvscope::cli
