// config.json -> ModelSpec: the golden fixtures (transformers-5 layout), the same configs
// rewritten into the transformers-4 layout, defaults, and malformed configs.
#include <gtest/gtest.h>

#include "core/error.h"
#include "core/model/model.h"
#include "core/model/model_spec.h"
#include "tests/model/model_test_util.h"

namespace kvscope {
namespace {

using test::golden_model;
using test::json;
using test::TempDir;
namespace fs = std::filesystem;

const char* kVariants[] = {"llama2",       "llama3_tied",           "mistral_gqa4", "qwen2_bias",
                           "qwen3_qknorm", "llama_headdim_sharded", "llama_sp"};

TEST(HfConfig, Llama3TiedRopeScaling) {
    const ModelSpec s = parse_hf_config(golden_model("llama3_tied") / "config.json");
    EXPECT_EQ(s.arch, Architecture::kLlama);
    EXPECT_EQ(s.arch_name, "LlamaForCausalLM");
    EXPECT_EQ(s.rope.scaling, RopeScaling::kLlama3);
    EXPECT_EQ(s.rope.style, RopeStyle::kHalf);
    EXPECT_DOUBLE_EQ(s.rope.theta, 500000.0);
    EXPECT_DOUBLE_EQ(s.rope.factor, 8.0);
    EXPECT_DOUBLE_EQ(s.rope.low_freq_factor, 1.0);
    EXPECT_DOUBLE_EQ(s.rope.high_freq_factor, 4.0);
    EXPECT_EQ(s.rope.original_max_position, 64);
    EXPECT_TRUE(s.tied_embeddings);
    EXPECT_EQ(s.n_heads, 4);
    EXPECT_EQ(s.n_kv_heads, 2);
    EXPECT_EQ(s.group_size(), 2);
    EXPECT_EQ(s.weight_dtype, DType::kBf16);  // from "dtype" before the weights are seen
}

TEST(HfConfig, Qwen3HeadDimAndQkNorm) {
    const ModelSpec s = parse_hf_config(golden_model("qwen3_qknorm") / "config.json");
    EXPECT_EQ(s.arch, Architecture::kQwen3);
    EXPECT_EQ(s.head_dim, 32);  // != hidden 64 / heads 4
    EXPECT_EQ(s.q_dim(), 128);
    EXPECT_EQ(s.kv_dim(), 64);
    EXPECT_TRUE(s.qk_norm);
    EXPECT_FALSE(s.attention_bias);
    EXPECT_FALSE(s.o_bias);
    EXPECT_DOUBLE_EQ(s.rope.theta, 1e6);
    EXPECT_EQ(s.sliding_window, 0);  // use_sliding_window false
}

TEST(HfConfig, Qwen2AlwaysHasQkvBias) {
    const ModelSpec s = parse_hf_config(golden_model("qwen2_bias") / "config.json");
    EXPECT_EQ(s.arch, Architecture::kQwen2);
    EXPECT_TRUE(s.attention_bias);
    EXPECT_FALSE(s.o_bias);
    EXPECT_FALSE(s.qk_norm);
    EXPECT_EQ(s.head_dim, 16);  // no head_dim key: 64 / 4
    EXPECT_EQ(s.n_kv_heads, 2);
}

TEST(HfConfig, MistralGqaAndSlidingWindow) {
    const ModelSpec s = parse_hf_config(golden_model("mistral_gqa4") / "config.json");
    EXPECT_EQ(s.arch, Architecture::kMistral);
    EXPECT_EQ(s.n_heads, 8);
    EXPECT_EQ(s.n_kv_heads, 2);
    EXPECT_EQ(s.group_size(), 4);
    EXPECT_EQ(s.head_dim, 8);
    EXPECT_EQ(s.sliding_window, 4096);
    EXPECT_EQ(s.weight_dtype, DType::kF16);
}

TEST(HfConfig, Llama2DefaultsAndSpecialIds) {
    const ModelSpec s = parse_hf_config(golden_model("llama2") / "config.json");
    EXPECT_EQ(s.vocab_size, 512);
    EXPECT_EQ(s.hidden, 64);
    EXPECT_EQ(s.intermediate, 160);
    EXPECT_EQ(s.n_layers, 2);
    EXPECT_EQ(s.max_position, 512);
    EXPECT_DOUBLE_EQ(s.norm_eps, 1e-5);
    EXPECT_EQ(s.rope.scaling, RopeScaling::kNone);
    EXPECT_DOUBLE_EQ(s.rope.theta, 10000.0);
    EXPECT_FALSE(s.tied_embeddings);
    EXPECT_EQ(s.bos_id, 0);
    EXPECT_EQ(s.eos_ids, std::vector<int64_t>{1});
    EXPECT_EQ(s.pad_id, -1);  // null
    const ModelSpec sp = parse_hf_config(golden_model("llama_sp") / "config.json");
    EXPECT_EQ(sp.vocab_size, 700);
    EXPECT_EQ(sp.bos_id, 1);
    EXPECT_EQ(sp.eos_ids, std::vector<int64_t>{2});
}

// Rewrites a transformers-5 config into the transformers-4 layout: top-level rope_theta,
// rope_scaling (null for default, else with `type_key` naming the type), torch_dtype.
json to_v4_layout(json cfg, const std::string& type_key) {
    json rp = cfg["rope_parameters"];
    cfg.erase("rope_parameters");
    cfg["rope_theta"] = rp["rope_theta"];
    rp.erase("rope_theta");
    const std::string type = rp["rope_type"];
    if (type == "default") {
        cfg["rope_scaling"] = nullptr;
    } else {
        rp.erase("rope_type");
        rp[type_key] = type;
        cfg["rope_scaling"] = rp;
    }
    cfg["torch_dtype"] = cfg["dtype"];
    cfg.erase("dtype");
    cfg["transformers_version"] = "4.46.0";
    return cfg;
}

class V4Layout : public ::testing::TestWithParam<const char*> {};

TEST_P(V4Layout, SameSpecAsV5) {
    const std::string variant = GetParam();
    const fs::path src = golden_model(variant);
    for (const char* type_key : {"rope_type", "type"}) {
        SCOPED_TRACE(std::string(variant) + " with rope_scaling." + type_key);
        TempDir tmp;
        test::copy_dir_files(src, tmp.path());
        const json v5 = test::read_json(src / "config.json");
        const json v4 = to_v4_layout(v5, type_key);
        ASSERT_FALSE(v4.contains("rope_parameters"));
        ASSERT_FALSE(v4.contains("dtype"));
        test::write_json(tmp / "config.json", v4);
        const auto a = load_model(src);
        const auto b = load_model(tmp.path());
        test::expect_same_spec(a->spec, b->spec);
    }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, V4Layout, ::testing::ValuesIn(kVariants),
                         [](const auto& p) { return std::string(p.param); });

// Writes `cfg` as config.json (no generation_config.json) into a temp dir and parses it.
ModelSpec parse(const TempDir& tmp, const json& cfg) {
    test::write_json(tmp / "config.json", cfg);
    return parse_hf_config(tmp / "config.json");
}

json llama2_config() {
    return test::read_json(golden_model("llama2") / "config.json");
}

TEST(HfConfig, LinearScalingV4AndV5) {
    TempDir tmp;
    json cfg = llama2_config();
    cfg["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 4.0}, {"rope_theta", 20000.0}};
    ModelSpec s = parse(tmp, cfg);
    EXPECT_EQ(s.rope.scaling, RopeScaling::kLinear);
    EXPECT_DOUBLE_EQ(s.rope.factor, 4.0);
    EXPECT_DOUBLE_EQ(s.rope.theta, 20000.0);
    cfg.erase("rope_parameters");
    cfg["rope_theta"] = 20000.0;
    cfg["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
    ModelSpec s4 = parse(tmp, cfg);
    test::expect_same_spec(s, s4);
}

TEST(HfConfig, DefaultsWhenKeysAbsentOrNull) {
    TempDir tmp;
    json cfg = llama2_config();
    cfg.erase("head_dim");
    cfg.erase("num_key_value_heads");
    cfg.erase("tie_word_embeddings");
    cfg.erase("rope_parameters");
    cfg.erase("max_position_embeddings");
    cfg.erase("rms_norm_eps");
    cfg.erase("hidden_act");
    ModelSpec s = parse(tmp, cfg);
    EXPECT_EQ(s.head_dim, 16);
    EXPECT_EQ(s.n_kv_heads, 4);
    EXPECT_FALSE(s.tied_embeddings);
    EXPECT_DOUBLE_EQ(s.rope.theta, 10000.0);
    EXPECT_EQ(s.rope.scaling, RopeScaling::kNone);
    EXPECT_EQ(s.max_position, 2048);     // LlamaConfig default
    EXPECT_DOUBLE_EQ(s.norm_eps, 1e-6);  // LlamaConfig default
    EXPECT_EQ(s.hidden_act, "silu");
    cfg["head_dim"] = nullptr;
    cfg["num_key_value_heads"] = nullptr;
    s = parse(tmp, cfg);
    EXPECT_EQ(s.head_dim, 16);
    EXPECT_EQ(s.n_kv_heads, 4);

    // Qwen3Config's head_dim default is 128, not hidden / heads.
    json q3 = test::read_json(golden_model("qwen3_qknorm") / "config.json");
    q3.erase("head_dim");
    EXPECT_EQ(parse(tmp, q3).head_dim, 128);
    q3["head_dim"] = nullptr;
    EXPECT_EQ(parse(tmp, q3).head_dim, 16);
}

TEST(HfConfig, ModelTypeWithoutArchitectures) {
    TempDir tmp;
    json cfg = test::read_json(golden_model("mistral_gqa4") / "config.json");
    cfg.erase("architectures");
    EXPECT_EQ(parse(tmp, cfg).arch, Architecture::kMistral);
}

TEST(HfConfig, LlamaBiasFlags) {
    TempDir tmp;
    json cfg = llama2_config();
    cfg["attention_bias"] = true;
    cfg["mlp_bias"] = true;
    const ModelSpec s = parse(tmp, cfg);
    EXPECT_TRUE(s.attention_bias);
    EXPECT_TRUE(s.o_bias);  // HF's LlamaAttention puts the bias on o_proj too
    EXPECT_TRUE(s.mlp_bias);
}

TEST(HfConfig, GenerationConfigWinsAndEosMayBeAList) {
    TempDir tmp;
    json cfg = llama2_config();
    cfg["eos_token_id"] = 7;
    cfg["bos_token_id"] = 3;
    test::write_json(tmp / "generation_config.json",
                     {{"eos_token_id", {1, 5, 9}}, {"pad_token_id", 11}});
    const ModelSpec s = parse(tmp, cfg);
    EXPECT_EQ(s.eos_ids, (std::vector<int64_t>{1, 5, 9}));
    EXPECT_EQ(s.bos_id, 3);  // absent from generation_config.json: config.json's
    EXPECT_EQ(s.pad_id, 11);
    fs::remove(tmp / "generation_config.json");
    cfg["eos_token_id"] = {128001, 128009};
    EXPECT_EQ(parse(tmp, cfg).eos_ids, (std::vector<int64_t>{128001, 128009}));
}

TEST(HfConfigErrors, MissingHiddenSize) {
    TempDir tmp;
    json cfg = llama2_config();
    cfg.erase("hidden_size");
    EXPECT_INPUT_ERROR(parse(tmp, cfg), "config.json", "missing required field 'hidden_size'");
}

TEST(HfConfigErrors, UnknownArchitecture) {
    TempDir tmp;
    json cfg = llama2_config();
    cfg["architectures"] = {"GPT2LMHeadModel"};
    const std::string m = test::input_error_message([&] { parse(tmp, cfg); });
    EXPECT_NE(m.find("config.json"), std::string::npos) << m;
    EXPECT_NE(m.find("unsupported architecture 'GPT2LMHeadModel'"), std::string::npos) << m;
    for (const char* a :
         {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"})
        EXPECT_NE(m.find(a), std::string::npos) << m;
}

TEST(HfConfigErrors, NotJson) {
    TempDir tmp;
    test::write_bytes(tmp / "config.json", "{\"vocab_size\": 512,, oops");
    EXPECT_INPUT_ERROR(parse_hf_config(tmp / "config.json"), "config.json", "not valid JSON");
    test::write_bytes(tmp / "config.json", "[1, 2, 3]");
    EXPECT_INPUT_ERROR(parse_hf_config(tmp / "config.json"), "config.json",
                       "expected a JSON object");
    EXPECT_INPUT_ERROR(parse_hf_config(tmp / "absent.json"), "absent.json", "file not found");
}

TEST(HfConfigErrors, WrongTypes) {
    TempDir tmp;
    json cfg = llama2_config();
    cfg["num_attention_heads"] = "four";
    EXPECT_INPUT_ERROR(parse(tmp, cfg), "config.json",
                       "field 'num_attention_heads' must be an integer, got string \"four\"");
    cfg = llama2_config();
    cfg["hidden_size"] = 64.5;
    EXPECT_INPUT_ERROR(parse(tmp, cfg), "config.json", "'hidden_size' must be an integer");
    cfg = llama2_config();
    cfg["hidden_size"] = 64.0;  // integral floats are accepted
    EXPECT_EQ(parse(tmp, cfg).hidden, 64);
    cfg = llama2_config();
    cfg["rms_norm_eps"] = "1e-5";
    EXPECT_INPUT_ERROR(parse(tmp, cfg), "config.json", "'rms_norm_eps' must be a number");
    cfg = llama2_config();
    cfg["tie_word_embeddings"] = 1;
    EXPECT_INPUT_ERROR(parse(tmp, cfg), "config.json",
                       "'tie_word_embeddings' must be true or false");
    cfg = llama2_config();
    cfg["architectures"] = "LlamaForCausalLM";
    EXPECT_INPUT_ERROR(parse(tmp, cfg), "config.json", "'architectures' must be a non-empty list");
    cfg = llama2_config();
    cfg["rope_parameters"] = 3;
    EXPECT_INPUT_ERROR(parse(tmp, cfg), "config.json", "'rope_parameters' must be an object");
    cfg = llama2_config();
    cfg["eos_token_id"] = {1, "two"};
    EXPECT_INPUT_ERROR(parse(tmp, cfg), "config.json", "eos_token_id[1] must be an integer");
}

TEST(HfConfigErrors, BadEosInGenerationConfig) {
    TempDir tmp;
    test::write_json(tmp / "generation_config.json", {{"eos_token_id", {1, "two"}}});
    EXPECT_INPUT_ERROR(parse(tmp, llama2_config()), "generation_config.json",
                       "eos_token_id[1] must be an integer");
    test::write_bytes(tmp / "generation_config.json", "not json");
    EXPECT_INPUT_ERROR(parse(tmp, llama2_config()), "generation_config.json", "not valid JSON");
}

TEST(HfConfigErrors, UnsupportedValues) {
    TempDir tmp;
    json cfg = llama2_config();
    cfg["hidden_act"] = "gelu";
    EXPECT_INPUT_ERROR(parse(tmp, cfg), "config.json", "unsupported hidden_act 'gelu'");
    cfg = llama2_config();
    cfg["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}, {"rope_theta", 1e4}};
    EXPECT_INPUT_ERROR(parse(tmp, cfg), "config.json",
                       "unsupported rope scaling type 'yarn' in 'rope_parameters.rope_type'");
    cfg = llama2_config();
    cfg["rope_parameters"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"rope_theta", 1e4}};
    EXPECT_INPUT_ERROR(parse(tmp, cfg), "config.json",
                       "missing required field 'rope_parameters.low_freq_factor'");
    cfg = llama2_config();
    cfg["num_key_value_heads"] = 3;
    EXPECT_INPUT_ERROR(parse(tmp, cfg), "config.json", "not a multiple of num_key_value_heads (3)");
    cfg = llama2_config();
    cfg["hidden_size"] = -64;
    EXPECT_INPUT_ERROR(parse(tmp, cfg), "config.json", "hidden_size is -64");
    cfg = llama2_config();
    cfg["head_dim"] = 15;
    EXPECT_INPUT_ERROR(parse(tmp, cfg), "config.json", "head_dim 15 is odd");
    cfg = llama2_config();
    cfg["vocab_size"] = 18446744073709551615ull;
    EXPECT_INPUT_ERROR(parse(tmp, cfg), "config.json", "too large");
}

}  // namespace
}  // namespace kvscope
