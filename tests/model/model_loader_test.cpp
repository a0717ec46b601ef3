// load_model on the golden fixtures (every variant, sharded), on HF directories whose weights do
// not match config.json, and on pickle / empty / missing inputs.
#include <gtest/gtest.h>

#include <set>

#include "core/error.h"
#include "core/model/model.h"
#include "core/model/weight_layout.h"
#include "tests/model/model_test_util.h"

namespace kvscope {
namespace {

using test::golden_model;
using test::json;
using test::TempDir;
namespace fs = std::filesystem;

// Values copied by hand from each fixture's config.json.
struct Expect {
    const char* variant;
    Architecture arch;
    int64_t vocab, hidden, inter, heads, kv_heads, head_dim;
    double theta;
    bool tied, qkv_bias, qk_norm;
    DType dtype;
    size_t n_tensors;  // 2 layers x (9 + 3 bias | 2 norm) + embed + norm (+ lm_head)
};

const Expect kExpect[] = {
    {"llama2", Architecture::kLlama, 512, 64, 160, 4, 4, 16, 1e4, false, false, false, DType::kF32,
     21},
    {"llama3_tied", Architecture::kLlama, 512, 64, 160, 4, 2, 16, 5e5, true, false, false,
     DType::kBf16, 20},
    {"mistral_gqa4", Architecture::kMistral, 512, 64, 160, 8, 2, 8, 1e4, false, false, false,
     DType::kF16, 21},
    {"qwen2_bias", Architecture::kQwen2, 512, 64, 160, 4, 2, 16, 1e6, false, true, false,
     DType::kBf16, 27},
    {"qwen3_qknorm", Architecture::kQwen3, 512, 64, 160, 4, 2, 32, 1e6, false, false, true,
     DType::kBf16, 25},
    {"llama_headdim_sharded", Architecture::kLlama, 512, 96, 192, 4, 1, 16, 1e4, false, false,
     false, DType::kF32, 21},
    {"llama_sp", Architecture::kLlama, 700, 64, 160, 4, 4, 16, 1e4, false, false, false,
     DType::kF32, 21},
};

class FixtureLoads : public ::testing::TestWithParam<Expect> {};

TEST_P(FixtureLoads, SpecAndTensors) {
    const Expect e = GetParam();
    const auto m = load_model(golden_model(e.variant));
    const ModelSpec& s = m->spec;
    EXPECT_EQ(m->format, ModelFormat::kHfSafetensors);
    EXPECT_EQ(m->path, golden_model(e.variant));
    EXPECT_EQ(s.arch, e.arch);
    EXPECT_EQ(s.vocab_size, e.vocab);
    EXPECT_EQ(s.hidden, e.hidden);
    EXPECT_EQ(s.intermediate, e.inter);
    EXPECT_EQ(s.n_layers, 2);
    EXPECT_EQ(s.n_heads, e.heads);
    EXPECT_EQ(s.n_kv_heads, e.kv_heads);
    EXPECT_EQ(s.head_dim, e.head_dim);
    EXPECT_DOUBLE_EQ(s.rope.theta, e.theta);
    EXPECT_EQ(s.rope.style, RopeStyle::kHalf);
    EXPECT_EQ(s.tied_embeddings, e.tied);
    EXPECT_EQ(s.attention_bias, e.qkv_bias);
    EXPECT_EQ(s.qk_norm, e.qk_norm);
    EXPECT_EQ(s.weight_dtype, e.dtype);
    EXPECT_EQ(s.max_position, 512);
    EXPECT_EQ(m->weights.all().size(), e.n_tensors);
    for (const auto& [name, t] : m->weights.all()) EXPECT_EQ(t.dtype, e.dtype) << name;
    EXPECT_EQ(m->weights.at("model.layers.1.self_attn.q_proj.weight").shape,
              (std::vector<int64_t>{e.heads * e.head_dim, e.hidden}));
    EXPECT_EQ(m->weights.at("model.layers.0.self_attn.k_proj.weight").shape,
              (std::vector<int64_t>{e.kv_heads * e.head_dim, e.hidden}));
    EXPECT_EQ(m->weights.find("lm_head.weight") == nullptr, e.tied);
}

INSTANTIATE_TEST_SUITE_P(Golden, FixtureLoads, ::testing::ValuesIn(kExpect),
                         [](const auto& p) { return std::string(p.param.variant); });

TEST(ModelLoader, ShardedLoadsTenShards) {
    const auto m = load_model(golden_model("llama_headdim_sharded"));
    EXPECT_EQ(m->weights.file_count(), 10u);
    std::set<fs::path> files;
    for (const auto& [name, t] : m->weights.all()) files.insert(t.file.filename());
    EXPECT_EQ(files.size(), 10u);
    EXPECT_EQ(m->weights.at("lm_head.weight").file.filename(), "model-00009-of-00010.safetensors");
    EXPECT_EQ(m->weights.at("model.norm.weight").file.filename(),
              "model-00010-of-00010.safetensors");
}

TEST(ModelLoader, FileOrConfigPathLoadsTheDirectory) {
    const auto a = load_model(golden_model("llama2") / "model.safetensors");
    const auto b = load_model(golden_model("llama2") / "config.json");
    EXPECT_EQ(a->spec.hidden, 64);
    EXPECT_EQ(b->weights.all().size(), 21u);
}

TEST(ModelLoader, ShardErrors) {
    const fs::path src = golden_model("llama_headdim_sharded");
    {
        TempDir tmp;
        test::copy_dir_files(src, tmp.path());
        fs::remove(tmp / "model-00003-of-00010.safetensors");
        EXPECT_INPUT_ERROR(load_model(tmp.path()), "model.safetensors.index.json",
                           "shard 'model-00003-of-00010.safetensors' (listed for tensor "
                           "'model.layers.0.mlp.gate_proj.weight') does not exist");
    }
    {
        TempDir tmp;
        test::copy_dir_files(src, tmp.path());
        json idx = test::read_json(tmp / "model.safetensors.index.json");
        idx["weight_map"]["model.norm.weight"] = "model-00001-of-00010.safetensors";
        test::write_json(tmp / "model.safetensors.index.json", idx);
        EXPECT_INPUT_ERROR(load_model(tmp.path()), "model-00001-of-00010.safetensors",
                           "missing from it: model.norm.weight");
    }
    {
        TempDir tmp;
        test::copy_dir_files(src, tmp.path());
        json idx = test::read_json(tmp / "model.safetensors.index.json");
        idx["weight_map"]["model.norm.weight"] = "../model-00010-of-00010.safetensors";
        test::write_json(tmp / "model.safetensors.index.json", idx);
        EXPECT_INPUT_ERROR(load_model(tmp.path()), "model.safetensors.index.json",
                           "must be a plain file name");
        idx["weight_map"] = {{"model.norm.weight", 3}};
        test::write_json(tmp / "model.safetensors.index.json", idx);
        EXPECT_INPUT_ERROR(load_model(tmp.path()), "model.safetensors.index.json",
                           "must be a file name, got integer");
        idx.erase("weight_map");
        test::write_json(tmp / "model.safetensors.index.json", idx);
        EXPECT_INPUT_ERROR(load_model(tmp.path()), "model.safetensors.index.json",
                           "missing required field 'weight_map'");
    }
}

// A copy of the llama2 fixture whose header or config the test edits.
class WeightMismatch : public ::testing::Test {
  protected:
    void SetUp() override { test::copy_dir_files(golden_model("llama2"), tmp_.path()); }
    void edit(const std::function<void(json&)>& f) {
        test::rewrite_safetensors_header(golden_model("llama2") / "model.safetensors",
                                         tmp_ / "model.safetensors", f);
    }
    void edit_config(const std::function<void(json&)>& f) {
        json c = test::read_json(golden_model("llama2") / "config.json");
        f(c);
        test::write_json(tmp_ / "config.json", c);
    }
    TempDir tmp_;
};

TEST_F(WeightMismatch, MissingTensorsAreAllListed) {
    edit([](json& h) {
        h.erase("model.layers.1.mlp.up_proj.weight");
        h.erase("model.norm.weight");
    });
    const std::string m = test::input_error_message([&] { load_model(tmp_.path()); });
    EXPECT_NE(m.find("model.safetensors"), std::string::npos) << m;
    EXPECT_NE(m.find("missing 2 tensor(s): model.layers.1.mlp.up_proj.weight, model.norm.weight"),
              std::string::npos)
        << m;
}

TEST_F(WeightMismatch, UntiedConfigWithoutLmHead) {
    edit([](json& h) { h.erase("lm_head.weight"); });
    EXPECT_INPUT_ERROR(load_model(tmp_.path()), "model.safetensors",
                       "missing 1 tensor(s): lm_head.weight (tie_word_embeddings is false");
    edit_config([](json& c) { c["tie_word_embeddings"] = true; });
    const auto m = load_model(tmp_.path());
    EXPECT_TRUE(m->spec.tied_embeddings);
    EXPECT_EQ(m->weights.find("lm_head.weight"), nullptr);
}

TEST_F(WeightMismatch, TiedConfigToleratesAnLmHead) {
    edit_config([](json& c) { c["tie_word_embeddings"] = true; });
    EXPECT_TRUE(load_model(tmp_.path())->spec.tied_embeddings);
}

TEST_F(WeightMismatch, UnexpectedTensorsButInvFreqIgnored) {
    edit([](json& h) {
        // Overlapping data is legal: both extras alias the final norm's bytes.
        json norm = h["model.norm.weight"];
        h["model.layers.0.self_attn.rotary_emb.inv_freq"] = norm;
        h["model.layers.0.self_attn.rotary_emb.inv_freq"]["shape"] = {8, 8};
    });
    EXPECT_NO_THROW(load_model(tmp_.path()));
    edit([](json& h) {
        h["model.layers.0.extra.weight"] = h["model.norm.weight"];
        h["model.layers.0.self_attn.q_proj.bias"] = h["model.norm.weight"];
    });
    EXPECT_INPUT_ERROR(load_model(tmp_.path()), "model.safetensors",
                       "2 unexpected tensor(s) (not used by this architecture): "
                       "model.layers.0.extra.weight, model.layers.0.self_attn.q_proj.bias");
}

TEST_F(WeightMismatch, WrongShapeAgainstConfig) {
    edit_config([](json& c) { c["intermediate_size"] = 128; });
    const std::string m = test::input_error_message([&] { load_model(tmp_.path()); });
    EXPECT_NE(m.find("model.safetensors"), std::string::npos) << m;
    EXPECT_NE(m.find("wrong shape for 6 tensor(s)"), std::string::npos) << m;
    EXPECT_NE(m.find("model.layers.0.mlp.gate_proj.weight is [160, 64] in model.safetensors, "
                     "config.json implies [128, 64]"),
              std::string::npos)
        << m;
}

TEST_F(WeightMismatch, MixedDtypesAreAccepted) {
    // Re-encode one tensor as BF16 (half the bytes; the rest of the region stays unused).
    edit([](json& h) {
        auto& t = h["model.norm.weight"];
        t["dtype"] = "BF16";
        const int64_t b = t["data_offsets"][0];
        t["data_offsets"] = {b, b + 128};
    });
    const auto m = load_model(tmp_.path());
    EXPECT_EQ(m->weights.at("model.norm.weight").dtype, DType::kBf16);
    EXPECT_EQ(m->spec.weight_dtype, DType::kF32);  // most elements are F32
}

TEST(ModelLoader, NoConfigJson) {
    TempDir tmp;
    fs::copy_file(golden_model("llama2") / "model.safetensors", tmp / "model.safetensors");
    EXPECT_INPUT_ERROR(load_model(tmp.path()), "config.json", "file not found");
}

TEST(ModelLoader, NothingThere) {
    TempDir tmp;
    EXPECT_INPUT_ERROR(load_model(tmp.path()), tmp.path().string(), "no model weights found");
    EXPECT_INPUT_ERROR(load_model(tmp / "nope"), "nope", "no such file or directory");
    test::write_bytes(tmp / "empty.bin", "");
    EXPECT_INPUT_ERROR(load_model(tmp / "empty.bin"), "empty.bin", "file is empty (0 bytes)");
}

const std::string kPickleStart("\x80\x02}q\x00(X\x05\x00\x00\x00", 11);  // NULs inside

TEST(PickleRefusal, DirectoryWithOnlyPytorchModelBin) {
    TempDir tmp;
    test::copy_dir_files(golden_model("llama2"), tmp.path());
    fs::remove(tmp / "model.safetensors");
    test::write_bytes(tmp / "pytorch_model.bin", kPickleStart);
    const std::string m = test::input_error_message([&] { load_model(tmp.path()); });
    for (const char* part : {"pytorch_model.bin", "pickle", "execute arbitrary code",
                             "safe_serialization=True", "safetensors"})
        EXPECT_NE(m.find(part), std::string::npos) << part << " not in: " << m;
    // The same file named directly.
    EXPECT_INPUT_ERROR(load_model(tmp / "pytorch_model.bin"), "pytorch_model.bin",
                       "arbitrary code");
}

TEST(PickleRefusal, PtPthAndSniffedBins) {
    TempDir tmp;
    test::write_bytes(tmp / "model.pt", "anything at all, the extension decides");
    EXPECT_INPUT_ERROR(load_model(tmp / "model.pt"), "model.pt", "PyTorch pickle");
    test::write_bytes(tmp / "consolidated.00.pth", kPickleStart);
    EXPECT_INPUT_ERROR(load_model(tmp / "consolidated.00.pth"), "consolidated.00.pth",
                       "PyTorch pickle");
    // A .bin that is really a pickle or a torch zip archive, whatever its name.
    test::write_bytes(tmp / "weights.bin", kPickleStart);
    EXPECT_INPUT_ERROR(load_model(tmp / "weights.bin"), "weights.bin", "PyTorch pickle");
    std::string zip("PK\x03\x04", 4);  // built in place: GCC 12 misreads string + string here
    zip.append(60, 'z');
    test::write_bytes(tmp / "zipped.bin", zip);
    EXPECT_INPUT_ERROR(load_model(tmp / "zipped.bin"), "zipped.bin", "PyTorch pickle");
    // A directory holding only a .pth is refused with the file named.
    TempDir d2;
    test::write_bytes(d2 / "consolidated.00.pth", kPickleStart);
    EXPECT_INPUT_ERROR(load_model(d2.path()), "consolidated.00.pth", "arbitrary code");
}

TEST(WeightLayout, ExpectedTensorCountsPerFeature) {
    ModelSpec s;
    s.vocab_size = 10;
    s.hidden = 8;
    s.intermediate = 12;
    s.n_layers = 3;
    s.n_heads = 2;
    s.n_kv_heads = 1;
    s.head_dim = 4;
    EXPECT_EQ(expected_tensors(s).size(), 3u * 9 + 3);
    s.tied_embeddings = true;
    EXPECT_EQ(expected_tensors(s).size(), 3u * 9 + 2);
    s.attention_bias = s.o_bias = s.mlp_bias = s.qk_norm = true;
    EXPECT_EQ(expected_tensors(s).size(), 3u * (9 + 3 + 1 + 3 + 2) + 2);
}

}  // namespace
}  // namespace kvscope
