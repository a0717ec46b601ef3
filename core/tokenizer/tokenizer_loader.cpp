// load_tokenizer(): finds the tokenizer of a model directory or names the format of a file, and
// hands it to that format's loader.
#include <fstream>

#include "core/error.h"
#include "core/tokenizer/bpe_tokenizer_json.h"
#include "core/tokenizer/tokenizer.h"
#include "core/tokenizer/tokenizer_factories.h"

namespace kvscope {

namespace fs = std::filesystem;

namespace {

// First non-blank byte of a file: '{' marks JSON whatever the file is called.
char first_non_blank(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    char c = 0;
    while (in.get(c))
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return c;
    return 0;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const fs::path& path) {
    std::error_code ec;
    if (!fs::exists(path, ec)) throw InputError(path, "no such file or directory");
    if (fs::is_directory(path, ec)) {
        // tokenizer.json is preferred: when both exist it is the one HF transformers uses.
        if (fs::is_regular_file(path / "tokenizer.json", ec))
            return load_hf_tokenizer_json(path / "tokenizer.json");
        if (fs::is_regular_file(path / "tokenizer.model", ec))
            return load_sentencepiece_model(path / "tokenizer.model");
        if (fs::is_regular_file(path / "tokenizer.bin", ec))
            return load_llama2c_tokenizer(path / "tokenizer.bin");
        throw InputError(path,
                         "no tokenizer.json, tokenizer.model or tokenizer.bin in this "
                         "directory");
    }
    const std::string ext = path.extension().string();
    if (ext == ".json") return load_hf_tokenizer_json(path);
    if (ext == ".model") return load_sentencepiece_model(path);
    if (ext == ".bin") return load_llama2c_tokenizer(path);
    if (first_non_blank(path) == '{') return load_hf_tokenizer_json(path);
    throw InputError(path,
                     "unknown tokenizer file type (expected tokenizer.json, "
                     "tokenizer.model or llama2.c tokenizer.bin)");
}

}  // namespace kvscope
