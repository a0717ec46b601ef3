#pragma once
// Shared by the tokenizer-file fuzz targets: writes the input under the file name that selects
// the format, loads it with load_tokenizer and exercises what loaded.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/tokenizer/tokenizer.h"

namespace kvscope::fuzz {

inline void load_and_exercise(const char* target, const char* file_name, const uint8_t* data,
                              size_t size) {
    namespace fs = std::filesystem;
    static const fs::path dir = [&] {
        fs::path d = fs::temp_directory_path() /
                     ("kvscope_fuzz_" + std::string(target) + "_" + std::to_string(getpid()));
        fs::create_directories(d);
        return d;
    }();
    const fs::path file = dir / file_name;
    {
        std::ofstream out(file, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    try {
        const auto tok = load_tokenizer(file);
        const char* texts[] = {"Hello world",
                               "  a\tb\n\n",
                               "\xF0\x9F\x98\x80 \xE4\xB8\xAD",
                               "<s> </s>",
                               "\xFF\xC0\x80 cut \xE4\xB8",
                               ""};
        for (const char* t : texts) {
            const auto ids = tok->encode(t, true);
            tok->decode(ids, false);
            tok->decode(ids, true);
            StreamDecoder stream(*tok);
            for (int32_t id : ids) stream.push(id);
            stream.flush();
        }
        const int32_t n = tok->vocab_size();
        for (int32_t id : {-1, 0, 1, n / 2, n - 1, n, n + 1}) tok->token_bytes(id);
    } catch (const InputError&) {
    }
}

}  // namespace kvscope::fuzz
