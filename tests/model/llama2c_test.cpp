// llama2.c checkpoints: the file layout (checked against a hand-built file whose every float is
// its own index), export from HF fixtures and reload (q/k rows permuted to interleaved pairs),
// and malformed files.
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "core/model/llama2c_checkpoint.h"
#include "core/model/model.h"
#include "tests/model/model_test_util.h"

namespace kvscope {
namespace {

using test::golden_model;
using test::json;
using test::TempDir;
namespace fs = std::filesystem;

std::vector<float> all_f32(const WeightTensor& t) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    copy_as_f32(t, 0, t.numel(), v.data());
    return v;
}

// Header + float i at float index i, sized by the layout written out below (not by the loader).
std::string indexed_checkpoint(int32_t dim, int32_t hidden, int32_t layers, int32_t heads,
                               int32_t kv_heads, int32_t vocab, int32_t seq, int64_t* n_floats) {
    const int64_t V = std::abs(vocab), hs = dim / heads, kv = kv_heads * hs;
    int64_t n = V * dim + layers * dim + layers * dim * dim + 2 * layers * kv * dim +
                layers * dim * dim + layers * dim + 3 * layers * hidden * dim + dim + seq * hs;
    if (vocab < 0) n += V * dim;
    *n_floats = n;
    const int32_t h[7] = {dim, hidden, layers, heads, kv_heads, vocab, seq};
    std::string out(reinterpret_cast<const char*>(h), 28);
    for (int64_t i = 0; i < n; ++i) {
        const float f = static_cast<float>(i);
        out.append(reinterpret_cast<const char*>(&f), 4);
    }
    return out;
}

TEST(Llama2c, LayoutMapsToHfNames) {
    TempDir tmp;
    const int32_t D = 8, F = 12, L = 2, NH = 2, NKV = 1, V = 10, S = 4;
    int64_t n = 0;
    test::write_bytes(tmp / "tiny.bin", indexed_checkpoint(D, F, L, NH, NKV, -V, S, &n));
    const auto m = load_model(tmp / "tiny.bin");
    const ModelSpec& s = m->spec;
    EXPECT_EQ(m->format, ModelFormat::kLlama2c);
    EXPECT_EQ(s.hidden, D);
    EXPECT_EQ(s.intermediate, F);
    EXPECT_EQ(s.n_kv_heads, NKV);
    EXPECT_EQ(s.head_dim, 4);
    EXPECT_EQ(s.vocab_size, V);
    EXPECT_EQ(s.max_position, S);
    EXPECT_FALSE(s.tied_embeddings);
    EXPECT_EQ(s.rope.style, RopeStyle::kInterleaved);
    EXPECT_DOUBLE_EQ(s.rope.theta, 10000.0);
    EXPECT_DOUBLE_EQ(s.norm_eps, 1e-5);
    EXPECT_EQ(s.bos_id, 1);
    EXPECT_EQ(s.eos_ids, std::vector<int64_t>{2});
    EXPECT_EQ(s.weight_dtype, DType::kF32);
    // First float index of each tensor, from llama2.c's order (KV = 4):
    // emb 0 | rms_att 80 | wq 96 | wk 224 | wv 288 | wo 352 | rms_ffn 480 | w1 496 | w2 688 |
    // w3 880 | rms_final 1072 | freqs 1080 (4*4 floats) | wcls 1096 | end 1176
    ASSERT_EQ(n, 1176);
    const struct {
        const char* name;
        float first;
    } cases[] = {
        {"model.embed_tokens.weight", 0},
        {"model.layers.0.input_layernorm.weight", 80},
        {"model.layers.1.input_layernorm.weight", 88},
        {"model.layers.0.self_attn.q_proj.weight", 96},
        {"model.layers.1.self_attn.q_proj.weight", 160},
        {"model.layers.0.self_attn.k_proj.weight", 224},
        {"model.layers.1.self_attn.k_proj.weight", 256},
        {"model.layers.1.self_attn.v_proj.weight", 320},
        {"model.layers.1.self_attn.o_proj.weight", 416},
        {"model.layers.1.post_attention_layernorm.weight", 488},
        {"model.layers.0.mlp.gate_proj.weight", 496},
        {"model.layers.1.mlp.gate_proj.weight", 592},
        {"model.layers.1.mlp.down_proj.weight", 784},
        {"model.layers.1.mlp.up_proj.weight", 976},
        {"model.norm.weight", 1072},
        {"lm_head.weight", 1096},
    };
    for (const auto& c : cases) {
        const auto v = all_f32(m->weights.at(c.name));
        EXPECT_EQ(v.front(), c.first) << c.name;
        EXPECT_EQ(v.back(), c.first + static_cast<float>(v.size()) - 1) << c.name;
    }
    EXPECT_EQ(m->weights.at("model.layers.0.self_attn.k_proj.weight").shape,
              (std::vector<int64_t>{4, 8}));
    EXPECT_EQ(m->weights.at("model.layers.0.mlp.down_proj.weight").shape,
              (std::vector<int64_t>{8, 12}));
    // Shared classifier: positive vocab, no wcls.
    test::write_bytes(tmp / "tied.bin", indexed_checkpoint(D, F, L, NH, NKV, V, S, &n));
    const auto t = load_model(tmp / "tied.bin");
    EXPECT_TRUE(t->spec.tied_embeddings);
    EXPECT_EQ(t->weights.find("lm_head.weight"), nullptr);
}

// HF q/k row (within a head of size hs) that llama2.c row r came from.
int64_t hf_row(int64_t r, int64_t hs) {
    return r % 2 == 0 ? r / 2 : hs / 2 + r / 2;
}

class ExportRoundTrip : public ::testing::TestWithParam<const char*> {};

TEST_P(ExportRoundTrip, WeightsSurviveWithQkPermuted) {
    const std::string variant = GetParam();
    TempDir tmp;
    fs::path src = golden_model(variant);
    if (variant == "llama3_tied") {
        // Make it expressible in llama2.c (default RoPE, theta 10000); keeps bf16, GQA, tying.
        test::copy_dir_files(src, tmp / "hf");
        json c = test::read_json(src / "config.json");
        c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 10000.0}};
        test::write_json(tmp / "hf" / "config.json", c);
        src = tmp / "hf";
    }
    const auto hf = load_model(src);
    const fs::path bin = tmp / "out.bin";
    export_llama2c(*hf, bin);
    const auto lc = load_model(bin);
    const ModelSpec& a = hf->spec;
    const ModelSpec& b = lc->spec;
    EXPECT_EQ(lc->format, ModelFormat::kLlama2c);
    EXPECT_EQ(b.hidden, a.hidden);
    EXPECT_EQ(b.intermediate, a.intermediate);
    EXPECT_EQ(b.n_layers, a.n_layers);
    EXPECT_EQ(b.n_heads, a.n_heads);
    EXPECT_EQ(b.n_kv_heads, a.n_kv_heads);
    EXPECT_EQ(b.vocab_size, a.vocab_size);
    EXPECT_EQ(b.max_position, a.max_position);
    EXPECT_EQ(b.tied_embeddings, a.tied_embeddings);
    EXPECT_EQ(b.rope.style, RopeStyle::kInterleaved);

    const int64_t hs = a.head_dim, H = a.hidden;
    Llama2cHeader h{static_cast<int32_t>(H),
                    static_cast<int32_t>(a.intermediate),
                    static_cast<int32_t>(a.n_layers),
                    static_cast<int32_t>(a.n_heads),
                    static_cast<int32_t>(a.n_kv_heads),
                    static_cast<int32_t>(a.tied_embeddings ? a.vocab_size : -a.vocab_size),
                    static_cast<int32_t>(a.max_position)};
    EXPECT_EQ(static_cast<int64_t>(fs::file_size(bin)), llama2c_file_size(h));

    // Everything but q/k is copied as fp32 (bf16/f16 widen exactly), so equality is exact.
    for (const auto& [name, t] : hf->weights.all()) {
        if (name.find("q_proj") != std::string::npos || name.find("k_proj") != std::string::npos)
            continue;
        EXPECT_EQ(all_f32(t), all_f32(lc->weights.at(name))) << name;
    }
    for (int64_t l = 0; l < a.n_layers; ++l)
        for (const char* proj : {"q_proj", "k_proj"}) {
            const std::string name =
                "model.layers." + std::to_string(l) + ".self_attn." + proj + ".weight";
            const auto x = all_f32(hf->weights.at(name));
            const auto y = all_f32(lc->weights.at(name));
            ASSERT_EQ(x.size(), y.size());
            const int64_t rows = static_cast<int64_t>(x.size()) / H;
            for (int64_t row = 0; row < rows; ++row) {
                const int64_t head = row / hs, r = row % hs;
                const int64_t src_row = head * hs + hf_row(r, hs);
                for (int64_t c = 0; c < H; ++c)
                    ASSERT_EQ(y[static_cast<size_t>(row * H + c)],
                              x[static_cast<size_t>(src_row * H + c)])
                        << name << " row " << row << " col " << c;
            }
            // The permutation really moves rows: row 1 of head 0 is HF row hs/2.
            EXPECT_EQ(y[static_cast<size_t>(1 * H)], x[static_cast<size_t>(hs / 2 * H)]) << name;
            EXPECT_NE(y[static_cast<size_t>(1 * H)], x[static_cast<size_t>(1 * H)]) << name;
        }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ExportRoundTrip,
                         ::testing::Values("llama2", "llama_sp", "mistral_gqa4", "llama3_tied"),
                         [](const auto& p) { return std::string(p.param); });

TEST(Llama2cExport, RefusesWhatTheFormatCannotExpress) {
    TempDir tmp;
    const struct {
        const char* variant;
        const char* why;
    } cases[] = {
        {"qwen2_bias", "attention biases"},
        {"qwen3_qknorm", "q/k RMSNorm"},
        {"llama3_tied", "RoPE scaling, rope_theta 500000 (llama2.c uses 10000)"},
        {"llama_headdim_sharded", "head_dim 16 != hidden_size / heads (96 / 4)"},
    };
    for (const auto& c : cases) {
        const auto m = load_model(golden_model(c.variant));
        EXPECT_INPUT_ERROR(export_llama2c(*m, tmp / "x.bin"), c.variant, c.why);
        EXPECT_FALSE(fs::exists(tmp / "x.bin")) << c.variant;
    }
    // Exporting onto the model's own mapped file would truncate what it reads.
    const auto m = load_model(golden_model("llama2"));
    export_llama2c(*m, tmp / "a.bin");
    const auto lc = load_model(tmp / "a.bin");
    EXPECT_INPUT_ERROR(export_llama2c(*lc, tmp / "a.bin"), "a.bin", "model's own weight file");
    EXPECT_INPUT_ERROR(export_llama2c(*m, tmp / "no_such_dir" / "x.bin"), "x.bin", "cannot create");
}

class Llama2cErrors : public ::testing::Test {
  protected:
    void SetUp() override {
        int64_t n = 0;
        good_ = indexed_checkpoint(8, 12, 2, 2, 1, -10, 4, &n);
    }
    fs::path put(const std::string& bytes) {
        test::write_bytes(tmp_ / "m.bin", bytes);
        return tmp_ / "m.bin";
    }
    TempDir tmp_;
    std::string good_;
};

TEST_F(Llama2cErrors, WrongSizeNamesExpectedAndActual) {
    const std::string expect = std::to_string(good_.size());
    EXPECT_INPUT_ERROR(load_model(put(good_ + "xxxx")), "m.bin",
                       "size is " + std::to_string(good_.size() + 4) + " bytes");
    EXPECT_INPUT_ERROR(load_model(put(good_ + "xxxx")), "m.bin", "must be " + expect + " bytes");
    EXPECT_INPUT_ERROR(load_model(put(good_.substr(0, good_.size() - 4))), "m.bin",
                       "separate classifier) must be " + expect);
    // The same bytes with a positive vocab: the size fits the unshared layout, and we say so.
    std::string flipped = good_;
    const int32_t pos_vocab = 10;
    std::memcpy(&flipped[20], &pos_vocab, 4);
    EXPECT_INPUT_ERROR(load_model(put(flipped)), "m.bin",
                       "the size fits a separate classifier, i.e. vocab_size < 0");
}

TEST_F(Llama2cErrors, ImplausibleHeaders) {
    EXPECT_INPUT_ERROR(load_model(put("hello, this is some text and not a model at all")), "m.bin",
                       "not a llama2.c checkpoint");
    std::string b = good_;
    const int32_t three = 3;
    std::memcpy(&b[12], &three, 4);  // n_heads 3 does not divide dim 8
    EXPECT_INPUT_ERROR(load_model(put(b)), "m.bin", "n_heads 3 does not divide dim 8");
    b = good_;
    const int32_t zero = 0;
    std::memcpy(&b[20], &zero, 4);
    EXPECT_INPUT_ERROR(load_model(put(b)), "m.bin", "|vocab_size| 0 is outside");
    EXPECT_INPUT_ERROR(load_model(put(good_.substr(0, 10))), "m.bin",
                       "too short for a llama2.c checkpoint (10 bytes");
    // llama2.c's export.py writes the uint32 0x616b3432 ("ak42") little-endian, then the version.
    const uint32_t magic = 0x616b3432;
    std::string v1(reinterpret_cast<const char*>(&magic), 4);
    const int32_t version = 1;
    v1.append(reinterpret_cast<const char*>(&version), 4);
    v1 += std::string(248, '\0');
    EXPECT_INPUT_ERROR(load_model(put(v1)), "m.bin", "llama2.c version-1 checkpoint");
}

}  // namespace
}  // namespace kvscope
