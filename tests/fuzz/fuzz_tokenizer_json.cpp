// libFuzzer target for the tokenizer.json reader and the tokenizer it builds: each input is
// written as tokenizer.json and loaded with load_tokenizer; a tokenizer that loads then encodes
// and decodes a few hostile strings. InputError is the expected outcome of bad input; any other
// exception, crash or sanitizer report is a bug.
//   seed corpus: tests/golden/tokenizers/*/tokenizer.json (copy them into one folder)
//   run: ./fuzz_tokenizer_json -max_len=65536 CORPUS_DIR
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;

const fs::path& work_dir() {
    static const fs::path dir = [] {
        fs::path d =
            fs::temp_directory_path() / ("kvscope_fuzz_tokenizer_json_" + std::to_string(getpid()));
        fs::create_directories(d);
        return d;
    }();
    return dir;
}

void exercise(const kvscope::Tokenizer& tok) {
    const char* texts[] = {"Hello world",
                           "  a\tb\n\n",
                           "\xF0\x9F\x98\x80 \xE4\xB8\xAD",
                           "<s> <|endoftext|> </s>",
                           "\xFF\xC0\x80 cut \xE4\xB8",
                           ""};
    for (const char* t : texts) {
        const auto ids = tok.encode(t, true);
        tok.decode(ids, false);
        tok.decode(ids, true);
        kvscope::StreamDecoder stream(tok);
        for (int32_t id : ids) stream.push(id);
        stream.flush();
    }
    const int32_t n = tok.vocab_size();
    for (int32_t id : {-1, 0, 1, n / 2, n - 1, n, n + 1}) tok.token_bytes(id);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const fs::path file = work_dir() / "tokenizer.json";
    {
        std::ofstream out(file, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    try {
        const auto tok = kvscope::load_tokenizer(file);
        exercise(*tok);
    } catch (const kvscope::InputError&) {
        // Expected for malformed input.
    }
    return 0;
}
