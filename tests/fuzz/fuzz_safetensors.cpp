// libFuzzer target for the safetensors parser and HF-directory loader: each input is written as
// model.safetensors beside a fixed config.json (a tiny Llama: vocab 16, hidden 8, 1 layer, 2 heads,
// 1 KV head, head_dim 4, MLP 12) and loaded with load_model. InputError is the expected outcome of
// bad input; any other exception, crash or sanitizer report is a bug.
//   seed corpus: tests/fuzz/seeds/safetensors/ (a valid model for this config)
//   run: ./fuzz_safetensors -max_len=8192 tests/fuzz/seeds/safetensors
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "core/model/model.h"

namespace {

namespace fs = std::filesystem;

const char kConfig[] = R"({
  "architectures": ["LlamaForCausalLM"], "vocab_size": 16, "hidden_size": 8,
  "intermediate_size": 12, "num_hidden_layers": 1, "num_attention_heads": 2,
  "num_key_value_heads": 1, "head_dim": 4, "max_position_embeddings": 64, "rms_norm_eps": 1e-5,
  "hidden_act": "silu", "rope_theta": 10000.0, "rope_scaling": null,
  "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"
})";

struct FuzzDir {
    fs::path path;
    FuzzDir() {
        path =
            fs::temp_directory_path() / ("kvscope_fuzz_safetensors_" + std::to_string(::getpid()));
        fs::create_directories(path);
        std::ofstream(path / "config.json") << kConfig;
    }
    ~FuzzDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static FuzzDir dir;
    {
        std::ofstream out(dir.path / "model.safetensors", std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    try {
        const auto model = kvscope::load_model(dir.path);
        // A model that loads must be readable end to end.
        for (const auto& [name, t] : model->weights.all()) {
            if (t.numel() == 0) continue;
            float v;
            kvscope::copy_as_f32(t, t.numel() - 1, 1, &v);
        }
    } catch (const kvscope::InputError&) {
    }
    return 0;
}
