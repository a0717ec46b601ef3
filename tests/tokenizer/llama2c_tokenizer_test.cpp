// llama2.c tokenizer.bin: the same vocabulary as tests/golden/tokenizers/spm/tokenizer.model
// (make_fixtures.py writes both). llama2.c's encoder (merge the highest-scoring adjacent pair)
// and sentencepiece's BPE agree on every hard string of encodings.json for this vocabulary --
// including the non-ASCII ones, which go through <0xNN> byte fallback in both -- so the ids are
// asserted equal, not just round-tripped. Also: decode, header/length validation, and that the
// encoder is not quadratic.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "core/error.h"
#include "core/tokenizer/tokenizer.h"
#include "core/tokenizer/tokenizer_factories.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kSpm = fs::path(KVSCOPE_SOURCE_DIR) / "tests/golden/tokenizers/spm";

json spm_rows() {
    std::ifstream in(kSpm.parent_path() / "encodings.json");
    return json::parse(in)["spm"];
}

std::string file_bytes(const fs::path& f) {
    std::ifstream in(f, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

TEST(Llama2cTokenizer, AgreesWithSentencepieceOnEveryHardString) {
    const auto tok = load_tokenizer(kSpm / "tokenizer.bin");
    EXPECT_EQ(tok->kind(), "llama2c");
    EXPECT_EQ(tok->vocab_size(), 700);
    EXPECT_EQ(tok->bos_id(), 1);
    EXPECT_EQ(tok->eos_id(), 2);
    for (const auto& r : spm_rows()) {
        const std::string text = r["text"].get<std::string>();
        SCOPED_TRACE("text: \"" + text + "\"");
        const auto want = r["ids"].get<std::vector<int32_t>>();
        EXPECT_EQ(tok->encode(text, false), want);
        EXPECT_EQ(tok->encode(text, true), r["ids_special"].get<std::vector<int32_t>>());
        EXPECT_EQ(tok->decode(want, false), r["decoded"].get<std::string>());
        EXPECT_EQ(tok->decode(r["ids_special"].get<std::vector<int32_t>>(), true),
                  r["decoded_skip"].get<std::string>());
        EXPECT_EQ(tok->decode(tok->encode(text, true), true), text);
    }
}

TEST(Llama2cTokenizer, DecodeRules) {
    const auto tok = load_tokenizer(kSpm / "tokenizer.bin");
    const auto ids = tok->encode("Hello world", false);  // " Hello world" after the dummy prefix
    std::vector<int32_t> with_bos = {1};
    with_bos.insert(with_bos.end(), ids.begin(), ids.end());
    // The piece after BOS loses its leading space; BOS itself prints as "<s>" unless skipped.
    EXPECT_EQ(tok->decode(with_bos, true), "Hello world");
    EXPECT_EQ(tok->decode(with_bos, false), "<s>Hello world");
    EXPECT_EQ(tok->token_bytes(1), "<s>");
    EXPECT_EQ(tok->token_bytes(3 + 0xE4), "\xE4");  // <0xE4> is the raw byte
    // Only the first piece loses its space; out-of-range ids are dropped.
    std::vector<int32_t> twice = ids;
    twice.push_back(5000);
    twice.insert(twice.end(), ids.begin(), ids.end());
    EXPECT_EQ(tok->decode(twice, false), "Hello world Hello world");
}

TEST(Llama2cTokenizer, LongInputIsNotQuadratic) {
    const auto tok = load_tokenizer(kSpm / "tokenizer.bin");
    std::string text;
    for (const auto& r : spm_rows()) text += r["text"].get<std::string>() + " ";
    while (text.size() < 100'000) text += text;
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = tok->encode(text, false);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(tok->decode(ids, false), text);
    std::printf("[ perf ] llama2c: %zu chars -> %zu ids in %.3f s\n", text.size(), ids.size(),
                secs);
}

// A tokenizer.bin built by hand: header, then (score, length, bytes) per token.
std::string bin(int32_t max_len, const std::vector<std::pair<float, std::string>>& toks) {
    std::string out(4, '\0');
    std::memcpy(out.data(), &max_len, 4);
    for (const auto& [score, s] : toks) {
        char rec[8];
        const auto len = static_cast<int32_t>(s.size());
        std::memcpy(rec, &score, 4);
        std::memcpy(rec + 4, &len, 4);
        out.append(rec, 8);
        out += s;
    }
    return out;
}

TEST(Llama2cTokenizer, CorruptFilesAreInputErrors) {
    const fs::path dir = fs::temp_directory_path() / ("kvscope_l2c_" + std::to_string(getpid()));
    fs::create_directories(dir);
    const std::string good = file_bytes(kSpm / "tokenizer.bin");
    std::string negative = bin(8, {{0.f, "<unk>"}, {0.f, "ab"}});
    const int32_t minus = -7;
    std::memcpy(negative.data() + 4 + 8 + 5 + 4, &minus, 4);  // length of token 1
    std::string huge = bin(8, {{0.f, "a"}});
    const int32_t big = 1 << 30;
    std::memcpy(huge.data() + 8, &big, 4);
    const std::pair<const char*, std::string> cases[] = {
        {"empty", ""},
        {"short header", "\x10\x00"},
        {"bad max_token_length", bin(-3, {{0.f, "a"}})},
        {"no tokens", bin(8, {})},
        {"truncated record", good.substr(0, good.size() - 3)},
        {"negative length", negative},
        {"huge length", huge},
        {"nan score", bin(8, {{std::nanf(""), "a"}})},
    };
    for (const auto& [name, bytes] : cases) {
        const fs::path f = dir / "tokenizer.bin";
        std::ofstream(f, std::ios::binary | std::ios::trunc) << bytes;
        try {
            load_tokenizer(f);
            ADD_FAILURE() << name << " loaded";
        } catch (const InputError& e) {
            EXPECT_EQ(e.file(), f) << name;
        }
    }
    // The model's vocabulary size, when given, must match the file.
    try {
        load_llama2c_tokenizer(kSpm / "tokenizer.bin", 32000);
        ADD_FAILURE() << "vocab mismatch accepted";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("holds 700 tokens"), std::string::npos) << e.what();
    }
    EXPECT_EQ(load_llama2c_tokenizer(kSpm / "tokenizer.bin", 700)->vocab_size(), 700);
    fs::remove_all(dir);
}

}  // namespace
}  // namespace kvscope
