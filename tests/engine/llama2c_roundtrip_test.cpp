// A llama2.c checkpoint made by our converter from an HF fixture must generate the same greedy
// tokens as HF did on the original (the converter permutes q/k rows back to interleaved RoPE
// pairs, and the llama2.c path rotates interleaved pairs: the two must cancel exactly).
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/engine/engine.h"
#include "core/engine/sampler.h"
#include "core/model/model.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;

TEST(Llama2cRoundTrip, ConvertedCheckpointGivesHfGreedyTokens) {
    const fs::path golden = fs::path(KVSCOPE_SOURCE_DIR) / "tests" / "golden";
    auto hf = load_model(golden / "models" / "llama2");
    const fs::path out =
        fs::temp_directory_path() / ("kvscope_l2c_" + std::to_string(::getpid()) + ".bin");
    export_llama2c(*hf, out);
    auto l2c = load_model(out);
    EXPECT_EQ(l2c->format, ModelFormat::kLlama2c);
    EXPECT_EQ(l2c->spec.rope.style, RopeStyle::kInterleaved);
    std::ifstream f(golden / "ref" / "llama2.json");
    const auto ref = nlohmann::json::parse(f);
    auto backend = make_cpu_backend(2);
    Engine engine(*l2c, *backend);
    for (const auto& p : ref["prompts"]) {
        const auto ids = p["ids"].get<std::vector<int32_t>>();
        const auto want = p["greedy"].get<std::vector<int32_t>>();
        Sampler greedy({});
        auto logits = engine.prefill(ids);
        std::vector<int32_t> got;
        for (size_t i = 0; i < want.size(); ++i) {
            got.push_back(greedy.sample(logits.data(), l2c->spec.vocab_size));
            logits = engine.decode(got.back());
        }
        EXPECT_EQ(got, want);
    }
    fs::remove(out);
}

}  // namespace
}  // namespace kvscope
