// libFuzzer target for the HF config.json reader (core/model/hf_config.cpp): each input is written
// as config.json and parsed with parse_hf_config. InputError is the expected outcome of bad input;
// any other exception, crash or sanitizer report is a bug.
//   seed corpus: tests/fuzz/seeds/hf_config/ (configs of the golden models and the demo model)
//   run: ./fuzz_hf_config -max_len=4096 tests/fuzz/seeds/hf_config
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/model/model_spec.h"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const fs::path dir = [] {
        fs::path d =
            fs::temp_directory_path() / ("kvscope_fuzz_hf_config_" + std::to_string(getpid()));
        fs::create_directories(d);
        return d;
    }();
    const fs::path file = dir / "config.json";
    {
        std::ofstream out(file, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    try {
        (void)kvscope::parse_hf_config(file);
    } catch (const kvscope::InputError&) {
    }
    return 0;
}
