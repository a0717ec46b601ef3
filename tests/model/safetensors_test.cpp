// safetensors parsing: values read back equal the file's bytes (decoded here from the format
// definition), zero-copy views, and every malformation named with the file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/model/model.h"
#include "core/model/safetensors.h"
#include "tests/model/model_test_util.h"

namespace kvscope {
namespace {

using test::golden_model;
using test::json;
using test::TempDir;
namespace fs = std::filesystem;

// Independent decoders (not dtype.h): bf16 is the top half of an f32; f16 per IEEE 754 binary16.
float decode_bf16(const unsigned char* p) {
    const uint32_t u = (static_cast<uint32_t>(p[1]) << 24) | (static_cast<uint32_t>(p[0]) << 16);
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

float decode_f16(const unsigned char* p) {
    const unsigned h = p[0] | (p[1] << 8);
    const int sign = (h >> 15) ? -1 : 1;
    const int exp = (h >> 10) & 0x1f;
    const int mant = h & 0x3ff;
    if (exp == 0) return static_cast<float>(sign * std::ldexp(mant, -24));
    return static_cast<float>(sign * std::ldexp(1024 + mant, exp - 25));
}

float decode_f32(const unsigned char* p) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
}

struct SpotCase {
    const char* variant;
    const char* dtype;
};

class FixtureValues : public ::testing::TestWithParam<SpotCase> {};

TEST_P(FixtureValues, ElementsEqualFileBytes) {
    const SpotCase c = GetParam();
    const fs::path file = golden_model(c.variant) / "model.safetensors";
    const test::RawSafetensors raw = test::read_safetensors_raw(file);
    const auto model = load_model(golden_model(c.variant));
    int checked = 0;
    for (const char* name : {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                             "model.layers.1.mlp.down_proj.weight", "model.norm.weight"}) {
        const json& h = raw.header.at(name);
        ASSERT_EQ(h.at("dtype").get<std::string>(), c.dtype) << name;
        const size_t begin = h.at("data_offsets")[0].get<size_t>();
        const size_t esz = std::string(c.dtype) == "F32" ? 4 : 2;
        const WeightTensor& t = model->weights.at(name);
        EXPECT_EQ(t.shape, h.at("shape").get<std::vector<int64_t>>()) << name;
        const int64_t n = t.numel();
        for (int64_t i : {int64_t{0}, int64_t{1}, n / 3, n / 2, n - 1}) {
            const auto* want = reinterpret_cast<const unsigned char*>(raw.data.data()) + begin +
                               static_cast<size_t>(i) * esz;
            const auto* got =
                static_cast<const unsigned char*>(t.data) + static_cast<size_t>(i) * esz;
            EXPECT_EQ(std::memcmp(want, got, esz), 0) << name << "[" << i << "]";
            const float expect = esz == 4                         ? decode_f32(want)
                                 : std::string(c.dtype) == "BF16" ? decode_bf16(want)
                                                                  : decode_f16(want);
            float v = 0;
            copy_as_f32(t, i, 1, &v);
            EXPECT_EQ(v, expect) << name << "[" << i << "]";  // exact: widening is lossless
            EXPECT_TRUE(std::isfinite(v));
            ++checked;
        }
    }
    EXPECT_EQ(checked, 20);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, FixtureValues,
                         ::testing::Values(SpotCase{"llama2", "F32"},
                                           SpotCase{"llama3_tied", "BF16"},
                                           SpotCase{"mistral_gqa4", "F16"}),
                         [](const auto& p) { return std::string(p.param.variant); });

TEST(Safetensors, TensorsAreViewsIntoOneMapping) {
    const fs::path file = golden_model("llama2") / "model.safetensors";
    const test::RawSafetensors raw = test::read_safetensors_raw(file);
    WeightStore store;
    const auto names = load_safetensors_into(file, store);
    EXPECT_EQ(names.size(), raw.header.size() - (raw.header.contains("__metadata__") ? 1 : 0));
    // Zero copy: pointer distances equal the header's offset distances for every tensor.
    const WeightTensor& ref = store.at("model.embed_tokens.weight");
    const auto ref_off = raw.header["model.embed_tokens.weight"]["data_offsets"][0].get<int64_t>();
    for (const auto& name : names) {
        const auto off = raw.header[name]["data_offsets"][0].get<int64_t>();
        EXPECT_EQ(static_cast<const uint8_t*>(store.at(name).data) -
                      static_cast<const uint8_t*>(ref.data),
                  off - ref_off)
            << name;
        EXPECT_EQ(store.at(name).file, file);
    }
}

TEST(Safetensors, MisalignedDataIsCopiedAndStillCorrect) {
    TempDir tmp;
    // Header of 8k+1 bytes: the data region starts at an odd address.
    const float vals[3] = {1.5f, -2.25f, 3.0f};
    std::string data(reinterpret_cast<const char*>(vals), sizeof vals);
    std::string h =
        json{{"x", {{"dtype", "F32"}, {"shape", {3}}, {"data_offsets", {0, 12}}}}}.dump();
    while (h.size() % 8 != 1) h += ' ';
    std::string bytes(8, '\0');
    bytes[0] = static_cast<char>(h.size());
    test::write_bytes(tmp / "odd.safetensors", bytes + h + data);
    WeightStore store;
    load_safetensors_into(tmp / "odd.safetensors", store);
    const WeightTensor& t = store.at("x");
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 4, 0u);
    float out[3];
    copy_as_f32(t, 0, 3, out);
    EXPECT_EQ(out[0], 1.5f);
    EXPECT_EQ(out[1], -2.25f);
    EXPECT_EQ(out[2], 3.0f);
}

TEST(Safetensors, ParseFromMemoryAcceptsOverlapAndEmptyTensors) {
    const float vals[4] = {1, 2, 3, 4};
    json h = {{"a", {{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {0, 16}}}},
              {"b", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {8, 16}}}},
              {"e", {{"dtype", "BF16"}, {"shape", {0, 5}}, {"data_offsets", {4, 4}}}},
              {"__metadata__", {{"format", "pt"}}}};
    std::string hs = h.dump();
    std::string bytes(8, '\0');
    bytes[0] = static_cast<char>(hs.size());
    bytes += hs + std::string(reinterpret_cast<const char*>(vals), 16);
    const auto ts = parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                      "mem.safetensors");
    ASSERT_EQ(ts.size(), 3u);
    for (const auto& t : ts) {
        if (t.name == "b") {
            float v;
            std::memcpy(&v, t.data, 4);
            EXPECT_EQ(v, 3.0f);
        }
        if (t.name == "e") {
            EXPECT_EQ(t.numel(), 0);
        }
    }
}

// Each malformation of a copy of the llama2 fixture must give an InputError naming the file.
class SafetensorsErrors : public ::testing::Test {
  protected:
    void SetUp() override {
        test::copy_dir_files(golden_model("llama2"), tmp_.path());
        original_ = test::read_bytes(st());
    }
    fs::path st() const { return tmp_ / "model.safetensors"; }
    void write(const std::string& bytes) { test::write_bytes(st(), bytes); }
    void edit(const std::function<void(json&)>& f) {
        test::rewrite_safetensors_header(golden_model("llama2") / "model.safetensors", st(), f);
    }
    std::string load_error() {
        return test::input_error_message([&] { load_model(tmp_.path()); });
    }
    TempDir tmp_;
    std::string original_;
};

#define EXPECT_LOAD_ERROR(msg_part) \
    EXPECT_INPUT_ERROR(load_model(tmp_.path()), "model.safetensors", msg_part)

TEST_F(SafetensorsErrors, TooShort) {
    for (size_t n : {0, 3, 7}) {
        SCOPED_TRACE(n);
        write(original_.substr(0, n));
        EXPECT_LOAD_ERROR("too short for a safetensors file (" + std::to_string(n) + " bytes");
    }
}

TEST_F(SafetensorsErrors, CutMidHeader) {
    write(original_.substr(0, 8 + 40));
    EXPECT_LOAD_ERROR("exceeds the file size");
}

TEST_F(SafetensorsErrors, CutMidData) {
    write(original_.substr(0, original_.size() - 1000));
    EXPECT_LOAD_ERROR("beyond the end of the data");
    write(original_.substr(0, original_.size() / 2));
    EXPECT_LOAD_ERROR("file truncated?");
}

TEST_F(SafetensorsErrors, AbsurdHeaderLength) {
    std::string b = original_;
    b[5] = 1;  // N = 2^40 + small
    write(b);
    EXPECT_LOAD_ERROR("header length");
    // A sparse file larger than the 100 MB cap, whose header length fits inside it.
    test::write_bytes(st(), std::string("\x00\x00\x80\x06\x00\x00\x00\x00", 8));  // 0x06800000
    fs::resize_file(st(), 0x06800000ull + 64);
    EXPECT_LOAD_ERROR("absurd header length 109051904");
}

TEST_F(SafetensorsErrors, HeaderNotJsonOrNotObject) {
    std::string b = original_;
    b[8] = '#';
    write(b);
    EXPECT_LOAD_ERROR("not valid JSON");
    std::string h = "[1,2,3]  ";
    std::string bytes(8, '\0');
    bytes[0] = static_cast<char>(h.size());
    write(bytes + h);
    EXPECT_LOAD_ERROR("header must be a JSON object, got array");
}

TEST_F(SafetensorsErrors, OffsetsBeyondFile) {
    const size_t data_size = test::read_safetensors_raw(st()).data.size();
    edit([&](json& h) { h["model.norm.weight"]["data_offsets"] = {data_size, data_size + 256}; });
    EXPECT_LOAD_ERROR("tensor 'model.norm.weight' has data_offsets");
    EXPECT_LOAD_ERROR("beyond the end of the data");
}

TEST_F(SafetensorsErrors, EndBeforeBegin) {
    edit([](json& h) {
        auto& o = h["model.norm.weight"]["data_offsets"];
        o = {o[1], o[0]};
    });
    EXPECT_LOAD_ERROR("'model.norm.weight' has data_offsets end");
}

TEST_F(SafetensorsErrors, SizeShapeMismatch) {
    edit([](json& h) { h["model.norm.weight"]["shape"] = {63}; });
    EXPECT_LOAD_ERROR(
        "'model.norm.weight': data_offsets span 256 bytes but shape and dtype F32 need 252");
}

TEST_F(SafetensorsErrors, NegativeShape) {
    edit([](json& h) { h["model.norm.weight"]["shape"] = {-64}; });
    EXPECT_LOAD_ERROR("negative dimension -64");
}

TEST_F(SafetensorsErrors, UnsupportedDtype) {
    edit([](json& h) {
        h["model.norm.weight"]["dtype"] = "I64";
        h["model.norm.weight"]["shape"] = {32};
    });
    EXPECT_LOAD_ERROR("tensor 'model.norm.weight' has unsupported dtype I64");
}

TEST_F(SafetensorsErrors, MalformedEntries) {
    edit([](json& h) { h["model.norm.weight"]["data_offsets"] = {0}; });
    EXPECT_LOAD_ERROR("'data_offsets' must be a list [begin, end]");
    edit([](json& h) { h["model.norm.weight"].erase("dtype"); });
    EXPECT_LOAD_ERROR("missing or non-string 'dtype'");
    edit([](json& h) { h["model.norm.weight"]["shape"] = {"64"}; });
    EXPECT_LOAD_ERROR("shape[0] must be an integer");
    edit([](json& h) { h["model.norm.weight"] = 5; });
    EXPECT_LOAD_ERROR("header entry must be an object");
}

}  // namespace
}  // namespace kvscope
