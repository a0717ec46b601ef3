#pragma once
// Shared pieces of the kvscope subcommands: loading a model + tokenizer from --model/--tokenizer,
// parsing id lists, and the policy flags (--policy, --budget, --ratio, --param) that every
// command running the engine accepts.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/model/model.h"
#include "core/tokenizer/tokenizer.h"
#include "kernels/backend.h"

namespace kvscope::cli {

// Exit codes (documented in `kvscope --help`): 0 success, 1 runtime failure (a file that is
// missing or unreadable, not a trace, a newer schema, a model that does not load, a write
// error), 2 usage error (unknown command or flag, a bad flag value, a missing required flag,
// an existing output without --force, prompt text that is not usable). main.cpp maps an
// InputError naming a file to 1 and one naming none to 2; a UsageError is 2 even when it names
// a file (e.g. a prompt file that is not UTF-8: the file is the user's input, not a failure).
class UsageError : public InputError {
  public:
    using InputError::InputError;
};
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// The first invalid UTF-8 byte of `text` (overlong forms, surrogates and code points above
// U+10FFFF are invalid), or -1 when the text is valid.
int64_t first_invalid_utf8(const std::string& text);
// One rule for text typed or read as a prompt (--prompt, --prompt-file, tokenize --text ...):
// it must be non-empty valid UTF-8. Throws UsageError naming `source` (the flag, or the file)
// with the byte offset of the first bad byte, or saying that the prompt is empty.
void check_prompt_text(const std::string& text, const std::string& source);
// Reads --prompt-file: a missing/unreadable file is a runtime failure (InputError naming it,
// exit 1); a directory, or contents that fail check_prompt_text, a usage error (exit 2).
std::string read_prompt_file(const std::string& path);

// Progress on stderr. On a terminal: one line redrawn with '\r' (count, rate, ETA), at most ten
// times a second. Otherwise (a log file, a pipe): plain lines, no '\r', at most one every
// `plain_every_s` seconds plus the last one. Nothing at all when `quiet`.
class Progress {
  public:
    Progress(std::string label, bool quiet, double plain_every_s = 5.0);
    void update(int64_t done, int64_t total, const std::string& note = "");
    void finish();  // ends a terminal line; idempotent
    // Erases the terminal line (before a command prints a result line on a terminal, so the
    // two do not share a line); the next update() draws it again. Nothing off a terminal.
    void clear();
    static bool stderr_is_tty();

  private:
    std::string label_;
    bool quiet_, tty_, open_ = false;
    double plain_every_s_;
    std::chrono::steady_clock::time_point start_, last_;
    bool shown_any_ = false;
};

struct ModelArgs {
    std::string model;
    std::string tokenizer;  // optional: a tokenizer stored apart from the weights
    int threads = 0;
    std::string device = "auto";  // auto | cpu | cuda (kernels/backend.h make_backend)
};
void add_model_options(CLI::App& sub, ModelArgs& args);

struct Loaded {
    std::unique_ptr<Model> model;
    std::unique_ptr<Tokenizer> tokenizer;  // may be null when the caller does not need it
};
// Loads the model and (when `need_tokenizer`) its tokenizer. For a llama2.c .bin without
// --tokenizer, looks for tokenizer.bin beside it. Throws InputError.
// --device is checked first (a clear error, exit 1, when CUDA is asked for and cannot be used).
Loaded load_model_and_tokenizer(const ModelArgs& args, bool need_tokenizer);

// "1,2,3" -> {1,2,3}; throws InputError naming the flag on a malformed list.
std::vector<int32_t> parse_id_list(const std::string& text, const std::string& flag);
// "0.1,0.25" -> {0.1, 0.25}, each in [lo, hi]; throws InputError naming the flag, the item and
// the range.
std::vector<double> parse_number_list(const std::string& text, const std::string& flag, double lo,
                                      double hi);

// Never clobber (traces/trace_output.h): throws InputError (exit 2) naming `path` when a file is
// already there and `force` is false. Commands call it before any long work.
void check_output_path(const std::string& path, bool force);
// The same for a trace written by trace::TraceWriter, which also looks at "<path>.part": a live
// recording into it is always refused, a stale one (killed run) unless `force`.
void check_trace_output_path(const std::string& path, bool force);
// The help text of every command's --force flag.
extern const char* const kForceHelp;

// Text -> prompt ids, with the special tokens the reference tokenizer adds (BOS templates).
std::vector<int32_t> encode_prompt(const Tokenizer& tok, const std::string& text);

// A warning on stderr (shown also under --quiet: it is about the result, not progress) when a run
// reaches `positions` token positions (prompt + new tokens) and the model's config gives a
// shorter max_position_embeddings: RoPE computes there, but the checkpoint was never trained on
// those positions, so an answer lost there may be the model's, not the cache policy's. `what`
// names the run ("the prompt", "--lengths 8192"). Returns whether it warned.
bool warn_past_trained_context(const ModelSpec& spec, int64_t positions, const std::string& what);
// The same for a prompt of `prompt_tokens` followed by up to `new_tokens` generated ones
// ("the prompt (N tokens) + M new tokens").
bool warn_past_trained_context(const ModelSpec& spec, size_t prompt_tokens, int64_t new_tokens);

}  // namespace kvscope::cli
