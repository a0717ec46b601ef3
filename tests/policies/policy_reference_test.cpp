// Agreement with the independent PyTorch reference (tools/golden/policy_reference.py): for every
// fixture model, the statistics the reference recorded from HF transformers are fed to our
// policies, and the kept sets per (layer, KV head) must be IDENTICAL (no tolerance: both sides
// follow the numerics convention in core/policies/selection.h). The ref_prompt_cases feed the
// column sums / last rows recorded in tests/golden/ref/<variant>.json (the fixture script's own
// HF run) instead, and compare with the kept sets the reference computed from its run.
// KVSCOPE_POLICY_REF_DIR overrides the folder of the reference files.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/policies/registry.h"
#include "tests/policies/policy_harness.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

fs::path ref_dir() {
    if (const char* e = std::getenv("KVSCOPE_POLICY_REF_DIR")) return e;
    return fs::path(KVSCOPE_SOURCE_DIR) / "tests" / "golden" / "policy_ref";
}

const std::vector<std::string> kVariants = {"llama2",     "llama3_tied",  "mistral_gqa4",
                                            "qwen2_bias", "qwen3_qknorm", "llama_headdim_sharded",
                                            "llama_sp"};

json load(const fs::path& p) {
    std::ifstream f(p);
    if (!f) throw std::runtime_error("cannot open " + p.string());
    return json::parse(f);
}

std::vector<float> floats(const json& a) {
    return a.get<std::vector<float>>();
}

// Runs one case and compares every (layer, KV head). Returns the number of mismatching heads.
int run_case(const json& c, const test::OwnedStats& st, const std::string& label) {
    Budget b;
    b.tokens = c["budget"].get<int64_t>();
    auto p =
        make_policy(c["policy"].get<std::string>(), b, c["params"].get<std::vector<std::string>>());
    p->begin(st.dims(), st.N);
    const Plan plan = p->after_prefill(st.view());
    int bad = 0;
    for (int64_t l = 0; l < st.L; ++l)
        for (int64_t h = 0; h < st.Hkv; ++h) {
            const auto want = c["kept"][l][h].get<std::vector<int64_t>>();
            const auto got = test::kept_of(plan, l, h, st.N);
            if (got != want) {
                ++bad;
                ADD_FAILURE() << label << " " << c["policy"] << " budget " << c["budget"]
                              << " params " << c["params"] << ": layer " << l << " head " << h
                              << " kept sets differ (" << got.size() << " vs " << want.size()
                              << " tokens)";
            }
        }
    return bad;
}

TEST(PolicyReference, KeptSetsMatchThePyTorchReference) {
    if (!fs::exists(ref_dir() / "llama2.json"))
        GTEST_SKIP() << "no reference files in " << ref_dir()
                     << " (run tools/golden/policy_reference.py on the GPU machine)";
    int cases = 0;
    for (const std::string& variant : kVariants) {
        const json r = load(ref_dir() / (variant + ".json"));
        const int64_t L = r["n_layers"], H = r["n_heads"], Hkv = r["n_kv_heads"];
        const int64_t N = r["prompt_len"], W = r["window_rows"];
        test::OwnedStats st(L, H, Hkv, N, W);
        for (int64_t l = 0; l < L; ++l) {
            for (int64_t h = 0; h < H; ++h) {
                st.colsum[l][h] = floats(r["colsum"][l][h]);
                st.window[l][h] = floats(r["window"][l][h]);
                ASSERT_EQ(static_cast<int64_t>(st.window[l][h].size()), W * N);
            }
            for (int64_t h = 0; h < Hkv; ++h) st.key_norm[l][h] = floats(r["key_norm"][l][h]);
        }
        for (const json& c : r["cases"]) {
            run_case(c, st, variant);
            ++cases;
        }

        // The fixture prompt, with the statistics recorded by tools/golden/make_fixtures.py.
        const json fx =
            load(fs::path(KVSCOPE_SOURCE_DIR) / "tests" / "golden" / "ref" / (variant + ".json"));
        for (const json& c : r["ref_prompt_cases"]) {
            const json& pr = fx["prompts"][c["prompt_index"].get<size_t>()];
            const int64_t n = static_cast<int64_t>(pr["ids"].size());
            test::OwnedStats fs_st(L, H, Hkv, n, 1);
            for (int64_t l = 0; l < L; ++l)
                for (int64_t h = 0; h < H; ++h) {
                    fs_st.colsum[l][h] = floats(pr["attn_colsum"][l][h]);
                    fs_st.window[l][h] = floats(pr["attn_last_row"][l][h]);
                }
            run_case(c, fs_st, variant + " (fixture prompt)");
            ++cases;
        }
    }
    EXPECT_GE(cases, 7 * 10);
}

}  // namespace
}  // namespace kvscope
