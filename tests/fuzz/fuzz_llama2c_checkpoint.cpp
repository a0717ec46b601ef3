// libFuzzer target for llama2.c checkpoints (core/model/llama2c_checkpoint.cpp): each input is
// written as model.bin and loaded with load_model; a model that loads is read end to end.
// InputError is the expected outcome of bad input; any other exception, crash or sanitizer report
// is a bug.
//   seed corpus: tests/fuzz/seeds/llama2c_checkpoint/ (a valid 1-layer checkpoint, dim 8)
//   run: ./fuzz_llama2c_checkpoint -max_len=8192 tests/fuzz/seeds/llama2c_checkpoint
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/model/model.h"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const fs::path dir = [] {
        fs::path d =
            fs::temp_directory_path() / ("kvscope_fuzz_llama2c_" + std::to_string(getpid()));
        fs::create_directories(d);
        return d;
    }();
    const fs::path file = dir / "model.bin";
    {
        std::ofstream out(file, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    try {
        const auto model = kvscope::load_model(file);
        for (const auto& [name, t] : model->weights.all()) {
            if (t.numel() == 0) continue;
            float v;
            kvscope::copy_as_f32(t, t.numel() - 1, 1, &v);
        }
    } catch (const kvscope::InputError&) {
    }
    return 0;
}
