#pragma once
// Shared pieces of the kvscope subcommands: loading a model + tokenizer from --model/--tokenizer,
// parsing id lists, and the policy flags (--policy, --budget, --ratio, --param) that every
// command running the engine accepts.
#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

#include "core/model/model.h"
#include "core/tokenizer/tokenizer.h"
#include "kernels/backend.h"

namespace kvscope::cli {

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

}  // namespace kvscope::cli
