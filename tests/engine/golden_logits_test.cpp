// Golden tests: our CPU engine against HF transformers 5.17 fp32 eager outputs recorded by
// tools/golden/make_fixtures.py for tiny random-weight models of every supported variant.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/cache/kv_cache.h"
#include "core/engine/engine.h"
#include "core/engine/sampler.h"
#include "core/model/model.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;
const fs::path kGolden = fs::path(KVSCOPE_SOURCE_DIR) / "tests" / "golden";

nlohmann::json read_json(const fs::path& p) {
    std::ifstream f(p);
    return nlohmann::json::parse(f);
}

// Relative error of a vector against its reference: max|a - r| / max|r|. Elementwise relative
// error is meaningless for logits near zero, so the scale is the row's largest magnitude.
double rel_err(const float* a, const std::vector<double>& r) {
    double num = 0, den = 0;
    for (size_t i = 0; i < r.size(); ++i) {
        num = std::max(num, std::abs(static_cast<double>(a[i]) - r[i]));
        den = std::max(den, std::abs(r[i]));
    }
    return num / std::max(den, 1e-30);
}

class GoldenVariant : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenVariant, LogitsMatchHfWithinTolerance) {
    const std::string name = GetParam();
    auto model = load_model(kGolden / "models" / name);
    const auto ref = read_json(kGolden / "ref" / (name + ".json"));
    auto backend = make_cpu_backend(2);
    EngineOptions opts;
    opts.stats.all_logits = true;
    opts.stats.colsum = true;
    opts.stats.window = 1;
    Engine engine(*model, *backend, opts);
    const int64_t V = model->spec.vocab_size;
    for (const auto& p : ref["prompts"]) {
        const auto ids = p["ids"].get<std::vector<int32_t>>();
        engine.prefill(ids);
        const auto& all = engine.all_logits();
        ASSERT_EQ(all.size(), ids.size() * static_cast<size_t>(V));
        for (size_t i = 0; i < ids.size(); ++i) {
            const auto r = p["logits"][i].get<std::vector<double>>();
            // Tolerance: fp32 compute on both sides, different summation orders: 1e-4 relative.
            EXPECT_LE(rel_err(all.data() + i * static_cast<size_t>(V), r), 1e-4)
                << name << " position " << i;
        }
        // Attention statistics: column sums and the last query row, per layer and query head.
        const auto& st = engine.prefill_stats();
        for (int64_t l = 0; l < model->spec.n_layers; ++l) {
            for (int64_t h = 0; h < model->spec.n_heads; ++h) {
                const auto cs = p["attn_colsum"][l][h].get<std::vector<double>>();
                const auto lr = p["attn_last_row"][l][h].get<std::vector<double>>();
                const auto& ours_cs = st[l].colsum[h];
                const auto& ours_w = st[l].window[h];
                ASSERT_EQ(ours_cs.size(), cs.size());
                ASSERT_EQ(ours_w.size(), lr.size());
                for (size_t j = 0; j < cs.size(); ++j) {
                    // Probabilities in [0,1], sums up to n: 1e-5 absolute per probability.
                    EXPECT_NEAR(ours_cs[j], cs[j], 1e-5 * static_cast<double>(ids.size()))
                        << name << " layer " << l << " head " << h << " key " << j;
                    EXPECT_NEAR(ours_w[j], lr[j], 1e-5) << name << " layer " << l << " head " << h;
                }
            }
        }
    }
}

TEST_P(GoldenVariant, GreedyContinuationMatchesHf) {
    const std::string name = GetParam();
    auto model = load_model(kGolden / "models" / name);
    const auto ref = read_json(kGolden / "ref" / (name + ".json"));
    auto backend = make_cpu_backend(2);
    Engine engine(*model, *backend);
    for (const auto& p : ref["prompts"]) {
        const auto ids = p["ids"].get<std::vector<int32_t>>();
        const auto want = p["greedy"].get<std::vector<int32_t>>();
        Sampler greedy({});
        std::vector<float> logits = engine.prefill(ids);
        std::vector<int32_t> got;
        for (size_t i = 0; i < want.size(); ++i) {
            got.push_back(greedy.sample(logits.data(), model->spec.vocab_size));
            logits = engine.decode(got.back());
        }
        EXPECT_EQ(got, want) << name;
        // The full cache holds every token: prompt + generated.
        EXPECT_EQ(engine.cache().total_slots(), static_cast<int64_t>(ids.size() + want.size()) *
                                                    model->spec.n_layers * model->spec.n_kv_heads);
    }
}

INSTANTIATE_TEST_SUITE_P(AllVariants, GoldenVariant,
                         ::testing::Values("llama2", "llama3_tied", "mistral_gqa4", "qwen2_bias",
                                           "qwen3_qknorm", "llama_headdim_sharded", "llama_sp"));

}  // namespace
}  // namespace kvscope
